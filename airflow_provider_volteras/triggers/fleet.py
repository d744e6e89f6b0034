"""``FleetCommandTrigger``: waits, in the triggerer, for one command's executions on one or many vehicles.

One trigger per command task (a single-vehicle task is a fleet of one): it runs the provider's one
watch routine (:func:`~airflow_provider_volteras.lifecycle.watch.watch_executions`) over the shared
:class:`~airflow_provider_volteras.hooks._async.AsyncVolterasClient` (one session and one token per
connection and event loop), each execution on its own adaptive schedule, every read cut at the
deadline, and fires a single event with every vehicle's outcome once all ended or the deadline passed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_volteras._core.basics import DEFAULT_POLL_INTERVAL, validate_id, validate_issued_id

# The per-vehicle result shape, shared with the in-worker wait (kept importable from here).
from airflow_provider_volteras.lifecycle.watch import (
    VehicleWait,
    VehicleWaitStatus,
    error_result,
    wait_result,
)
from airflow_provider_volteras.triggers.command_execution import _poll_interval, deadline_to_iso


class FleetCommandTrigger(BaseTrigger):
    """Poll the executions of one command until each is ``EXECUTED`` or ``FAILED``, or the deadline passes.

    :param command: The command the executions are about (every answer is checked against it).
    :param executions: ``{vehicle_id: command_execution_id}`` of the executions to wait for (ids as the
        API issued them).
    :param deadline: Absolute end of the wait (aware datetime, ISO text or epoch seconds).
    :param volteras_conn_id: The connection (looked up with ``aget_connection``; never serialized).
    :param poll_interval: Longest pause between two polls of one execution; polls start ~1 s apart.
    :param hold_until: No event is fired before this time (epoch seconds): a trigger that fires right after
        its task deferred meets a scheduler race, so the task defers with a short hold.

    Its serialized kwargs hold ids, times and settings only, never a secret or a token, and the deadline
    is absolute, so a restarted triggerer resumes the same wait. It fires one event:
    ``{"status": "done", "command": ..., "outcomes": [VehicleWait, ...]}``, or
    ``{"status": "error", "command": ..., "error": {...}}`` when the connection cannot even be opened.
    """

    def __init__(
        self,
        *,
        command: str,
        executions: Mapping[str, str],
        deadline: datetime | str | float,
        volteras_conn_id: str = "volteras_default",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        hold_until: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.command = str(command)
        self.executions = {
            validate_id(vid): validate_issued_id(eid, "command_execution_id") for vid, eid in dict(executions).items()
        }
        self.deadline = deadline_to_iso(deadline)
        self.volteras_conn_id = volteras_conn_id
        self.poll_interval = _poll_interval(poll_interval)
        self.hold_until = float(hold_until) if isinstance(hold_until, (int, float)) else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "command": self.command,
                "executions": dict(self.executions),
                "deadline": self.deadline,
                "volteras_conn_id": self.volteras_conn_id,
                "poll_interval": self.poll_interval,
                "hold_until": self.hold_until,
            },
        )

    def __repr__(self) -> str:
        return (
            f"<FleetCommandTrigger command={self.command!r} vehicles={len(self.executions)} deadline={self.deadline}>"
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_volteras._core.events import error_payload
        from airflow_provider_volteras._core.waiting import final_read_grace
        from airflow_provider_volteras.exceptions import VolterasError
        from airflow_provider_volteras.failures import api_failure
        from airflow_provider_volteras.hooks._async import AsyncVolterasClient
        from airflow_provider_volteras.lifecycle.watch import async_reader, hold, watch_executions, webhook_wake

        command = self.command
        self.log.info("Waiting for %s on %d vehicle(s) until %s", command, len(self.executions), self.deadline)
        try:
            async with (
                AsyncVolterasClient.open(self.volteras_conn_id, self.log) as client,
                webhook_wake(client.settings, self.log) as wake,
            ):
                outcomes = await watch_executions(
                    async_reader(client, command),
                    self.executions,
                    command=command,
                    deadline=datetime.fromisoformat(self.deadline).timestamp(),
                    poll_interval=self.poll_interval,
                    log=self.log,
                    final_grace=final_read_grace(client.settings),
                    wake=wake,
                )
        except VolterasError as err:
            label = next(iter(self.executions)) if len(self.executions) == 1 else f"{len(self.executions)} vehicles"
            failure = api_failure(err, vehicle_id=label, command=command, sent=True)
            await hold(self.hold_until)
            yield TriggerEvent({"status": "error", "command": command, "error": error_payload(failure)})
            return
        done = sum(1 for o in outcomes.values() if o["status"] in ("EXECUTED", "FAILED"))
        self.log.info("%s: %d of %d execution(s) ended; firing one event", command, done, len(outcomes))
        await hold(self.hold_until)
        yield TriggerEvent({"status": "done", "command": command, "outcomes": list(outcomes.values())})


__all__ = ["FleetCommandTrigger", "VehicleWait", "VehicleWaitStatus", "error_result", "wait_result"]
