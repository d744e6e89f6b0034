"""``CommandExecutionTrigger``: waits, in the triggerer, for a command execution to end."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_volteras._core.basics import (
    DEFAULT_POLL_INTERVAL,
    STATUS_EXECUTED,
    validate_id,
    validate_issued_id,
)
from airflow_provider_volteras._core.events import (
    CommandExecution,
    WaitError,
    WaitEvent,
    WaitStatus,
    error_payload,
)
from airflow_provider_volteras._core.waiting import MIN_POLL_INTERVAL
from airflow_provider_volteras.exceptions import VolterasError, VolterasInvalidInputError


def deadline_to_iso(deadline: datetime | str | float) -> str:
    """Normalise a deadline (aware datetime, ISO text or epoch seconds) to ISO 8601 UTC text."""
    try:
        if isinstance(deadline, str):
            deadline = datetime.fromisoformat(deadline)
        elif isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
            deadline = datetime.fromtimestamp(deadline, tz=UTC)
    except (ValueError, OverflowError, OSError) as err:
        raise VolterasInvalidInputError(f"deadline {str(deadline)[:60]!r} is not a valid time ({err}).") from None
    if not isinstance(deadline, datetime):
        raise VolterasInvalidInputError(
            f"deadline must be an aware datetime, ISO 8601 text or epoch seconds, got {type(deadline).__name__}."
        )
    if deadline.tzinfo is None:
        raise VolterasInvalidInputError("deadline must be timezone-aware (UTC)")
    return deadline.astimezone(UTC).isoformat()


def _poll_interval(value: float) -> float:
    """A finite number of seconds, at least ``MIN_POLL_INTERVAL``: less would poll the API in a tight loop."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < MIN_POLL_INTERVAL:
        raise VolterasInvalidInputError(
            f"poll_interval must be a number of seconds from {MIN_POLL_INTERVAL:g}, got {str(value)[:60]!r}."
        )
    return seconds


class CommandExecutionTrigger(BaseTrigger):
    """Poll a command execution until it is ``EXECUTED`` or ``FAILED``, or the deadline passes.

    Its serialized kwargs hold ids and settings only, never a secret or token, and the deadline is
    absolute, so a triggerer restart resumes the same wait. Polls start about a second apart and slow
    down up to ``poll_interval``; failed polls back off and the wait goes on until the deadline.

    Events (``TriggerEvent.payload``):

    * ``{"status": "executed", "execution": {...}}``
    * ``{"status": "failed", "execution": {...}}``
    * ``{"status": "timeout", "execution": {... last seen, or None}}``
    * ``{"status": "error", "error": {"message", "reason", "delay_kind", "retryable"}}``

    Every event also carries ``vehicle_id``, ``command_execution_id`` and ``command``; the payload is a
    :class:`~airflow_provider_volteras._core.events.WaitEvent`. An ``error`` carries the task failure
    as data, and the task rebuilds the very same failure from it.
    """

    def __init__(
        self,
        *,
        vehicle_id: str,
        command_execution_id: str,
        deadline: datetime | str | float,
        volteras_conn_id: str = "volteras_default",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        command: str | None = None,
        hold_until: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.hold_until = float(hold_until) if isinstance(hold_until, (int, float)) else None
        self.vehicle_id = validate_id(vehicle_id)
        self.command_execution_id = validate_issued_id(command_execution_id)
        self.deadline = deadline_to_iso(deadline)
        self.volteras_conn_id = volteras_conn_id
        self.poll_interval = _poll_interval(poll_interval)
        self.command = command

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "vehicle_id": self.vehicle_id,
                "command_execution_id": self.command_execution_id,
                "deadline": self.deadline,
                "volteras_conn_id": self.volteras_conn_id,
                "poll_interval": self.poll_interval,
                "command": self.command,
                "hold_until": self.hold_until,
            },
        )

    def __repr__(self) -> str:
        return (
            f"<CommandExecutionTrigger vehicle_id={self.vehicle_id!r} "
            f"command_execution_id={self.command_execution_id!r} deadline={self.deadline}>"
        )

    def _event(
        self, status: WaitStatus, *, execution: dict[str, Any] | None = None, error: WaitError | None = None
    ) -> TriggerEvent:
        payload: WaitEvent = {
            "status": status,
            "vehicle_id": self.vehicle_id,
            "command_execution_id": self.command_execution_id,
            "command": self.command,
            "execution": cast(CommandExecution | None, execution),
        }
        if error is not None:
            payload["error"] = error
        return TriggerEvent(dict(payload))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_volteras._core.waiting import final_read_grace
        from airflow_provider_volteras.failures import api_failure
        from airflow_provider_volteras.hooks._async import AsyncVolterasClient
        from airflow_provider_volteras.lifecycle.watch import async_reader, hold, watch_one, webhook_wake

        what = f"{self.command or 'command'} execution {self.command_execution_id} on vehicle {self.vehicle_id}"
        try:
            async with (
                AsyncVolterasClient.open(self.volteras_conn_id, self.log) as client,
                webhook_wake(client.settings, self.log) as wake,
            ):
                final, last = await watch_one(
                    async_reader(client, self.command),
                    self.vehicle_id,
                    self.command_execution_id,
                    deadline=datetime.fromisoformat(self.deadline).timestamp(),
                    poll_interval=self.poll_interval,
                    log=self.log,
                    what=what,
                    jitter=0.1,
                    final_grace=final_read_grace(client.settings),
                    wake=wake,
                )
        except VolterasError as err:
            failure = api_failure(
                err,
                vehicle_id=self.vehicle_id,
                command=self.command or "command",
                execution_id=self.command_execution_id,
                sent=True,
            )
            await hold(self.hold_until)
            yield self._event("error", error=error_payload(failure))
            return
        await hold(self.hold_until)
        if final is None:
            yield self._event("timeout", execution=last)
        elif final["status"] == STATUS_EXECUTED:
            yield self._event("executed", execution=final)
        else:
            yield self._event("failed", execution=final)
