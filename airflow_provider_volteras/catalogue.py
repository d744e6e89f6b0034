"""The Volteras command catalogue: every ``VehicleCommandEnum`` value, its endpoint and its payload.

This module is the single source of truth for which commands can be created, under which
``command-execution:<slug>`` action, and which arguments each takes. Operators, the hook and the
simulator all read it; nothing else lists commands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_volteras.exceptions import VolterasInvalidInputError


class VehicleCommand(str, Enum):
    """All values of the API's ``VehicleCommandEnum``."""

    WAKE_UP = "WAKE_UP"
    UNLOCK_DOORS = "UNLOCK_DOORS"
    LOCK_DOORS = "LOCK_DOORS"
    HONK_HORN = "HONK_HORN"
    FLASH_LIGHTS = "FLASH_LIGHTS"
    START_HVAC_SYSTEM = "START_HVAC_SYSTEM"
    CLIMATE_ON = "CLIMATE_ON"
    CLIMATE_OFF = "CLIMATE_OFF"
    SET_TEMPERATURE = "SET_TEMPERATURE"
    SET_CHARGE_LIMIT = "SET_CHARGE_LIMIT"
    ACTUATE_FRONT_TRUNK = "ACTUATE_FRONT_TRUNK"
    ACTUATE_REAR_TRUNK = "ACTUATE_REAR_TRUNK"
    OPEN_CHARGE_PORT = "OPEN_CHARGE_PORT"
    CLOSE_CHARGE_PORT = "CLOSE_CHARGE_PORT"
    START_CHARGING = "START_CHARGING"
    STOP_CHARGING = "STOP_CHARGING"
    SET_VEHICLE_NAME = "SET_VEHICLE_NAME"
    SCHEDULE_SOFTWARE_UPDATE = "SCHEDULE_SOFTWARE_UPDATE"
    CANCEL_SOFTWARE_UPDATE = "CANCEL_SOFTWARE_UPDATE"
    WINDOW_HEATING_ON = "WINDOW_HEATING_ON"
    WINDOW_HEATING_OFF = "WINDOW_HEATING_OFF"


@dataclass(frozen=True)
class PayloadField:
    """One JSON field of a command's request body, with the bounds the provider enforces.

    Only what the API documents (the type) and physical sense (finite; a percentage from 0 to 100)
    is checked here; vehicles differ, and the API refuses what a vehicle cannot do with a validation
    error, which fails the task with the API's message.
    """

    api_name: str
    """Name in the JSON body (camelCase), e.g. ``driverTemperature``."""
    param_name: str
    """Name of the typed operator parameter, e.g. ``driver_temperature``."""
    integer: bool
    minimum: float | None
    maximum: float | None
    unit: str

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        if self.minimum is None or self.maximum is None:
            return f"{kind} ({self.unit})"
        return f"{kind} from {self.minimum:g} to {self.maximum:g} {self.unit}"

    def validate(self, value: Any, command: VehicleCommand) -> int | float:
        """Return ``value`` as a JSON number, or raise with a message that says what is accepted."""
        expected = self.describe()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VolterasInvalidInputError(
                f"{command.value}: '{self.api_name}' must be {expected}, got {type(value).__name__} {_shown(value)}."
            )
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float: not a physical value
            raise VolterasInvalidInputError(
                f"{command.value}: '{self.api_name}' must be {expected}, got {_shown(value)} (too large)."
            ) from None
        if not math.isfinite(number):
            raise VolterasInvalidInputError(f"{command.value}: '{self.api_name}' must be {expected}, got {value!r}.")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise VolterasInvalidInputError(
                f"{command.value}: '{self.api_name}' must be {expected}, got {_shown(value)} (out of range)."
            )
        if self.integer and not float(value).is_integer():
            raise VolterasInvalidInputError(f"{command.value}: '{self.api_name}' must be {expected}, got {value!r}.")
        return int(value) if self.integer else float(value)


def _shown(value: Any) -> str:
    """``repr`` for a message, cut short (``repr`` of an int of more than 4300 digits raises ValueError)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"a number of {value.bit_length()} bits" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 80 else text[:80] + "..."


@dataclass(frozen=True)
class CommandSpec:
    """What the provider knows about one command."""

    command: VehicleCommand
    slug: str | None
    """The ``command-execution:<slug>`` action, or ``None`` when the API has no endpoint to create it."""
    operator_name: str | None
    """Name of the ready operator class for the command (``None`` when it cannot be created)."""
    description: str
    payload: tuple[PayloadField, ...] = ()

    @property
    def creatable(self) -> bool:
        return self.slug is not None

    @property
    def path_action(self) -> str:
        """The last path segment of the create endpoint."""
        if self.slug is None:
            raise VolterasInvalidInputError(_not_creatable_message(self.command))
        return f"command-execution:{self.slug}"


#: The API documents no temperature range (vehicles differ): any finite number is sent.
TEMPERATURE_MIN_C: float | None = None
TEMPERATURE_MAX_C: float | None = None
#: A state of charge is a percentage; which limits a vehicle accepts is the API's to say.
CHARGE_LIMIT_MIN_PERCENT = 0
CHARGE_LIMIT_MAX_PERCENT = 100

_C = VehicleCommand
_TEMPERATURE = (
    PayloadField("driverTemperature", "driver_temperature", False, TEMPERATURE_MIN_C, TEMPERATURE_MAX_C, "°C"),
    PayloadField("passengerTemperature", "passenger_temperature", False, TEMPERATURE_MIN_C, TEMPERATURE_MAX_C, "°C"),
)
_LIMIT = (PayloadField("limit", "limit", True, CHARGE_LIMIT_MIN_PERCENT, CHARGE_LIMIT_MAX_PERCENT, "%"),)

CATALOGUE: Mapping[VehicleCommand, CommandSpec] = {
    spec.command: spec
    for spec in (
        CommandSpec(_C.CLIMATE_OFF, "climate-off", "ClimateOffOperator", "Turn the climate control off."),
        CommandSpec(_C.CLIMATE_ON, "climate-on", "ClimateOnOperator", "Turn the climate control on."),
        CommandSpec(_C.START_HVAC_SYSTEM, "start-hvac-system", "StartHvacSystemOperator", "Start the HVAC system."),
        CommandSpec(
            _C.SET_TEMPERATURE,
            "set-temperature",
            "SetTemperatureOperator",
            "Set the driver and passenger cabin temperatures.",
            _TEMPERATURE,
        ),
        CommandSpec(_C.LOCK_DOORS, "lock-doors", "LockDoorsOperator", "Lock the doors."),
        CommandSpec(_C.UNLOCK_DOORS, "unlock-doors", "UnlockDoorsOperator", "Unlock the doors."),
        CommandSpec(
            _C.ACTUATE_FRONT_TRUNK, "actuate-front-trunk", "ActuateFrontTrunkOperator", "Open or close the front trunk."
        ),
        CommandSpec(
            _C.ACTUATE_REAR_TRUNK, "actuate-rear-trunk", "ActuateRearTrunkOperator", "Open or close the rear trunk."
        ),
        CommandSpec(_C.OPEN_CHARGE_PORT, "open-charge-port", "OpenChargePortOperator", "Open the charge port."),
        CommandSpec(_C.CLOSE_CHARGE_PORT, "close-charge-port", "CloseChargePortOperator", "Close the charge port."),
        CommandSpec(_C.START_CHARGING, "start-charging", "StartChargingOperator", "Start charging."),
        CommandSpec(_C.STOP_CHARGING, "stop-charging", "StopChargingOperator", "Stop charging."),
        CommandSpec(
            _C.SET_CHARGE_LIMIT,
            "set-charge-limit",
            "SetChargeLimitOperator",
            "Set the maximum state of charge, in percent.",
            _LIMIT,
        ),
        CommandSpec(_C.WAKE_UP, None, None, "Wake the vehicle up."),
        CommandSpec(_C.HONK_HORN, None, None, "Honk the horn."),
        CommandSpec(_C.FLASH_LIGHTS, None, None, "Flash the lights."),
        CommandSpec(_C.SET_VEHICLE_NAME, None, None, "Rename the vehicle."),
        CommandSpec(_C.SCHEDULE_SOFTWARE_UPDATE, None, None, "Schedule a software update."),
        CommandSpec(_C.CANCEL_SOFTWARE_UPDATE, None, None, "Cancel a scheduled software update."),
        CommandSpec(_C.WINDOW_HEATING_ON, None, None, "Turn window heating on."),
        CommandSpec(_C.WINDOW_HEATING_OFF, None, None, "Turn window heating off."),
    )
}

CREATABLE_COMMANDS: tuple[VehicleCommand, ...] = tuple(c for c, s in CATALOGUE.items() if s.creatable)


def _not_creatable_message(command: VehicleCommand) -> str:
    creatable = ", ".join(c.value for c in CREATABLE_COMMANDS)
    return (
        f"{command.value} is a known Volteras command but the API has no endpoint to create it; "
        f"it can only be read from existing executions. Commands that can be sent: {creatable}."
    )


def get_command_spec(command: str | VehicleCommand, *, creatable: bool = True) -> CommandSpec:
    """Look a command up by its enum value (case-insensitive), refusing unknown or non-creatable ones."""
    if isinstance(command, VehicleCommand):
        cmd = command
    else:
        if not isinstance(command, str):
            raise VolterasInvalidInputError(f"A command must be a string such as 'CLIMATE_OFF', got {command!r}.")
        try:
            if not command.isascii():
                raise ValueError(command)  # look-alikes would fold onto real names: 'clımate_oﬀ'.upper()
            cmd = VehicleCommand(command.strip().upper())
        except ValueError:
            known = ", ".join(c.value for c in CREATABLE_COMMANDS)
            raise VolterasInvalidInputError(
                f"Unknown Volteras command {_shown(command)}. Commands that can be sent: {known}."
            ) from None
    spec = CATALOGUE[cmd]
    if creatable and not spec.creatable:
        raise VolterasInvalidInputError(_not_creatable_message(cmd))
    return spec


def build_payload(command: str | VehicleCommand, arguments: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate ``arguments`` for ``command`` and return the JSON body to send (``None`` when it takes none).

    Arguments use the API's camelCase names (``driverTemperature``); every required field must be
    present, unknown fields are refused, and values are checked against the provider's bounds.
    """
    spec = get_command_spec(command)
    if arguments is not None and not isinstance(arguments, Mapping):
        raise VolterasInvalidInputError(f"{spec.command.value}: arguments must be a mapping, got {arguments!r}.")
    args = dict(arguments or {})
    allowed = {f.api_name for f in spec.payload}
    unknown = sorted(set(args) - allowed, key=str)
    if unknown:
        takes = ", ".join(sorted(allowed)) if allowed else "no arguments"
        raise VolterasInvalidInputError(
            f"{spec.command.value} does not take {', '.join(map(repr, unknown))}; it takes {takes}."
        )
    if not spec.payload:
        return None
    missing = [f.api_name for f in spec.payload if f.api_name not in args]
    if missing:
        raise VolterasInvalidInputError(f"{spec.command.value} needs {', '.join(map(repr, missing))}.")
    return {f.api_name: f.validate(args[f.api_name], spec.command) for f in spec.payload}
