"""Operators that send a command to a vehicle and report, truthfully, whether it was executed.

``VolterasCommandOperator`` sends any creatable command; ``ClimateOffOperator`` and the other named
operators are thin subclasses made from the command catalogue (:mod:`airflow_provider_volteras.catalogue`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_volteras._core.basics import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    validate_id,
)
from airflow_provider_volteras._core.waiting import MIN_POLL_INTERVAL
from airflow_provider_volteras._waiting import (
    PlainReason,
    check_static_command,
    checked_if_in_progress,
    default_deferrable,
    is_static,
    reason_overrides,
    seconds,
)
from airflow_provider_volteras.assets import with_executed_alias
from airflow_provider_volteras.catalogue import CommandSpec, VehicleCommand, build_payload, get_command_spec
from airflow_provider_volteras.exceptions import VolterasInvalidInputError
from airflow_provider_volteras.failures import api_failure
from airflow_provider_volteras.lifecycle.records import STATE_KEY
from airflow_provider_volteras.lifecycle.task import CommandTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_volteras.lifecycle.outcomes import Outcome


IfInProgress = Literal["wait", "fail", "skip"]


class VolterasCommandOperator(CommandTaskMixin, BaseOperator):
    """Send a command to a vehicle through Volteras Connect and wait until it is executed.

    The task succeeds only when the API reports the execution ``EXECUTED`` for this vehicle, command
    and arguments. A ``FAILED`` execution fails the task: at once for reasons a person must fix, with a
    retry otherwise (see the failure-reason table). A retry never sends a duplicate: the task remembers
    its execution in the task state store and re-attaches to it while it may be in flight. It runs the
    same per-vehicle lifecycle as the fleet operators (it is a fleet of one).

    :param vehicle_id: Volteras vehicle id (templated).
    :param command: A creatable ``VehicleCommandEnum`` value, e.g. ``"CLIMATE_OFF"`` (templated).
    :param arguments: The command's JSON arguments with the API's names, e.g.
        ``{"driverTemperature": 21, "passengerTemperature": 21}`` (templated).
    :param volteras_conn_id: The Volteras connection.
    :param wait_for_completion: Wait for ``EXECUTED``/``FAILED`` (default). When ``False`` the task
        returns the created execution at once (feed its ``id`` to ``CommandExecutionSensor``).
    :param deferrable: Wait in the triggerer, freeing the worker slot (after a first few seconds in the
        worker, where most commands end). Default: ``[operators] default_deferrable``, as for Airflow's
        own operators.
    :param poll_interval: Longest pause between two status checks, in seconds (polls start ~1 s apart).
    :param timeout: How long to wait for the command to end, in seconds or a ``timedelta``; a command
        still pending then fails the task (retryable).
    :param if_in_progress: On ``COMMAND_ALREADY_IN_PROGRESS``: ``"wait"`` adopts the pending execution
        when its arguments match and waits for it, ``"fail"`` fails the task without retry, ``"skip"``
        skips the task.
    :param retryable_reasons: ``failedReason`` codes to treat as retryable for this task.
    :param fatal_reasons: ``failedReason`` codes to treat as fatal for this task (wins over the above).
    """

    template_fields: Sequence[str] = ("vehicle_id", "command", "arguments")
    template_fields_renderers = {"arguments": "json"}
    ui_color = "#d7f3e3"
    state_key: ClassVar[str] = STATE_KEY
    single: ClassVar[bool] = True

    def __init__(
        self,
        *,
        vehicle_id: str,
        command: str | VehicleCommand,
        arguments: dict[str, Any] | None = None,
        volteras_conn_id: str = "volteras_default",
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_WAIT_TIMEOUT,
        if_in_progress: IfInProgress = "wait",
        retryable_reasons: Iterable[str] | str = (),
        fatal_reasons: Iterable[str] | str = (),
        **kwargs: Any,
    ) -> None:
        kwargs["outlets"] = with_executed_alias(kwargs.get("outlets"))
        super().__init__(**kwargs)
        self.vehicle_id = vehicle_id
        self.command = command.value if isinstance(command, VehicleCommand) else command
        self.arguments = arguments
        self.volteras_conn_id = volteras_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.wait_poll_interval = seconds(poll_interval, "poll_interval", minimum=MIN_POLL_INTERVAL)
        self.wait_timeout = seconds(timeout, "timeout")
        self.if_in_progress = checked_if_in_progress(if_in_progress)
        self.retryable_reasons = reason_overrides(retryable_reasons, "retryable_reasons")
        self.fatal_reasons = reason_overrides(fatal_reasons, "fatal_reasons")
        # Refuse what is already wrong at parse time; templated values are checked when the task runs.
        if is_static(self.vehicle_id):
            validate_id(self.vehicle_id)
        check_static_command(self.command, self.command_arguments())

    def command_arguments(self) -> dict[str, Any] | None:
        """The JSON arguments to send (subclasses build them from typed parameters)."""
        return self.arguments

    def _intent(self) -> tuple[str, CommandSpec, dict[str, Any] | None]:
        command = str(self.command)
        try:
            vehicle_id = validate_id(self.vehicle_id)
            spec = get_command_spec(command)
            arguments = build_payload(spec.command, self.command_arguments())
        except VolterasInvalidInputError as err:
            raise api_failure(err, vehicle_id=str(self.vehicle_id)[:80], command=command[:80]) from err
        return vehicle_id, spec, arguments

    def execute(self, context: Context) -> dict[str, Any]:
        vehicle_id, spec, arguments = self._intent()
        command = spec.command.value
        if not self.wait_for_completion:
            [step] = self.run_commands(context, [vehicle_id], spec, arguments, wait=False)
            if step.outcome is not None and (step.execution is None or step.origin != "sent"):  # type: ignore[union-attr]
                return self._finish(context, [step.outcome], command)  # type: ignore[union-attr]
            execution = step.execution or {  # type: ignore[union-attr]
                "id": step.execution_id,  # type: ignore[union-attr]
                "vehicleId": vehicle_id,
                "command": command,
                "status": None,
            }
            self._push_id(context, execution["id"])
            self._say_who_tells_the_outcome(vehicle_id, command, execution)
            return execution
        outcomes = self.run_commands(context, [vehicle_id], spec, arguments)
        return self._finish(context, outcomes, command)  # type: ignore[arg-type]

    def on_prepared(self, context: Context, pending: dict[str, str]) -> None:
        for execution_id in pending.values():
            self._push_id(context, execution_id)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        settled: dict[str, dict[str, Any]] | None = None,
        pending: dict[str, str] | None = None,
        reattached: list[str] | None = None,
    ) -> dict[str, Any]:
        """Resume after the trigger fired; an event that is not about this task's execution never succeeds."""
        vehicle_id, spec, arguments = self._intent()
        outcomes = self.resume_from_event(context, [vehicle_id], spec, arguments, event, settled, pending, reattached)
        return self._finish(context, outcomes, spec.command.value)

    def _push_id(self, context: Context, execution_id: Any) -> None:
        # ``op.output["id"]`` in a DAG reads this key: it feeds CommandExecutionSensor.
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="id", value=execution_id)

    def _finish(self, context: Context, outcomes: list[Outcome], command: str) -> dict[str, Any]:
        [outcome] = outcomes
        if outcome.get("execution_id"):
            self._push_id(context, outcome["execution_id"])
        if outcome["classification"] == "executed":
            execution = dict(outcome.get("execution") or {})
            execution.setdefault("id", outcome.get("execution_id"))
            execution.setdefault("vehicleId", outcome["vehicle_id"])
            execution.setdefault("command", command)
            execution["status"] = "EXECUTED"
            self.log.info(
                "%s on vehicle %s EXECUTED (execution %s, executedAt %s)",
                command,
                outcome["vehicle_id"],
                execution.get("id"),
                execution.get("executedAt"),
            )
            return execution
        if outcome["classification"] == "skipped":
            error: dict[str, Any] = dict(outcome.get("error") or {})
            raise AirflowSkipException(f"{error.get('message')}; if_in_progress='skip', so this task is skipped.")
        failure = self.task_failure(outcomes, command)
        assert failure is not None
        raise failure

    def _say_who_tells_the_outcome(self, vehicle_id: str, command: str, execution: dict[str, Any]) -> None:
        """With ``wait_for_completion=False`` this task is green once the API accepted the command: say so."""
        watchers = sorted(self.downstream_task_ids)
        where = (
            "the state of task(s) " + ", ".join(f"'{t}'" for t in watchers)
            if watchers
            else "for the task that waits for this execution (e.g. CommandExecutionSensor) to tell"
        )
        self.log.info(
            "Not waiting (wait_for_completion=False): this task's success means the API accepted %s for vehicle "
            "%s, not that the car executed it. Whether execution %s EXECUTED is %s.",
            command,
            vehicle_id,
            execution["id"],
            where,
        )


class _CatalogueOperator(VolterasCommandOperator):
    """Base of the named operators: the command comes from the class, arguments from typed parameters."""

    spec: ClassVar[CommandSpec]

    def __init__(self, *, vehicle_id: str, **kwargs: Any) -> None:
        if "command" in kwargs:
            raise TypeError(f"{type(self).__name__} always sends {self.spec.command.value}; do not pass command=")
        super().__init__(vehicle_id=vehicle_id, command=self.spec.command.value, **kwargs)


class ClimateOffOperator(_CatalogueOperator):
    """Turn the climate control off. Sends ``CLIMATE_OFF``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.CLIMATE_OFF)
    template_fields: Sequence[str] = ("vehicle_id",)


class ClimateOnOperator(_CatalogueOperator):
    """Turn the climate control on. Sends ``CLIMATE_ON``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.CLIMATE_ON)
    template_fields: Sequence[str] = ("vehicle_id",)


class StartHvacSystemOperator(_CatalogueOperator):
    """Start the HVAC system. Sends ``START_HVAC_SYSTEM``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.START_HVAC_SYSTEM)
    template_fields: Sequence[str] = ("vehicle_id",)


class LockDoorsOperator(_CatalogueOperator):
    """Lock the doors. Sends ``LOCK_DOORS``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.LOCK_DOORS)
    template_fields: Sequence[str] = ("vehicle_id",)


class UnlockDoorsOperator(_CatalogueOperator):
    """Unlock the doors. Sends ``UNLOCK_DOORS``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.UNLOCK_DOORS)
    template_fields: Sequence[str] = ("vehicle_id",)


class ActuateFrontTrunkOperator(_CatalogueOperator):
    """Open or close the front trunk. Sends ``ACTUATE_FRONT_TRUNK``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.ACTUATE_FRONT_TRUNK)
    template_fields: Sequence[str] = ("vehicle_id",)


class ActuateRearTrunkOperator(_CatalogueOperator):
    """Open or close the rear trunk. Sends ``ACTUATE_REAR_TRUNK``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.ACTUATE_REAR_TRUNK)
    template_fields: Sequence[str] = ("vehicle_id",)


class OpenChargePortOperator(_CatalogueOperator):
    """Open the charge port. Sends ``OPEN_CHARGE_PORT``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.OPEN_CHARGE_PORT)
    template_fields: Sequence[str] = ("vehicle_id",)


class CloseChargePortOperator(_CatalogueOperator):
    """Close the charge port. Sends ``CLOSE_CHARGE_PORT``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.CLOSE_CHARGE_PORT)
    template_fields: Sequence[str] = ("vehicle_id",)


class StartChargingOperator(_CatalogueOperator):
    """Start charging. Sends ``START_CHARGING``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.START_CHARGING)
    template_fields: Sequence[str] = ("vehicle_id",)


class StopChargingOperator(_CatalogueOperator):
    """Stop charging. Sends ``STOP_CHARGING``.

    Takes the parameters of ``VolterasCommandOperator`` except ``command`` and ``arguments``.
    """

    spec = get_command_spec(VehicleCommand.STOP_CHARGING)
    template_fields: Sequence[str] = ("vehicle_id",)


def _typed_arguments(op: _CatalogueOperator) -> dict[str, Any]:
    """The JSON arguments from typed parameters; a rendered template's numeric text becomes a number."""
    args: dict[str, Any] = {}
    for field in op.spec.payload:
        value = getattr(op, field.param_name)
        if isinstance(value, str) and is_static(value):
            try:
                value = int(value) if field.integer and value.strip().lstrip("-").isdigit() else float(value)
            except ValueError:
                pass  # refused with a clear message by build_payload
        args[field.api_name] = value
    return args


class SetTemperatureOperator(_CatalogueOperator):
    """Set the cabin temperatures (°C). Sends ``SET_TEMPERATURE``.

    :param driver_temperature: Driver side, °C (templated). Any finite number: the API refuses what the
        vehicle cannot do.
    :param passenger_temperature: Passenger side, °C (templated).
    """

    spec = get_command_spec(VehicleCommand.SET_TEMPERATURE)
    template_fields: Sequence[str] = ("vehicle_id", "driver_temperature", "passenger_temperature")

    def __init__(
        self, *, vehicle_id: str, driver_temperature: float | str, passenger_temperature: float | str, **kwargs: Any
    ) -> None:
        self.driver_temperature = driver_temperature
        self.passenger_temperature = passenger_temperature
        super().__init__(vehicle_id=vehicle_id, **kwargs)

    def command_arguments(self) -> dict[str, Any]:
        return _typed_arguments(self)


class SetChargeLimitOperator(_CatalogueOperator):
    """Set the maximum state of charge. Sends ``SET_CHARGE_LIMIT``.

    :param limit: Charge limit in whole percent, 0 to 100 (templated); the API refuses what the vehicle cannot do.
    """

    spec = get_command_spec(VehicleCommand.SET_CHARGE_LIMIT)
    template_fields: Sequence[str] = ("vehicle_id", "limit")

    def __init__(self, *, vehicle_id: str, limit: int | str, **kwargs: Any) -> None:
        self.limit = limit
        super().__init__(vehicle_id=vehicle_id, **kwargs)

    def command_arguments(self) -> dict[str, Any]:
        return _typed_arguments(self)


#: The ready operator of every creatable command.
OPERATORS: dict[VehicleCommand, type[_CatalogueOperator]] = {
    cls.spec.command: cls
    for cls in (
        ClimateOffOperator,
        ClimateOnOperator,
        StartHvacSystemOperator,
        SetTemperatureOperator,
        LockDoorsOperator,
        UnlockDoorsOperator,
        ActuateFrontTrunkOperator,
        ActuateRearTrunkOperator,
        OpenChargePortOperator,
        CloseChargePortOperator,
        StartChargingOperator,
        StopChargingOperator,
        SetChargeLimitOperator,
    )
}

__all__ = ["OPERATORS", "PlainReason", "VolterasCommandOperator", *(cls.__name__ for cls in OPERATORS.values())]
