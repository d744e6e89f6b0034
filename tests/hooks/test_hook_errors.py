"""How API answers map to exceptions: class, code, HTTP status, request id, readable message."""

from __future__ import annotations

import pytest

from airflow_provider_volteras._core.answers import parse_execution
from airflow_provider_volteras._core.wire import ApiRequest
from airflow_provider_volteras.exceptions import (
    VolterasApiError,
    VolterasAuthenticationError,
    VolterasCommandInProgressError,
    VolterasNotFoundError,
    VolterasPermissionError,
    VolterasRateLimitError,
    VolterasServerError,
    VolterasUnexpectedResponseError,
    VolterasValidationError,
)

from .conftest import log_entries

VEHICLE = "sim-ok-errors"
RATE_LIMITS = "^/v1/rate-limits$"
POLL = "/command-executions/"


def last(sim, kind: str) -> dict:
    return log_entries(sim, kind=kind)[-1]


def assert_error(err: VolterasApiError, cls: type, code: str | None, status: int, entry: dict) -> None:
    assert type(err) is cls
    assert err.code == code
    assert err.status_code == status
    assert err.request_id == entry["requestId"]
    assert entry["status"] == status
    text = str(err)
    assert f"HTTP status={status}" in text and entry["requestId"] in text
    assert "Traceback" not in text and "JSONDecodeError" not in text and "Expecting value" not in text


def test_authentication_error(sim, connect):
    with pytest.raises(VolterasAuthenticationError) as info:
        connect(secret="bad-secret-0000").get_rate_limits(VEHICLE)
    assert_error(info.value, VolterasAuthenticationError, "AUTHENTICATION_ERROR", 401, last(sim, "token"))
    assert "invalid client credentials" in str(info.value)


def test_not_found_vehicle(sim, connect):
    with pytest.raises(VolterasNotFoundError) as info:
        connect().get_command_execution("sim-missing-car", "exec-1")
    assert_error(info.value, VolterasNotFoundError, "RESOURCE_NOT_FOUND", 404, last(sim, "poll"))
    assert "sim-missing-car" in str(info.value)
    assert sim.state.counters()["polls"] == 1  # not retried


def test_not_found_execution(sim, connect):
    with pytest.raises(VolterasNotFoundError) as info:
        connect().get_command_execution(VEHICLE, "no-such-execution")
    assert_error(info.value, VolterasNotFoundError, "RESOURCE_NOT_FOUND", 404, last(sim, "poll"))
    assert (
        info.value.method == "GET" and info.value.path == f"/v1/vehicles/{VEHICLE}/command-executions/no-such-execution"
    )


def test_not_found_on_create_sends_no_command(sim, connect):
    with pytest.raises(VolterasNotFoundError):
        connect().create_command_execution("sim-missing-1", "CLIMATE_OFF")
    assert sim.state.counters()["createsTotal"] == 0


@pytest.mark.parametrize("status", [400, 422])
def test_validation_error_envelope(sim, connect, status):
    sim.state.add_fault(
        "status", method="GET", path=RATE_LIMITS, status=status, error="REQUEST_VALIDATION_ERROR", message="bad domain"
    )
    with pytest.raises(VolterasValidationError) as info:
        connect().get_rate_limits(VEHICLE)
    assert_error(info.value, VolterasValidationError, "REQUEST_VALIDATION_ERROR", status, last(sim, "rate_limit"))
    assert "bad domain" in str(info.value)
    assert sim.state.counters()["rateLimitRequests"] == 1  # not retried


def test_validation_error_fastapi_detail_shape(sim, connect):
    """The simulator answers FastAPI's ``{"detail": [...]}`` for a malformed body.

    The hook never sends one (arguments are validated first), so the raw request goes through the
    hook's own transport with validation skipped.
    """
    hook = connect()
    request = ApiRequest(
        "POST",
        f"/v1/vehicles/{VEHICLE}/command-execution:set-temperature",
        json_body={"driverTemperature": "warm"},
        creates_command=True,
    )
    with pytest.raises(VolterasValidationError) as info:
        hook._request(request, lambda resp, req: parse_execution(resp, req, vehicle_id=VEHICLE))
    err = info.value
    entry = last(sim, "create")
    assert (err.code, err.status_code, err.request_id) == ("REQUEST_VALIDATION_ERROR", 422, entry["requestId"])
    assert "driverTemperature" in str(err) and "passengerTemperature" in str(err)
    assert isinstance(err.data, list) and err.data
    assert sim.state.counters()["createsTotal"] == 0


def test_command_already_in_progress(sim, connect):
    hook = connect()
    first = hook.create_command_execution("sim-stuck-1", "CLIMATE_ON")
    assert first["status"] == "PENDING"
    with pytest.raises(VolterasCommandInProgressError) as info:
        hook.create_command_execution("sim-stuck-1", "CLIMATE_ON")
    err = info.value
    assert_error(err, VolterasCommandInProgressError, "COMMAND_ALREADY_IN_PROGRESS", 409, last(sim, "create"))
    assert err.data == {"commandExecutionId": first["id"]}
    counters = sim.state.counters()
    assert counters["creates"] == {"sim-stuck-1": {"CLIMATE_ON": 1}}
    assert counters["createAttempts"] == 2


def test_permission_error(sim, connect):
    sim.state.add_fault("status", method="GET", path=RATE_LIMITS, status=403)
    with pytest.raises(VolterasPermissionError) as info:
        connect().get_rate_limits(VEHICLE)
    assert_error(info.value, VolterasPermissionError, "NOT_PERMITTED", 403, last(sim, "rate_limit"))


def test_rate_limited(sim, connect):
    sim.state.add_fault("rate_limit", method="GET", path=RATE_LIMITS, count=None, retry_after=0)
    with pytest.raises(VolterasRateLimitError) as info:
        connect(max_retries=0).get_rate_limits(VEHICLE)
    assert_error(info.value, VolterasRateLimitError, "INTERNAL_RATE_LIMITED", 429, last(sim, "rate_limit"))
    assert info.value.retry_after == 0.0


def test_server_error(sim, connect):
    sim.state.add_fault("status", method="GET", path=RATE_LIMITS, count=None, status=500, message="db is down")
    with pytest.raises(VolterasServerError) as info:
        connect(max_retries=0).get_rate_limits(VEHICLE)
    assert_error(info.value, VolterasServerError, "SERVER_ERROR", 500, last(sim, "rate_limit"))
    assert "db is down" in str(info.value)


def test_non_json_502_gives_clear_message(sim, connect):
    sim.state.add_fault("status", method="GET", path=RATE_LIMITS, count=None, status=502, html=True)
    with pytest.raises(VolterasServerError) as info:
        connect(max_retries=0).get_rate_limits(VEHICLE)
    err = info.value
    assert_error(err, VolterasServerError, None, 502, last(sim, "rate_limit"))
    assert "HTTP 502 with a body that is not JSON (text/html" in str(err)
    assert err.__cause__ is None and err.__context__ is None  # no JSON decoding error chained to it


@pytest.mark.parametrize("code", ["COMMAND_ALREADY_IN_PROGRESS", "RESOURCE_NOT_FOUND"])
def test_error_code_wins_over_http_status(sim, connect, code):
    sim.state.add_fault("status", method="GET", path=RATE_LIMITS, count=None, status=500, error=code)
    expected = {
        "COMMAND_ALREADY_IN_PROGRESS": VolterasCommandInProgressError,
        "RESOURCE_NOT_FOUND": VolterasNotFoundError,
    }
    with pytest.raises(expected[code]) as info:
        connect().get_rate_limits(VEHICLE)
    assert_error(info.value, expected[code], code, 500, last(sim, "rate_limit"))
    assert sim.state.counters()["rateLimitRequests"] == 1  # a non-transient code is not retried despite the 500


@pytest.mark.parametrize(
    ("kind", "options", "needle"),
    [
        ("malformed_json", {}, "not JSON (application/json"),
        ("wrong_shape", {"shape": "missing_status"}, "unknown status"),
        ("wrong_shape", {"shape": "list"}, "expected a command execution object, got list"),
        ("wrong_shape", {"shape": "empty_object"}, "unknown status"),
        ("unknown_status", {"status_value": "CANCELLED"}, "'CANCELLED'"),
    ],
    ids=["malformed-json", "missing-status", "list", "empty-object", "unknown-status"],
)
def test_unexpected_execution_answers(sim, connect, kind, options, needle):
    hook = connect()
    execution = hook.create_command_execution(VEHICLE, "LOCK_DOORS")
    sim.state.add_fault(kind, method="GET", path=POLL, **options)
    with pytest.raises(VolterasUnexpectedResponseError) as info:
        hook.get_command_execution(VEHICLE, execution["id"])
    assert_error(info.value, VolterasUnexpectedResponseError, None, 200, last(sim, "poll"))
    assert needle in str(info.value)
    assert sim.state.counters()["polls"] == 1  # an unreadable answer is not retried blindly


def test_unexpected_page_and_rate_limit_shapes(sim, connect):
    hook = connect()
    sim.state.add_fault("wrong_shape", method="GET", path=r"/command-executions$", shape="list")
    with pytest.raises(VolterasUnexpectedResponseError, match="expected a page with a 'results' list"):
        list(hook.list_command_executions(VEHICLE))
    sim.state.add_fault("wrong_shape", method="GET", path=RATE_LIMITS, shape="empty_object")
    with pytest.raises(VolterasUnexpectedResponseError, match="expected a list of rate limits"):
        hook.get_rate_limits(VEHICLE)


def test_tolerated_answers(sim, connect):
    """Unknown extra fields and a null ``executedAt`` are not errors."""
    hook = connect()
    execution = hook.create_command_execution(VEHICLE, "LOCK_DOORS")
    sim.state.add_fault("extra_fields", method="GET", path=POLL, fields={"priority": "HIGH"})
    got = hook.get_command_execution(VEHICLE, execution["id"])
    assert got["priority"] == "HIGH" and got["id"] == execution["id"]
    sim.state.add_fault("null_executed_at", method="GET", path=POLL)
    got = hook.get_command_execution(VEHICLE, execution["id"])
    assert got["status"] == "EXECUTED" and got["executedAt"] is None


def test_a_failed_connection_test_never_names_the_uis_random_connection_id(sim, monkeypatch):
    """The UI tests a copy of the connection under a random id ('S1Sufeet'): the message must not show it."""
    import json

    from airflow_provider_volteras.hooks.volteras import VolterasHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_S1SUFEET",
        json.dumps(
            {
                "conn_type": "volteras",
                "login": "volteras-sim-client",
                "password": "wrong-secret",
                "host": sim.base_url,
                "extra": {"max_retries": 0, "shared_cache": False},
            }
        ),
    )
    ok, message = VolterasHook(volteras_conn_id="S1Sufeet").test_connection()
    assert ok is False
    assert "S1Sufeet" not in message and "this connection" in message and "refused" in message
