"""In-memory state machine of the Volteras Connect simulator.

Pure Python and thread-safe: no web framework is imported here, so tests can drive
:class:`SimulatorState` directly (optionally with a fake clock) and the HTTP layer in
:mod:`.app` only translates requests into calls on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = [
    "COMMAND_SLUGS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_ORGANIZATION_ID",
    "DEMO_VEHICLE_IDS",
    "ERROR_HTTP_STATUS",
    "EXECUTION_STATUSES",
    "FAILED_REASONS",
    "FAULT_KINDS",
    "MAGIC_VEHICLE_IDS",
    "TEXT_FAILED_REASON",
    "VEHICLE_COMMANDS",
    "Fault",
    "MagicBehaviour",
    "ScenarioStep",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorState",
    "error_envelope",
    "iso_utc",
    "parse_magic_vehicle_id",
]

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
class MagicBehaviour:
    """What a vehicle id alone asks of the simulator."""

    missing: bool = False
    outcome: str = "EXECUTED"
    failed_reason: str | None = None
    delay: float | None = None


def parse_magic_vehicle_id(vehicle_id: str) -> MagicBehaviour:
    """Decode the behaviour encoded in a vehicle id (see ``MAGIC_VEHICLE_IDS``)."""
    if not _VALID_VEHICLE_ID.match(vehicle_id) or vehicle_id.startswith("sim-missing"):
        return MagicBehaviour(missing=True)
    delay: float | None = None
    base = vehicle_id
    match = _DELAY_SUFFIX.search(base)
    if match:
        delay = float(match.group(1))
        base = base[: match.start()]
    if base.startswith("sim-stuck"):
        return MagicBehaviour(outcome="PENDING", delay=delay)
    if base.startswith("sim-fail-text"):
        return MagicBehaviour(outcome="FAILED", failed_reason=TEXT_FAILED_REASON, delay=delay)
    reason = _FAIL_REASON.match(base)
    if reason:
        return MagicBehaviour(outcome="FAILED", failed_reason=reason.group(1), delay=delay)
    if base == "sim-fail" or base.startswith("sim-fail-"):
        return MagicBehaviour(outcome="FAILED", failed_reason=DEFAULT_FAILED_REASON, delay=delay)
    return MagicBehaviour(delay=delay)


# --------------------------------------------------------------------------- config & scenarios


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

    def to_dict(self) -> dict[str, Any]:
        """camelCase view, as served at ``/_simulator/config``."""
        return {
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "organizationId": self.organization_id,
            "tokenTtlSeconds": self.token_ttl,
            "commandTimeoutSeconds": self.command_timeout,
            "defaultDelaySeconds": self.default_delay,
            "grantCommandsScope": self.grant_commands_scope,
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
        return self


def _check_outcome(outcome: str) -> str:
    if outcome not in EXECUTION_STATUSES:
        raise ValueError(f"outcome must be one of {EXECUTION_STATUSES}, got {outcome!r}")
    return outcome


def _check_delay(delay: float | None) -> float | None:
    if delay is not None and (not isinstance(delay, (int, float)) or not delay >= 0 or math.isinf(delay)):
        raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
    return None if delay is None else float(delay)


@dataclass(frozen=True)
class ScenarioStep:
    """One entry of a scenario ``sequence``: the fate of one created command."""

    outcome: str = "EXECUTED"
    failed_reason: str | None = None
    delay: float | None = None

    @classmethod
    def coerce(cls, value: ScenarioStep | Mapping[str, Any]) -> ScenarioStep:
        """Accept a step or a dict with camelCase or snake_case keys."""
        if isinstance(value, ScenarioStep):
            step = value
        else:
            step = cls(
                outcome=value.get("outcome", "EXECUTED"),
                failed_reason=value.get("failedReason", value.get("failed_reason")),
                delay=value.get("delaySeconds", value.get("delay")),
            )
        _check_outcome(step.outcome)
        return replace(step, delay=_check_delay(step.delay))

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "failedReason": self.failed_reason, "delaySeconds": self.delay}


@dataclass
class _Scenario:
    outcome: str | None = None
    failed_reason: str | None = None
    delay: float | None = None
    sequence: deque[ScenarioStep] = field(default_factory=deque)
    rate_limit_max: int | None = None
    rate_limit_window: int | None = None
    rate_limit_remaining: int | None = None


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """A queued fault, applied to the next ``remaining`` matching API requests."""

    kind: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    method: str | None = None
    path: str | None = None
    remaining: int | None = 1
    status: int = 500
    error: str | None = None
    message: str | None = None
    html: bool = False
    retry_after: float | None = 1.0
    retry_after_date: bool = False
    delay: float = 0.0
    apply: bool = False
    reset: bool = False
    shape: str = "missing_status"
    status_value: str = "CANCELLED"
    fields: dict[str, Any] | None = None
    applied: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.remaining is not None and self.remaining < 1:
            raise ValueError("count must be >= 1 (or None for unlimited)")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        if self.shape not in WRONG_SHAPES:
            raise ValueError(f"shape must be one of {WRONG_SHAPES}")
        if _check_delay(self.delay) is None:
            self.delay = 0.0
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError("retry_after must be >= 0")
        self.method = self.method.upper() if self.method else None
        try:
            self._regex = re.compile(self.path) if self.path else None
        except re.error as exc:
            raise ValueError(f"invalid path regex {self.path!r}: {exc}") from None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self._regex is None or self._regex.search(path) is not None

    def error_code(self) -> str:
        """The envelope code answered by ``status``/``rate_limit``/``unauthorized`` faults."""
        if self.error:
            return self.error
        if self.kind == "rate_limit":
            return "INTERNAL_RATE_LIMITED"
        if self.kind == "unauthorized":
            return "AUTHENTICATION_ERROR"
        by_status = {
            400: "REQUEST_VALIDATION_ERROR",
            401: "AUTHENTICATION_ERROR",
            403: "NOT_PERMITTED",
            404: "RESOURCE_NOT_FOUND",
            409: "COMMAND_ALREADY_IN_PROGRESS",
            422: "REQUEST_VALIDATION_ERROR",
            429: "INTERNAL_RATE_LIMITED",
        }
        return by_status.get(self.status, "SERVER_ERROR" if self.status >= 500 else "REQUEST_VALIDATION_ERROR")

    def to_dict(self) -> dict[str, Any]:
        """camelCase view, as accepted/served at ``/_simulator/faults``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "count": self.remaining,
            "applied": self.applied,
            "status": self.status,
            "error": self.error,
            "message": self.message,
            "html": self.html,
            "retryAfter": self.retry_after,
            "retryAfterDate": self.retry_after_date,
            "delaySeconds": self.delay,
            "apply": self.apply,
            "reset": self.reset,
            "shape": self.shape,
            "statusValue": self.status_value,
            "fields": self.fields,
        }


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(slots=True)
class _Execution:
    id: str
    vehicle_id: str
    command: str
    arguments: dict[str, Any] | None
    created_at: float
    timeout: float
    finish_at: float
    final_status: str
    final_reason: str | None
    index: int
    first_served_terminal_at: float | None = None
    finished_manually: bool = False

    def status_at(self, now: float) -> str:
        return "PENDING" if now < self.finish_at else self.final_status

    def to_api(self, now: float) -> dict[str, Any]:
        done = now >= self.finish_at
        status = self.final_status if done else "PENDING"
        return {
            "id": self.id,
            "commandArguments": self.arguments,
            "timeout": max(1, math.ceil(self.timeout)),
            "executedAt": iso_utc(self.finish_at) if done and status == "EXECUTED" else None,
            "status": status,
            "failedReason": self.final_reason if done else None,
            "vehicleId": self.vehicle_id,
            "command": self.command,
        }


@dataclass(slots=True)
class _Vehicle:
    id: str
    magic: MagicBehaviour
    first_seen: float
    index: int
    executions: list[_Execution] = field(default_factory=list)
    create_times: deque[float] = field(default_factory=deque)

    def to_api(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.id.encode()).digest()
        vin = "WBA" + "".join(_VIN_CHARS[b % len(_VIN_CHARS)] for b in digest[:14])
        model, trim, year = _MODELS[digest[14] % len(_MODELS)]
        return {
            "make": "BMW",
            "model": model,
            "trim": trim,
            "modelYear": year,
            "vin": vin,
            "registrationPlate": None,
            "isRegNoValidated": None,
            "regNoValidatedAt": None,
            "id": self.id,
            "metadata": {
                "lastSeenAt": iso_utc(self.first_seen),
                "consentId": f"sim-consent-{digest[:4].hex()}",
                "accountId": "sim-account-1",
                "registrationDate": f"{year}-03-01",
            },
            "isListening": True,
            "listeningLastUpdated": None,
            "connectionStatus": "CONNECTED",
            "connectionErrorCode": None,
            "connectionErrorMessage": None,
            "actionCategory": None,
        }


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class _Term:
    field: str
    op: str
    value: Any

    def matches(self, actual: Any) -> bool:
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        return actual in self.value


_EXECUTION_FILTER_FIELDS: dict[str, tuple[str, ...] | None] = {
    "status": EXECUTION_STATUSES,
    "command": VEHICLE_COMMANDS,
    "id": None,
    "failedReason": None,
}
_VEHICLE_FILTER_FIELDS: dict[str, tuple[str, ...] | None] = {
    "id": None,
    "vin": None,
    "make": None,
    "model": None,
    "connectionStatus": None,
}


def _parse_filter(raw: str | None, fields: Mapping[str, tuple[str, ...] | None]) -> tuple[tuple[_Term, ...], str]:
    """Parse a listing filter into AND-ed terms and a canonical key (``""`` for none)."""
    if raw is None or not raw.strip():
        return (), ""
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise _validation(f"filter is not valid JSON: {exc}") from None
    if isinstance(parsed, dict) and set(parsed) == {"and"}:
        items = parsed["and"]
    elif isinstance(parsed, list):
        items = parsed
    else:
        items = [parsed]
    if not isinstance(items, list):
        raise _validation('"and" must hold a list of filter terms')
    terms: list[_Term] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"field", "operator", "value"}:
            raise _validation('each filter term must be {"field": ..., "operator": ..., "value": ...}')
        name, op, value = item["field"], item["operator"], item["value"]
        if name not in fields:
            raise _validation(f"unsupported filter field {name!r}", supportedFields=sorted(fields))
        if op not in ("eq", "ne", "in"):
            raise _validation(f"unsupported filter operator {op!r}", supportedOperators=["eq", "ne", "in"])
        values = value if op == "in" else [value]
        if op == "in" and not isinstance(value, list):
            raise _validation('operator "in" needs a list value')
        allowed = fields[name]
        for single in values:
            if single is not None and not isinstance(single, str):
                raise _validation(f"filter value for {name!r} must be a string")
            if allowed is not None and single not in allowed:
                raise _validation(f"invalid {name} value {single!r}", allowedValues=list(allowed))
        terms.append(_Term(name, op, tuple(value) if op == "in" else value))
    key = json.dumps([[t.field, t.op, list(t.value) if t.op == "in" else t.value] for t in terms])
    return tuple(terms), key


# --------------------------------------------------------------------------- the state


class SimulatorState:
    """Everything the simulated platform knows: tokens, vehicles, executions, scenarios,
    faults and counters. All public methods are thread-safe."""

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        token_ttl: float = 3600.0,
        command_timeout: float = 300.0,
        default_delay: float = 1.0,
        grant_commands_scope: bool = True,
        seed_demo_vehicles: bool = True,
        request_log_size: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._initial_config = SimulatorConfig(
            client_id=client_id,
            client_secret=client_secret,
            organization_id=organization_id,
            token_ttl=float(token_ttl),
            command_timeout=float(command_timeout),
            default_delay=float(default_delay),
            grant_commands_scope=grant_commands_scope,
        ).validated()
        self._config = self._initial_config
        self._seed = seed_demo_vehicles
        self._log_size = request_log_size
        self._generation = 0
        self._clear(keep_tokens=False)

    # ------------------------------------------------------------------ housekeeping

    def _clear(self, *, keep_tokens: bool) -> None:
        if not keep_tokens:
            self._access: dict[str, _Token] = {}
            self._refresh: dict[str, tuple[str, frozenset[str]]] = {}
        self._vehicles: dict[str, _Vehicle] = {}
        self._vehicle_list: list[_Vehicle] = []
        self._executions: dict[str, _Execution] = {}
        self._pending: dict[tuple[str, str], _Execution] = {}
        self._scenarios: dict[str, _Scenario] = {}
        self._faults: list[Fault] = []
        self._log: deque[dict[str, Any]] = deque(maxlen=self._log_size)
        self._generation += 1
        self._reset_counters()
        if self._seed:
            for vehicle_id in DEMO_VEHICLE_IDS:
                self._vehicle(vehicle_id)

    def _reset_counters(self) -> None:
        self._n: dict[str, int] = dict.fromkeys(
            (
                "requests",
                "tokenRequests",
                "testTokenRequests",
                "createAttempts",
                "createsTotal",
                "polls",
                "lists",
                "vehicleRequests",
                "rateLimitRequests",
                "faultsApplied",
            ),
            0,
        )
        self._by_grant: dict[str, int] = {"client_credentials": 0, "refresh_token": 0}
        self._creates: dict[str, dict[str, int]] = {}
        self._polls_by_execution: dict[str, int] = {}
        self._faults_by_kind: dict[str, int] = {}
        self._errors_by_code: dict[str, int] = {}

    def reset(self, *, keep_config: bool = False, keep_tokens: bool = False) -> None:
        """Forget executions, vehicles, scenarios, faults, counters and the request log.

        By default also drops issued tokens and restores the settings given at construction.
        Page tokens issued before the reset answer ``QUERY_PAGE_TOKEN_EXPIRED``.
        """
        with self._lock:
            if not keep_config:
                self._config = self._initial_config
            self._clear(keep_tokens=keep_tokens)

    def now(self) -> float:
        """The simulator clock (epoch seconds)."""
        return self._clock()

    # ------------------------------------------------------------------ settings

    @property
    def config(self) -> SimulatorConfig:
        """Current settings (immutable snapshot)."""
        return self._config

    def configure(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        organization_id: str | None = None,
        token_ttl: float | None = None,
        command_timeout: float | None = None,
        default_delay: float | None = None,
        grant_commands_scope: bool | None = None,
    ) -> SimulatorConfig:
        """Change settings at runtime; ``None`` leaves a setting as is.

        ``command_timeout`` applies to commands created afterwards; ``token_ttl`` to tokens
        issued afterwards; ``grant_commands_scope=False`` also revokes the scope of live tokens.
        """
        changes: dict[str, Any] = {
            key: value
            for key, value in (
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("organization_id", organization_id),
                ("token_ttl", None if token_ttl is None else float(token_ttl)),
                ("command_timeout", None if command_timeout is None else float(command_timeout)),
                ("default_delay", None if default_delay is None else float(default_delay)),
                ("grant_commands_scope", grant_commands_scope),
            )
            if value is not None
        }
        with self._lock:
            self._config = replace(self._config, **changes).validated()
            return self._config

    # ------------------------------------------------------------------ auth

    def _new_token(self, client_id: str, scopes: frozenset[str]) -> dict[str, Any]:
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        ttl = self._config.token_ttl
        self._access[access] = _Token(client_id, scopes, self._clock() + ttl)
        self._refresh[refresh] = (client_id, scopes)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(0, math.ceil(ttl)),
            "refresh_token": refresh,
        }

    def issue_token(
        self,
        grant_type: str | None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
    ) -> dict[str, Any]:
        """Answer ``POST /v1/oauth2/token`` (an ``APIAccessToken``); raises ``SimulatorError``.

        Refresh tokens are single-use: a refresh returns a new pair and voids the old one.
        """
        with self._lock:
            if grant_type in self._by_grant:
                self._by_grant[grant_type] += 1
            if not grant_type:
                raise _validation("grant_type is required", field="grant_type")
            config = self._config
            if grant_type == "client_credentials":
                if client_id is None or client_secret is None:
                    raise _auth_error("client credentials are missing")
                ok_id = secrets.compare_digest(client_id.encode(), config.client_id.encode())
                ok_secret = secrets.compare_digest(client_secret.encode(), config.client_secret.encode())
                if not (ok_id and ok_secret):
                    raise _auth_error("invalid client credentials")
                scopes = DEFAULT_SCOPES if config.grant_commands_scope else DEFAULT_SCOPES - {COMMANDS_SCOPE}
                return self._new_token(client_id, scopes)
            if grant_type == "refresh_token":
                if not refresh_token:
                    raise _validation("refresh_token is required for grant_type=refresh_token", field="refresh_token")
                known = self._refresh.pop(refresh_token, None)
                if known is None:
                    raise _auth_error("invalid or already used refresh token")
                return self._new_token(*known)
            raise _validation(
                f"unsupported grant_type {grant_type!r}",
                field="grant_type",
                allowedValues=["client_credentials", "refresh_token"],
            )

    def authenticate(self, authorization: str | None, *, commands: bool = False) -> str:
        """Check an ``Authorization`` header; return the client id or raise 401.

        ``commands=True`` also requires the ``vehicle:commands`` scope (on the token and
        currently granted by the settings).
        """
        if not authorization:
            raise _auth_error("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _auth_error("authorization header must be 'Bearer <token>'")
        with self._lock:
            info = self._access.get(token.strip())
            if info is None:
                raise _auth_error("invalid access token")
            if self._clock() >= info.expires_at:
                raise _auth_error("access token expired")
            if commands and (COMMANDS_SCOPE not in info.scopes or not self._config.grant_commands_scope):
                raise _auth_error(f"the access token lacks the {COMMANDS_SCOPE} scope")
            return info.client_id

    def test_token(self, authorization: str | None) -> dict[str, str]:
        """Answer ``POST /v1/oauth2/test-token`` (an ``APIAccess``)."""
        client_id = self.authenticate(authorization)
        return {"clientId": client_id, "organizationId": self._config.organization_id}

    def expire_tokens(self) -> int:
        """Make every issued access token expired now; return how many were live."""
        with self._lock:
            now = self._clock()
            live = 0
            for info in self._access.values():
                if info.expires_at > now:
                    live += 1
                    info.expires_at = now
            return live

    # ------------------------------------------------------------------ vehicles

    def _vehicle(self, vehicle_id: str) -> _Vehicle:
        vehicle = self._vehicles.get(vehicle_id)
        if vehicle is not None:
            return vehicle
        magic = parse_magic_vehicle_id(vehicle_id)
        if magic.missing:
            raise _not_found(f"vehicle {vehicle_id!r} not found")
        vehicle = _Vehicle(vehicle_id, magic, self._clock(), len(self._vehicle_list))
        self._vehicles[vehicle_id] = vehicle
        self._vehicle_list.append(vehicle)
        return vehicle

    def get_vehicle(self, vehicle_id: str) -> dict[str, Any]:
        """Answer ``GET /v1/vehicles/{vehicle_id}`` (vehicles appear on first sight)."""
        with self._lock:
            return self._vehicle(vehicle_id).to_api()

    def list_vehicles(
        self, *, max_page_size: int | None = None, page_token: str | None = None, filter_json: str | None = None
    ) -> dict[str, Any]:
        """Answer ``GET /v1/vehicles``: vehicles in the order first seen."""
        with self._lock:
            terms, key = _parse_filter(filter_json, _VEHICLE_FILTER_FIELDS)

            def match(vehicle: _Vehicle) -> bool:
                if not terms:
                    return True
                api = vehicle.to_api()
                return all(t.matches(api.get(t.field)) for t in terms)

            page, next_token, total = self._paginate(
                self._vehicle_list, "vehicles", key, max_page_size, page_token, match, newest_first=False
            )
            return {"results": [v.to_api() for v in page], "nextPageToken": next_token, "totalResults": total}

    # ------------------------------------------------------------------ commands

    def _fate(self, vehicle: _Vehicle) -> tuple[str, str | None, float]:
        config = self._config
        magic = vehicle.magic
        scenario = self._scenarios.get(vehicle.id)
        outcome, reason, delay = magic.outcome, magic.failed_reason, magic.delay
        if scenario is not None:
            if scenario.outcome is not None:
                if scenario.outcome != outcome:
                    reason = None
                outcome = scenario.outcome
            if scenario.failed_reason is not None:
                reason = scenario.failed_reason
            if scenario.delay is not None:
                delay = scenario.delay
        base_delay = config.default_delay if delay is None else delay
        if scenario is not None and scenario.sequence:
            step = scenario.sequence.popleft()
            outcome, reason = step.outcome, step.failed_reason
            base_delay = base_delay if step.delay is None else step.delay
        if outcome == "FAILED":
            reason = reason or DEFAULT_FAILED_REASON
        else:
            reason = None
        return outcome, reason, base_delay

    def create_command(
        self, vehicle_id: str, command: str, arguments: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a command execution (``VehicleCommandExecution``, status ``PENDING``).

        Raises ``RESOURCE_NOT_FOUND`` for unknown vehicles and ``COMMAND_ALREADY_IN_PROGRESS``
        (409, ``data.commandExecutionId``) while one of the same type is pending.
        Authentication and payload validation are the caller's job.
        """
        if command not in VEHICLE_COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        with self._lock:
            vehicle = self._vehicle(vehicle_id)
            now = self._clock()
            pending = self._pending.get((vehicle_id, command))
            if pending is not None and now < pending.finish_at:
                raise SimulatorError(
                    "COMMAND_ALREADY_IN_PROGRESS",
                    f"a {command} command is already in progress for vehicle {vehicle_id!r}",
                    data={"commandExecutionId": pending.id},
                )
            outcome, reason, delay = self._fate(vehicle)
            timeout = self._config.command_timeout
            if outcome == "PENDING" or delay >= timeout:
                finish_at, final, reason = now + timeout, "FAILED", PLATFORM_TIMEOUT_REASON
            else:
                finish_at, final = now + delay, outcome
            execution = _Execution(
                id=_new_execution_id(vehicle_id),
                vehicle_id=vehicle_id,
                command=command,
                arguments=dict(arguments) if arguments is not None else None,
                created_at=now,
                timeout=timeout,
                finish_at=finish_at,
                final_status=final,
                final_reason=reason,
                index=len(vehicle.executions),
            )
            vehicle.executions.append(execution)
            self._executions[execution.id] = execution
            self._pending[(vehicle_id, command)] = execution
            vehicle.create_times.append(now)
            per_vehicle = self._creates.setdefault(vehicle_id, {})
            per_vehicle[command] = per_vehicle.get(command, 0) + 1
            self._n["createsTotal"] += 1
            return execution.to_api(now)

    def _served(self, execution: _Execution, now: float) -> None:
        if execution.first_served_terminal_at is None and now >= execution.finish_at:
            execution.first_served_terminal_at = now

    def get_execution(self, vehicle_id: str, execution_id: str) -> dict[str, Any]:
        """Answer ``GET .../command-executions/{id}`` with the status as of now."""
        with self._lock:
            self._vehicle(vehicle_id)
            execution = self._executions.get(execution_id)
            if execution is None or execution.vehicle_id != vehicle_id:
                raise _not_found(f"command execution {execution_id!r} not found for vehicle {vehicle_id!r}")
            now = self._clock()
            self._served(execution, now)
            return execution.to_api(now)

    def list_executions(
        self,
        vehicle_id: str,
        *,
        max_page_size: int | None = None,
        page_token: str | None = None,
        filter_json: str | None = None,
    ) -> dict[str, Any]:
        """Answer ``GET .../command-executions``: newest first, cursor-paginated, filtered."""
        with self._lock:
            vehicle = self._vehicle(vehicle_id)
            terms, key = _parse_filter(filter_json, _EXECUTION_FILTER_FIELDS)
            now = self._clock()

            def match(execution: _Execution) -> bool:
                if not terms:
                    return True
                api = execution.to_api(now)
                return all(t.matches(api.get(t.field)) for t in terms)

            page, next_token, total = self._paginate(
                vehicle.executions, f"executions:{vehicle_id}", key, max_page_size, page_token, match, newest_first=True
            )
            for execution in page:
                self._served(execution, now)
            return {"results": [e.to_api(now) for e in page], "nextPageToken": next_token, "totalResults": total}

    def finish_execution(
        self, execution_id: str, outcome: str = "EXECUTED", failed_reason: str | None = None
    ) -> dict[str, Any]:
        """Force a still-pending execution to finish now (for deterministic tests)."""
        _check_outcome(outcome)
        if outcome == "PENDING":
            raise ValueError("outcome must be EXECUTED or FAILED")
        with self._lock:
            execution = self._executions.get(execution_id)
            if execution is None:
                raise _not_found(f"command execution {execution_id!r} not found")
            now = self._clock()
            if now < execution.finish_at:
                execution.finish_at = now
                execution.final_status = outcome
                execution.final_reason = (failed_reason or DEFAULT_FAILED_REASON) if outcome == "FAILED" else None
                execution.finished_manually = True
            return execution.to_api(now)

    # ------------------------------------------------------------------ pagination

    def _paginate(
        self,
        items: Sequence[T],
        scope: str,
        filter_key: str,
        max_page_size: int | None,
        page_token: str | None,
        match: Callable[[T], bool],
        *,
        newest_first: bool,
    ) -> tuple[list[T], str | None, int]:
        size = DEFAULT_PAGE_SIZE if max_page_size is None else max_page_size
        if size < 1:
            raise _validation("maxPageSize must be >= 1", field="maxPageSize")
        if size > MAX_PAGE_SIZE:
            raise SimulatorError(
                "PAGE_SIZE_TOO_LARGE", f"maxPageSize must be <= {MAX_PAGE_SIZE}", data={"maxPageSize": MAX_PAGE_SIZE}
            )
        fingerprint = hashlib.sha256(filter_key.encode()).hexdigest()[:16]
        step = -1 if newest_first else 1
        if page_token:
            start = self._decode_page_token(page_token, scope, fingerprint)
        else:
            start = len(items) - 1 if newest_first else 0
        total = sum(1 for item in items if match(item))
        page: list[T] = []
        index = start
        while 0 <= index < len(items) and len(page) < size:
            if match(items[index]):
                page.append(items[index])
            index += step
        while 0 <= index < len(items) and not match(items[index]):
            index += step
        next_token = None
        if 0 <= index < len(items):
            raw = json.dumps({"g": self._generation, "s": scope, "f": fingerprint, "c": index}, separators=(",", ":"))
            next_token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return page, next_token, total

    def _decode_page_token(self, token: str, scope: str, fingerprint: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            generation, token_scope, token_filter, cursor = data["g"], data["s"], data["f"], data["c"]
            if not isinstance(cursor, int) or not isinstance(generation, int):
                raise TypeError("bad cursor")
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise _validation("invalid pageToken", field="pageToken") from None
        if generation != self._generation:
            raise SimulatorError("QUERY_PAGE_TOKEN_EXPIRED", "the page token has expired; start a new query")
        if token_scope != scope:
            raise _validation("pageToken belongs to another query", field="pageToken")
        if token_filter != fingerprint:
            raise SimulatorError(
                "PAGINATED_QUERY_FILTER_CHANGED", "the filter changed between pages; start a new query"
            )
        return cursor

    # ------------------------------------------------------------------ rate limits

    def rate_limits(self, object_id: str, domain: str) -> list[dict[str, Any]]:
        """Answer ``GET /v1/rate-limits`` for one vehicle."""
        if domain != "VEHICLE":
            raise _validation(f"invalid domain {domain!r}", field="domain", allowedValues=["VEHICLE"])
        with self._lock:
            vehicle = self._vehicle(object_id)
            scenario = self._scenarios.get(object_id)
            maximum = DEFAULT_RATE_LIMIT_MAX
            window = DEFAULT_RATE_LIMIT_WINDOW
            fixed: int | None = None
            if scenario is not None:
                maximum = scenario.rate_limit_max if scenario.rate_limit_max is not None else maximum
                window = scenario.rate_limit_window if scenario.rate_limit_window is not None else window
                fixed = scenario.rate_limit_remaining
            horizon = self._clock() - window
            while vehicle.create_times and vehicle.create_times[0] <= horizon:
                vehicle.create_times.popleft()
            remaining = fixed if fixed is not None else max(0, maximum - len(vehicle.create_times))
            return [
                {
                    "remainingRequests": remaining,
                    "maxRequests": maximum,
                    "domain": "VEHICLE",
                    "windowSizeSeconds": window,
                    "objectId": object_id,
                    "key": RATE_LIMIT_KEY,
                }
            ]

    # ------------------------------------------------------------------ scenarios

    def set_scenario(
        self,
        vehicle_id: str,
        *,
        outcome: str | None = None,
        failed_reason: str | None = None,
        delay: float | None = None,
        sequence: Iterable[ScenarioStep | Mapping[str, Any]] | None = None,
        rate_limit_max: int | None = None,
        rate_limit_window_seconds: int | None = None,
        rate_limit_remaining: int | None = None,
    ) -> dict[str, Any]:
        """Replace the explicit scenario of a vehicle; return the effective scenario.

        Fields left ``None`` fall back to the magic id, then to the defaults. ``sequence``
        steps are consumed one per created command, after which the base applies.
        """
        if outcome is not None:
            _check_outcome(outcome)
        steps = deque(ScenarioStep.coerce(step) for step in (sequence or ()))
        for name, value in (
            ("rate_limit_max", rate_limit_max),
            ("rate_limit_window_seconds", rate_limit_window_seconds),
            ("rate_limit_remaining", rate_limit_remaining),
        ):
            if value is not None and (not isinstance(value, int) or value < (1 if "window" in name else 0)):
                raise ValueError(f"{name} must be a non-negative integer (window >= 1)")
        scenario = _Scenario(
            outcome=outcome,
            failed_reason=failed_reason,
            delay=_check_delay(delay),
            sequence=steps,
            rate_limit_max=rate_limit_max,
            rate_limit_window=rate_limit_window_seconds,
            rate_limit_remaining=rate_limit_remaining,
        )
        with self._lock:
            self._scenarios[vehicle_id] = scenario
            return self.scenario(vehicle_id)

    def clear_scenario(self, vehicle_id: str) -> None:
        """Drop the explicit scenario (the magic id applies again)."""
        with self._lock:
            self._scenarios.pop(vehicle_id, None)

    def scenario(self, vehicle_id: str) -> dict[str, Any]:
        """The effective scenario of a vehicle (camelCase, as served over HTTP)."""
        with self._lock:
            magic = parse_magic_vehicle_id(vehicle_id)
            explicit = self._scenarios.get(vehicle_id)
            outcome, reason, delay = magic.outcome, magic.failed_reason, magic.delay
            if explicit is not None:
                if explicit.outcome is not None:
                    reason = reason if explicit.outcome == outcome else None
                    outcome = explicit.outcome
                reason = explicit.failed_reason if explicit.failed_reason is not None else reason
                delay = explicit.delay if explicit.delay is not None else delay
            if outcome == "FAILED":
                reason = reason or DEFAULT_FAILED_REASON
            else:
                reason = None
            return {
                "vehicleId": vehicle_id,
                "source": "explicit" if explicit is not None else "magic",
                "missing": magic.missing,
                "outcome": outcome,
                "failedReason": reason,
                "delaySeconds": self._config.default_delay if delay is None else delay,
                "sequence": [step.to_dict() for step in explicit.sequence] if explicit else [],
                "rateLimit": {
                    "maxRequests": explicit.rate_limit_max if explicit else None,
                    "windowSizeSeconds": explicit.rate_limit_window if explicit else None,
                    "remainingRequests": explicit.rate_limit_remaining if explicit else None,
                },
            }

    # ------------------------------------------------------------------ faults

    def add_fault(
        self,
        kind: str,
        *,
        method: str | None = None,
        path: str | None = None,
        count: int | None = 1,
        status: int = 500,
        error: str | None = None,
        message: str | None = None,
        html: bool = False,
        retry_after: float | None = 1.0,
        retry_after_date: bool = False,
        delay: float = 0.0,
        apply: bool = False,
        reset: bool = False,
        shape: str = "missing_status",
        status_value: str = "CANCELLED",
        fields: Mapping[str, Any] | None = None,
    ) -> Fault:
        """Queue a fault for the next ``count`` API requests matching ``method``/``path``.

        ``path`` is a regex searched in the request path; ``None`` matches anything;
        ``count=None`` never runs out. Control paths (``/_simulator``) are never faulted.
        Returns a copy of the queued fault (its ``id`` can be used to remove it).
        """
        fault = Fault(
            kind=kind,
            method=method,
            path=path,
            remaining=count,
            status=status,
            error=error,
            message=message,
            html=html,
            retry_after=retry_after,
            retry_after_date=retry_after_date,
            delay=delay,
            apply=apply,
            reset=reset,
            shape=shape,
            status_value=status_value,
            fields=dict(fields) if fields is not None else None,
        )
        with self._lock:
            self._faults.append(fault)
            return replace(fault)

    def faults(self) -> list[dict[str, Any]]:
        """Queued faults that have not run out."""
        with self._lock:
            return [fault.to_dict() for fault in self._faults]

    def clear_faults(self, fault_id: str | None = None) -> int:
        """Remove one queued fault (by id) or all of them; return how many were removed."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    # ------------------------------------------------------------------ request accounting

    def begin_request(
        self, method: str, path: str, kind: str, execution_id: str | None, request_id: str
    ) -> tuple[dict[str, Any], Fault | None]:
        """Count an API request, log it and pop the fault that applies to it (if any).

        Returns the (mutable) log entry, whose ``status`` the HTTP layer fills in.
        """
        with self._lock:
            n = self._n
            n["requests"] += 1
            if kind == "poll":
                n["polls"] += 1
                if execution_id is not None:
                    self._polls_by_execution[execution_id] = self._polls_by_execution.get(execution_id, 0) + 1
            elif kind == "create":
                n["createAttempts"] += 1
            elif kind == "list":
                n["lists"] += 1
            elif kind == "token":
                n["tokenRequests"] += 1
            elif kind == "test_token":
                n["testTokenRequests"] += 1
            elif kind == "rate_limit":
                n["rateLimitRequests"] += 1
            elif kind == "vehicle":
                n["vehicleRequests"] += 1
            fault: Fault | None = None
            if self._faults:
                for candidate in self._faults:
                    if candidate.matches(method, path):
                        fault = candidate
                        break
                if fault is not None:
                    fault.applied += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    n["faultsApplied"] += 1
                    self._faults_by_kind[fault.kind] = self._faults_by_kind.get(fault.kind, 0) + 1
            entry: dict[str, Any] = {
                "time": self._clock(),
                "method": method,
                "path": path,
                "kind": kind,
                "status": None,
                "requestId": request_id,
                "fault": fault.kind if fault is not None else None,
            }
            self._log.append(entry)
            return entry, fault

    def note_error(self, code: str) -> None:
        """Count an error envelope sent with ``code``."""
        with self._lock:
            self._errors_by_code[code] = self._errors_by_code.get(code, 0) + 1

    def counters(self) -> dict[str, Any]:
        """A deep snapshot of every counter."""
        with self._lock:
            snapshot: dict[str, Any] = dict(self._n)
            snapshot["tokenRequestsByGrant"] = dict(self._by_grant)
            snapshot["creates"] = {vid: dict(per) for vid, per in self._creates.items()}
            snapshot["pollsByExecution"] = dict(self._polls_by_execution)
            snapshot["faultsAppliedByKind"] = dict(self._faults_by_kind)
            snapshot["errorsByCode"] = dict(self._errors_by_code)
            return snapshot

    def request_log(self) -> list[dict[str, Any]]:
        """Copies of the logged API requests, oldest first (bounded ring buffer)."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    # ------------------------------------------------------------------ inspection

    def executions(self, vehicle_id: str | None = None) -> list[dict[str, Any]]:
        """Stored executions as the API would show them now, in creation order."""
        with self._lock:
            now = self._clock()
            if vehicle_id is not None:
                vehicle = self._vehicles.get(vehicle_id)
                chosen: Iterable[_Execution] = vehicle.executions if vehicle is not None else ()
            else:
                chosen = self._executions.values()
            return [execution.to_api(now) for execution in chosen]

    def mark_times(self, execution_id: str) -> dict[str, Any]:
        """When an execution was created, became terminal, and was first served terminal.

        Epoch seconds: ``createdAt``, ``terminalAt`` (when it flipped, or will flip, out of
        PENDING), ``firstServedTerminalAt`` (first poll/list answer showing it terminal,
        ``None`` so far if never), plus ``status``/``finalStatus``/``failedReason``.
        Raises ``KeyError`` for unknown ids.
        """
        with self._lock:
            execution = self._executions[execution_id]
            now = self._clock()
            return {
                "id": execution.id,
                "vehicleId": execution.vehicle_id,
                "command": execution.command,
                "createdAt": execution.created_at,
                "terminalAt": execution.finish_at,
                "firstServedTerminalAt": execution.first_served_terminal_at,
                "status": execution.status_at(now),
                "finalStatus": execution.final_status,
                "failedReason": execution.final_reason,
                "finishedManually": execution.finished_manually,
            }
