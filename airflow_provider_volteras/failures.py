"""The failure taxonomy: what each ``failedReason`` means, whether a retry can help, and how long to wait.

Every one of the 36 documented ``failedReason`` codes is classified here, once. Operators and the
sensor turn a failed execution into ``VolterasRetryableCommandError`` or ``VolterasFatalCommandError``
through :func:`command_failure`, and :class:`VolterasRetryPolicy` (an Airflow 3.3 ``retry_policy``)
picks the retry delay from the reason's delay kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

from airflow_provider_volteras.exceptions import (
    VolterasApiError,
    VolterasAuthenticationError,
    VolterasCommandError,
    VolterasCommandInProgressError,
    VolterasConfigurationError,
    VolterasFatalCommandError,
    VolterasInvalidInputError,
    VolterasNotFoundError,
    VolterasPermissionError,
    VolterasRateLimitError,
    VolterasRetryableCommandError,
    VolterasValidationError,
)

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context


class DelayKind(str, Enum):
    """How long a retry should wait, by the nature of the failure."""

    TRANSIENT = "transient"
    """A blip in a backend or network: retry soon."""
    VEHICLE_BUSY = "vehicle_busy"
    """The vehicle is in a state that refuses the command for now (another service, charging state)."""
    VEHICLE_OFFLINE = "vehicle_offline"
    """The vehicle cannot be reached: wait longer than for a blip."""
    RATE_LIMITED = "rate_limited"
    """A rate limit: wait at least the vehicle's rate-limit window."""


@dataclass(frozen=True)
class ReasonInfo:
    code: str
    retryable: bool
    delay_kind: DelayKind | None
    meaning: str
    action: str
    """What the user can do about it (shown in the failure message and the README table)."""


def _r(code: str, kind: DelayKind, meaning: str, action: str = "Airflow retries the task.") -> ReasonInfo:
    return ReasonInfo(code, True, kind, meaning, action)


def _f(code: str, meaning: str, action: str) -> ReasonInfo:
    return ReasonInfo(code, False, None, meaning, action)


_T, _B, _O, _L = DelayKind.TRANSIENT, DelayKind.VEHICLE_BUSY, DelayKind.VEHICLE_OFFLINE, DelayKind.RATE_LIMITED

FAILED_REASONS: dict[str, ReasonInfo] = {
    info.code: info
    for info in (
        _r("OEM_UNKNOWN_ERROR", _T, "the manufacturer's API returned an unidentified error, usually passing"),
        _r("OEM_TIMEOUT", _T, "the request to the manufacturer's API timed out"),
        _r("OEM_UNAVAILABLE", _T, "the manufacturer's API is temporarily unavailable"),
        _r("OEM_NETWORK_ERROR", _T, "a network error occurred between Volteras and the manufacturer"),
        _f(
            "OEM_INCORRECT_REGION",
            "the command is not supported in the vehicle's region",
            "Do not send this command to this vehicle; check the vehicle's region with Volteras.",
        ),
        _f(
            "OEM_APP_REQUIRED_UPDATE",
            "the manufacturer's app must be updated before this works",
            "Ask the vehicle owner to update the manufacturer's app, then clear the task.",
        ),
        _f(
            "OEM_USER_ACCOUNT_LOCKED",
            "the owner's account with the manufacturer is locked",
            "The owner must unlock the manufacturer account, then clear the task.",
        ),
        _f(
            "OEM_OAUTH_TOKEN_EXPIRED",
            "the owner's consent (manufacturer OAuth token) has expired",
            "Ask the owner to reconnect the vehicle to Volteras, then clear the task.",
        ),
        _r("OEM_VEHICLE_OFFLINE", _O, "the vehicle is offline and cannot be reached"),
        _f(
            "OEM_VEHICLE_REMOTE_ACCESS_DISABLED",
            "remote access is disabled or consent for Volteras is missing",
            "The owner must enable remote access / grant consent (see the execution's details), then clear the task.",
        ),
        _f(
            "OEM_VEHICLE_LOCATION_SHARING_DISABLED",
            "the vehicle's location sharing is disabled",
            "The owner must enable location sharing, then clear the task.",
        ),
        _f(
            "OEM_AUTH_DRIVER_IS_NOT_PRIMARY_USER",
            "the connected account is not the vehicle's primary user",
            "Reconnect the vehicle with the primary user's account.",
        ),
        _f(
            "OEM_DEVICE_NOT_FOUND",
            "the manufacturer does not know this vehicle",
            "Check the vehicle id and the vehicle's connection in Volteras.",
        ),
        _r("OEM_COMMAND_TIMEOUT", _T, "the vehicle did not confirm the command in time"),
        _r("OEM_COMMAND_FAILED", _T, "the command failed for an unidentified reason"),
        _r("OEM_RATE_LIMITED", _L, "the manufacturer's API rate limit was hit"),
        _r("OEM_ACCOUNT_RATE_LIMITED", _L, "the owner's manufacturer account is rate limited"),
        _r("OEM_DEVICE_RATE_LIMITED", _L, "the vehicle is rate limited by the manufacturer"),
        _r("OEM_STOP_CHARGE_RATE_LIMITED", _L, "stop-charge commands are rate limited for this vehicle"),
        _r("OEM_COMMANDS_RATE_LIMITED", _L, "commands are rate limited for this vehicle"),
        _r("OEM_VEHICLE_LOCATION_UNKNOWN", _O, "the vehicle's location is unknown for now (no GPS fix)"),
        _f(
            "OEM_VEHICLE_NOT_IN_AUTHORIZED_LOCATION",
            "the vehicle is not at a location where this command is allowed",
            "Send the command when the vehicle is at an authorised location.",
        ),
        _r("OEM_VEHICLE_CHARGING_NOT_FINISHED", _B, "charging has not finished yet"),
        _r("OEM_VEHICLE_CHARGING_NOT_STOPPED", _B, "charging has not stopped yet"),
        _r("OEM_VEHICLE_CHARGING_NOT_STARTED", _B, "charging has not started yet"),
        _r("OEM_VEHICLE_CHARGING_NOT_PAUSED", _B, "charging is not paused"),
        _f(
            "OEM_VEHICLE_CHARGING_REFUSED_PLAY_PROTECTION",
            "the vehicle refuses charging because of play protection",
            "The owner must turn play protection off in the vehicle.",
        ),
        _r("OEM_COMMAND_REFUSED_OTHER_SERVICE_RUNNING", _B, "another command or service is running on the vehicle"),
        _r(
            "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_STAND_STILL_AND_RESTING_STATE",
            _B,
            "the vehicle refused it while standing still and resting",
        ),
        _r(
            "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_STAND_STILL_AND_ACTIVE_STATE",
            _B,
            "the vehicle refused it while standing still and active",
        ),
        _r(
            "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_DRIVING_OR_READY_TO_DRIVE",
            _O,
            "the vehicle refused it while driving or ready to drive",
        ),
        _r(
            "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_DIAGNOSTICS_MODE",
            _O,
            "the vehicle refused it while in diagnostics mode",
        ),
        _r("SERVER_ERROR", _T, "Volteras failed on its side"),
        _r("INTERNAL_RATE_LIMITED", _L, "your organization reached its Volteras rate limit for this operation"),
        _f(
            "AUTHENTICATION_ERROR",
            "Volteras could not authenticate the command with the manufacturer",
            "Check the vehicle's connection and the client's credentials and scopes in Volteras.",
        ),
        _f(
            "NOT_PERMITTED",
            "this action is not permitted for this vehicle or organization",
            "Ask Volteras to enable the command for your organization.",
        ),
    )
}

UNKNOWN_REASON = ReasonInfo(
    "UNKNOWN",
    True,
    DelayKind.TRANSIENT,
    "a reason that is not in the documented list",
    "Airflow retries the task; report the reason to Volteras if it persists.",
)


@dataclass(frozen=True)
class Classification:
    reason: str
    known: bool
    retryable: bool
    delay_kind: DelayKind
    meaning: str
    action: str


def classify_reason(
    reason: str | None,
    *,
    retryable_reasons: Iterable[str] = (),
    fatal_reasons: Iterable[str] = (),
) -> Classification:
    """Classify a ``failedReason``; per-task overrides win over the table, ``fatal_reasons`` over both."""
    text = reason if isinstance(reason, str) and reason.strip() else "(no reason given)"
    info = FAILED_REASONS.get(text)
    known = info is not None
    base = info or UNKNOWN_REASON
    retryable = base.retryable
    if text in set(retryable_reasons):
        retryable = True
    if text in set(fatal_reasons):
        retryable = False
    action = base.action
    if retryable != base.retryable:
        action = "Retried (per-task override)." if retryable else "Not retried (per-task override)."
    return Classification(
        reason=text,
        known=known,
        retryable=retryable,
        delay_kind=base.delay_kind or DelayKind.TRANSIENT,
        meaning=base.meaning,
        action=action,
    )


def _describe(vehicle_id: str, command: str, execution_id: str | None) -> str:
    execution = f" (execution {execution_id})" if execution_id else ""
    return f"{command} on vehicle {vehicle_id}{execution}"


def _retry_note(retryable: bool) -> str:
    return "Airflow will retry the task." if retryable else "Airflow will NOT retry the task."


def command_failure(
    execution: dict[str, Any],
    *,
    vehicle_id: str,
    command: str,
    retryable_reasons: Iterable[str] = (),
    fatal_reasons: Iterable[str] = (),
) -> VolterasCommandError:
    """Build the task exception for a ``FAILED`` execution."""
    raw = execution.get("failedReason")
    c = classify_reason(raw, retryable_reasons=retryable_reasons, fatal_reasons=fatal_reasons)
    execution_id = execution.get("id")
    unknown = "" if c.known else " (not a documented reason; treated as retryable)"
    message = (
        f"Volteras command {_describe(vehicle_id, command, execution_id)} FAILED with reason {c.reason}"
        f"{unknown}: {c.meaning}. "
    )
    message += _retry_note(c.retryable) if c.retryable else f"{_retry_note(False)} {c.action}"
    cls = VolterasRetryableCommandError if c.retryable else VolterasFatalCommandError
    return cls(
        message,
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason=c.reason,
        delay_kind=c.delay_kind.value,
    )


def pending_at_deadline(
    vehicle_id: str, command: str, execution_id: str | None, waited: float, *, status_read: bool = True
) -> VolterasCommandError:
    """The command was still ``PENDING`` (or its status could not be read) when the task's wait ran out."""
    state = (
        "was still PENDING"
        if status_read
        else "could not be read during the wait (every status check failed), so its outcome is unknown,"
    )
    return VolterasRetryableCommandError(
        f"Volteras command {_describe(vehicle_id, command, execution_id)} {state} after "
        f"{waited:.0f} s, the task's timeout. Whether the vehicle will act on it is unknown; the platform fails "
        f"commands pending for 5 minutes. {_retry_note(True)} A retry re-attaches to this execution while it "
        "is pending and sends a new command only if it failed for a retryable reason.",
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason="PENDING_AT_DEADLINE" if status_read else "STATUS_UNKNOWN_AT_DEADLINE",
        delay_kind=DelayKind.TRANSIENT.value,
    )


def api_failure(
    error: Exception, *, vehicle_id: str, command: str, execution_id: str | None = None
) -> VolterasCommandError:
    """Map an API or input error met while sending or watching a command to a task exception.

    Connection configuration, invalid input, validation, not-found, authentication and permission errors
    are fatal; server errors, rate limits, transport failures and unexpected answers are retryable.
    """
    fatal_types = (
        VolterasConfigurationError,
        VolterasInvalidInputError,
        VolterasValidationError,
        VolterasNotFoundError,
        VolterasAuthenticationError,
        VolterasPermissionError,
        VolterasCommandInProgressError,
    )
    retryable = not isinstance(error, fatal_types)
    delay_kind = DelayKind.RATE_LIMITED if isinstance(error, VolterasRateLimitError) else DelayKind.TRANSIENT
    code = error.code if isinstance(error, VolterasApiError) else type(error).__name__
    hint = ""
    if isinstance(error, VolterasAuthenticationError):
        hint = " Check the connection's client id and secret and that the client has the vehicle:commands scope."
    elif isinstance(error, VolterasNotFoundError):
        hint = " Check the vehicle id (and execution id) against your Volteras organization."
    elif isinstance(error, (VolterasValidationError, VolterasInvalidInputError)):
        hint = " Fix the task's arguments."
    elif isinstance(error, VolterasConfigurationError):
        hint = " Fix the Airflow connection."
    elif isinstance(error, VolterasPermissionError):
        hint = " Ask Volteras to enable this action for your organization."
    message = (
        f"Volteras command {_describe(vehicle_id, command, execution_id)} could not be completed: {error} "
        f"[{code}]. {_retry_note(retryable)}{hint}"
    )
    cls = VolterasRetryableCommandError if retryable else VolterasFatalCommandError
    return cls(
        message,
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason=code,
        delay_kind=delay_kind.value,
    )


class VolterasRetryPolicy(RetryPolicy):
    """An Airflow 3.3 ``retry_policy`` that waits as long as the failure's nature calls for.

    Pass it to any Volteras task (``retry_policy=VolterasRetryPolicy()``). Fatal command failures
    fail at once; retryable ones wait by delay kind; a rate-limited failure waits at least the
    vehicle's rate-limit window when the operator could read it from ``/v1/rate-limits``. Other
    exceptions fall through to the task's own ``retry_delay``. The task's ``retries`` still caps the
    number of tries.
    """

    def __init__(
        self,
        *,
        transient: timedelta = timedelta(seconds=30),
        vehicle_busy: timedelta = timedelta(minutes=2),
        vehicle_offline: timedelta = timedelta(minutes=10),
        rate_limited: timedelta = timedelta(minutes=5),
    ) -> None:
        self.delays = {
            DelayKind.TRANSIENT: transient,
            DelayKind.VEHICLE_BUSY: vehicle_busy,
            DelayKind.VEHICLE_OFFLINE: vehicle_offline,
            DelayKind.RATE_LIMITED: rate_limited,
        }

    def delay_for(self, error: VolterasCommandError) -> timedelta:
        kind = DelayKind(error.delay_kind) if error.delay_kind else DelayKind.TRANSIENT
        delay = self.delays[kind]
        if kind is DelayKind.RATE_LIMITED and error.rate_limit_window_seconds:
            delay = max(delay, timedelta(seconds=error.rate_limit_window_seconds))
        return delay

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        if not isinstance(exception, VolterasCommandError):
            return RetryDecision.default()
        if not exception.retryable:
            return RetryDecision.fail(reason=f"{exception.reason}: not retryable")
        delay = self.delay_for(exception)
        return RetryDecision.retry(
            delay=delay,
            reason=f"{exception.reason} ({exception.delay_kind}): retrying in {delay.total_seconds():.0f} s",
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "__type": "VolterasRetryPolicy",
            "delays": {k.value: v.total_seconds() for k, v in self.delays.items()},
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> VolterasRetryPolicy:
        d = data.get("delays", {})
        return cls(**{k.value: timedelta(seconds=d[k.value]) for k in DelayKind if k.value in d})
