"""Retries of transient failures (5xx, 429, connection errors, timeouts), against the real simulator."""

from __future__ import annotations

import math

import pytest

from airflow_provider_volteras.exceptions import (
    VolterasRateLimitError,
    VolterasServerError,
    VolterasTransportError,
)

from .conftest import log_entries, warnings_of

VEHICLE = "sim-ok-retries"
RATE_LIMITS = "^/v1/rate-limits$"


@pytest.mark.parametrize(
    ("status", "html", "reason"),
    [
        (500, False, "HTTP status=500"),
        (503, False, "HTTP status=503"),
        (502, True, "HTTP 502 with a body that is not JSON (text/html"),
    ],
    ids=["500-json", "503-json", "502-html"],
)
def test_transient_5xx_is_retried_and_logged(sim, connect, hook_logs, status, html, reason):
    hook = connect()
    sim.state.add_fault("status", method="GET", path=RATE_LIMITS, count=2, status=status, html=html)
    result = hook.get_rate_limits(VEHICLE)
    assert result[0]["objectId"] == VEHICLE
    assert [e["status"] for e in log_entries(sim, kind="rate_limit")] == [status, status, 200]
    retry_lines = [w for w in warnings_of(hook_logs) if "retry" in w]
    assert len(retry_lines) == 2
    for n, line in enumerate(retry_lines, start=1):
        assert reason in line
        assert f"retry {n} of 3" in line


def _gap_after_429(sim) -> tuple[float, float]:
    entries = log_entries(sim, kind="rate_limit")[1:]  # after the warm-up call
    assert [e["status"] for e in entries] == [429, 200]
    return entries[0]["time"], entries[1]["time"]


def test_429_retry_after_seconds_is_honoured(sim, connect, hook_logs):
    hook = connect()  # retry_max_wait 0.2: only Retry-After can make the pause longer
    hook.get_rate_limits(VEHICLE)
    sim.state.add_fault("rate_limit", method="GET", path=RATE_LIMITS, count=1, retry_after=1)
    assert hook.get_rate_limits(VEHICLE)
    first, retry = _gap_after_429(sim)
    assert retry - first >= 1.0 - 0.01
    (line,) = [w for w in warnings_of(hook_logs) if "retry" in w]
    assert "HTTP status=429" in line and "INTERNAL_RATE_LIMITED" in line


def test_429_retry_after_http_date_is_honoured(sim, connect):
    hook = connect()
    hook.get_rate_limits(VEHICLE)
    sim.state.add_fault("rate_limit", method="GET", path=RATE_LIMITS, count=1, retry_after=1, retry_after_date=True)
    assert hook.get_rate_limits(VEHICLE)
    first, retry = _gap_after_429(sim)
    # The date sent is ceil(send time) + 1 s, and the 429 was sent after ``first``.
    assert retry >= math.ceil(first) + 1 - 0.01


def test_persistent_429_raises_rate_limit_error(sim, connect):
    hook = connect(max_retries=1)
    sim.state.add_fault("rate_limit", method="GET", path=RATE_LIMITS, count=None, retry_after=0)
    with pytest.raises(VolterasRateLimitError) as info:
        hook.get_rate_limits(VEHICLE)
    entries = log_entries(sim, kind="rate_limit")
    assert len(entries) == 2
    err = info.value
    assert (err.code, err.status_code, err.retry_after) == ("INTERNAL_RATE_LIMITED", 429, 0.0)
    assert err.request_id == entries[-1]["requestId"]


@pytest.mark.parametrize("max_retries", [0, 2, 3])
def test_persistent_500_stops_after_max_retries(sim, connect, max_retries):
    hook = connect(max_retries=max_retries)
    sim.state.add_fault("status", method="GET", path=RATE_LIMITS, count=None, status=500)
    with pytest.raises(VolterasServerError) as info:
        hook.get_rate_limits(VEHICLE)
    entries = log_entries(sim, kind="rate_limit")
    assert len(entries) == max_retries + 1
    assert sim.state.counters()["tokenRequests"] == 1
    assert info.value.status_code == 500
    assert info.value.request_id == entries[-1]["requestId"]


def test_connection_refused_raises_transport_error_not_sent(sim, connect, closed_port, hook_logs):
    hook = connect("volteras_closed", host=f"http://127.0.0.1:{closed_port}", max_retries=1)
    with pytest.raises(VolterasTransportError) as info:
        hook.get_rate_limits(VEHICLE)
    assert info.value.maybe_sent is False
    assert "POST /v1/oauth2/token failed" in str(info.value)
    assert len([w for w in warnings_of(hook_logs) if "retry 1 of 1" in w]) == 1
    assert sim.state.counters()["requests"] == 0


def test_connection_refused_on_create_sends_nothing(sim, connect, closed_port):
    hook = connect("volteras_closed", host=f"http://127.0.0.1:{closed_port}", max_retries=0)
    with pytest.raises(VolterasTransportError) as info:
        hook.create_command_execution(VEHICLE, "CLIMATE_OFF")
    assert info.value.maybe_sent is False


def test_read_timeout_is_retried(sim, connect, hook_logs):
    hook = connect(timeout=0.3)
    hook.get_rate_limits(VEHICLE)
    sim.state.add_fault("slow", method="GET", path=RATE_LIMITS, count=1, delay=1.0)
    assert hook.get_rate_limits(VEHICLE)[0]["objectId"] == VEHICLE
    assert len(log_entries(sim, kind="rate_limit")) == 3
    (line,) = [w for w in warnings_of(hook_logs) if "retry" in w]
    assert "timed out" in line and "GET /v1/rate-limits" in line


def test_persistent_read_timeout_raises_transport_error_maybe_sent(sim, connect):
    hook = connect(timeout=0.2, max_retries=1)
    sim.state.add_fault("slow", method="GET", path=RATE_LIMITS, count=None, delay=0.6)
    with pytest.raises(VolterasTransportError) as info:
        hook.get_rate_limits(VEHICLE)
    assert info.value.maybe_sent is True
    assert "timed out" in str(info.value)
    assert len(log_entries(sim, kind="rate_limit")) == 2


def test_dropped_connection_on_get_is_retried(sim, connect):
    hook = connect()
    hook.get_rate_limits(VEHICLE)
    sim.state.add_fault("drop_before", method="GET", path=RATE_LIMITS, count=1)
    assert hook.get_rate_limits(VEHICLE)[0]["objectId"] == VEHICLE
    assert len(log_entries(sim, kind="rate_limit")) == 3
