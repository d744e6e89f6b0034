"""Per-vehicle outcomes: the one place where a wait's end, an error or an earlier try's record becomes
"executed", "retryable", "fatal" or "skipped", with the task failure that goes with it.

An outcome is JSON (it is stored in the task state store and pushed to XCom). A failure travels in
it as :class:`~airflow_provider_volteras._core.events.WaitError` data, and :func:`failure_of` turns it
back into the very same exception, so a single-vehicle task raises exactly what a fleet reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

from airflow_provider_volteras._core.basics import STATUS_EXECUTED, STATUS_FAILED
from airflow_provider_volteras._core.events import WaitError, error_payload, failure_from_payload
from airflow_provider_volteras._core.intent import arguments_match, describe_arguments
from airflow_provider_volteras.exceptions import VolterasCommandError
from airflow_provider_volteras.failures import (
    TaskKind,
    command_failure,
    pending_at_deadline,
    unexpected_outcome,
)

Classification = Literal["executed", "retryable", "fatal", "skipped"]
Origin = Literal["sent", "earlier try"]


class Outcome(TypedDict, total=False):
    """What became of one vehicle's command."""

    vehicle_id: str
    execution_id: str | None
    #: ``EXECUTED``/``FAILED``/``PENDING``/``UNKNOWN``/``NOT_SENT``/``SKIPPED``
    status: str
    failed_reason: str | None
    classification: Classification
    #: The failedReason or error code (``None`` when executed).
    reason: str | None
    delay_kind: str | None
    origin: Origin | None
    error: WaitError | None
    #: The execution in the API's shape, when one was read (an executed vehicle's is returned by a single task).
    execution: dict[str, Any] | None


#: The keys kept in the task state store and in a fleet's XCom (the execution is left out there).
RECORD_KEYS = ("vehicle_id", "execution_id", "status", "failed_reason", "classification", "reason", "delay_kind")


def executed(vehicle_id: str, execution: Mapping[str, Any]) -> Outcome:
    return {
        "vehicle_id": vehicle_id,
        "execution_id": execution.get("id"),
        "status": STATUS_EXECUTED,
        "failed_reason": None,
        "classification": "executed",
        "reason": None,
        "delay_kind": None,
        "error": None,
        "execution": dict(execution),
    }


def skipped(vehicle_id: str, reason: str, message: str) -> Outcome:
    return {
        "vehicle_id": vehicle_id,
        "execution_id": None,
        "status": "SKIPPED",
        "failed_reason": None,
        "classification": "skipped",
        "reason": reason,
        "delay_kind": None,
        "error": {"message": message, "reason": reason, "delay_kind": None, "retryable": False},
        "execution": None,
    }


def failed(vehicle_id: str, error: VolterasCommandError, status: str = "UNKNOWN") -> Outcome:
    """The outcome a task failure stands for (``status``: FAILED, PENDING, UNKNOWN or NOT_SENT)."""
    return {
        "vehicle_id": vehicle_id,
        "execution_id": error.execution_id,
        "status": status,
        "failed_reason": error.reason if status == STATUS_FAILED else None,
        "classification": "retryable" if error.retryable else "fatal",
        "reason": error.reason,
        "delay_kind": error.delay_kind,
        "error": error_payload(error),
        "execution": None,
    }


def failure_of(outcome: Mapping[str, Any], command: str) -> VolterasCommandError:
    """The task failure of a failed outcome, rebuilt from its data (the same class, message and fields)."""
    error = failure_from_payload(
        outcome.get("error"),
        vehicle_id=str(outcome.get("vehicle_id")),
        command=command,
        execution_id=outcome.get("execution_id"),
    )
    if outcome.get("classification") == "fatal" and error.retryable:  # an outcome's own word wins
        from airflow_provider_volteras.exceptions import VolterasFatalCommandError

        return VolterasFatalCommandError(
            str(error),
            vehicle_id=error.vehicle_id,
            command=command,
            execution_id=error.execution_id,
            reason=error.reason,
        )
    return error


def slim(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored: the outcome without the execution."""
    return {k: outcome.get(k) for k in (*RECORD_KEYS, "origin", "error")}


def arguments_problem(asked: Mapping[str, Any] | None, execution: Mapping[str, Any], has: bool) -> str | None:
    """Why an execution's ``commandArguments`` are not the ones asked for; ``None`` when they are (or are absent)."""
    if not has or arguments_match(asked, execution.get("commandArguments")):
        return None
    return (
        f"the API reports execution {execution.get('id')} with "
        f"{describe_arguments(execution.get('commandArguments'))}, "
        f"but this task asked for {describe_arguments(asked)}"
    )


class Judge:
    """Turns terminal answers into outcomes for one task: its command, arguments and reason overrides."""

    def __init__(
        self,
        *,
        command: str,
        arguments: dict[str, Any] | None,
        retryable_reasons: Iterable[str] = (),
        fatal_reasons: Iterable[str] = (),
        task_kind: TaskKind = "operator",
        sent_by: str | None = None,
        check_arguments: bool = True,
    ) -> None:
        self.command = command
        self.arguments = arguments
        self.retryable_reasons = tuple(retryable_reasons)
        self.fatal_reasons = tuple(fatal_reasons)
        self.task_kind: TaskKind = task_kind
        self.sent_by = sent_by
        self.check_arguments = check_arguments

    def command_failure(self, execution: Mapping[str, Any], vehicle_id: str) -> VolterasCommandError:
        return command_failure(
            dict(execution),
            vehicle_id=vehicle_id,
            command=str(execution.get("command") or self.command),
            retryable_reasons=self.retryable_reasons,
            fatal_reasons=self.fatal_reasons,
            task_kind=self.task_kind,
            sent_by=self.sent_by,
        )

    def of_execution(
        self, vehicle_id: str, execution: Mapping[str, Any], *, has_arguments: bool | None = None
    ) -> Outcome:
        """The outcome of a terminal execution that was read from the API (or a wait's end)."""
        has = "commandArguments" in execution if has_arguments is None else has_arguments
        status = execution.get("status")
        problem = arguments_problem(self.arguments, execution, has) if self.check_arguments else None
        if problem is not None:
            # The API applied (or reports) other arguments than asked: never a success, and never sent
            # again on our own (the same request would be changed the same way).
            from airflow_provider_volteras.failures import arguments_changed

            error = arguments_changed(vehicle_id, self.command, execution.get("id"), problem, status=status)
            return failed(vehicle_id, error, status=str(status or "UNKNOWN"))
        if status == STATUS_EXECUTED:
            return executed(vehicle_id, execution)
        if status == STATUS_FAILED:
            outcome = failed(vehicle_id, self.command_failure(execution, vehicle_id), status=STATUS_FAILED)
            outcome["execution"] = dict(execution)
            return outcome
        return failed(
            vehicle_id,
            unexpected_outcome(
                vehicle_id,
                self.command,
                execution.get("id"),
                f"status {status!r}, which is neither EXECUTED nor FAILED",
                reason="UNEXPECTED_STATUS",
            ),
        )

    def of_wait(self, wait: Mapping[str, Any], waited: float) -> Outcome:
        """The outcome of one vehicle's wait (a trigger's or the worker's: they end the same way)."""
        from airflow_provider_volteras.lifecycle.watch import execution_of

        vehicle_id = str(wait.get("vehicle_id"))
        execution_id = wait.get("execution_id")
        status = wait.get("status")
        if status in (STATUS_EXECUTED, STATUS_FAILED):
            return self.of_execution(vehicle_id, execution_of(wait), has_arguments=bool(wait.get("has_arguments")))
        if status == "PENDING":
            read = bool(wait.get("status_read"))
            error = pending_at_deadline(
                vehicle_id, self.command, execution_id, waited, status_read=read, task_kind=self.task_kind
            )
            return failed(vehicle_id, error, status="PENDING" if read else "UNKNOWN")
        error = failure_from_payload(
            wait.get("error"), vehicle_id=vehicle_id, command=self.command, execution_id=execution_id
        )
        return failed(vehicle_id, error)


def outcome_table(outcomes: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table of per-vehicle outcomes, for the task log."""
    header = ("#", "vehicle", "execution", "status", "failedReason / error", "retry?", "from")
    rows = [
        (
            str(i),
            str(o["vehicle_id"]),
            str(o.get("execution_id") or "-"),
            str(o["status"]),
            str(o.get("failed_reason") or (o.get("reason") if o["classification"] != "executed" else "") or "-"),
            {"executed": "done", "fatal": "fatal", "retryable": "retryable", "skipped": "skipped"}[o["classification"]],
            str(o.get("origin") or "-"),
        )
        for i, o in enumerate(outcomes, 1)
    ]
    widths = [max(len(r[c]) for r in (header, *rows)) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
