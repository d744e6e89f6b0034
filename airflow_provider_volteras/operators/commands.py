"""Operators that send a command to a vehicle and report, truthfully, whether it was executed.

``VolterasCommandOperator`` sends any creatable command; ``ClimateOffOperator`` and the other named
operators are thin subclasses made from the command catalogue (:mod:`airflow_provider_volteras.catalogue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_volteras._compat import AirflowSkipException
from airflow_provider_volteras._core.basics import validate_id
from airflow_provider_volteras._waiting import PlainReason, is_static
from airflow_provider_volteras.catalogue import CommandSpec, VehicleCommand, get_command_spec
from airflow_provider_volteras.lifecycle.records import STATE_KEY
from airflow_provider_volteras.lifecycle.task import CommandTaskOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_volteras.lifecycle.outcomes import Outcome


class VolterasCommandOperator(CommandTaskOperator):
    """Send a command to a vehicle through Volteras Connect and wait until it is executed.

    The task succeeds only when the API reports the execution ``EXECUTED`` for this vehicle, command
    and arguments. A ``FAILED`` execution fails the task: at once for reasons a person must fix, with a
    retry otherwise (see the failure-reason table). A retry never sends a duplicate: the task remembers
    its execution in the task state store and re-attaches to it while it may be in flight. It runs the
    same per-vehicle lifecycle as the fleet operators (it is a fleet of one).

    :param vehicle_id: Volteras vehicle id (templated).
    :param wait_for_completion: Wait for ``EXECUTED``/``FAILED`` (default). When ``False`` the task
        returns the created execution at once (feed its ``id`` to ``CommandExecutionSensor``).

    The other parameters (``command``, ``arguments``, ``volteras_conn_id``, ``deferrable``,
    ``poll_interval``, ``timeout``, ``if_in_progress``, ``retryable_reasons``, ``fatal_reasons``) are those
    of :class:`~airflow_provider_volteras.lifecycle.task.CommandTaskOperator`; with ``if_in_progress="skip"``
    the task is skipped.
    """

    template_fields: Sequence[str] = ("vehicle_id", "command", "arguments")
    ui_color = "#d7f3e3"
    state_key: ClassVar[str] = STATE_KEY
    single: ClassVar[bool] = True

    def __init__(self, *, vehicle_id: str, wait_for_completion: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vehicle_id = vehicle_id
        self.wait_for_completion = wait_for_completion
        if is_static(self.vehicle_id):
            validate_id(self.vehicle_id)
        self.check_when_parsed()

    def vehicles(self) -> list[str]:
        return [validate_id(self.vehicle_id)]

    def vehicles_label(self) -> str:
        return str(self.vehicle_id)

    def execute(self, context: Context) -> dict[str, Any]:
        vehicles, spec, arguments = self.intent()
        command = spec.command.value
        if self.wait_for_completion:
            return self.finish_task(context, self.run_commands(context, vehicles, spec, arguments), command)  # type: ignore[arg-type]
        [step] = self.run_commands(context, vehicles, spec, arguments, wait=False)
        if step.outcome is not None and (step.execution is None or step.origin != "sent"):  # type: ignore[union-attr]
            return self.finish_task(context, [step.outcome], command)  # type: ignore[union-attr]
        execution = step.execution or {  # type: ignore[union-attr]
            "id": step.execution_id,  # type: ignore[union-attr]
            "vehicleId": vehicles[0],
            "command": command,
            "status": None,
        }
        self._push_id(context, execution["id"])
        self._say_who_tells_the_outcome(vehicles[0], command, execution)
        return execution

    def on_prepared(self, context: Context, pending: dict[str, str]) -> None:
        for execution_id in pending.values():
            self._push_id(context, execution_id)

    def _push_id(self, context: Context, execution_id: Any) -> None:
        # ``op.output["id"]`` in a DAG reads this key: it feeds CommandExecutionSensor.
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="id", value=execution_id)

    def finish_task(self, context: Context, outcomes: list[Outcome], command: str) -> dict[str, Any]:
        [outcome] = outcomes
        if outcome.get("execution_id"):
            self._push_id(context, outcome["execution_id"])
        ti = context.get("ti")
        if ti is not None:  # a fleet mapped one task per vehicle reports every vehicle's outcome from these
            from airflow_provider_volteras.lifecycle.outcomes import slim
            from airflow_provider_volteras.lifecycle.summary import OUTCOME_KEY

            ti.xcom_push(key=OUTCOME_KEY, value=slim(outcome))
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
        super().__init__(vehicle_id=vehicle_id, **self.fixed_command(self.spec, kwargs))


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
