"""Waiting for a command execution to end, shared by the command operators and the sensor.

Deferrable mode checks the execution once and defers to ``CommandExecutionTrigger``; non-deferrable
mode polls in the worker with the same schedule (:func:`_core.waiting.watch_flow`). Both end in
:meth:`CommandWaitMixin.finish`, so both give the same outcomes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_volteras._core.basics import STATUS_EXECUTED, STATUS_FAILED, is_terminal
from airflow_provider_volteras._core.events import WaitEvent, failure_from_payload
from airflow_provider_volteras._core.waiting import RECOVERABLE_POLL_ERRORS
from airflow_provider_volteras.assets import record_executed
from airflow_provider_volteras.catalogue import build_payload, get_command_spec
from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasError,
)
from airflow_provider_volteras.failures import (
    DelayKind,
    TaskKind,
    api_failure,
    command_failure,
    pending_at_deadline,
    unexpected_outcome,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_volteras.hooks.volteras import VolterasHook


def seconds(value: float | timedelta, name: str, *, minimum: float = 0.0) -> float:
    """A duration parameter in seconds: above ``minimum`` (and above 0), under a week."""
    total = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(total, bool)
        or not isinstance(total, (int, float))
        or not 0 < total < 7 * 24 * 3600
        or total < minimum
    ):
        floor = f"at least {minimum:g}" if minimum else "a positive number of"
        raise ValueError(f"{name} must be {floor} seconds (or a timedelta) under a week, got {value!r}")
    return float(total)


class PlainReason(str):
    """A ``failedReason`` that is plain text rather than one of the documented codes.

    The API says a reason "may in some cases be a plain string". Per-task reason overrides refuse
    unknown codes (a typo would silently never match), so plain text must be marked:
    ``fatal_reasons=["OEM_VEHICLE_OFFLINE", PlainReason("Vehicle is in valet mode")]``.
    """

    __slots__ = ()


def is_static(value: Any) -> bool:
    """True when ``value`` is final at DAG-parse time (not a Jinja template or an XCom reference)."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    if isinstance(value, (list, tuple)):
        return all(is_static(v) for v in value)
    if isinstance(value, Mapping):
        return all(is_static(v) for v in value.values())
    return isinstance(value, (int, float, bool, type(None)))


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read as Airflow's own and other providers' operators read it."""
    from airflow_provider_volteras._compat import conf

    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


def reason_overrides(value: Iterable[str] | str | None, name: str) -> tuple[str, ...]:
    """Check a task's ``retryable_reasons`` / ``fatal_reasons`` when the DAG is parsed.

    One string is one reason (not its characters); each must be a documented ``failedReason`` code
    or a :class:`PlainReason`.
    """
    from airflow_provider_volteras.failures import FAILED_REASONS

    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    unknown = [
        item
        for item in items
        if not isinstance(item, str) or (item not in FAILED_REASONS and not isinstance(item, PlainReason))
    ]
    if unknown:
        shown = ", ".join(repr(item)[:60] for item in unknown[:5])
        raise ValueError(
            f"{name} has {shown}, which is not a documented failedReason code. Use the codes of the README's "
            "failure-reason table, or mark plain-text reasons with PlainReason('...')."
        )
    return tuple(str(item) for item in items)


def checked_if_in_progress(value: str) -> str:
    if value not in ("wait", "fail", "skip"):
        raise ValueError(f"if_in_progress must be 'wait', 'fail' or 'skip', got {value!r}")
    return value


def check_static_command(command: Any, arguments: Any) -> None:
    """Refuse at DAG-parse time what is already wrong; templated values are checked when the task runs."""
    if is_static(command):
        get_command_spec(command)
        if is_static(arguments):
            build_payload(command, arguments)


class VolterasTaskMixin:
    """The hook of a Volteras task, made when first used (never while the DAG file is parsed)."""

    volteras_conn_id: str

    @cached_property
    def hook(self) -> VolterasHook:
        from airflow_provider_volteras.hooks.volteras import VolterasHook

        return VolterasHook(volteras_conn_id=self.volteras_conn_id)


class CommandWaitMixin(VolterasTaskMixin):
    """Needs ``hook``, ``volteras_conn_id``, ``deferrable``, ``wait_poll_interval``, ``wait_timeout``,
    ``retryable_reasons``, ``fatal_reasons`` and ``log`` on the class it is mixed into."""

    volteras_conn_id: str
    deferrable: bool
    wait_poll_interval: float
    wait_timeout: float
    retryable_reasons: Iterable[str]
    fatal_reasons: Iterable[str]
    log: Any
    #: Chooses the recovery steps in failure messages: a sensor never sends, an operator does.
    task_kind: TaskKind = "operator"
    #: The task that sent the command, when it is another task (the sensor's upstream operator).
    sent_by: str | None = None

    def wait_for(
        self,
        context: Context,
        execution: dict[str, Any],
        vehicle_id: str,
        command: str | None,
        *,
        checked: bool = False,
    ) -> dict[str, Any]:
        """Return the execution once ``EXECUTED``; raise the mapped task failure otherwise.

        Unless ``checked`` (the execution was just read), its status is read once more before waiting:
        most commands finish within seconds, and then no deferral is needed. The id was issued by the
        API, so a read that gets no usable answer (a 404 of a read-after-write lag included) only
        means "not known yet": the wait goes on.
        """
        execution_id = execution["id"]
        label = command or "command"  # a sensor may not know the command until it reads the execution
        if not checked and not is_terminal(execution):
            try:
                execution = self.hook.get_command_execution(vehicle_id, execution_id, command=command)
            except RECOVERABLE_POLL_ERRORS as err:
                self.log.warning("Could not read execution %s yet (%s); waiting for it", execution_id, err)
            except VolterasError as err:
                raise self.api_failure_of(err, vehicle_id, label, execution_id) from err
        if is_terminal(execution):
            return self.finish(execution, vehicle_id, label, context)
        started = time.time()
        deadline = started + self.wait_timeout
        if self.deferrable:
            from airflow_provider_volteras.lifecycle.task import CommandTaskMixin
            from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger

            # Watch the first seconds here, where most commands end: a trigger that fires right after its
            # task deferred meets a scheduler race (the same rule as the command operators).
            first = min(deadline, started + CommandTaskMixin.worker_first_seconds)
            if CommandTaskMixin.worker_first_seconds > 0:
                try:
                    early = self.hook.wait_for_command_execution(
                        vehicle_id,
                        execution_id,
                        deadline=first,
                        poll_interval=self.wait_poll_interval,
                        command=command,
                        hand_over=first < deadline,
                    )
                except RECOVERABLE_POLL_ERRORS as err:
                    self.log.warning("Could not read execution %s yet (%s); waiting for it", execution_id, err)
                    early = None
                except VolterasError as err:
                    raise self.api_failure_of(err, vehicle_id, label, execution_id) from err
                if early is not None:
                    return self.finish(early, vehicle_id, label, context)
            hold = CommandTaskMixin.trigger_hold_seconds

            self.log.info(
                "%s execution %s on vehicle %s is not finished; deferring until %s",
                label,
                execution_id,
                vehicle_id,
                datetime.fromtimestamp(deadline, tz=UTC).isoformat(),
            )
            cast(Any, self).defer(
                trigger=CommandExecutionTrigger(
                    vehicle_id=vehicle_id,
                    command_execution_id=execution_id,
                    deadline=deadline,
                    volteras_conn_id=self.volteras_conn_id,
                    poll_interval=self.wait_poll_interval,
                    command=command,
                    hold_until=time.time() + hold if hold > 0 else None,
                ),
                method_name="execute_complete",
            )
        self.log.info(
            "%s execution %s on vehicle %s is not finished; waiting in the worker", label, execution_id, vehicle_id
        )
        try:
            final = self.hook.wait_for_command_execution(
                vehicle_id, execution_id, deadline=deadline, poll_interval=self.wait_poll_interval, command=command
            )
        except VolterasError as err:
            raise self.api_failure_of(err, vehicle_id, label, execution_id) from err
        if final is None:
            raise pending_at_deadline(vehicle_id, label, execution_id, time.time() - started, task_kind=self.task_kind)
        return self.finish(final, vehicle_id, label, context)

    def execute_complete(self, context: Context, event: WaitEvent | None = None) -> dict[str, Any]:
        """Resume after the trigger fired. Every event is handled; none falls through to success.

        The event must be about what this task waits for (vehicle, execution, command), and so must
        the execution it carries: anything else is an unexpected answer, never a success.
        """
        payload: dict[str, Any] = dict(event) if isinstance(event, dict) else {}
        status = payload.get("status")
        vehicle_id = str(payload.get("vehicle_id") or "?")
        command = str(payload.get("command") or "command")
        execution_id = payload.get("command_execution_id")
        execution = payload.get("execution")
        if status in ("executed", "failed"):
            problem = self._event_problem(payload, execution)
            if problem is None:
                return self.finish(cast(dict[str, Any], execution), vehicle_id, command, context)
            raise unexpected_outcome(
                vehicle_id,
                command,
                execution_id,
                f"the trigger's answer is not about what this task waits for ({problem})",
                reason="UNEXPECTED_ANSWER",
            )
        if status == "timeout":
            raise pending_at_deadline(
                vehicle_id,
                command,
                execution_id,
                self.wait_timeout,
                status_read=isinstance(execution, dict),
                task_kind=self.task_kind,
            )
        if status == "error":
            raise failure_from_payload(
                payload.get("error"), vehicle_id=vehicle_id, command=command, execution_id=execution_id
            )
        raise unexpected_outcome(
            vehicle_id,
            command,
            execution_id,
            f"an event this provider does not understand: {event}",
            reason="UNKNOWN_EVENT",
        )

    def _event_problem(self, payload: dict[str, Any], execution: Any) -> str | None:
        """Why a trigger event's execution is not the one this task waits for; ``None`` when it is."""
        from airflow_provider_volteras._core.answers import execution_problem

        expected = self.expected_execution()
        for key, mine in expected.items():
            if mine is not None and payload.get(key) != mine:
                return f"event {key} {str(payload.get(key))[:60]!r}, expected {mine!r}"
        command = payload.get("command")
        return execution_problem(
            execution,
            vehicle_id=str(payload.get("vehicle_id")),
            execution_id=str(payload.get("command_execution_id")),
            command=command if isinstance(command, str) else None,
        )

    def expected_execution(self) -> dict[str, str | None]:
        """What this task waits for, as event keys (``None`` for what it does not know); see subclasses."""
        return {}

    def finish(
        self, execution: dict[str, Any], vehicle_id: str, command: str, context: Context | None = None
    ) -> dict[str, Any]:
        status = execution.get("status")
        command = str(execution.get("command") or command)
        if status == STATUS_EXECUTED:
            self.log.info(
                "%s on vehicle %s EXECUTED (execution %s, executedAt %s)",
                command,
                vehicle_id,
                execution.get("id"),
                execution.get("executedAt"),
            )
            if context is not None:
                record_executed(context, vehicle_id, command, execution)
            return execution
        if status == STATUS_FAILED:
            error = self.command_failure_of(execution, vehicle_id, command)
            if error.retryable and error.delay_kind == DelayKind.RATE_LIMITED.value:
                error.rate_limit_window_seconds = self._rate_limit_window(vehicle_id)
            raise error
        raise unexpected_outcome(
            vehicle_id,
            command,
            execution.get("id"),
            f"status {status!r}, which is neither EXECUTED nor FAILED",
            reason="UNEXPECTED_STATUS",
        )

    def api_failure_of(
        self, error: Exception, vehicle_id: str, command: str, execution_id: str | None = None
    ) -> VolterasCommandError:
        """The task exception for an API or input error, worded for this kind of task."""
        return api_failure(
            error,
            vehicle_id=vehicle_id,
            command=command,
            execution_id=execution_id,
            task_kind=self.task_kind,
            sent_by=self.sent_by,
        )

    def command_failure_of(self, execution: dict[str, Any], vehicle_id: str, command: str) -> VolterasCommandError:
        """The task exception for a ``FAILED`` execution, with this task's reason overrides applied."""
        return command_failure(
            execution,
            vehicle_id=vehicle_id,
            command=command,
            retryable_reasons=self.retryable_reasons,
            fatal_reasons=self.fatal_reasons,
            task_kind=self.task_kind,
            sent_by=self.sent_by,
        )

    def _rate_limit_window(self, vehicle_id: str) -> int | None:
        return rate_limit_window(self.hook, vehicle_id, self.log)


def rate_limit_window(hook: VolterasHook, vehicle_id: str, log: Any) -> int | None:
    """The longest rate-limit window of the vehicle, from ``/v1/rate-limits``; ``None`` if it does not answer."""
    try:
        limits = hook.get_rate_limits(vehicle_id)
    except VolterasError as err:
        log.warning("Could not read the rate limits of vehicle %s: %s", vehicle_id, err)
        return None
    windows = [
        int(r["windowSizeSeconds"])
        for r in limits
        if isinstance(r.get("windowSizeSeconds"), int) and not isinstance(r.get("windowSizeSeconds"), bool)
    ]
    return max(windows) if windows else None
