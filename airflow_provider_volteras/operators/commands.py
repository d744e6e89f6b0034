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
    STATUS_EXECUTED,
    STATUS_PENDING,
    validate_id,
)
from airflow_provider_volteras._core.intent import (
    STATE_KEY,
    arguments_match,
    created_record,
    describe_arguments,
    id_digest,
    in_flight_record,
)
from airflow_provider_volteras._core.waiting import MIN_POLL_INTERVAL
from airflow_provider_volteras._waiting import (
    CommandWaitMixin,
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
from airflow_provider_volteras.exceptions import (
    VolterasCommandInProgressError,
    VolterasError,
    VolterasFatalCommandError,
    VolterasInvalidInputError,
    VolterasNotFoundError,
    VolterasRetryableCommandError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.failures import DelayKind, already_final, api_failure, state_store_steps

if TYPE_CHECKING:
    from airflow.sdk import Context


IfInProgress = Literal["wait", "fail", "skip"]


class VolterasCommandOperator(CommandWaitMixin, BaseOperator):
    """Send a command to a vehicle through Volteras Connect and wait until it is executed.

    The task succeeds only when the API reports the execution ``EXECUTED``. A ``FAILED`` execution
    fails the task: at once for reasons a person must fix, with a retry otherwise (see the README's
    failure-reason table). A retry never sends a duplicate: the task remembers its execution in the
    task state store and re-attaches to it while it is pending.

    :param vehicle_id: Volteras vehicle id (templated).
    :param command: A creatable ``VehicleCommandEnum`` value, e.g. ``"CLIMATE_OFF"`` (templated).
    :param arguments: The command's JSON arguments with the API's names, e.g.
        ``{"driverTemperature": 21, "passengerTemperature": 21}`` (templated).
    :param volteras_conn_id: The Volteras connection.
    :param wait_for_completion: Wait for ``EXECUTED``/``FAILED`` (default). When ``False`` the task
        returns the created execution at once (feed its ``id`` to ``CommandExecutionSensor``).
    :param deferrable: Wait in the triggerer, freeing the worker slot. Default: ``[operators]
        default_deferrable``, as for Airflow's own operators.
    :param poll_interval: Longest pause between two status checks, in seconds (polls start ~1 s apart).
    :param timeout: How long to wait for the command to end, in seconds or a ``timedelta``; a command
        still pending then fails the task (retryable).
    :param if_in_progress: On ``COMMAND_ALREADY_IN_PROGRESS``: ``"wait"`` adopts the pending execution
        and waits for it, ``"fail"`` fails the task without retry, ``"skip"`` skips the task.
    :param retryable_reasons: ``failedReason`` codes to treat as retryable for this task.
    :param fatal_reasons: ``failedReason`` codes to treat as fatal for this task (wins over the above).
    """

    template_fields: Sequence[str] = ("vehicle_id", "command", "arguments")
    template_fields_renderers = {"arguments": "json"}
    ui_color = "#d7f3e3"

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

    def expected_execution(self) -> dict[str, str | None]:
        return {"vehicle_id": str(self.vehicle_id), "command": str(self.command).upper()}

    def execute(self, context: Context) -> dict[str, Any]:
        command = str(self.command)
        try:
            vehicle_id = validate_id(self.vehicle_id)
            spec = get_command_spec(command)
            arguments = build_payload(spec.command, self.command_arguments())
        except VolterasInvalidInputError as err:
            raise api_failure(err, vehicle_id=str(self.vehicle_id)[:80], command=command[:80]) from err
        command = spec.command.value
        store = _Store(context.get("task_state_store"), self.log, vehicle_id, command)
        execution = self._resume(store, vehicle_id, spec, arguments)
        resumed = execution is not None
        if execution is None:
            execution = self._create(store, vehicle_id, spec, arguments)
        # ``op.output["id"]`` in a DAG reads this key: it feeds CommandExecutionSensor.
        context["ti"].xcom_push(key="id", value=execution["id"])
        if not self.wait_for_completion:
            self._say_who_tells_the_outcome(vehicle_id, command, execution)
            return execution
        return self.wait_for(context, execution, vehicle_id, command, checked=resumed)

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

    # -- re-attaching to what an earlier try sent -------------------------------------------------

    def _resume(
        self, store: _Store, vehicle_id: str, spec: CommandSpec, arguments: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The execution an earlier try of this task created, if it is still this try's intent and worth following."""
        record = store.get()
        if record is None:
            return None
        command = spec.command.value
        if record.get("vehicle_id") != vehicle_id or record.get("command") != command:
            self.log.info(
                "An earlier try sent %s to %s; this try sends %s to %s.",
                record.get("command"),
                record.get("vehicle_id"),
                command,
                vehicle_id,
            )
            return None
        if not arguments_match(arguments, record.get("arguments")):
            self.log.info(
                "An earlier try sent %s with %s; this try asks for %s, so it does not re-attach to that execution.",
                command,
                describe_arguments(record.get("arguments")),
                describe_arguments(arguments),
            )
            return None
        if isinstance(record.get("in_flight"), dict) and not record.get("id"):
            execution = self._adopt_in_flight(store, record, vehicle_id, command, arguments)
            if execution is None:
                return None
        else:
            execution = self._read_recorded(str(record.get("id")), vehicle_id, command, arguments)
            if execution is None:
                return None
            if execution.get("commandArguments") is not None and not arguments_match(
                arguments, execution["commandArguments"]
            ):
                self.log.info(
                    "Execution %s from an earlier try has %s, not %s; not re-attaching to it.",
                    execution["id"],
                    describe_arguments(execution["commandArguments"]),
                    describe_arguments(arguments),
                )
                return None
        return self._follow_earlier(execution, vehicle_id, command)

    def _read_recorded(
        self, execution_id: str, vehicle_id: str, command: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Read the recorded execution. A 404 for an id the API issued is confirmed through the listing
        before anything is sent again (a read-after-write lag or a passing glitch must not duplicate)."""
        try:
            return self.hook.get_command_execution(vehicle_id, execution_id, command=command)
        except VolterasNotFoundError:
            pass
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vehicle_id, command=command, execution_id=execution_id) from err
        try:
            listed = self.hook.find_listed_execution(vehicle_id, execution_id, command)
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vehicle_id, command=command, execution_id=execution_id) from err
        if listed is not None:
            self.log.warning(
                "Execution %s from an earlier try answered 404 but is listed (%s); re-attaching to it.",
                execution_id,
                listed.get("status"),
            )
            return listed
        self.log.warning(
            "Execution %s from an earlier try is neither readable (404) nor listed; sending a new command.",
            execution_id,
        )
        return None

    def _adopt_in_flight(
        self, store: _Store, record: dict[str, Any], vehicle_id: str, command: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """An earlier try started a create and never learnt its outcome: adopt what appeared since, if anything."""
        flight = record["in_flight"]
        before = set(flight.get("before") or ())
        try:
            found = self.hook.find_new_execution(
                vehicle_id, command, arguments, lambda execution_id: id_digest(execution_id) in before
            )
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vehicle_id, command=command) from err
        if found is not None:
            self.log.warning(
                "An earlier try's create of %s on vehicle %s got no answer, but execution %s (%s) appeared since; "
                "adopting it instead of sending the command again.",
                command,
                vehicle_id,
                found["id"],
                found["status"],
            )
            store.record_created(found["id"], arguments)
            return found
        if flight.get("applied"):
            raise VolterasRetryableCommandError(
                f"Volteras command {command} on vehicle {vehicle_id}: an earlier try's create was answered with "
                "success, but the answer could not be read and the execution is not listed yet. Not sending it "
                "again; Airflow will retry the task and look for it again. To send a new command instead: "
                f"{state_store_steps(getattr(self, 'task_id', None))}",
                vehicle_id=vehicle_id,
                command=command,
                reason="CREATE_OUTCOME_UNKNOWN",
            )
        self.log.warning(
            "An earlier try's create of %s on vehicle %s got no answer and nothing appeared since; sending it.",
            command,
            vehicle_id,
        )
        return None

    def _follow_earlier(self, execution: dict[str, Any], vehicle_id: str, command: str) -> dict[str, Any] | None:
        status = execution.get("status")
        if status == STATUS_PENDING:
            self.log.info(
                "Re-attaching to %s execution %s on vehicle %s from an earlier try (still PENDING); "
                "not sending the command again.",
                command,
                execution["id"],
                vehicle_id,
            )
            return execution
        if status == STATUS_EXECUTED:
            self.log.info(
                "%s execution %s on vehicle %s from an earlier try already EXECUTED; not sending again.",
                command,
                execution["id"],
                vehicle_id,
            )
            return execution
        error = self.command_failure_of(execution, vehicle_id, command)
        if error.retryable:
            self.log.info(
                "Execution %s from an earlier try FAILED (%s, retryable); sending the command again.",
                execution["id"],
                error.reason,
            )
            return None
        # A fatal outcome is final for this task instance: never re-send it on our own (a task can run
        # again without a person, e.g. when the scheduler mislabels a deferral as a failure).
        raise already_final(error, task_id=getattr(self, "task_id", None))

    # -- sending ----------------------------------------------------------------------------------

    def _create(
        self, store: _Store, vehicle_id: str, spec: CommandSpec, arguments: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Send the command. "Create in flight" is recorded before the POST and the id as soon as it is
        issued, so whatever stops this try (a timeout, a killed worker, an unreadable answer), the next
        try adopts or re-attaches instead of sending again."""
        command = spec.command.value
        try:
            before = self.hook.command_execution_ids(vehicle_id, spec.command)
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vehicle_id, command=command) from err
        store.record_in_flight(arguments, before)
        try:
            execution = self.hook.create_command_execution(
                vehicle_id,
                spec.command,
                arguments,
                before=before,
                on_issued=lambda execution_id: store.record_created(execution_id, arguments),
            )
        except VolterasCommandInProgressError as err:
            try:
                pending = self._in_progress(err, vehicle_id, spec, arguments)
            except BaseException:
                store.forget_in_flight()
                raise
            store.record_created(pending["id"], arguments)
            return pending
        except VolterasUnexpectedResponseError as err:
            if err.execution_id is not None:
                # The API issued an id but the rest of its answer cannot be believed: follow the id.
                self.log.warning(
                    "The answer to %s on vehicle %s cannot be believed (%s); following execution %s.",
                    command,
                    vehicle_id,
                    err.api_message,
                    err.execution_id,
                )
                return {"id": err.execution_id, "vehicleId": vehicle_id, "command": command, "status": None}
            if err.create_applied:
                store.mark_applied()
            raise api_failure(err, vehicle_id=vehicle_id, command=command) from err
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vehicle_id, command=command) from err
        self.log.info(
            "Sent %s to vehicle %s: execution %s is %s.", command, vehicle_id, execution["id"], execution["status"]
        )
        return execution

    def _in_progress(
        self,
        err: VolterasCommandInProgressError,
        vehicle_id: str,
        spec: CommandSpec,
        arguments: dict[str, Any] | None,
    ) -> dict[str, Any]:
        command = spec.command.value
        what = f"A {command} command is already pending on vehicle {vehicle_id} (requestId {err.request_id})"
        if self.if_in_progress == "fail":
            raise VolterasFatalCommandError(
                f"{what}; if_in_progress='fail', so this task fails. Airflow will NOT retry the task.",
                vehicle_id=vehicle_id,
                command=command,
                reason="COMMAND_ALREADY_IN_PROGRESS",
            )
        if self.if_in_progress == "skip":
            raise AirflowSkipException(f"{what}; if_in_progress='skip', so this task is skipped.")
        try:
            pending = self.hook.find_pending_execution(vehicle_id, spec.command)
        except VolterasError as lookup_error:
            raise api_failure(lookup_error, vehicle_id=vehicle_id, command=command) from lookup_error
        if pending is None:
            raise VolterasRetryableCommandError(
                f"{what}, but it was no longer pending when looked up, so its outcome is unknown to this task. "
                "Airflow will retry the task.",
                vehicle_id=vehicle_id,
                command=command,
                reason="COMMAND_ALREADY_IN_PROGRESS",
            )
        if not arguments_match(arguments, pending.get("commandArguments")):
            raise VolterasRetryableCommandError(
                f"{what}: execution {pending['id']} with {describe_arguments(pending.get('commandArguments'))}, "
                f"but this task asks for {describe_arguments(arguments)}. It is not adopted. Airflow will retry "
                "the task; the platform ends a pending command within 5 minutes.",
                vehicle_id=vehicle_id,
                command=command,
                execution_id=pending["id"],
                reason="COMMAND_ALREADY_IN_PROGRESS",
                delay_kind=DelayKind.VEHICLE_BUSY.value,
            )
        self.log.warning(
            "%s: execution %s has the same arguments; adopting it and waiting for it instead of sending another.",
            what,
            pending["id"],
        )
        return pending


class _Store:
    """The task state store entry of one command task, with its failures handled explicitly.

    Without a state store (or when it cannot be read) a retry cannot re-attach: that is logged. A
    failure to record "create in flight" stops the create (sending without a record could duplicate
    the command on the next try); a failure to record the issued id is logged, as the in-flight
    record still lets the next try adopt it.
    """

    def __init__(self, store: Any, log: Any, vehicle_id: str, command: str) -> None:
        self.store = store
        self.log = log
        self.vehicle_id = vehicle_id
        self.command = command
        self._in_flight: dict[str, Any] | None = None
        if store is None:
            log.warning("No task state store in the context: a retry cannot re-attach to this task's command.")

    def get(self) -> dict[str, Any] | None:
        if self.store is None:
            return None
        try:
            record = self.store.get(STATE_KEY)
        except Exception as err:
            raise VolterasRetryableCommandError(
                f"Volteras command {self.command} on vehicle {self.vehicle_id}: the task state store could not be "
                f"read ({type(err).__name__}: {str(err)[:200]}), so this task cannot tell whether an earlier try "
                "already sent the command. Nothing was sent. Airflow will retry the task.",
                vehicle_id=self.vehicle_id,
                command=self.command,
                reason="STATE_STORE_ERROR",
            ) from err
        return record if isinstance(record, dict) else None

    def _set(self, value: dict[str, Any]) -> None:
        self.store.set(STATE_KEY, value)

    def record_in_flight(self, arguments: dict[str, Any] | None, before: set[str]) -> None:
        if self.store is None:
            return
        self._in_flight = in_flight_record(self.vehicle_id, self.command, arguments, before)
        try:
            self._set(self._in_flight)
        except Exception as err:
            raise VolterasRetryableCommandError(
                f"Volteras command {self.command} on vehicle {self.vehicle_id} was NOT sent: the task state store "
                f"could not record it ({type(err).__name__}: {str(err)[:200]}), and sending without a record could "
                "send it twice on a retry. Airflow will retry the task.",
                vehicle_id=self.vehicle_id,
                command=self.command,
                reason="STATE_STORE_ERROR",
            ) from err

    def mark_applied(self) -> None:
        if self.store is None or self._in_flight is None:
            return
        self._in_flight["in_flight"]["applied"] = True
        self._try_set(self._in_flight, "the create's unreadable success")

    def forget_in_flight(self) -> None:
        if self.store is None:
            return
        try:
            self.store.delete(STATE_KEY)
        except Exception as err:  # noqa: BLE001 - a stale in-flight record only costs a listing on a retry
            self.log.warning("Could not clear the task state store entry %s: %s", STATE_KEY, err)

    def record_created(self, execution_id: str, arguments: dict[str, Any] | None) -> None:
        if self.store is None:
            return
        self._try_set(created_record(execution_id, self.vehicle_id, self.command, arguments), "execution id")

    def _try_set(self, value: dict[str, Any], what: str) -> None:
        try:
            self._set(value)
        except Exception as err:  # noqa: BLE001 - the in-flight record still lets a retry adopt
            self.log.warning(
                "Could not record the %s in the task state store (%s: %s); a retry will look the execution up "
                "through the listing instead.",
                what,
                type(err).__name__,
                str(err)[:200],
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
