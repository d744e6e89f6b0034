"""``CommandExecutionSensor``: wait for a command execution created elsewhere to end."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator

from airflow_provider_volteras._compat import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
)
from airflow_provider_volteras._core.basics import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    is_terminal,
    validate_id,
    validate_issued_id,
)
from airflow_provider_volteras._core.waiting import MIN_POLL_INTERVAL, RECOVERABLE_POLL_ERRORS
from airflow_provider_volteras._waiting import CommandWaitMixin, default_deferrable, reason_overrides, seconds
from airflow_provider_volteras.assets import with_executed_alias
from airflow_provider_volteras.exceptions import VolterasError, VolterasInvalidInputError, VolterasNotFoundError
from airflow_provider_volteras.failures import TaskKind, api_failure, pending_at_deadline, sender_task_id

if TYPE_CHECKING:
    from airflow.sdk import Context


class CommandExecutionSensor(CommandWaitMixin, BaseSensorOperator):
    """Wait until a command execution is ``EXECUTED``; fail the way the command operators do otherwise.

    Pair it with ``ClimateOffOperator(wait_for_completion=False)`` (or any command operator) and pass
    ``command_execution_id="{{ ti.xcom_pull(task_ids='...')['id'] }}"`` or ``op.output["id"]``.
    Returns the final execution dict.

    :param vehicle_id: Volteras vehicle id (templated).
    :param command_execution_id: The execution to wait for (templated).
    :param volteras_conn_id: The Volteras connection.
    :param deferrable: Wait in the triggerer; otherwise poll in the worker. Default: ``[operators]
        default_deferrable`` (set it to ``True``, or pass ``True``, to free the worker slot while waiting).
    :param poke_interval: Longest pause between two status checks, in seconds (polls start ~1 s apart).
    :param timeout: How long to wait, in seconds or a ``timedelta``; a command still pending then
        fails the task (retryable, unlike a plain sensor timeout).
    :param retryable_reasons: ``failedReason`` codes to treat as retryable (the failure message's advice
        only: a FAILED execution fails the sensor at once whatever its reason, since a retry would read the
        same execution; its message names the Clear of the sending task that sends again).
    :param fatal_reasons: ``failedReason`` codes to treat as fatal (the same).
    :param mode: ``"poke"`` (default): wait in the worker or, with ``deferrable``, in the triggerer.
        ``"reschedule"``: read the execution once per ``poke_interval`` and free the worker slot in between
        (the task is ``up_for_reschedule`` meanwhile); ``timeout`` counts from the first check. Not with
        ``deferrable=True``, which frees the slot too.
    :param soft_fail: Skip the task, rather than fail it, when the command FAILED or was still not
        finished at ``timeout`` (what Airflow's sensors skip). A retryable failure (a read error) is retried
        as usual.
    :param never_fail: Skip the task on every failure, retryable ones included.

    ``exponential_backoff``, ``max_wait`` and ``silent_fail`` of Airflow's sensors are refused when the DAG is
    parsed: the wait has its own schedule (checks start ~1 s apart and slow down to ``poke_interval``) and
    rides out transient read errors by itself.
    """

    template_fields: Sequence[str] = ("vehicle_id", "command_execution_id")
    task_kind: TaskKind = "sensor"
    ui_color = "#e8f7ff"

    def __init__(
        self,
        *,
        vehicle_id: str,
        command_execution_id: str,
        volteras_conn_id: str = "volteras_default",
        deferrable: bool | None = None,
        poke_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_WAIT_TIMEOUT,
        retryable_reasons: Iterable[str] | str = (),
        fatal_reasons: Iterable[str] | str = (),
        sent_by_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        _refuse_unsupported(kwargs, deferrable)
        kwargs["outlets"] = with_executed_alias(kwargs.get("outlets"))
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.vehicle_id = vehicle_id
        self.command_execution_id = command_execution_id
        self.volteras_conn_id = volteras_conn_id
        # An explicit mode="reschedule" wins over [operators] default_deferrable (they are two ways to wait).
        self.deferrable = (not self.reschedule and default_deferrable()) if deferrable is None else deferrable
        self.sent_by = sent_by_task_id or sender_task_id(command_execution_id)
        self.wait_poll_interval = seconds(poke_interval, "poke_interval", minimum=MIN_POLL_INTERVAL)
        self.wait_timeout = seconds(timeout, "timeout")
        self.retryable_reasons = reason_overrides(retryable_reasons, "retryable_reasons")
        self.fatal_reasons = reason_overrides(fatal_reasons, "fatal_reasons")

    def _execution(self, *, tolerate_unread: bool = False) -> tuple[str, dict[str, Any]]:
        """Read the execution. With ``tolerate_unread``, a read that gets no usable answer (a 404 of a
        read-after-write lag included: the id was issued by the API) gives a placeholder to wait on."""
        try:
            vehicle_id = validate_id(self.vehicle_id)
            execution_id = validate_issued_id(self.command_execution_id)
        except VolterasInvalidInputError as err:
            raise api_failure(
                err, vehicle_id=str(self.vehicle_id)[:80], command="command", task_kind="sensor", sent_by=self.sent_by
            ) from err
        try:
            try:
                return vehicle_id, self.hook.get_command_execution(vehicle_id, execution_id)
            except VolterasNotFoundError:
                # An id the API issued may not be readable yet; the listing tells a lag from a wrong id.
                if not tolerate_unread or self.hook.find_listed_execution(vehicle_id, execution_id) is None:
                    raise
                self.log.warning("Execution %s is listed but not readable yet; waiting for it", execution_id)
            except RECOVERABLE_POLL_ERRORS as err:
                if not tolerate_unread:
                    raise
                self.log.warning("Could not read execution %s yet (%s); waiting for it", execution_id, err)
        except VolterasError as err:
            raise api_failure(
                err,
                vehicle_id=vehicle_id,
                command="command",
                execution_id=execution_id,
                task_kind="sensor",
                sent_by=self.sent_by,
            ) from err
        return vehicle_id, {"id": execution_id, "vehicleId": vehicle_id, "status": None}

    def expected_execution(self) -> dict[str, str | None]:
        return {"vehicle_id": str(self.vehicle_id), "command_execution_id": str(self.command_execution_id)}

    def execute(self, context: Context) -> dict[str, Any]:
        with self._skip_if_soft_failed():
            vehicle_id, execution = self._execution(tolerate_unread=True)
            command = execution.get("command") if isinstance(execution.get("command"), str) else None
            if self.reschedule:
                return self._check_once(context, execution, vehicle_id, command)
            return self.wait_for(context, execution, vehicle_id, command, checked=True)

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        with self._skip_if_soft_failed():
            return super().execute_complete(context, event)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        # ``BaseSensorOperator.resume_execution`` would skip every failure after a deferral under soft_fail,
        # retryable ones included; ``execute_complete`` applies the one rule of every mode instead.
        return BaseOperator.resume_execution(self, next_method, next_kwargs, context)

    def _check_once(
        self, context: Context, execution: dict[str, Any], vehicle_id: str, command: str | None
    ) -> dict[str, Any]:
        """``mode="reschedule"``: the one read this try just made decides; not finished, the task is
        rescheduled for the next check and frees its worker slot until then."""
        label = command or "command"
        if is_terminal(execution):
            return self.finish(execution, vehicle_id, label, context)
        now = datetime.now(UTC)
        first = context["ti"].get_first_reschedule_date(context) or now
        waited = (now - first).total_seconds()
        if waited >= self.wait_timeout:
            raise pending_at_deadline(
                vehicle_id,
                label,
                execution["id"],
                waited,
                status_read=execution.get("status") is not None,
                task_kind=self.task_kind,
            )
        pause = min(self.wait_poll_interval, self.wait_timeout - waited)
        self.log.info(
            "%s execution %s on vehicle %s is not finished (%s); next check in %.0f s, the worker slot is free "
            "until then",
            label,
            execution["id"],
            vehicle_id,
            execution.get("status") or "status not read yet",
            pause,
        )
        raise AirflowRescheduleException(now + timedelta(seconds=pause))  # type: ignore[no-untyped-call]

    @contextmanager
    def _skip_if_soft_failed(self) -> Iterator[None]:
        """``soft_fail``/``never_fail``: the failures Airflow's sensors skip become a skip, the message kept."""
        try:
            yield
        except (AirflowSkipException, AirflowRescheduleException):
            raise
        except Exception as err:
            setting = (
                "never_fail" if self.never_fail else "soft_fail" if self.soft_fail and _ends_a_sensor(err) else None
            )
            if setting is None:
                raise
            self.log.warning("%s=True: this failure skips the task.\n%s", setting, err)
            raise AirflowSkipException(f"{setting}=True, and: {str(err).splitlines()[0]}") from err

    def poke(self, context: Context) -> bool:
        """One check, for callers that drive the sensor themselves; ``execute`` does not use it."""
        vehicle_id, execution = self._execution()
        if not is_terminal(execution):
            return False
        self.finish(execution, vehicle_id, str(execution.get("command")))
        return True


#: The wait's own timeout (its failure reasons): a sensor that times out is skipped under ``soft_fail``.
_TIMEOUT_REASONS = frozenset({"PENDING_AT_DEADLINE", "STATUS_UNKNOWN_AT_DEADLINE"})


def _ends_a_sensor(error: BaseException) -> bool:
    """Whether Airflow's sensors skip this failure under ``soft_fail`` (Airflow 3.3.2's ``BaseSensorOperator``:
    a failure that is not retried, ``AirflowSensorTimeout``/``AirflowTaskTimeout``, or the sensor's timeout)."""
    from airflow_provider_volteras.exceptions import VolterasCommandError

    if isinstance(error, (AirflowFailException, AirflowSensorTimeout, AirflowTaskTimeout)):
        return True
    return isinstance(error, VolterasCommandError) and error.reason in _TIMEOUT_REASONS


#: Airflow sensor settings this sensor does not take, and why (refused when the DAG is parsed).
_REFUSED = {
    "exponential_backoff": "the wait has its own schedule: checks start ~1 s apart and slow down to poke_interval",
    "max_wait": "poke_interval is already the longest pause between two checks",
    "silent_fail": "the wait rides out transient read errors by itself and fails clearly on the others",
}


def _refuse_unsupported(kwargs: dict[str, Any], deferrable: bool | None) -> None:
    """Refuse, when the DAG is parsed, sensor settings that would otherwise be silently ignored."""
    for name, why in _REFUSED.items():
        if kwargs.get(name) not in (None, False):
            raise ValueError(f"CommandExecutionSensor does not take {name}={kwargs[name]!r}: {why}.")
    if kwargs.get("mode") == "reschedule" and deferrable:
        raise ValueError(
            "CommandExecutionSensor takes mode='reschedule' or deferrable=True, not both: each frees the worker "
            "slot while the command runs (reschedule: one check per poke_interval, each in a worker; deferrable: "
            "the triggerer watches). Drop one of them."
        )
