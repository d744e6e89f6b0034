"""A hostile-but-plausible API at the transport level (issue 10, items 6 to 13), for the hook and the trigger.

Most cases run against the simulator; a trickling body needs a server of its own, started here on
127.0.0.1 (a thread answering tokens normally and execution reads one byte every half second, an
answer that would take ``TRICKLE_SECONDS`` to arrive whole).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras._core.tokens import TokenCache, renew_flow
from airflow_provider_volteras._core.wire import ApiRequest, RawResponse, drive
from airflow_provider_volteras.exceptions import (
    VolterasConfigurationError,
    VolterasTransportError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.failures import VolterasRetryPolicy, command_failure
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import ClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
from tests.conftest import connection_json

GET_PATH = r"/command-executions/[^/]+$"


async def first_event(trigger: CommandExecutionTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def trigger_for(vehicle_id: str, execution_id: str, seconds: float, **kwargs: Any) -> CommandExecutionTrigger:
    return CommandExecutionTrigger(
        vehicle_id=vehicle_id,
        command_execution_id=execution_id,
        deadline=time.time() + seconds,
        poll_interval=kwargs.pop("poll_interval", 1),
        command="CLIMATE_OFF",
        **kwargs,
    )


# -- 6. endless pagination ------------------------------------------------------------------------------


def _listing_server(monkeypatch: pytest.MonkeyPatch, pages: Any) -> list[str]:
    """Serve listing requests from ``pages(token) -> (results, next_token)``; returns the tokens asked for."""
    asked: list[str] = []

    def send(self: VolterasHook, request: ApiRequest) -> RawResponse:
        token = (request.params or {}).get("pageToken", "")
        asked.append(token)
        results, next_token = pages(token)
        body = json.dumps({"results": results, "nextPageToken": next_token}).encode()
        return RawResponse(200, {"content-type": "application/json"}, body)

    monkeypatch.setattr(VolterasHook, "_send", send)
    monkeypatch.setattr(VolterasHook, "_call", lambda self, request: send(self, request))
    return asked


def test_a_repeated_page_token_ends_the_listing_with_a_clear_error(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _listing_server(monkeypatch, lambda token: ([], "same-token"))
    with pytest.raises(VolterasUnexpectedResponseError, match="repeated page token"):
        list(VolterasHook().list_command_executions("car-pages"))
    assert len(asked) == 2


def test_an_endless_listing_is_capped(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_volteras._core.wire import MAX_LISTING_PAGES

    asked = _listing_server(monkeypatch, lambda token: ([], f"t{len(token) + 1}{token}"))
    with pytest.raises(VolterasUnexpectedResponseError, match="more pages after"):
        list(VolterasHook().list_command_executions("car-pages"))
    assert len(asked) == MAX_LISTING_PAGES


def test_a_create_never_hangs_on_an_endless_listing(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _listing_server(monkeypatch, lambda token: ([], "again"))
    with pytest.raises(VolterasUnexpectedResponseError):
        VolterasHook().create_command_execution("car-pages", "CLIMATE_OFF")


def test_adoption_works_when_the_listing_is_oldest_first(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 earlier executions, a listing in oldest-first order, and a create whose answer is lost."""
    vehicle = "car-oldest-first"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0)
    for _ in range(30):
        sim.state.create_command(vehicle, "CLIMATE_OFF")
    original = VolterasHook.list_command_executions

    def oldest_first(self: VolterasHook, vehicle_id: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return iter(list(reversed(list(original(self, vehicle_id, **kwargs)))))

    monkeypatch.setattr(VolterasHook, "list_command_executions", oldest_first)
    sim.state.add_fault("drop_after", method="POST", path=r"/command-execution:", count=1)
    execution = VolterasHook().create_command_execution(vehicle, "CLIMATE_OFF")
    assert len(sim.state.executions(vehicle)) == 31, "the lost create must be adopted, not sent again"
    assert execution["id"] == sim.state.executions(vehicle)[-1]["id"]


# -- 7. the wait's deadline holds around every poll --------------------------------------------------------

#: How long a trickled execution read would take to arrive whole: what the waits below must not sit out.
#: They are due after seconds (their deadline, a 3 s last read, a 2 s request timeout); the bounds on
#: their time are half of this, so a slow machine cannot fail them but a wait held by the body would.
TRICKLE_SECONDS = 120.0
TRICKLE_BYTE_SECONDS = 0.5


class _Trickle(BaseHTTPRequestHandler):
    """Tokens at once; an execution read answered one byte every half second, ``TRICKLE_SECONDS`` in all."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        vehicle = self.path.split("/")[3]
        body = json.dumps({"id": "e-1", "vehicleId": vehicle, "command": "CLIMATE_OFF", "status": "PENDING"}).encode()
        body = body.ljust(int(TRICKLE_SECONDS / TRICKLE_BYTE_SECONDS))  # JSON allows trailing spaces
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(TRICKLE_BYTE_SECONDS)
        except OSError:
            pass  # the client gave up, as it should


@pytest.fixture
def trickle(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", connection_json(url, timeout=5, max_retries=0))
    yield url
    server.shutdown()
    server.server_close()


def test_a_trickling_body_cannot_hold_the_hooks_wait_past_its_deadline(trickle: str) -> None:
    started = time.monotonic()
    final = VolterasHook().wait_for_command_execution("car-trickle", "e-1", deadline=time.time() + 2, poll_interval=1)
    elapsed = time.monotonic() - started
    assert final is None
    # Excluded: reading the trickled answer to its end (TRICKLE_SECONDS).
    assert elapsed < TRICKLE_SECONDS / 2, f"the wait took {elapsed:.1f} s for a 2 s deadline (3 s final read)"


def test_a_trickling_body_cannot_hold_the_trigger_past_its_deadline(trickle: str) -> None:
    started = time.monotonic()
    payload = asyncio.run(first_event(trigger_for("car-trickle", "e-1", 2)))
    elapsed = time.monotonic() - started
    assert payload["status"] == "timeout"
    # Excluded: reading the trickled answer to its end (TRICKLE_SECONDS).
    assert elapsed < TRICKLE_SECONDS / 2, f"the trigger took {elapsed:.1f} s for a 2 s deadline (3 s final read)"


def test_a_trickling_body_is_cut_by_the_request_timeout_outside_a_wait(trickle: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", connection_json(trickle, timeout=2, max_retries=0))
    started = time.monotonic()
    with pytest.raises(VolterasTransportError, match="timed out"):
        VolterasHook().get_command_execution("car-trickle", "e-1")
    # Excluded: reading the trickled answer to its end (TRICKLE_SECONDS); the 2 s timeout cuts it.
    assert time.monotonic() - started < TRICKLE_SECONDS / 2


@pytest.mark.parametrize("transport", ["hook", "trigger"])
def test_503s_do_not_stretch_the_deadline(sim: Any, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    # The retry policy alone would go on for minutes: 20 retries, the backoff growing to a minute each
    # (0.5, 1, 2 ... 32, 60, 60 ... s; 120 s by the 8th), within the 300 s retry budget.
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        connection_json(sim.base_url, max_retries=20, retry_max_wait=60, timeout=5),
    )
    sim.state.set_scenario("car-503", outcome="EXECUTED", delay=60)
    execution = sim.state.create_command("car-503", "CLIMATE_OFF")
    sim.state.add_fault("status", method="GET", path=GET_PATH, count=None, status=503, retry_after=None)
    started = time.monotonic()
    if transport == "hook":
        VolterasHook().wait_for_command_execution("car-503", execution["id"], deadline=time.time() + 2)
    else:
        assert asyncio.run(first_event(trigger_for("car-503", execution["id"], 2)))["status"] == "timeout"
    elapsed = time.monotonic() - started
    # Due after the 2 s deadline and a 3 s last read. Excluded: following the retry schedule (120 s and more).
    assert elapsed < 60, f"503s stretched a 2 s deadline to {elapsed:.1f} s"
    assert sim.state.counters()["faultsApplied"] >= 2  # the 503s were met (and retried or cut)


@pytest.mark.parametrize("transport", ["hook", "trigger"])
def test_a_wait_that_starts_after_its_deadline_still_reads_the_status_once(sim: Any, transport: str) -> None:
    """Item 11: a trigger resumed late must not report a timeout for a command that EXECUTED."""
    sim.state.set_scenario("car-late", outcome="EXECUTED", delay=0)
    execution = sim.state.create_command("car-late", "CLIMATE_OFF")
    if transport == "hook":
        final = VolterasHook().wait_for_command_execution("car-late", execution["id"], deadline=time.time() - 5)
        assert final is not None and final["status"] == "EXECUTED"
    else:
        payload = asyncio.run(first_event(trigger_for("car-late", execution["id"], -5)))
        assert payload["status"] == "executed", payload


# -- 8. no token storm when a token lives shorter than the refresh lead -------------------------------------


def test_short_lived_tokens_do_not_cause_a_token_request_per_call(sim: Any) -> None:
    sim.state.configure(token_ttl=30)  # shorter than the default 60 s refresh lead
    hook = VolterasHook()
    for _ in range(10):
        hook.get_rate_limits("car-storm")
    assert sim.state.counters()["tokenRequests"] == 1


def test_short_lived_tokens_do_not_cause_a_token_storm_in_the_triggerer(sim: Any) -> None:
    sim.state.configure(token_ttl=30)
    sim.state.set_scenario("car-storm-t", outcome="EXECUTED", delay=2)
    ids = [sim.state.create_command(f"car-storm-{i}", "CLIMATE_OFF")["id"] for i in range(20)]

    async def all_of_them() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger_for(f"car-storm-{i}", e, 20)) for i, e in enumerate(ids)))

    payloads = asyncio.run(all_of_them())
    assert {p["status"] for p in payloads} == {"executed"}
    assert sim.state.counters()["tokenRequests"] == 1


# -- 9. a broken refresh grant falls back to client credentials --------------------------------------------


def _settings() -> ClientSettings:
    return ClientSettings(base_url="https://api.example.test", client_id="c", client_secret="s")


def _token(access: str) -> RawResponse:
    body = json.dumps({"access_token": access, "expires_in": 3600, "refresh_token": f"r-{access}"}).encode()
    return RawResponse(200, {"content-type": "application/json"}, body)


@pytest.mark.parametrize(
    "refresh_answer",
    [
        RawResponse(500, {}, b'{"error": "SERVER_ERROR", "message": "boom"}'),
        RawResponse(200, {"content-type": "application/json"}, b'{"token_type": "Bearer"}'),
        RawResponse(200, {"content-type": "text/html"}, b"<html>proxy</html>"),
        RawResponse(401, {}, b'{"error": "AUTHENTICATION_ERROR", "message": "unknown refresh token"}'),
        VolterasTransportError("POST /v1/oauth2/token failed: reset", maybe_sent=True),
    ],
    ids=["500", "no-access-token", "not-json", "401", "no-answer"],
)
def test_any_refresh_failure_falls_back_to_client_credentials(refresh_answer: Any) -> None:
    settings, cache = _settings(), TokenCache()
    cache.store(settings, "old", "r-old", 3600)
    grants: list[str] = []

    def step(request: ApiRequest) -> RawResponse:
        grant = (request.form or {})["grant_type"]
        grants.append(grant)
        if grant == "refresh_token":
            if isinstance(refresh_answer, Exception):
                raise refresh_answer
            return refresh_answer
        return _token("fresh")

    access, _ = drive(renew_flow(settings, cache), step)
    assert access == "fresh" and grants == ["refresh_token", "client_credentials"]
    assert cache.refresh_token(settings) == "r-fresh"  # the broken refresh token is gone for good


# -- 10. ids the API issued ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["hook", "trigger", "sensor"])
def test_base64_shaped_execution_ids_work_end_to_end(sim: Any, transport: str) -> None:
    vehicle = "sim-b64-car"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.5)
    execution = VolterasHook().create_command_execution(vehicle, "CLIMATE_OFF")
    assert any(c in execution["id"] for c in "+/="), execution["id"]
    if transport == "hook":
        final = VolterasHook().wait_for_command_execution(vehicle, execution["id"], deadline=time.time() + 10)
        assert final is not None and final["status"] == "EXECUTED"
    elif transport == "trigger":
        assert asyncio.run(first_event(trigger_for(vehicle, execution["id"], 10)))["status"] == "executed"
    else:
        sensor = CommandExecutionSensor(
            task_id="w", vehicle_id=vehicle, command_execution_id=execution["id"], deferrable=False, timeout=10
        )
        assert sensor.execute({})["status"] == "EXECUTED"


# -- 12. argument bounds are the vehicle's, not the provider's ---------------------------------------------


def test_arguments_the_api_accepts_are_not_refused_by_the_provider(sim: Any) -> None:
    hook = VolterasHook()
    hook.create_command_execution("car-cold", "SET_TEMPERATURE", {"driverTemperature": 10, "passengerTemperature": 31})
    hook.create_command_execution("car-low-limit", "SET_CHARGE_LIMIT", {"limit": 20})
    assert sim.state.counters()["createsTotal"] == 2


def test_a_vehicle_that_refuses_an_argument_fails_the_task_with_the_apis_message(sim: Any) -> None:
    from airflow_provider_volteras.exceptions import VolterasFatalCommandError
    from airflow_provider_volteras.operators.commands import SetChargeLimitOperator

    op = SetChargeLimitOperator(task_id="t", vehicle_id="sim-strict-1", limit=20, deferrable=False)
    with pytest.raises(VolterasFatalCommandError) as info:
        op.execute({"task_state_store": None, "ti": type("Ti", (), {"xcom_push": lambda *a, **k: None})()})
    assert "limit must be between 50 and 100" in str(info.value) and "sim-strict-1" in str(info.value)


# -- 13. smaller ones -----------------------------------------------------------------------------------------


def test_plain_http_to_loopback_never_goes_through_an_environment_proxy(sim: Any, monkeypatch: Any) -> None:
    """A proxy that received the Basic secret in clear: the hook (and aiohttp) ignore HTTP_PROXY here."""
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(self.headers.get("authorization", ""))
            self.send_response(502)
            self.end_headers()

        do_GET = do_POST

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert VolterasHook().get_rate_limits("car-proxy")
        sim.state.set_scenario("car-proxy", outcome="EXECUTED", delay=0)
        execution = sim.state.create_command("car-proxy", "CLIMATE_OFF")
        assert asyncio.run(first_event(trigger_for("car-proxy", execution["id"], 10)))["status"] == "executed"
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert seen == []


@pytest.mark.parametrize("transport", ["hook", "trigger"])
def test_a_missing_ca_bundle_is_a_connection_error(sim: Any, monkeypatch: Any, transport: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        json.dumps(
            {
                "conn_type": "volteras",
                "login": "volteras-sim-client",
                "password": "volteras-sim-secret",
                "host": "https://api.example.test",
                "extra": {"ca_bundle": "/nonexistent/ca.pem"},
            }
        ),
    )
    if transport == "hook":
        with pytest.raises(VolterasConfigurationError, match="ca_bundle"):
            VolterasHook().get_rate_limits("car-ca")
    else:
        payload = asyncio.run(first_event(trigger_for("car-ca", "e-1", 5)))
        assert payload["status"] == "error" and payload["error"]["retryable"] is False
        assert "ca_bundle" in payload["error"]["message"]


def test_an_extra_that_is_a_json_list_is_a_connection_error() -> None:
    class Conn:
        conn_id, login, password, host, schema, port = "v", "c", "s", None, None, None
        extra_dejson = ["timeout", 5]

    with pytest.raises(VolterasConfigurationError, match="JSON object"):
        ClientSettings.from_connection(Conn())


def test_a_huge_rate_limit_window_does_not_overflow_the_retry_policy() -> None:
    error = command_failure(
        {"id": "e", "status": "FAILED", "failedReason": "OEM_RATE_LIMITED"}, vehicle_id="v", command="CLIMATE_OFF"
    )
    error.rate_limit_window_seconds = 10**14
    delay = VolterasRetryPolicy().delay_for(error)
    assert timedelta(minutes=5) <= delay <= timedelta(days=1)


@pytest.mark.parametrize("value", [0.001, 0, -1])
def test_a_poll_interval_below_the_floor_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        ClimateOffOperator(task_id="t", vehicle_id="car-1", poll_interval=value)
    with pytest.raises(ValueError, match="poll_interval"):
        trigger_for("car-1", "e-1", 10, poll_interval=value)


# -- issue 12, item 6: a long wait says it is still waiting ---------------------------------------------------


def test_a_long_wait_logs_its_progress(sim: Any, monkeypatch: Any, capsys: Any) -> None:
    from airflow_provider_volteras._core import waiting

    monkeypatch.setattr(waiting, "PROGRESS_FIRST", 2.0)
    monkeypatch.setattr(waiting, "PROGRESS_EVERY", 2.0)
    sim.state.set_scenario("car-progress", outcome="EXECUTED", delay=5.5)
    execution = sim.state.create_command("car-progress", "CLIMATE_OFF")
    payload = asyncio.run(first_event(trigger_for("car-progress", execution["id"], 20)))
    assert payload["status"] == "executed"
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "status PENDING after" in line]
    assert 1 <= len(lines) <= 3, out
    assert "next check in" in lines[0] and execution["id"] in lines[0]
