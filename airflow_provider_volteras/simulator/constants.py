"""API constants of the simulated Volteras Connect: commands, statuses, reasons, errors, ids, settings."""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

DEFAULT_CLIENT_ID = "volteras-sim-client"
DEFAULT_CLIENT_SECRET = "volteras-sim-secret"
DEFAULT_ORGANIZATION_ID = "volteras-sim-org"

COMMANDS_SCOPE = "vehicle:commands"
DEFAULT_SCOPES: frozenset[str] = frozenset({"vehicle:information", COMMANDS_SCOPE})

#: URL slug of each ``command-execution:<slug>`` action -> ``VehicleCommandEnum`` value.
COMMAND_SLUGS: dict[str, str] = {
    slug: slug.upper().replace("-", "_")
    for slug in (
        "actuate-front-trunk",
        "actuate-rear-trunk",
        "climate-off",
        "climate-on",
        "close-charge-port",
        "lock-doors",
        "open-charge-port",
        "set-charge-limit",
        "set-temperature",
        "start-charging",
        "start-hvac-system",
        "stop-charging",
        "unlock-doors",
    )
}

#: Every ``VehicleCommandEnum`` value (more than the 13 routed actions).
VEHICLE_COMMANDS: tuple[str, ...] = (
    "WAKE_UP",
    "UNLOCK_DOORS",
    "LOCK_DOORS",
    "HONK_HORN",
    "FLASH_LIGHTS",
    "START_HVAC_SYSTEM",
    "CLIMATE_ON",
    "CLIMATE_OFF",
    "SET_TEMPERATURE",
    "SET_CHARGE_LIMIT",
    "ACTUATE_FRONT_TRUNK",
    "ACTUATE_REAR_TRUNK",
    "OPEN_CHARGE_PORT",
    "CLOSE_CHARGE_PORT",
    "START_CHARGING",
    "STOP_CHARGING",
    "SET_VEHICLE_NAME",
    "SCHEDULE_SOFTWARE_UPDATE",
    "CANCEL_SOFTWARE_UPDATE",
    "WINDOW_HEATING_ON",
    "WINDOW_HEATING_OFF",
)

EXECUTION_STATUSES: tuple[str, ...] = ("PENDING", "EXECUTED", "FAILED")

#: The documented ``failedReason`` values (the API may also send plain strings).
FAILED_REASONS: tuple[str, ...] = (
    "OEM_UNKNOWN_ERROR",
    "OEM_TIMEOUT",
    "OEM_UNAVAILABLE",
    "OEM_NETWORK_ERROR",
    "OEM_INCORRECT_REGION",
    "OEM_APP_REQUIRED_UPDATE",
    "OEM_USER_ACCOUNT_LOCKED",
    "OEM_OAUTH_TOKEN_EXPIRED",
    "OEM_VEHICLE_OFFLINE",
    "OEM_VEHICLE_REMOTE_ACCESS_DISABLED",
    "OEM_VEHICLE_LOCATION_SHARING_DISABLED",
    "OEM_AUTH_DRIVER_IS_NOT_PRIMARY_USER",
    "OEM_DEVICE_NOT_FOUND",
    "OEM_COMMAND_TIMEOUT",
    "OEM_COMMAND_FAILED",
    "OEM_RATE_LIMITED",
    "OEM_ACCOUNT_RATE_LIMITED",
    "OEM_DEVICE_RATE_LIMITED",
    "OEM_STOP_CHARGE_RATE_LIMITED",
    "OEM_COMMANDS_RATE_LIMITED",
    "OEM_VEHICLE_LOCATION_UNKNOWN",
    "OEM_VEHICLE_NOT_IN_AUTHORIZED_LOCATION",
    "OEM_VEHICLE_CHARGING_NOT_FINISHED",
    "OEM_VEHICLE_CHARGING_NOT_STOPPED",
    "OEM_VEHICLE_CHARGING_NOT_STARTED",
    "OEM_VEHICLE_CHARGING_NOT_PAUSED",
    "OEM_VEHICLE_CHARGING_REFUSED_PLAY_PROTECTION",
    "OEM_COMMAND_REFUSED_OTHER_SERVICE_RUNNING",
    "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_STAND_STILL_AND_RESTING_STATE",
    "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_STAND_STILL_AND_ACTIVE_STATE",
    "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_DRIVING_OR_READY_TO_DRIVE",
    "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_DIAGNOSTICS_MODE",
    "SERVER_ERROR",
    "INTERNAL_RATE_LIMITED",
    "AUTHENTICATION_ERROR",
    "NOT_PERMITTED",
)

#: HTTP status the simulator uses for each synchronous error code it emits.
ERROR_HTTP_STATUS: dict[str, int] = {
    "REQUEST_VALIDATION_ERROR": 422,
    "PAGE_SIZE_TOO_LARGE": 400,
    "PAGINATED_QUERY_FILTER_CHANGED": 400,
    "QUERY_PAGE_TOKEN_EXPIRED": 400,
    "AUTHENTICATION_ERROR": 401,
    "NOT_PERMITTED": 403,
    "RESOURCE_NOT_FOUND": 404,
    "COMMAND_ALREADY_IN_PROGRESS": 409,
    "INTERNAL_RATE_LIMITED": 429,
    "SERVER_ERROR": 500,
}

TEXT_FAILED_REASON = "Vehicle did not respond"
PLATFORM_TIMEOUT_REASON = "OEM_COMMAND_TIMEOUT"
DEFAULT_FAILED_REASON = "OEM_COMMAND_FAILED"
RATE_LIMIT_KEY = "BMW_ENERGY_API_COMMANDS"
DEFAULT_RATE_LIMIT_MAX = 10
DEFAULT_RATE_LIMIT_WINDOW = 3600
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50

DEMO_VEHICLE_IDS: tuple[str, ...] = (
    "sim-ok-demo-1",
    "sim-ok-demo-2",
    "sim-fail-OEM_VEHICLE_OFFLINE-demo",
    "sim-stuck-demo",
)
#: Tags the demo vehicles carry after every reset, ``(vehicle id, key, value)``: ``fleet=demo`` selects the
#: two that execute, ``fleet=demo-mixed`` all four (one fails retryably, one stays pending).
DEMO_TAGS: tuple[tuple[str, str, str], ...] = (
    ("sim-ok-demo-1", "fleet", "demo"),
    ("sim-ok-demo-2", "fleet", "demo"),
    *((vehicle_id, "fleet", "demo-mixed") for vehicle_id in DEMO_VEHICLE_IDS),
)
#: The only entity type the tags endpoints take (``PublicTagEntityTypes``), and the longest key or value.
TAG_ENTITY_TYPES: tuple[str, ...] = ("DEVICE",)
MAX_TAG_LENGTH = 150

MAGIC_VEHICLE_IDS = """\
Magic vehicle ids (an explicit scenario always wins over them):
  sim-ok...               EXECUTED after the default delay (so does any other valid id)
  sim-fail-<REASON>...    FAILED with failedReason <REASON>, e.g. sim-fail-OEM_VEHICLE_OFFLINE;
                          <REASON> is [A-Z][A-Z0-9_]*, optionally followed by -anything
  sim-fail-text...        FAILED with the plain-string reason "Vehicle did not respond"
  sim-fail                FAILED with OEM_COMMAND_FAILED
  sim-stuck...            stays PENDING until the platform timeout (FAILED OEM_COMMAND_TIMEOUT)
  sim-missing...          RESOURCE_NOT_FOUND (404) on every vehicle endpoint
Suffix -d<seconds> sets the delay before a command leaves PENDING, e.g. sim-ok-d30,
sim-fail-OEM_TIMEOUT-d2.5. Valid ids match [A-Za-z0-9][A-Za-z0-9._~-]{0,127}; others are 404.
"""

FAULT_KINDS: tuple[str, ...] = (
    "status",
    "rate_limit",
    "unauthorized",
    "slow",
    "drop_before",
    "drop_after",
    "malformed_json",
    "wrong_shape",
    "unknown_status",
    "extra_fields",
    "null_executed_at",
)
WRONG_SHAPES: tuple[str, ...] = ("missing_status", "list", "empty_object")

_VALID_VEHICLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")
_DELAY_SUFFIX = re.compile(r"-d(\d+(?:\.\d+)?)$")
_FAIL_REASON = re.compile(r"^sim-fail-([A-Z][A-Z0-9_]*)(?:-|$)")
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_MODELS: tuple[tuple[str, str, str], ...] = (
    ("i4", "eDrive40", "2023"),
    ("iX", "xDrive50", "2024"),
    ("iX3", "Impressive", "2022"),
    ("i5", "eDrive40", "2024"),
)

T = TypeVar("T")

#: Vehicles whose id starts with this get execution ids shaped like base64 (``+``, ``/``, ``=``), as a
#: real API may issue: clients must encode them, not validate them like ids people type.
BASE64_ID_PREFIX = "sim-b64"


def _new_execution_id(vehicle_id: str) -> str:
    if vehicle_id.startswith(BASE64_ID_PREFIX):
        # 7 bytes: 12 characters, the first two '+/' and the last '='.
        return base64.b64encode(b"\xfb\xff" + secrets.token_bytes(5)).decode()
    return str(uuid.uuid4())


def iso_utc(ts: float) -> str:
    """Format an epoch timestamp as ISO 8601 UTC with a ``Z`` suffix."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def error_envelope(request_id: str, code: str, message: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the Connect API error envelope (``data`` left out when empty)."""
    body: dict[str, Any] = {
        "requestId": request_id,
        "timestamp": iso_utc(time.time()),
        "error": code,
        "message": message,
    }
    if data is not None:
        body["data"] = dict(data)
    return body


class SimulatorError(Exception):
    """A Connect API error: rendered as the error envelope with ``status``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else ERROR_HTTP_STATUS.get(code, 400)
        self.data = dict(data) if data is not None else None
        self.headers = dict(headers) if headers else {}
        if code == "AUTHENTICATION_ERROR":
            self.headers.setdefault("WWW-Authenticate", "Bearer")


def _validation(message: str, **data: Any) -> SimulatorError:
    return SimulatorError("REQUEST_VALIDATION_ERROR", message, data=data or None)


def _not_found(message: str) -> SimulatorError:
    return SimulatorError("RESOURCE_NOT_FOUND", message)


def _auth_error(message: str) -> SimulatorError:
    return SimulatorError("AUTHENTICATION_ERROR", message)


# --------------------------------------------------------------------------- magic ids


@dataclass(frozen=True)
class SimulatorConfig:
    """Runtime settings of the simulated platform."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    organization_id: str = DEFAULT_ORGANIZATION_ID
    token_ttl: float = 3600.0
    command_timeout: float = 300.0
    default_delay: float = 1.0
    grant_commands_scope: bool = True
    #: Executions created less than this many seconds ago are left out of listings.
    listing_lag_seconds: float = 0.0
    #: ``(min, max)``: a ``SET_CHARGE_LIMIT`` outside it is accepted and stored clamped.
    clamp_charge_limit: tuple[int, int] | None = None
    #: Create answers leave ``commandArguments`` out (reads and listings still carry them).
    omit_create_arguments: bool = False

    def to_dict(self) -> dict[str, Any]:
        """camelCase view, as served at ``/_simulator/config``."""
        clamp = self.clamp_charge_limit
        return {
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "organizationId": self.organization_id,
            "tokenTtlSeconds": self.token_ttl,
            "commandTimeoutSeconds": self.command_timeout,
            "defaultDelaySeconds": self.default_delay,
            "grantCommandsScope": self.grant_commands_scope,
            "listingLagSeconds": self.listing_lag_seconds,
            "clampChargeLimit": None if clamp is None else {"min": clamp[0], "max": clamp[1]},
            "omitCreateArguments": self.omit_create_arguments,
        }

    def validated(self) -> SimulatorConfig:
        """Return self, or raise ``ValueError`` if a setting is out of range."""
        for name in ("client_id", "client_secret", "organization_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string")
        if not self.token_ttl > 0:
            raise ValueError("token_ttl must be > 0")
        if not self.command_timeout > 0:
            raise ValueError("command_timeout must be > 0")
        if not self.default_delay >= 0:
            raise ValueError("default_delay must be >= 0")
        if not (self.listing_lag_seconds >= 0 and self.listing_lag_seconds < float("inf")):
            raise ValueError("listing_lag_seconds must be a finite number >= 0")
        clamp = self.clamp_charge_limit
        if clamp is not None and not (
            isinstance(clamp, tuple)
            and len(clamp) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in clamp)
            and clamp[0] <= clamp[1]
        ):
            raise ValueError("clamp_charge_limit must be (min, max) integers with min <= max, or None")
        return self
