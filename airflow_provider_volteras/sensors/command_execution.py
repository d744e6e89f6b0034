"""``CommandExecutionSensor``: wait for a command execution created elsewhere to end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

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
from airflow_provider_volteras.failures import TaskKind, api_failure, sender_task_id

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
    :param retryable_reasons: ``failedReason`` codes to treat as retryable for this task.
    :param fatal_reasons: ``failedReason`` codes to treat as fatal for this task.
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
        kwargs["outlets"] = with_executed_alias(kwargs.get("outlets"))
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.vehicle_id = vehicle_id
        self.command_execution_id = command_execution_id
        self.volteras_conn_id = volteras_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
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
        vehicle_id, execution = self._execution(tolerate_unread=True)
        command = execution.get("command") if isinstance(execution.get("command"), str) else None
        return self.wait_for(context, execution, vehicle_id, command, checked=True)

    def poke(self, context: Context) -> bool:
        """One check, for callers that drive the sensor themselves; ``execute`` does not use it."""
        vehicle_id, execution = self._execution()
        if not is_terminal(execution):
            return False
        self.finish(execution, vehicle_id, str(execution.get("command")))
        return True
