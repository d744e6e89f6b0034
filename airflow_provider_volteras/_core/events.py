"""The shapes that cross process boundaries: a command execution, and the event a wait trigger fires.

A trigger runs in the triggerer and the task resumes in a worker, so a failure met in the trigger
travels as data. :func:`error_payload` turns the task exception into that data and
:func:`failure_from_payload` turns it back into the very same exception (class, reason, delay kind),
so waiting in the worker and waiting in the triggerer fail alike.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasFatalCommandError,
    VolterasRetryableCommandError,
)


class CommandExecution(TypedDict, total=False):
    """A ``VehicleCommandExecution`` as the API returns it (camelCase keys)."""

    id: str
    vehicleId: str
    command: str
    status: Literal["PENDING", "EXECUTED", "FAILED"]
    failedReason: str | None
    executedAt: str | None
    commandArguments: dict[str, Any] | None
    timeout: int | None


class WaitError(TypedDict):
    """A task failure met by the trigger, as data."""

    message: str
    reason: str | None
    delay_kind: str | None
    retryable: bool


WaitStatus = Literal["executed", "failed", "timeout", "error"]


class WaitEvent(TypedDict, total=False):
    """``TriggerEvent.payload`` of ``CommandExecutionTrigger``.

    ``executed``/``failed`` carry the terminal ``execution``; ``timeout`` carries the last execution
    read (or ``None``); ``error`` carries ``error``.
    """

    status: WaitStatus
    vehicle_id: str
    command_execution_id: str
    command: str | None
    execution: CommandExecution | None
    error: WaitError


def error_payload(error: VolterasCommandError) -> WaitError:
    return {
        "message": str(error),
        "reason": error.reason,
        "delay_kind": error.delay_kind,
        "retryable": error.retryable,
    }


def failure_from_payload(
    payload: Any, *, vehicle_id: str, command: str, execution_id: str | None
) -> VolterasCommandError:
    """The task exception an ``error`` event stands for (unreadable payloads give a retryable one)."""
    data = payload if isinstance(payload, dict) else {}
    retryable = data.get("retryable") is not False
    cls = VolterasRetryableCommandError if retryable else VolterasFatalCommandError
    message = data.get("message") if isinstance(data.get("message"), str) else None
    return cls(
        message
        or f"Volteras command {command} on vehicle {vehicle_id}: the trigger reported an error without details. "
        "Airflow will retry the task.",
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason=data.get("reason") if isinstance(data.get("reason"), str) else "TRIGGER_ERROR",
        delay_kind=data.get("delay_kind") if isinstance(data.get("delay_kind"), str) else None,
    )
