"""``FleetCommandTrigger``: waits, in the triggerer, for one command on many vehicles to end.

One trigger per fleet task, not one per vehicle: it polls every pending execution with the shared
:class:`~airflow_provider_volteras.hooks._async.AsyncVolterasClient` (one session and one token per
connection and event loop, a cap on requests in flight), each execution on its own adaptive schedule
(:func:`~airflow_provider_volteras._core.waiting.watch_flow`, the schedule of ``CommandExecutionTrigger``),
and fires a single event with every vehicle's outcome once all of them ended or the deadline passed.

The per-vehicle outcome shape, :class:`VehicleWait`, is shared with the worker-side wait of
``VolterasFleetCommandOperator(deferrable=False)``, so both modes report the same outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Literal, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_volteras._core.basics import DEFAULT_POLL_INTERVAL, validate_id
from airflow_provider_volteras._core.events import WaitError
from airflow_provider_volteras.triggers.command_execution import _poll_interval, deadline_to_iso

#: ``status`` of one vehicle's wait: the API's terminal statuses, ``PENDING`` when the deadline came
#: first (``execution`` then holds the last status read, or ``None`` when no read succeeded) and
#: ``ERROR`` when the wait met an error that ends it (``error`` holds the task failure as data).
VehicleWaitStatus = Literal["EXECUTED", "FAILED", "PENDING", "ERROR"]


class VehicleWait(TypedDict, total=False):
    """How the wait for one vehicle's execution ended (JSON-serializable)."""

    vehicle_id: str
    execution_id: str
    status: VehicleWaitStatus
    failed_reason: str | None
    executed_at: str | None
    status_read: bool
    error: WaitError | None


def slim_outcome(
    vehicle_id: str, execution_id: str, final: Mapping[str, Any] | None, last: Mapping[str, Any] | None
) -> VehicleWait:
    """The outcome of a wait that ended with ``final`` (terminal) or at the deadline (``final`` is ``None``)."""
    if final is not None:
        return {
            "vehicle_id": vehicle_id,
            "execution_id": execution_id,
            "status": final["status"],
            "failed_reason": final.get("failedReason"),
            "executed_at": final.get("executedAt"),
            "status_read": True,
        }
    return {
        "vehicle_id": vehicle_id,
        "execution_id": execution_id,
        "status": "PENDING",
        "failed_reason": None,
        "executed_at": None,
        "status_read": last is not None,
    }


def error_outcome(vehicle_id: str, execution_id: str, error: WaitError) -> VehicleWait:
    return {
        "vehicle_id": vehicle_id,
        "execution_id": execution_id,
        "status": "ERROR",
        "failed_reason": None,
        "executed_at": None,
        "status_read": False,
        "error": error,
    }


class FleetCommandTrigger(BaseTrigger):
    """Poll the executions of one command on many vehicles until each is ``EXECUTED`` or ``FAILED``.

    :param command: The command the executions are about (every answer is checked against it).
    :param executions: ``{vehicle_id: command_execution_id}`` of the executions to wait for.
    :param deadline: Absolute end of the wait (aware datetime, ISO text or epoch seconds).
    :param volteras_conn_id: The connection (looked up with ``aget_connection``; never serialized).
    :param poll_interval: Longest pause between two polls of one execution; polls start ~1 s apart.

    Its serialized kwargs hold ids, the deadline and settings only, never a secret or a token, and
    the deadline is absolute, so a restarted triggerer resumes the same wait (every execution is
    polled at once, then on its schedule). It fires one event:
    ``{"status": "done", "command": ..., "outcomes": [VehicleWait, ...]}`` (one per vehicle, in the
    order of ``executions``), or ``{"status": "error", "command": ..., "error": {...}}`` when the
    connection cannot even be opened.
    """

    def __init__(
        self,
        *,
        command: str,
        executions: Mapping[str, str],
        deadline: datetime | str | float,
        volteras_conn_id: str = "volteras_default",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.command = str(command)
        self.executions = {
            validate_id(vid): validate_id(eid, "command_execution_id") for vid, eid in dict(executions).items()
        }
        self.deadline = deadline_to_iso(deadline)
        self.volteras_conn_id = volteras_conn_id
        self.poll_interval = _poll_interval(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "command": self.command,
                "executions": dict(self.executions),
                "deadline": self.deadline,
                "volteras_conn_id": self.volteras_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    def __repr__(self) -> str:
        return (
            f"<FleetCommandTrigger command={self.command!r} vehicles={len(self.executions)} deadline={self.deadline}>"
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_volteras._core.events import error_payload
        from airflow_provider_volteras._core.waiting import WaitPlan, watch_flow
        from airflow_provider_volteras._core.wire import adrive
        from airflow_provider_volteras.exceptions import VolterasError
        from airflow_provider_volteras.failures import api_failure
        from airflow_provider_volteras.hooks._async import AsyncVolterasClient

        deadline = datetime.fromisoformat(self.deadline).timestamp()
        command = self.command
        self.log.info("Waiting for %s on %d vehicle(s) until %s", command, len(self.executions), self.deadline)
        try:
            async with AsyncVolterasClient.open(self.volteras_conn_id, self.log) as client:

                async def watch(vehicle_id: str, execution_id: str) -> VehicleWait:
                    plan = WaitPlan(deadline=deadline, poll_interval=self.poll_interval, jitter=0.1)
                    plan.poll_now()
                    last: dict[str, Any] | None = None

                    async def poll(pause: float) -> dict[str, Any] | VolterasError:
                        nonlocal last
                        await asyncio.sleep(pause)
                        try:
                            last = await client.get_command_execution(vehicle_id, execution_id, command=command)
                        except VolterasError as err:
                            return err
                        return last

                    what = f"{command} execution {execution_id} on vehicle {vehicle_id}"
                    try:
                        final = await adrive(watch_flow(plan, self.log, what), poll)
                    except VolterasError as err:
                        failure = api_failure(err, vehicle_id=vehicle_id, command=command, execution_id=execution_id)
                        return error_outcome(vehicle_id, execution_id, error_payload(failure))
                    return slim_outcome(vehicle_id, execution_id, final, last)

                outcomes = await asyncio.gather(*(watch(v, e) for v, e in self.executions.items()))
        except VolterasError as err:
            failure = api_failure(err, vehicle_id=f"{len(self.executions)} vehicles", command=command)
            yield TriggerEvent({"status": "error", "command": command, "error": error_payload(failure)})
            return
        done = sum(1 for o in outcomes if o["status"] in ("EXECUTED", "FAILED"))
        self.log.info("%s: %d of %d execution(s) ended; firing one event", command, done, len(outcomes))
        yield TriggerEvent({"status": "done", "command": command, "outcomes": list(outcomes)})
