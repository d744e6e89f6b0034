"""Fault matrix: every injected fault, against the hook (sync) and the trigger (async), table-driven.

Each row states the documented outcome: the command executed (retried, or its lost answer adopted),
failed with the reason the API gave, or ended in a provider error that is retryable or fatal with a
clear message. Every run also checks the number of commands the simulator created (one per try at
most, none when the error came before the create) and that only ``VolterasError`` subclasses escape.

Hook runs send ``CLIMATE_OFF`` with ``create_command_execution`` and wait with
``wait_for_command_execution``. Trigger runs wait, with ``CommandExecutionTrigger.run()``, for an
execution created straight in the simulator state (the trigger itself never creates anything).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_volteras.exceptions import (
    VolterasAuthenticationError,
    VolterasCommandError,
    VolterasError,
    VolterasFatalCommandError,
    VolterasNotFoundError,
    VolterasRateLimitError,
    VolterasRetryableCommandError,
    VolterasServerError,
    VolterasTransportError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.failures import api_failure, command_failure
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import VolterasCommandOperator
from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

from ._support import STATS, assert_documented, collect_events, creates, use_connection

POLL = r"/command-executions/[^/]+$"
CREATE = r"/command-execution:climate-off$"
LIST = r"/command-executions$"
TOKEN = r"^/v1/oauth2/token$"
TEXT_REASON = "Vehicle did not respond"
#: Deadline, in seconds, of the hook's wait and (unless a row says otherwise) of the trigger's. No row
#: should sit it out, and none is given more than half of it (``Case.max_elapsed``): a slow machine
#: stretches a run by seconds, while a fault that stalls a wait until its deadline costs a minute.
WAIT_DEADLINE = 60.0


def fault(kind: str, path: str, count: int | None = 1, **kwargs: Any) -> dict[str, Any]:
    method = "POST" if path in (CREATE, TOKEN) else "GET"
    return {"kind": kind, "path": path, "method": method, "count": count, **kwargs}


@dataclass(frozen=True)
class Case:
    name: str
    faults: tuple[dict[str, Any], ...] = ()
    outcome: str = "executed"  # executed | failed | error
    error: type[VolterasError] | None = None
    retryable: bool | None = None  # the task's fate for errors and failures (api_failure / command_failure)
    message: tuple[str, ...] = ()  # substrings of the error message
    creates: int = 1  # hook runs; trigger runs always wait for the one execution made beforehand
    create_attempts: int | None = None  # hook runs: POSTs that reached the simulator (1 = lost answer adopted)
    vehicle: str = "sim-ok"
    delay: float | None = None  # seconds the command stays PENDING (magic -d suffix)
    extra: dict[str, Any] = field(default_factory=dict)  # connection extras
    expire_tokens: bool = False  # every access token expires after the create (between polls)
    revoke_scope: bool = False  # the client loses vehicle:commands
    token_requests: int | None = None
    min_elapsed: float = 0.0
    # Not a speed limit: the run did not sit out the wait's deadline (WAIT_DEADLINE) or a long pause
    # the server asked for (see the rows that lower it); at most half of what it excludes.
    max_elapsed: float = WAIT_DEADLINE / 2
    hook_only: bool = False
    # The trigger treats transient and unreadable poll failures as recoverable until its deadline
    # (documented): where the hook gives up with an error, the trigger ends in a "timeout" event.
    trigger_outcome: str | None = None
    trigger_deadline: float = WAIT_DEADLINE
    final_has: tuple[tuple[str, Any], ...] = ()  # (key, value) the final execution carries
    # Seconds of 404s a wait tolerates as a read-after-write lag (the default is 60 s).
    not_found_grace: float | None = None

    def vehicle_id(self, transport: str) -> str:
        suffix = f"-d{self.delay:g}" if self.delay is not None else ""
        return f"{self.vehicle}-{transport}-{self.name}{suffix}"


RETRY_AFTER = {"retry_after": 1}
RETRY_AFTER_DATE = {"retry_after": 1, "retry_after_date": True}
NOT_JSON = ("not JSON",)
SERVER = {"outcome": "error", "error": VolterasServerError, "retryable": True, "creates": 0}

CASES: tuple[Case, ...] = (
    # --- faults on the poll (GET execution): both transports ------------------------------------------
    Case("poll-500", (fault("status", POLL, 2, status=500),)),
    Case("poll-502-html", (fault("status", POLL, 2, status=502, html=True),)),
    Case("poll-503", (fault("status", POLL, 1, status=503),)),
    Case("poll-429-retry-after-seconds", (fault("rate_limit", POLL, 1, **RETRY_AFTER),), min_elapsed=0.95),
    Case("poll-429-retry-after-date", (fault("rate_limit", POLL, 1, **RETRY_AFTER_DATE),), min_elapsed=0.85),
    Case(
        "poll-429-retry-after-beyond-budget",  # an hour-long Retry-After must not stall the wait
        (fault("rate_limit", POLL, 1, retry_after=3600),),
        extra={"retry_total_seconds": 2},
        # Excluded: the 3600 s pause, and sitting out the 60 s deadline instead.
        max_elapsed=WAIT_DEADLINE / 2,
    ),
    Case("poll-reset-before-sent", (fault("drop_before", POLL, 2),)),
    Case("poll-reset-after-sent", (fault("drop_after", POLL, 2),)),
    Case("poll-reset-rst", (fault("drop_before", POLL, 1, reset=True),)),
    Case("poll-read-timeout", (fault("slow", POLL, 1, delay=1.2),), extra={"timeout": 0.4}),
    Case("poll-malformed-json", (fault("malformed_json", POLL, 2),)),
    Case("poll-wrong-shape-missing-status", (fault("wrong_shape", POLL, 2, shape="missing_status"),)),
    Case("poll-wrong-shape-list", (fault("wrong_shape", POLL, 2, shape="list"),)),
    Case("poll-wrong-shape-empty-object", (fault("wrong_shape", POLL, 2, shape="empty_object"),)),
    Case("poll-unknown-status", (fault("unknown_status", POLL, 2),)),
    Case("poll-unknown-status-lowercase", (fault("unknown_status", POLL, 2, status_value="executed"),)),
    Case(
        "poll-extra-fields",
        (fault("extra_fields", POLL, None),),
        final_has=(("oemRequestId", "sim-oem-request"), ("status", "EXECUTED")),
    ),
    Case("poll-executed-at-null", (fault("null_executed_at", POLL, 1),), final_has=(("executedAt", None),)),
    Case(
        "failed-reason-plain-string",
        vehicle="sim-fail-text",
        outcome="failed",
        retryable=True,
        message=(TEXT_REASON, "Airflow will retry"),
        final_has=(("failedReason", TEXT_REASON), ("status", "FAILED")),
    ),
    Case(
        "poll-404-lag",
        (fault("status", POLL, 2, status=404),),
    ),
    Case(
        "poll-404",
        (fault("status", POLL, None, status=404),),
        not_found_grace=2.0,
        outcome="error",
        error=VolterasNotFoundError,
        retryable=False,
        message=("RESOURCE_NOT_FOUND", "HTTP status=404", "Check the vehicle id"),
    ),
    Case(
        "poll-401-once-on-fresh-token",
        (fault("unauthorized", POLL, 1),),
        token_requests=2,
    ),
    Case(
        "poll-401-twice-on-fresh-token",
        (fault("unauthorized", POLL, 2),),
        outcome="error",
        error=VolterasAuthenticationError,
        retryable=False,
        message=("refused a freshly issued token", "vehicle:commands"),
        token_requests=2,
    ),
    Case("token-expires-between-polls", expire_tokens=True, token_requests=2),
    # --- the token endpoint ------------------------------------------------------------------------
    Case("token-500-once", (fault("status", TOKEN, 1, status=500),), token_requests=2),
    Case("token-reset-once", (fault("drop_before", TOKEN, 1),), token_requests=2),
    Case("token-429-once", (fault("rate_limit", TOKEN, 1, retry_after=0),), token_requests=2),
    Case(
        "token-502-html-always",
        (fault("status", TOKEN, None, status=502, html=True),),
        message=("POST /v1/oauth2/token", "HTTP 502", "not JSON (text/html"),
        token_requests=4,
        trigger_outcome="timeout",
        trigger_deadline=2.5,
        **SERVER,
    ),
    Case(
        "token-refused",
        (fault("unauthorized", TOKEN, None),),
        outcome="error",
        error=VolterasAuthenticationError,
        retryable=False,
        creates=0,
        message=("client id or secret of connection 'volteras_default' was refused",),
        token_requests=1,
    ),
    Case(
        "token-malformed-json",
        (fault("malformed_json", TOKEN, None),),
        outcome="error",
        error=VolterasUnexpectedResponseError,
        retryable=True,
        creates=0,
        message=("POST /v1/oauth2/token", *NOT_JSON),
        token_requests=1,
        trigger_outcome="timeout",
        trigger_deadline=2.5,
    ),
    # --- faults on the create (POST command-execution:...): hook only ------------------------------
    Case("create-500", (fault("status", CREATE, 1, status=500),), create_attempts=2, hook_only=True),
    Case(
        "create-500-applied", (fault("status", CREATE, 1, status=500, apply=True),), create_attempts=1, hook_only=True
    ),
    Case("create-502-html", (fault("status", CREATE, 1, status=502, html=True),), create_attempts=2, hook_only=True),
    Case(
        "create-502-html-applied",
        (fault("status", CREATE, 1, status=502, html=True, apply=True),),
        create_attempts=1,
        hook_only=True,
    ),
    Case("create-503", (fault("status", CREATE, 1, status=503),), create_attempts=2, hook_only=True),
    Case(
        "create-429-retry-after-seconds",
        (fault("rate_limit", CREATE, 1, **RETRY_AFTER),),
        create_attempts=2,
        min_elapsed=0.95,
        hook_only=True,
    ),
    Case(
        "create-429-retry-after-date",
        (fault("rate_limit", CREATE, 1, **RETRY_AFTER_DATE),),
        create_attempts=2,
        min_elapsed=0.85,
        hook_only=True,
    ),
    # No answer, and no telling whether the server saw the request: it is never sent again in the call
    # (the task's next try looks for it first, see tests/lifecycle).
    Case(
        "create-reset-before-sent",
        (fault("drop_before", CREATE, 1),),
        outcome="error",
        error=VolterasTransportError,
        retryable=True,
        creates=0,
        create_attempts=1,
        hook_only=True,
    ),
    Case("create-reset-after-sent", (fault("drop_after", CREATE, 1),), create_attempts=1, hook_only=True),
    Case(
        "create-read-timeout-applied",
        (fault("slow", CREATE, 1, delay=1.2, apply=True),),
        extra={"timeout": 0.4},
        create_attempts=1,
        hook_only=True,
    ),
    Case(
        # The answer comes only after the client gave up, and the simulator did not apply it: the client
        # cannot tell, so it never sends again in the call (a later try looks for it first).
        "create-read-timeout-late",
        (fault("slow", CREATE, 1, delay=0.9),),
        extra={"timeout": 0.4},
        delay=2.0,
        outcome="error",
        error=VolterasTransportError,
        retryable=True,
        creates=0,
        create_attempts=None,
        hook_only=True,
    ),
    Case("create-malformed-json", (fault("malformed_json", CREATE, 1),), create_attempts=1, hook_only=True),
    Case(
        "create-wrong-shape-missing-status",
        (fault("wrong_shape", CREATE, 1, shape="missing_status"),),
        create_attempts=1,
        hook_only=True,
    ),
    Case(
        "create-wrong-shape-list", (fault("wrong_shape", CREATE, 1, shape="list"),), create_attempts=1, hook_only=True
    ),
    Case(
        "create-wrong-shape-empty-object",
        (fault("wrong_shape", CREATE, 1, shape="empty_object"),),
        create_attempts=1,
        hook_only=True,
    ),
    Case("create-unknown-status", (fault("unknown_status", CREATE, 1),), create_attempts=1, hook_only=True),
    Case("create-extra-fields", (fault("extra_fields", CREATE, 1),), create_attempts=1, hook_only=True),
    Case("create-executed-at-null", (fault("null_executed_at", CREATE, 1),), create_attempts=1, hook_only=True),
    Case(
        "create-500-always",
        (fault("status", CREATE, None, status=500),),
        message=("POST /v1/vehicles/", "HTTP status=500", "SERVER_ERROR"),
        create_attempts=4,
        hook_only=True,
        **SERVER,
    ),
    Case(
        "create-429-always",
        (fault("rate_limit", CREATE, None, retry_after=0),),
        outcome="error",
        error=VolterasRateLimitError,
        retryable=True,
        creates=0,
        create_attempts=4,
        message=("INTERNAL_RATE_LIMITED", "HTTP status=429"),
        hook_only=True,
    ),
    Case(
        "create-429-retry-after-beyond-budget",
        (fault("rate_limit", CREATE, None, retry_after=3600),),
        extra={"retry_total_seconds": 2},
        outcome="error",
        error=VolterasRateLimitError,
        retryable=True,
        creates=0,
        create_attempts=1,
        max_elapsed=60,  # excluded: the 3600 s pause the server asked for (the 2 s retry budget refuses it)
        hook_only=True,
    ),
    Case(
        "create-401-twice-on-fresh-token",
        (fault("unauthorized", CREATE, 2),),
        outcome="error",
        error=VolterasAuthenticationError,
        retryable=False,
        creates=0,
        create_attempts=2,
        message=("refused a freshly issued token", "vehicle:commands"),
        token_requests=2,
        hook_only=True,
    ),
    Case(
        "create-scope-revoked",
        revoke_scope=True,
        outcome="error",
        error=VolterasAuthenticationError,
        retryable=False,
        creates=0,
        create_attempts=2,
        message=("refused a freshly issued token", "vehicle:commands"),
        hook_only=True,
    ),
    Case(
        "list-malformed-json",  # the baseline listing before the create is unreadable: nothing is sent
        (fault("malformed_json", LIST, None),),
        outcome="error",
        error=VolterasUnexpectedResponseError,
        retryable=True,
        creates=0,
        create_attempts=0,
        message=("GET /v1/vehicles/", *NOT_JSON),
        hook_only=True,
    ),
    Case("list-500-once", (fault("status", LIST, 1, status=500),), create_attempts=1, hook_only=True),
)


def _params(transport: str) -> list[Any]:
    rows = [c for c in CASES if transport == "hook" or not c.hook_only]
    return [
        pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.min_elapsed >= 0.5 or c.delay else []) for c in rows
    ]


def _arrange(sim: Any, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    use_connection(monkeypatch, sim, **case.extra)
    if case.not_found_grace is not None:
        from airflow_provider_volteras._core import waiting

        monkeypatch.setattr(waiting, "NOT_FOUND_GRACE", case.not_found_grace)
    if case.revoke_scope:
        sim.state.configure(grant_commands_scope=False)
    for spec in case.faults:
        spec = dict(spec)
        sim.state.add_fault(spec.pop("kind"), **spec)


def _check_common(sim: Any, case: Case, elapsed: float, *, same_outcome: bool = True) -> None:
    counters = sim.state.counters()
    if case.faults:
        assert counters["faultsApplied"] >= 1, "the fault never fired: the row tests nothing"
    STATS["fault_runs"] += 1
    STATS["faults_applied"] += counters["faultsApplied"] + case.expire_tokens + case.revoke_scope
    if case.token_requests is not None and same_outcome:
        assert counters["tokenRequests"] == case.token_requests, counters["tokenRequestsByGrant"]
    if case.expire_tokens:
        assert counters["tokenRequestsByGrant"]["refresh_token"] == 1
    assert case.min_elapsed <= elapsed <= case.max_elapsed, f"took {elapsed:.2f} s"


def _check_message(case: Case, text: str) -> None:
    for part in case.message:
        assert part in text, f"{part!r} not in message: {text}"


@pytest.mark.parametrize("case", _params("hook"))
def test_hook_fault(sim: Any, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    _arrange(sim, monkeypatch, case)
    vehicle_id = case.vehicle_id("hook")
    hook = VolterasHook()
    created: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    raised: BaseException | None = None
    started = time.monotonic()
    try:
        created = hook.create_command_execution(vehicle_id, "CLIMATE_OFF")
        if case.expire_tokens:
            assert sim.state.expire_tokens() == 1
        final = hook.wait_for_command_execution(
            vehicle_id, created["id"], deadline=time.time() + WAIT_DEADLINE, poll_interval=0.2
        )
    except BaseException as err:  # noqa: BLE001 - the point is to see whatever escapes
        raised = err
    finally:
        hook.close()
    elapsed = time.monotonic() - started

    counters = sim.state.counters()
    assert creates(sim, vehicle_id) == case.creates, counters["creates"]
    if case.create_attempts is not None:
        assert counters["createAttempts"] == case.create_attempts
    _check_common(sim, case, elapsed)

    if case.outcome == "error":
        assert raised is not None, f"expected {case.error.__name__}, got {final}"
        assert_documented(raised)
        assert isinstance(raised, case.error), repr(raised)
        failure = api_failure(raised, vehicle_id=vehicle_id, command="CLIMATE_OFF")  # what the task reports
        assert failure.retryable is case.retryable
        _check_message(case, str(failure))
        return
    if raised is not None:
        assert_documented(raised)
        pytest.fail(f"expected {case.outcome}, got {raised!r}")
    assert created is not None and final is not None, "the wait ended without a terminal execution"
    (execution,) = sim.state.executions(vehicle_id)
    assert created["id"] == final["id"] == execution["id"], "reported an execution the simulator did not create"
    assert final["vehicleId"] == vehicle_id and final["command"] == "CLIMATE_OFF"
    assert final["status"] == ("EXECUTED" if case.outcome == "executed" else "FAILED")
    for key, value in case.final_has:
        assert final.get(key) == value, final
    if case.outcome == "failed":
        failure = command_failure(final, vehicle_id=vehicle_id, command="CLIMATE_OFF")
        assert failure.retryable is case.retryable
        _check_message(case, str(failure))


def _operator(vehicle_id: str) -> VolterasCommandOperator:
    return VolterasCommandOperator(task_id="t", vehicle_id=vehicle_id, command="CLIMATE_OFF", timeout=20)


def _complete(vehicle_id: str, execution_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The command task resumed with the trigger's event, as Airflow resumes it."""
    return _operator(vehicle_id).execute_complete(
        {}, payload, settled={}, pending={vehicle_id: execution_id}, reattached=[]
    )


@pytest.mark.parametrize("case", _params("trigger"))
async def test_trigger_fault(sim: Any, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """The command operators' trigger (a fleet of one) under each fault, and the task resumed with its event."""
    _arrange(sim, monkeypatch, case)
    vehicle_id = case.vehicle_id("trigger")
    execution = sim.state.create_command(vehicle_id, "CLIMATE_OFF")
    if case.expire_tokens:
        VolterasHook().get_access_token()  # a cached token that then expires before the first poll
        assert sim.state.expire_tokens() == 1
    trigger = FleetCommandTrigger(
        command="CLIMATE_OFF",
        executions={vehicle_id: execution["id"]},
        deadline=time.time() + case.trigger_deadline,
        poll_interval=0.2,
    )
    started = time.monotonic()
    try:
        events = await collect_events(trigger)
    except BaseException as err:  # noqa: BLE001
        assert_documented(err)
        pytest.fail(f"the trigger raised instead of yielding an event: {err!r}")
    elapsed = time.monotonic() - started

    counters = sim.state.counters()
    assert creates(sim, vehicle_id) == 1 and counters["createAttempts"] == 0, "a trigger must never create"
    outcome = case.trigger_outcome or case.outcome
    _check_common(sim, case, elapsed, same_outcome=case.trigger_outcome is None)
    assert len(events) == 1, events
    payload = events[0].payload
    assert payload["status"] == "done" and payload["command"] == "CLIMATE_OFF", payload
    [wait] = payload["outcomes"]
    assert wait["vehicle_id"] == vehicle_id and wait["execution_id"] == execution["id"]

    if outcome == "timeout":
        assert wait["status"] == "PENDING" and wait["status_read"] is False, wait
        # No poll got an answer: the task must not claim the command is still pending, only that its
        # outcome is unknown.
        with pytest.raises(VolterasRetryableCommandError, match="could not be read during the wait") as info:
            _complete(vehicle_id, execution["id"], payload)
        assert "still PENDING" not in str(info.value) and info.value.reason == "STATUS_UNKNOWN_AT_DEADLINE"
        return
    if outcome == "error":
        assert wait["status"] == "ERROR", wait
        error = wait["error"]
        assert error["retryable"] is case.retryable
        _check_message(case, error["message"])
        expected: type[VolterasCommandError] = (
            VolterasRetryableCommandError if case.retryable else VolterasFatalCommandError
        )
        with pytest.raises(VolterasCommandError) as info:
            _complete(vehicle_id, execution["id"], payload)
        # The task fails exactly as the trigger's failure says: same class, reason and delay kind.
        assert type(info.value) is expected
        assert info.value.reason == error["reason"] and info.value.delay_kind == error["delay_kind"]
        assert str(info.value) == error["message"]
        return
    assert wait["status"] == outcome.upper(), wait
    if outcome == "executed":
        final = _complete(vehicle_id, execution["id"], payload)
        assert final["id"] == execution["id"] and final["vehicleId"] == vehicle_id
        assert final["status"] == "EXECUTED" and final["command"] == "CLIMATE_OFF"
        for key, value in case.final_has:
            if key in final:  # the event carries the execution's documented fields only
                assert final.get(key) == value, final
    else:
        with pytest.raises(VolterasCommandError) as info:
            _complete(vehicle_id, execution["id"], payload)
        assert info.value.retryable is case.retryable
        _check_message(case, str(info.value))


def test_matrix_covers_every_fault_kind() -> None:
    """Every fault kind the simulator offers appears in the table, on both transports where it can."""
    from airflow_provider_volteras.simulator import FAULT_KINDS

    kinds = {f["kind"] for c in CASES for f in c.faults}
    assert kinds == set(FAULT_KINDS)
    trigger_kinds = {f["kind"] for c in CASES if not c.hook_only for f in c.faults}
    assert trigger_kinds == set(FAULT_KINDS)
