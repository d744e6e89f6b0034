"""The simulator's ``command.updated`` webhooks, signed as Svix signs them, with the faults of a real delivery.

Attach a :class:`WebhookSender` to a simulator's state: each execution's end is delivered to ``url`` (the
Airflow API server's receiver, ``/volteras/webhooks/<conn_id>``) as ``{"type": "command.updated",
"timestamp", "data": <the execution as the API shows it>}`` with the ``svix-id``, ``svix-timestamp`` and
``svix-signature`` headers, signed with the endpoint's secret by the ``svix`` library.

:class:`WebhookFaults` makes deliveries ``delay``-ed, ``loss``-t, duplicated (the same message again, as a
Svix retry), reordered (held back by ``reorder_delay`` so later ones overtake it), signed with the wrong
secret (``forge``), or stamped ``stale`` (older than Svix's tolerance). Each is a probability from 0 to 1,
drawn from one seeded random generator; ``by_vehicle`` gives some vehicles faults of their own (probability
1 makes a fault certain: one vehicle's webhooks lost, another's duplicated, ...). Every attempt is recorded
(:meth:`WebhookSender.deliveries`) with the answer the receiver gave and when.

The state tells the sender of an execution's end when the execution is created (its planned end) and again
when a test forces it to end earlier (``finish_execution``): then the planned delivery is not sent (it is
recorded as ``superseded``), as the platform never announces an end that did not happen.

Deliveries go out on a few threads (``requests``), never on the simulator's request path.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import random
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Seconds a ``stale`` delivery is stamped in the past (Svix's tolerance is 300 s).
STALE_BY = 600.0


def new_signing_secret() -> str:
    """A signing secret in Svix's form (``whsec_`` and base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, sent_at: float, body: str) -> dict[str, str]:
    """The Svix headers of ``body`` (``sent_at``: epoch seconds)."""
    from svix.webhooks import Webhook

    stamp = datetime.fromtimestamp(int(sent_at), tz=UTC)
    return {
        "svix-id": message_id,
        "svix-timestamp": str(int(sent_at)),
        "svix-signature": Webhook(secret).sign(message_id, stamp, body),
        "content-type": "application/json",
    }


@dataclass(frozen=True)
class WebhookFaults:
    delay: float = 0.0
    """Seconds between an execution's end and its delivery."""
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 2.0
    forge: float = 0.0
    stale: float = 0.0
    seed: int | None = None


@dataclass
class Delivery:
    execution_id: str
    message_id: str
    kind: str
    """``ok``, ``duplicate``, ``forged`` or ``stale`` (a lost one is recorded as ``lost``, never sent; a
    planned end replaced by a forced one as ``superseded``, never sent)."""
    due: float
    body: str
    sent_at: float | None = None
    answered_at: float | None = None
    status: int | None = None
    #: The end it announces was planned by the state (``send_now`` deliveries are not).
    planned: bool = False


class WebhookSender:
    """Sends the webhooks of one simulator state to ``url`` (see the module's doc). Use as a context manager."""

    def __init__(
        self,
        state: Any,
        url: str,
        secret: str,
        faults: WebhookFaults | None = None,
        *,
        by_vehicle: Mapping[str, WebhookFaults] | None = None,
        threads: int = 4,
        timeout: float = 10.0,
    ) -> None:
        self.state = state
        self.url = url
        self.secret = secret
        self.faults = faults or WebhookFaults()
        self.by_vehicle = dict(by_vehicle or {})
        #: execution id -> message id of the last end the state announced for it
        self._latest: dict[str, str] = {}
        self.timeout = timeout
        self._random = random.Random(self.faults.seed)
        self._queue: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._log: list[Delivery] = []
        self._stop = False
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"sim-webhooks-{i}") for i in range(threads)
        ]

    def __enter__(self) -> WebhookSender:
        for thread in self._threads:
            thread.start()
        self.state.add_listener(self._ended)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.state.remove_listener(self._ended)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    # -- scheduling -----------------------------------------------------------------------------

    def _ended(self, execution: dict[str, Any], ended_at: float) -> None:
        """Called by the state (under its lock) when an execution is created or forced to end."""
        faults = self.by_vehicle.get(str(execution.get("vehicleId")), self.faults)
        draw = self._random.random
        execution_id = str(execution["id"])
        body = json.dumps(
            {
                "type": "command.updated",
                "timestamp": datetime.fromtimestamp(ended_at, tz=UTC).isoformat().replace("+00:00", "Z"),
                "data": execution,
            }
        )
        message_id = "msg_" + secrets.token_hex(12)
        self._latest[execution_id] = message_id
        due = ended_at + faults.delay
        if draw() < faults.loss:  # recorded when it would have been sent
            self._schedule(Delivery(execution_id, message_id, "lost", due, body, planned=True))
            return
        if draw() < faults.reorder:
            due += faults.reorder_delay
        kind = "forged" if draw() < faults.forge else "stale" if draw() < faults.stale else "ok"
        self._schedule(Delivery(execution_id, message_id, kind, due, body, planned=True))
        if draw() < faults.duplicate:
            self._schedule(Delivery(execution_id, message_id, "duplicate", due + 0.2, body, planned=True))

    def send_now(self, execution_id: str, status: str, *, kind: str = "ok", vehicle_id: str = "veh") -> None:
        """Send one webhook at once (``kind``: ``ok``, ``forged`` or ``stale``) about any execution id and status."""
        data = {"id": execution_id, "vehicleId": vehicle_id, "status": status}
        body = json.dumps({"type": "command.updated", "timestamp": "", "data": data})
        self._schedule(Delivery(execution_id, "msg_" + secrets.token_hex(12), kind, time.time(), body))

    def _schedule(self, delivery: Delivery) -> None:
        with self._cond:
            heapq.heappush(self._queue, (delivery.due, next(self._order), delivery))
            self._cond.notify()

    def _record(self, delivery: Delivery) -> None:
        with self._cond:
            self._log.append(delivery)

    # -- sending ------------------------------------------------------------------------------

    def _work(self) -> None:
        import requests

        session = requests.Session()
        session.trust_env = False
        while True:
            with self._cond:
                while not self._stop and (not self._queue or self._queue[0][0] > time.time()):
                    self._cond.wait(None if not self._queue else max(0.0, self._queue[0][0] - time.time()))
                if self._stop:
                    return
                _, _, delivery = heapq.heappop(self._queue)
                if delivery.planned and self._latest.get(delivery.execution_id) != delivery.message_id:
                    delivery.kind = "superseded"
                if delivery.kind in ("superseded", "lost"):
                    self._log.append(delivery)
                    continue
            self._send(session, delivery)

    def _send(self, session: Any, delivery: Delivery) -> None:
        import requests

        sent_at = time.time()
        stamp = sent_at - STALE_BY if delivery.kind == "stale" else sent_at
        secret = new_signing_secret() if delivery.kind == "forged" else self.secret
        headers = sign(secret, delivery.message_id, stamp, delivery.body)
        delivery.sent_at = sent_at
        try:
            answer = session.post(self.url, data=delivery.body.encode(), headers=headers, timeout=self.timeout)
            delivery.status = answer.status_code
        except requests.RequestException:
            delivery.status = None
        delivery.answered_at = time.time()
        self._record(delivery)

    # -- what happened ------------------------------------------------------------------------

    def deliveries(self, execution_id: str | None = None) -> list[Delivery]:
        """Every delivery made (and lost) so far, in the order they ended."""
        with self._cond:
            return [d for d in self._log if execution_id is None or d.execution_id == execution_id]

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)
