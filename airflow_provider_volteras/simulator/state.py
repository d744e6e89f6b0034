"""The simulator's state: one locked facade over tokens, vehicles, executions, scenarios and faults.

Pure Python and thread-safe: no web framework is imported here, so tests can drive
:class:`SimulatorState` directly (optionally with a fake clock) and the HTTP layer only translates
requests into calls on it. The rules live beside it: :mod:`.constants` (API constants, errors),
:mod:`.behaviour` (magic ids, scenarios, their precedence), :mod:`.faults`, :mod:`.filters`
(listing filters), :mod:`.paging` (cursors) and :mod:`.records` (what is stored).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

# Re-exported: the simulator's public names, importable from here as before the split.
from .behaviour import MagicBehaviour as MagicBehaviour
from .behaviour import (
    ScenarioStep,
    _check_delay,
    _check_outcome,
    _Scenario,
    effective_behaviour,
    final_reason,
    parse_magic_vehicle_id,
)
from .constants import COMMAND_SLUGS as COMMAND_SLUGS
from .constants import (
    COMMANDS_SCOPE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_FAILED_REASON,
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_RATE_LIMIT_MAX,
    DEFAULT_RATE_LIMIT_WINDOW,
    DEFAULT_SCOPES,
    DEMO_TAGS,
    DEMO_VEHICLE_IDS,
    MAX_TAG_LENGTH,
    PLATFORM_TIMEOUT_REASON,
    RATE_LIMIT_KEY,
    TAG_ENTITY_TYPES,
    VEHICLE_COMMANDS,
    SimulatorConfig,
    SimulatorError,
    _auth_error,
    _new_execution_id,
    _not_found,
    _validation,
)
from .constants import ERROR_HTTP_STATUS as ERROR_HTTP_STATUS
from .constants import EXECUTION_STATUSES as EXECUTION_STATUSES
from .constants import FAILED_REASONS as FAILED_REASONS
from .constants import FAULT_KINDS as FAULT_KINDS
from .constants import MAGIC_VEHICLE_IDS as MAGIC_VEHICLE_IDS
from .constants import TEXT_FAILED_REASON as TEXT_FAILED_REASON
from .constants import WRONG_SHAPES as WRONG_SHAPES
from .constants import error_envelope as error_envelope
from .constants import iso_utc as iso_utc
from .faults import Fault
from .filters import EXECUTION_FIELDS, VEHICLE_FIELDS, Getter, dict_getter, parse_filter
from .paging import paginate
from .records import _Execution, _Token, _Vehicle

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
    "WRONG_SHAPES",
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


class _Unset:
    """Marks a keyword left out (where ``None`` means something)."""


_UNSET = _Unset()


def _clamp_range(value: tuple[int, int] | Mapping[str, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        if set(value) != {"min", "max"}:
            raise ValueError('clamp_charge_limit must be {"min": ..., "max": ...}')
        return (value["min"], value["max"])
    return tuple(value)  # type: ignore[return-value]  # checked by SimulatorConfig.validated


_VEHICLES_PREFIX = "/v1/vehicles/"
#: Request kinds counted per vehicle.
_VEHICLE_KINDS = ("list", "create", "poll", "vehicle")


def _created_at(execution: _Execution) -> float:
    return execution.created_at


def _execution_id(execution: _Execution) -> str:
    return execution.id


def _execution_getter(execution: _Execution, now: float) -> Getter:
    def get(path: tuple[str, ...]) -> Any:
        value = execution.value(path[0], now)
        for part in path[1:]:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get


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
        listing_lag_seconds: float = 0.0,
        clamp_charge_limit: tuple[int, int] | Mapping[str, int] | None = None,
        omit_create_arguments: bool = False,
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
            listing_lag_seconds=float(listing_lag_seconds),
            clamp_charge_limit=_clamp_range(clamp_charge_limit),
            omit_create_arguments=bool(omit_create_arguments),
        ).validated()
        self._config = self._initial_config
        self._seed = seed_demo_vehicles
        self._log_size = request_log_size
        self._generation = 0
        #: Called with ``(execution as the API shows it once ended, when it ends)`` for every new execution
        #: and every forced end (the webhook sender, ``simulator/webhooks.py``, listens here).
        self._listeners: list[Callable[[dict[str, Any], float], None]] = []
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
            for vehicle_id, key, value in DEMO_TAGS:
                self._vehicle(vehicle_id).tags.append((key, value))

    def _reset_counters(self) -> None:
        self._counts: dict[str, int] = dict.fromkeys(
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
                "historySeeded",
                "foreignExecutions",
            ),
            0,
        )
        self._by_grant: dict[str, int] = {"client_credentials": 0, "refresh_token": 0}
        self._creates: dict[str, dict[str, int]] = {}
        self._polls_by_execution: dict[str, int] = {}
        self._faults_by_kind: dict[str, int] = {}
        self._errors_by_code: dict[str, int] = {}
        self._by_vehicle: dict[str, dict[str, int]] = {}

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
        listing_lag_seconds: float | None = None,
        clamp_charge_limit: tuple[int, int] | Mapping[str, int] | _Unset | None = _UNSET,
        omit_create_arguments: bool | None = None,
    ) -> SimulatorConfig:
        """Change settings at runtime; ``None`` leaves a setting as is (except the clamp).

        ``command_timeout`` applies to commands created afterwards; ``token_ttl`` to tokens
        issued afterwards; ``grant_commands_scope=False`` also revokes the scope of live tokens.
        ``listing_lag_seconds`` hides executions younger than that from listings;
        ``clamp_charge_limit`` (``(min, max)`` or ``{"min": .., "max": ..}``; ``None`` removes
        it) clamps ``SET_CHARGE_LIMIT`` limits from then on; ``omit_create_arguments`` leaves
        ``commandArguments`` out of create answers.
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
                ("listing_lag_seconds", None if listing_lag_seconds is None else float(listing_lag_seconds)),
                ("omit_create_arguments", omit_create_arguments),
            )
            if value is not None
        }
        if not isinstance(clamp_charge_limit, _Unset):
            changes["clamp_charge_limit"] = _clamp_range(clamp_charge_limit)
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
        self,
        *,
        max_page_size: int | None = None,
        page_token: str | None = None,
        filter_json: str | None = None,
        tag_key: str | None = None,
        tag_value: str | None = None,
    ) -> dict[str, Any]:
        """Answer ``GET /v1/vehicles``: vehicles in the order first seen; with ``tag_key`` only those with a
        tag of that key (and ``tag_value``, when given; a value without a key is refused)."""
        with self._lock:
            node, key = parse_filter(filter_json, VEHICLE_FIELDS)
            if tag_value is not None and tag_key is None:
                raise _validation("tagValue needs tagKey", field="tagValue")
            if tag_key is not None:
                # A page token is for one query: another tag between pages is a changed filter.
                key = f"{key}|tag:{tag_key}={tag_value if tag_value is not None else '*'}"

            def match(vehicle: _Vehicle) -> bool:
                if tag_key is not None and not vehicle.has_tag(tag_key, tag_value):
                    return False
                return node is None or node.matches(dict_getter(vehicle.to_api()))

            page, next_token, total = paginate(
                self._vehicle_list,
                "vehicles",
                key,
                max_page_size,
                page_token,
                match,
                newest_first=False,
                generation=self._generation,
            )
            return {"results": [v.to_api() for v in page], "nextPageToken": next_token, "totalResults": total}

    # ------------------------------------------------------------------ tags

    def _tag_target(self, entity_type: str, entity_id: str) -> _Vehicle:
        if entity_type not in TAG_ENTITY_TYPES:
            raise _validation(f"invalid entity type {entity_type!r}", allowedValues=list(TAG_ENTITY_TYPES))
        return self._vehicle(entity_id)

    @staticmethod
    def _check_tag(key: Any, value: Any) -> tuple[str, str]:
        for name, text in (("key", key), ("value", value)):
            if not isinstance(text, str):
                raise _validation(f"tag {name} must be a string", field=name)
            if len(text) > MAX_TAG_LENGTH:
                raise _validation(f"tag {name} must be at most {MAX_TAG_LENGTH} characters", field=name)
        return key, value

    def add_tag(self, entity_type: str, entity_id: str, key: str, value: str) -> None:
        """Answer ``POST /v1/tags``: tag the vehicle (adding a pair it already has changes nothing)."""
        with self._lock:
            pair = self._check_tag(key, value)
            vehicle = self._tag_target(entity_type, entity_id)
            if pair not in vehicle.tags:
                vehicle.tags.append(pair)

    def remove_tag(self, entity_type: str, entity_id: str, key: str, value: str) -> None:
        """Answer ``DELETE /v1/tags``: remove the pair from the vehicle (``RESOURCE_NOT_FOUND`` if it has none)."""
        with self._lock:
            pair = self._check_tag(key, value)
            vehicle = self._tag_target(entity_type, entity_id)
            if pair not in vehicle.tags:
                raise _not_found(f"vehicle {entity_id!r} has no tag {key}={value}")
            vehicle.tags.remove(pair)

    def tags(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        """Answer ``GET /v1/tags/{entity_type}/{entity_id}``: ``{"tags": [{"key", "value"}, ...]}``."""
        with self._lock:
            vehicle = self._tag_target(entity_type, entity_id)
            return {"tags": [{"key": k, "value": v} for k, v in vehicle.tags]}

    # ------------------------------------------------------------------ commands

    def _fate(self, vehicle: _Vehicle) -> tuple[str, str | None, float]:
        scenario = self._scenarios.get(vehicle.id)
        outcome, reason, delay = effective_behaviour(vehicle.magic, scenario)
        base_delay = self._config.default_delay if delay is None else delay
        if scenario is not None and scenario.sequence:
            step = scenario.sequence.popleft()
            outcome, reason = step.outcome, final_reason(step.outcome, step.failed_reason)
            base_delay = base_delay if step.delay is None else step.delay
        return outcome, reason, base_delay

    def create_command(
        self, vehicle_id: str, command: str, arguments: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a command execution (``VehicleCommandExecution``, status ``PENDING``).

        Raises ``RESOURCE_NOT_FOUND`` for unknown vehicles and ``COMMAND_ALREADY_IN_PROGRESS``
        (409, ``data.commandExecutionId``) while one of the same type is pending.
        Authentication and payload validation are the caller's job. With the
        ``clamp_charge_limit`` setting a ``SET_CHARGE_LIMIT`` limit is stored (and answered)
        clamped into that range; with ``omit_create_arguments`` the answer has no
        ``commandArguments``.
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
            clamp = self._config.clamp_charge_limit
            if clamp is not None and command == "SET_CHARGE_LIMIT" and arguments is not None:
                limit = arguments.get("limit")
                if isinstance(limit, int | float) and not isinstance(limit, bool):
                    arguments = {**arguments, "limit": min(max(limit, clamp[0]), clamp[1])}
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
            self._insert(vehicle, [execution])
            self._pending[(vehicle_id, command)] = execution
            vehicle.create_times.append(now)
            per_vehicle = self._creates.setdefault(vehicle_id, {})
            per_vehicle[command] = per_vehicle.get(command, 0) + 1
            self._counts["createsTotal"] += 1
            self._tell(execution)
            answer = execution.to_api(now)
            if self._config.omit_create_arguments:
                del answer["commandArguments"]
            return answer

    def _insert(self, vehicle: _Vehicle, new: list[_Execution]) -> None:
        """Store ``new`` (sorted by ``created_at``), keeping the vehicle's list in creation order."""
        executions = vehicle.executions
        in_order = not executions or not new or new[0].created_at >= executions[-1].created_at
        executions.extend(new)
        if not in_order:
            executions.sort(key=_created_at)  # stable: ties keep the order they were added in
        for execution in new:
            self._executions[execution.id] = execution

    def seed_history(
        self,
        vehicle_id: str,
        command: str,
        count: int,
        *,
        status: str | None = "EXECUTED",
        age_seconds: float = 86_400.0,
        arguments: Mapping[str, Any] | None = None,
        failed_reason: str | None = None,
    ) -> dict[str, Any]:
        """Add ``count`` past executions of ``command`` to a vehicle, as if made long ago.

        They are created one second apart, the newest ``age_seconds`` ago (so ``createdAt``
        runs from ``now - age_seconds - (count - 1)`` to ``now - age_seconds``), and finished
        half a second after creation (never after now) with ``status``, kept as given: any
        string, even outside the API's enum or ``"PENDING"`` (a stale execution that never
        finishes), or ``None``. ``failed_reason`` defaults to ``OEM_COMMAND_FAILED`` for
        ``FAILED``. They are listed (oldest last) and readable by id, but are not counted as
        creates, use no rate limit and hold no one-pending-per-command slot. Returns a summary.
        """
        if command not in VEHICLE_COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            raise ValueError("count must be an integer from 1 to 100000")
        if not (isinstance(age_seconds, int | float) and math.isfinite(age_seconds) and age_seconds >= 0):
            raise ValueError("age_seconds must be a finite number >= 0")
        if status is not None and not isinstance(status, str):
            raise ValueError("status must be a string or None")
        reason = (failed_reason or DEFAULT_FAILED_REASON) if status == "FAILED" else failed_reason
        args = dict(arguments) if arguments is not None else None
        with self._lock:
            vehicle = self._vehicle(vehicle_id)
            now = self._clock()
            timeout = self._config.command_timeout
            newest = now - float(age_seconds)
            oldest = newest - (count - 1)
            new_id = _new_execution_id
            new = [
                _Execution(
                    id=new_id(vehicle_id),
                    vehicle_id=vehicle_id,
                    command=command,
                    arguments=dict(args) if args is not None else None,
                    created_at=created,
                    timeout=timeout,
                    finish_at=min(created + 0.5, max(created, now)),
                    final_status=status,
                    final_reason=reason,
                    index=-1,
                )
                for created in (oldest + i for i in range(count))
            ]
            self._insert(vehicle, new)
            self._counts["historySeeded"] += count
            return {
                "vehicleId": vehicle_id,
                "command": command,
                "count": count,
                "status": status,
                "oldestCreatedAt": iso_utc(oldest),
                "newestCreatedAt": iso_utc(newest),
                "oldestId": new[0].id,
                "newestId": new[-1].id,
                "executions": len(vehicle.executions),
            }

    def add_execution(
        self,
        vehicle_id: str,
        command: str,
        *,
        status: str | None = "PENDING",
        arguments: Mapping[str, Any] | None = None,
        created_at: float | None = None,
        failed_reason: str | None = None,
        delay: float | None = None,
        outcome: str = "EXECUTED",
        holds_slot: bool | None = None,
    ) -> dict[str, Any]:
        """Add one execution as if another client had just created it; return it as the API shows it.

        ``created_at`` (epoch seconds) defaults to now. ``status`` other than ``"PENDING"`` is
        kept as given, from now on: any string (even outside the API's enum) or ``None``;
        ``failed_reason`` defaults to ``OEM_COMMAND_FAILED`` for ``FAILED``.

        A ``PENDING`` one behaves like a created command: it holds the vehicle's
        one-pending-per-command slot (a create of the same command answers
        ``COMMAND_ALREADY_IN_PROGRESS``; adding one while the slot is taken raises that error
        too) unless ``holds_slot=False``, and ``delay`` seconds after it was added (default: the
        configured default delay) it becomes ``outcome`` (``EXECUTED``, ``FAILED`` with
        ``failed_reason``, or ``PENDING``: never, so it times out). Like any command it times
        out (``FAILED``, ``OEM_COMMAND_TIMEOUT``) ``command_timeout`` after ``created_at``.
        It is not counted as a create and uses no rate limit.
        """
        if command not in VEHICLE_COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        if status is not None and not isinstance(status, str):
            raise ValueError("status must be a string or None")
        pending = status == "PENDING"
        if pending:
            _check_outcome(outcome)
        elif holds_slot:
            raise ValueError("only a PENDING execution can hold the pending slot")
        checked_delay = _check_delay(delay)
        with self._lock:
            vehicle = self._vehicle(vehicle_id)
            now = self._clock()
            created = now if created_at is None else float(created_at)
            if not math.isfinite(created):
                raise ValueError("created_at must be finite")
            timeout = self._config.command_timeout
            final: str | None = status
            reason: str | None
            if pending:
                wait = self._config.default_delay if checked_delay is None else checked_delay
                timeout_at = created + timeout
                if outcome == "PENDING" or now + wait >= timeout_at:
                    finish_at, final, reason = timeout_at, "FAILED", PLATFORM_TIMEOUT_REASON
                else:
                    finish_at, final, reason = now + wait, outcome, final_reason(outcome, failed_reason)
            else:
                finish_at = min(created, now)
                reason = (failed_reason or DEFAULT_FAILED_REASON) if status == "FAILED" else failed_reason
            slot = pending and holds_slot is not False
            if slot:
                holder = self._pending.get((vehicle_id, command))
                if holder is not None and now < holder.finish_at:
                    raise SimulatorError(
                        "COMMAND_ALREADY_IN_PROGRESS",
                        f"a {command} command is already in progress for vehicle {vehicle_id!r}",
                        data={"commandExecutionId": holder.id},
                    )
            execution = _Execution(
                id=_new_execution_id(vehicle_id),
                vehicle_id=vehicle_id,
                command=command,
                arguments=dict(arguments) if arguments is not None else None,
                created_at=created,
                timeout=timeout,
                finish_at=finish_at,
                final_status=final,
                final_reason=reason,
                index=-1,
            )
            self._insert(vehicle, [execution])
            if slot:
                self._pending[(vehicle_id, command)] = execution
            self._counts["foreignExecutions"] += 1
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
            node, key = parse_filter(filter_json, EXECUTION_FIELDS)
            now = self._clock()

            lag = self._config.listing_lag_seconds

            def match(execution: _Execution) -> bool:
                if lag and now - execution.created_at < lag:
                    return False
                return node is None or node.matches(_execution_getter(execution, now))

            page, next_token, total = paginate(
                vehicle.executions,
                f"executions:{vehicle_id}",
                key,
                max_page_size,
                page_token,
                match,
                newest_first=True,
                generation=self._generation,
                anchor=_execution_id,
            )
            for execution in page:
                self._served(execution, now)
            return {"results": [e.to_api(now) for e in page], "nextPageToken": next_token, "totalResults": total}

    def add_listener(self, listener: Callable[[dict[str, Any], float], None]) -> None:
        """Be told of each execution's end: ``listener(ended execution, end time)``, called under the lock."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[dict[str, Any], float], None]) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def _tell(self, execution: _Execution) -> None:
        for listener in self._listeners:
            listener(execution.to_api(execution.finish_at), execution.finish_at)

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
                self._tell(execution)
            return execution.to_api(now)

    # ------------------------------------------------------------------ pagination

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
            outcome, reason, delay = effective_behaviour(magic, explicit)
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
            counts = self._counts
            counts["requests"] += 1
            if kind == "poll":
                counts["polls"] += 1
                if execution_id is not None:
                    self._polls_by_execution[execution_id] = self._polls_by_execution.get(execution_id, 0) + 1
            elif kind == "create":
                counts["createAttempts"] += 1
            elif kind == "list":
                counts["lists"] += 1
            elif kind == "token":
                counts["tokenRequests"] += 1
            elif kind == "test_token":
                counts["testTokenRequests"] += 1
            elif kind == "rate_limit":
                counts["rateLimitRequests"] += 1
            elif kind == "vehicle":
                counts["vehicleRequests"] += 1
            vehicle_id: str | None = None
            if kind in _VEHICLE_KINDS and path.startswith(_VEHICLES_PREFIX):
                vehicle_id = path[len(_VEHICLES_PREFIX) :].split("/", 1)[0]
                per_vehicle = self._by_vehicle.get(vehicle_id)
                if per_vehicle is None:
                    per_vehicle = self._by_vehicle[vehicle_id] = dict.fromkeys(_VEHICLE_KINDS, 0)
                per_vehicle[kind] += 1
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
                    counts["faultsApplied"] += 1
                    self._faults_by_kind[fault.kind] = self._faults_by_kind.get(fault.kind, 0) + 1
            entry: dict[str, Any] = {
                "time": self._clock(),
                "method": method,
                "path": path,
                "kind": kind,
                "status": None,
                "requestId": request_id,
                "fault": fault.kind if fault is not None else None,
                "vehicleId": vehicle_id,
            }
            self._log.append(entry)
            return entry, fault

    def note_error(self, code: str) -> None:
        """Count an error envelope sent with ``code``."""
        with self._lock:
            self._errors_by_code[code] = self._errors_by_code.get(code, 0) + 1

    def counters(self) -> dict[str, Any]:
        """A deep snapshot of every counter.

        Per vehicle (API requests on ``/v1/vehicles/{id}...``, counted on arrival, whatever
        their answer): ``requestsByVehicle`` ``{id: {"list", "create", "poll", "vehicle": n}}``,
        and the non-zero ``listsByVehicle`` and ``createAttemptsByVehicle`` ``{id: n}``.
        """
        with self._lock:
            snapshot: dict[str, Any] = dict(self._counts)
            snapshot["tokenRequestsByGrant"] = dict(self._by_grant)
            snapshot["creates"] = {vid: dict(per) for vid, per in self._creates.items()}
            snapshot["pollsByExecution"] = dict(self._polls_by_execution)
            snapshot["faultsAppliedByKind"] = dict(self._faults_by_kind)
            snapshot["errorsByCode"] = dict(self._errors_by_code)
            by_vehicle = self._by_vehicle
            snapshot["requestsByVehicle"] = {vid: dict(per) for vid, per in by_vehicle.items()}
            snapshot["listsByVehicle"] = {vid: per["list"] for vid, per in by_vehicle.items() if per["list"]}
            snapshot["createAttemptsByVehicle"] = {
                vid: per["create"] for vid, per in by_vehicle.items() if per["create"]
            }
            return snapshot

    def request_log(self, *, vehicle_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Copies of the logged API requests, oldest first (bounded ring buffer).

        Entries: ``time``, ``method``, ``path``, ``kind`` (``list``, ``create``, ``poll``,
        ``vehicle``, ``token``, ``test_token``, ``rate_limit``, ``other``), ``status``,
        ``requestId``, ``fault`` and ``vehicleId`` (for vehicle requests, else ``None``);
        optionally only those of one vehicle and/or kind.
        """
        with self._lock:
            return [
                dict(entry)
                for entry in self._log
                if (vehicle_id is None or entry["vehicleId"] == vehicle_id) and (kind is None or entry["kind"] == kind)
            ]

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
