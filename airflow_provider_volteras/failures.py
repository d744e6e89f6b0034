"""The failure taxonomy: what each ``failedReason`` means, whether a retry can help, and how long to wait.

Every one of the 36 documented ``failedReason`` codes is classified here, once. Operators and the
sensor turn a failed execution into ``VolterasRetryableCommandError`` or ``VolterasFatalCommandError``
through :func:`command_failure`, and :class:`VolterasRetryPolicy` (an Airflow 3.3 ``retry_policy``)
picks the retry delay from the reason's delay kind.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_volteras._compat import HAS_TASK_STATE_STORE, RetryDecision, RetryPolicy, retry_policy_ignored
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
            "Ask the vehicle owner to update the manufacturer's app.",
        ),
        _f(
            "OEM_USER_ACCOUNT_LOCKED",
            "the owner's account with the manufacturer is locked",
            "The owner must unlock the manufacturer account.",
        ),
        _f(
            "OEM_OAUTH_TOKEN_EXPIRED",
            "the owner's consent (manufacturer OAuth token) has expired",
            "Ask the owner to reconnect the vehicle to Volteras.",
        ),
        _r("OEM_VEHICLE_OFFLINE", _O, "the vehicle is offline and cannot be reached"),
        _f(
            "OEM_VEHICLE_REMOTE_ACCESS_DISABLED",
            "remote access is disabled or consent for Volteras is missing",
            "The owner must enable remote access / grant consent (see the execution's details).",
        ),
        _f(
            "OEM_VEHICLE_LOCATION_SHARING_DISABLED",
            "the vehicle's location sharing is disabled",
            "The owner must enable location sharing.",
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
    "Report the reason to Volteras if it persists.",
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


# -- message building --------------------------------------------------------------------------------
#
# Every task failure reads the same way: a short first line (what, on which vehicle, the outcome and
# whether Airflow retries), then one detail per line, then what to do. Text that came from the API (or
# from a user's template) goes through :func:`safe_text` first: capped, and with newlines and other
# control characters escaped, so it can neither flood a log or a trigger event nor forge a log line.

#: Longest piece of API-provided text put into a message, in characters.
API_TEXT_LIMIT = 300
#: The task state store key a command operator keeps its execution under (``_core.intent.STATE_KEY``).
STATE_KEY = "volteras_command_execution"

TaskKind = Literal["operator", "sensor"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def safe_text(value: Any, limit: int = API_TEXT_LIMIT) -> str:
    """``value`` as one printable line: control, format and line/paragraph-separator characters escaped
    (``\\n``, ``\\x1b``, ``\\u2028``), cut after ``limit`` characters with a note of how much was left out."""
    text = value if isinstance(value, str) else str(value)
    head = text[:limit]
    out = []
    for ch in head:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    if len(text) > limit:
        out.append(f"... [{len(text) - limit} more characters not shown]")
    return "".join(out)


def _ident(value: Any) -> str:
    """A vehicle id, command or task id for a message (validated ones pass unchanged)."""
    return safe_text(value, 80)


def _outcome_note(retryable: bool, task_kind: TaskKind = "operator") -> str:
    if task_kind == "sensor":
        # A FAILED execution never changes: retrying a sensor that read one would read it again.
        return "Airflow will NOT retry this sensor: it would read the same FAILED execution"
    if not retryable:
        return "fatal: Airflow will NOT retry the task"
    return "retryable: Airflow will retry the task"


def _headline(command: str, vehicle_id: str, outcome: str, retryable: bool, task_kind: TaskKind = "operator") -> str:
    return f"{_ident(command)} on vehicle {_ident(vehicle_id)} {outcome} ({_outcome_note(retryable, task_kind)})"


def _lines(headline: str, *details: str) -> str:
    return "\n".join([headline, *(f"  {d}" for d in details if d)])


def state_store_steps(task_id: str | None = None, *, map_index: int | None = None) -> str:
    """How to make a single-vehicle command task forget what it sent: delete its state-store entry, then
    clear it. Only needed when the outcome of a create is unknown; after a ``FAILED`` execution a Clear is
    enough (:func:`clear_steps`)."""
    which = f"task '{_ident(task_id)}'" if task_id else "this task"
    task = _ident(task_id) if task_id else "{task_id}"
    opening = f"open the task instance of {which} in this DAG run" if task_id else "open this task instance"
    if map_index is not None:
        opening += f" (map index {map_index})"
    query = f"?map_index={map_index}" if map_index is not None else ""
    if not HAS_TASK_STATE_STORE:  # Airflow 3.1 and 3.2: the record is an Airflow Variable (_compat.py)
        variable = f"{STATE_KEY}:{{dag_id}}:{task}:{-1 if map_index is None else map_index}:{{run_id}}"
        return (
            f"in the Airflow UI, open Admin > Variables, delete the Variable '{variable}' (the task's log names "
            f"it), then Clear {which}. Or trigger a new DAG run. (REST API: DELETE /api/v2/variables/{variable}, "
            "then clear the task.)"
        )
    return (
        f"{opening} in the Airflow UI, go to its Storage tab (Task State Store), delete "
        f"the key '{STATE_KEY}', then Clear {which}. Or trigger a new DAG run. (REST API: DELETE "
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"
        f"/taskInstances/{task}/state-store/{STATE_KEY}{query}, then clear the task.)"
    )


def clear_steps(task_id: str | None = None) -> str:
    """How a person sends a command again after a ``FAILED`` execution: Clear the task that sent it."""
    which = f"task '{_ident(task_id)}'" if task_id else "this task"
    return (
        f"Clear {which} in the Airflow UI. The first try after a person's Clear sends one new command for a "
        "command that FAILED (Airflow's own retries never send again after a fatal FAILED); one still pending "
        "is waited for, one that EXECUTED is not sent again."
    )


def recovery_steps(retryable: bool, *, task_kind: TaskKind = "operator", sent_by: str | None = None) -> str:
    """What to do after a ``FAILED`` execution, as steps that work for the task that failed.

    ``task_kind`` is ``"operator"`` for a command operator (it sent the command itself) and ``"sensor"``
    for ``CommandExecutionSensor`` (it only watches; ``sent_by`` is the task id that sent the command,
    when known).
    """
    if task_kind == "sensor":
        sender = f"task '{_ident(sent_by)}'" if sent_by else "the upstream task that sent it"
        when = "" if retryable else " once the cause is fixed"
        who = f"it was sent by {sender}" if sent_by else "the upstream task sent it"
        # The action first, on a line of its own: it is the one thing to read (the UI cuts long log lines).
        return (
            f"To send the command again{when}: Clear {sender} with Downstream selected (or this sensor with "
            "Upstream selected): the sending task sends one new command and this sensor waits for that one.\n"
            f"  This sensor only watches the command; {who}. Clearing this sensor alone only reads the same FAILED "
            "execution again."
        )
    if retryable:
        return "A retry sends the command again (after a delay that fits the reason with VolterasRetryPolicy)."
    return f"To send the command again once the cause is fixed: {clear_steps()}"


def _describe(vehicle_id: str, command: str, execution_id: str | None) -> str:
    execution = f" (execution {_ident(execution_id)})" if execution_id else ""
    return f"{_ident(command)} on vehicle {_ident(vehicle_id)}{execution}"


def _retry_note(retryable: bool) -> str:
    return "Airflow will retry the task." if retryable else "Airflow will NOT retry the task."


def command_failure(
    execution: dict[str, Any],
    *,
    vehicle_id: str,
    command: str,
    retryable_reasons: Iterable[str] = (),
    fatal_reasons: Iterable[str] = (),
    task_kind: TaskKind = "operator",
    sent_by: str | None = None,
) -> VolterasCommandError:
    """Build the task exception for a ``FAILED`` execution.

    ``task_kind`` and ``sent_by`` choose the recovery steps: see :func:`recovery_steps`.
    """
    raw = execution.get("failedReason")
    classification = classify_reason(raw, retryable_reasons=retryable_reasons, fatal_reasons=fatal_reasons)
    execution_id = execution.get("id")
    reason = safe_text(classification.reason, 120)
    documented = "" if classification.known else " (not a documented reason; treated as retryable)"
    action = classification.action if classification.action != "Airflow retries the task." else ""
    message = _lines(
        _headline(
            command, vehicle_id, f"FAILED: {safe_text(classification.reason, 60)}", classification.retryable, task_kind
        ),
        f"Execution: {_ident(execution_id) if execution_id else 'unknown'}",
        f"Reason: {reason}{documented}: {classification.meaning}.",
        f"What to do: {action}" if action else "",
        recovery_steps(classification.retryable, task_kind=task_kind, sent_by=sent_by),
    )
    # A sensor's retry cannot change a FAILED execution: it fails at once, whatever the reason.
    retry = classification.retryable and task_kind != "sensor"
    cls = VolterasRetryableCommandError if retry else VolterasFatalCommandError
    return cls(
        message,
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason=classification.reason if classification.known else reason,
        delay_kind=classification.delay_kind.value,
    )


def already_final(error: VolterasCommandError, *, task_id: str | None = None) -> VolterasFatalCommandError:
    """An automatic retry of a command operator found that an earlier try already got a fatal ``FAILED``.

    Nothing is sent; the message says how to send it again (a person's Clear).
    """
    _, _, rest = str(error).partition("\n")
    details = [line.strip() for line in rest.splitlines() if line.strip() and "send the command again" not in line]
    message = _lines(
        _headline(error.command, error.vehicle_id, f"FAILED in an earlier try: {safe_text(error.reason, 120)}", False),
        "Not sent again: an earlier try of this task already got this final answer, and this try is one of "
        "Airflow's own retries, not a person's Clear.",
        *details,
        f"To send the command again once the cause is fixed: {clear_steps(task_id)}",
    )
    return VolterasFatalCommandError(
        message,
        vehicle_id=error.vehicle_id,
        command=error.command,
        execution_id=error.execution_id,
        reason=error.reason,
        delay_kind=error.delay_kind,
    )


def pending_at_deadline(
    vehicle_id: str,
    command: str,
    execution_id: str | None,
    waited: float,
    *,
    status_read: bool = True,
    task_kind: TaskKind = "operator",
) -> VolterasCommandError:
    """The command was still ``PENDING`` (or its status could not be read) when the task's wait ran out."""
    outcome = "still PENDING at the task's timeout" if status_read else "outcome UNKNOWN at the task's timeout"
    state = (
        f"The execution was still PENDING after {waited:.0f} s, the task's timeout."
        if status_read
        else f"Its status could not be read during the wait ({waited:.0f} s; every status check failed), so its "
        "outcome is unknown."
    )
    then = (
        "A retry of this sensor waits for the same execution again (a sensor never sends a command)."
        if task_kind == "sensor"
        else "A retry re-attaches to this execution while it is pending and sends a new command only if it "
        "failed for a retryable reason."
    )
    return VolterasRetryableCommandError(
        _lines(
            _headline(command, vehicle_id, outcome, True, "operator"),
            f"Execution: {_ident(execution_id) if execution_id else 'unknown'}",
            f"{state} Whether the vehicle will act on it is unknown; the platform fails commands pending for "
            "5 minutes.",
            then,
        ),
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason="PENDING_AT_DEADLINE" if status_read else "STATUS_UNKNOWN_AT_DEADLINE",
        delay_kind=DelayKind.TRANSIENT.value,
    )


def describe_error(error: BaseException) -> str:
    """One line about an API or input error, its API-provided text capped and escaped."""
    if isinstance(error, VolterasApiError):
        where = f"{safe_text(error.method, 10)} {safe_text(error.path, 200)}: " if error.method and error.path else ""
        detail = ", ".join(
            f"{k}={safe_text(v, 120)}"
            for k, v in (("code", error.code), ("HTTP status", error.status_code), ("requestId", error.request_id))
            if v is not None
        )
        return f"{where}{safe_text(error.api_message)}" + (f" ({detail})" if detail else "")
    return safe_text(str(error))


def error_code(error: BaseException) -> str:
    """The API's error code, or the exception's class name when the API gave none (never ``None``)."""
    code = getattr(error, "code", None)
    return safe_text(code, 120) if isinstance(code, str) and code.strip() else type(error).__name__


def api_failure(
    error: Exception,
    *,
    vehicle_id: str,
    command: str,
    execution_id: str | None = None,
    task_kind: TaskKind = "operator",
    sent_by: str | None = None,
    sent: bool = False,
) -> VolterasCommandError:
    """Map an API or input error met while sending or watching a command to a task exception.

    ``sent``: the command was already sent (the error came while watching it), so no hint may say
    "nothing was sent".

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
    code = error_code(error)
    hint = ""
    if isinstance(error, VolterasAuthenticationError):
        hint = "Check the connection's client id and secret and that the client has the vehicle:commands scope."
    elif isinstance(error, VolterasNotFoundError):
        hint = "Check the vehicle id (and execution id) against your Volteras organization."
    elif isinstance(error, VolterasInvalidInputError):
        hint = "Fix the task's arguments." if sent else "Fix the task's arguments (nothing was sent)."
    elif isinstance(error, VolterasValidationError):
        hint = "Fix the task's arguments."
    elif isinstance(error, VolterasConfigurationError):
        hint = (
            "Fix the Airflow connection where this wait runs (the triggerer or worker); the command was already "
            "sent, and a retry re-attaches to it."
            if sent
            else "Fix the Airflow connection (nothing was sent)."
        )
    elif isinstance(error, VolterasPermissionError):
        hint = "Ask Volteras to enable this action for your organization."
    if task_kind == "sensor":
        outcome = "could not be checked"
        sender = f"task '{_ident(sent_by)}'" if sent_by else "the upstream task that sent it"
        then = f"The command was sent by {sender}; this sensor only watches it."
    else:
        outcome = "refused before sending" if isinstance(error, VolterasInvalidInputError) else "not completed"
        then = (
            "A retry never sends a second copy of a command an earlier try sent: it re-attaches to it first."
            if retryable
            else ""
        )
    message = _lines(
        _headline(command, vehicle_id, f"{outcome}: {code}", retryable, "operator"),
        f"Execution: {_ident(execution_id)}" if execution_id else "",
        f"Error: {describe_error(error)}",
        f"What to do: {hint}" if hint else "",
        then,
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


def unexpected_outcome(
    vehicle_id: str, command: str, execution_id: str | None, what: Any, *, reason: str
) -> VolterasRetryableCommandError:
    """The wait ended with an answer this provider cannot believe (an unknown status or event, an answer
    about another execution): the outcome is unknown, and the task retries. ``what`` is shown escaped."""
    return VolterasRetryableCommandError(
        _lines(
            _headline(command, vehicle_id, "outcome UNKNOWN", True),
            f"Execution: {_ident(execution_id) if execution_id else 'unknown'}",
            f"Answer: {safe_text(what, 200)}",
            "A retry re-attaches to the execution (or checks it again) before anything is sent.",
        ),
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason=reason,
    )


def arguments_changed(
    vehicle_id: str, command: str, execution_id: str | None, problem: str, *, status: Any
) -> VolterasFatalCommandError:
    """The API reports the command with other arguments than the task asked for (e.g. a clamped limit)."""
    return VolterasFatalCommandError(
        _lines(
            _headline(command, vehicle_id, f"{safe_text(status, 20)} with other arguments than asked", False),
            f"Execution: {_ident(execution_id) if execution_id else 'unknown'}",
            f"Answer: {safe_text(problem, 400)}.",
            "The vehicle was not given what this task asked for, so the task does not succeed. It is not sent "
            "again on its own (the API would change the same request the same way).",
            "What to do: ask for arguments the vehicle accepts (see its limits in the Volteras dashboard), then "
            "send again with a new run.",
        ),
        vehicle_id=vehicle_id,
        command=command,
        execution_id=execution_id,
        reason="ARGUMENTS_CHANGED",
    )


def sender_task_id(command_execution_id: Any) -> str | None:
    """The id of the task a sensor's ``command_execution_id`` comes from, when the DAG says so.

    ``op.output["id"]`` (an ``XComArg``) names its operator; a template such as
    ``"{{ ti.xcom_pull(task_ids='send')['id'] }}"`` names its task in ``task_ids``. ``None`` otherwise.
    """
    operator = getattr(command_execution_id, "operator", None)
    task_id = getattr(operator, "task_id", None)
    if isinstance(task_id, str):
        return task_id
    if isinstance(command_execution_id, str):
        match = _TASK_IDS.search(command_execution_id)
        if match:
            return match.group(1)
    return None


_TASK_IDS = re.compile(r"""task_ids\s*=\s*['"]([A-Za-z0-9_.\-]+)['"]""")


#: The longest rate-limit window a retry waits for, whatever ``/v1/rate-limits`` says.
MAX_RATE_LIMIT_WINDOW = timedelta(days=1)


class VolterasRetryPolicy(RetryPolicy):
    """An Airflow 3.3 ``retry_policy`` that waits as long as the failure's nature calls for.

    Pass it to any Volteras task (``retry_policy=VolterasRetryPolicy()``). Fatal command failures
    fail at once; retryable ones wait by delay kind; a rate-limited failure waits at least the
    vehicle's rate-limit window when the operator could read it from ``/v1/rate-limits``. Other
    exceptions fall through to the task's own ``retry_delay``. The task's ``retries`` still caps the
    number of tries.

    Airflow 3.1 and 3.2 have no ``retry_policy``: give it through ``default_args``, which those releases
    ignore (``docs/airflow-versions.md``); creating one there says once in the log that it has no effect.
    """

    def __init__(
        self,
        *,
        transient: timedelta = timedelta(seconds=30),
        vehicle_busy: timedelta = timedelta(minutes=2),
        vehicle_offline: timedelta = timedelta(minutes=10),
        rate_limited: timedelta = timedelta(minutes=5),
    ) -> None:
        retry_policy_ignored()
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
            # The window comes from the API: believe it up to a day (a huge one would overflow timedelta).
            window = min(float(error.rate_limit_window_seconds), MAX_RATE_LIMIT_WINDOW.total_seconds())
            delay = max(delay, timedelta(seconds=window))
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
        delays = data.get("delays", {})
        return cls(**{kind.value: timedelta(seconds=delays[kind.value]) for kind in DelayKind if kind.value in delays})
