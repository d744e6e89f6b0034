"""The ``command.updated`` webhook receiver, mounted in Airflow's API server by the provider's plugin.

``POST <api server>/volteras/webhooks/<conn_id>``: the Volteras connection ``conn_id`` must have webhooks on
(``webhook_signing_secret`` and ``webhook_redis_conn_id``). Each delivery is checked, in this order, and
refused with a 4xx that says why (never with its payload, which is never logged):

==========  ======================================================================================
413         the body is larger than ``MAX_BODY`` bytes (read no further)
404         no such connection, or webhooks are off for it
401         ``svix-id`` / ``svix-timestamp`` / ``svix-signature`` missing (unsigned)
400         the timestamp is outside Svix's tolerance (``TOLERANCE`` seconds either way): stale or early
401         the signature does not match the connection's signing secret (``svix`` library)
409         this ``svix-id`` was already accepted (a replay)
422         signed, but not a ``command.updated`` about an execution (id and status)
==========  ======================================================================================

An accepted delivery is kept and announced on the bus (:func:`~.bus.publish`) and answered ``202`` at once:
Svix retries what it does not see acknowledged. Another event type, signed, is answered ``204`` and ignored.
When Redis cannot be reached the answer is ``503``, so Svix delivers it again later (the waits poll meanwhile).

The app is built on the first request (:class:`LazyReceiver`): loading the plugin imports neither FastAPI
nor svix nor redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

#: The largest delivery accepted, in bytes (a ``command.updated`` is well under a kilobyte).
MAX_BODY = 64 * 1024
#: Svix's timestamp tolerance, in seconds either way.
TOLERANCE = 300
#: How long a connection's webhook settings are reused by the receiver (and an unknown id remembered).
SETTINGS_TTL = 30.0
URL_PREFIX = "/volteras"
ROUTE = "/webhooks/{conn_id}"


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Endpoint:
    """What the receiver needs of one connection: its signature verifier and its bus's client."""

    def __init__(self, conn_id: str, signing_secret: str, redis_conn_id: str) -> None:
        from svix.webhooks import Webhook

        from airflow_provider_volteras.webhooks.bus import redis_settings

        self.conn_id = conn_id
        self.verifier = Webhook(signing_secret)
        self.redis = redis_settings(redis_conn_id).client()


def _load_endpoint(conn_id: str) -> _Endpoint | None:
    """The connection's endpoint, or ``None`` when there is no such connection or webhooks are off for it."""
    from airflow.sdk import BaseHook

    from airflow_provider_volteras._compat import AirflowNotFoundException
    from airflow_provider_volteras._core.settings import ClientSettings
    from airflow_provider_volteras.exceptions import VolterasConfigurationError

    try:
        conn = BaseHook.get_connection(conn_id)
        if conn.conn_type != "volteras":
            return None
        settings = ClientSettings.from_connection(conn)
    except (AirflowNotFoundException, VolterasConfigurationError):
        return None
    if not settings.webhooks:
        return None
    try:
        return _Endpoint(conn_id, settings.webhook_signing_secret, settings.webhook_redis_conn_id)
    except Exception as err:  # noqa: BLE001 - a bad secret or redis connection: said once, answered 404
        log.warning("Volteras webhooks: connection %r cannot receive webhooks (%s)", conn_id, type(err).__name__)
        return None


class Receiver:
    def __init__(self) -> None:
        self._endpoints: dict[str, tuple[_Endpoint | None, float]] = {}

    async def endpoint(self, conn_id: str) -> _Endpoint | None:
        cached = self._endpoints.get(conn_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        endpoint = await asyncio.to_thread(_load_endpoint, conn_id)
        self._endpoints[conn_id] = (endpoint, time.monotonic() + SETTINGS_TTL)
        return endpoint

    async def receive(self, conn_id: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        from svix.webhooks import WebhookVerificationError

        from airflow_provider_volteras.webhooks.bus import publish

        endpoint = await self.endpoint(conn_id)
        if endpoint is None:
            raise Refused(404, "no webhook endpoint for this connection")
        msg_id = headers.get("svix-id") or headers.get("webhook-id")
        stamp = headers.get("svix-timestamp") or headers.get("webhook-timestamp")
        signature = headers.get("svix-signature") or headers.get("webhook-signature")
        if not (msg_id and stamp and signature):
            raise Refused(401, "unsigned: the svix-id, svix-timestamp and svix-signature headers are required")
        try:
            sent = float(stamp)
        except ValueError:
            sent = math.nan
        if not math.isfinite(sent) or abs(time.time() - sent) > TOLERANCE:
            raise Refused(400, f"stale: the svix-timestamp is not within {TOLERANCE} s of now")
        try:
            endpoint.verifier.verify(body, {"svix-id": msg_id, "svix-timestamp": stamp, "svix-signature": signature})
        except (WebhookVerificationError, ValueError, UnicodeDecodeError):  # ValueError: a malformed signature
            raise Refused(401, "forged: the signature does not match this connection's signing secret") from None
        try:
            event = json.loads(body)
        except ValueError:
            raise Refused(422, "signed, but the body is not JSON") from None
        if not isinstance(event, dict) or event.get("type") != "command.updated":
            return 204, {"ignored": "not a command.updated event"}
        data = event.get("data")
        execution_id = data.get("id") if isinstance(data, dict) else None
        status = data.get("status") if isinstance(data, dict) else None
        vehicle_id = data.get("vehicleId") if isinstance(data, dict) else None
        if (
            not isinstance(execution_id, str)
            or not _is_id(execution_id)
            or not isinstance(status, str)
            or len(status) > 40
        ):
            raise Refused(422, "signed, but not a command.updated about an execution (data.id and data.status)")
        try:
            fresh = await publish(
                endpoint.redis,
                conn_id,
                msg_id,
                execution_id,
                status,
                vehicle_id if _is_id(vehicle_id) else None,
            )
        except Exception as err:  # noqa: BLE001 - Redis down: Svix delivers it again later
            log.warning(
                "Volteras webhooks (%s): the bus is unreachable (%s); answered 503", conn_id, type(err).__name__
            )
            return 503, {"error": "the webhook bus is unreachable; deliver again later"}
        if not fresh:
            raise Refused(409, "replayed: this svix-id was already accepted")
        return 202, {"accepted": msg_id}


def _is_id(value: Any) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable() and not any(c.isspace() for c in value)
    )


def create_app() -> Any:
    """The FastAPI app of the receiver (one route)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    receiver = Receiver()
    app = FastAPI(title="Volteras webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    async def command_updated(request: Any) -> JSONResponse:
        conn_id = str(request.path_params["conn_id"])
        declared = request.headers.get("content-length")
        try:
            if declared is not None and int(declared) > MAX_BODY:
                raise Refused(413, f"too large: at most {MAX_BODY} bytes")
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    raise Refused(413, f"too large: at most {MAX_BODY} bytes")
            status, answer = await receiver.receive(conn_id, request.headers, bytes(body))
        except Refused as refused:
            log.info(
                "Volteras webhook for %r refused with %d: %s (svix-id %.80r)",
                conn_id,
                refused.status,
                refused.reason,
                request.headers.get("svix-id"),
            )
            return JSONResponse({"error": refused.reason}, status_code=refused.status)
        except ValueError:  # a Content-Length that is not a number
            return JSONResponse({"error": "bad Content-Length"}, status_code=400)
        return JSONResponse(answer, status_code=status)

    # A plain route (no parameter injection): the body is read here, as a stream, with a bound.
    app.router.add_route(ROUTE, command_updated, methods=["POST"])
    return app


class LazyReceiver:
    """An ASGI app that builds the receiver's FastAPI app on its first request (plugin loading stays cheap)."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)
