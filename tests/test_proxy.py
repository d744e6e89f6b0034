"""Hook and triggers reach an https API through a real CONNECT proxy (issue 17, item 3).

The simulator serves https with a self-signed certificate given as ``ca_bundle``; ``tests/_proxy.py``'s
proxy on 127.0.0.1 tunnels to it, asks for credentials when told to, or refuses every tunnel. Tests check
what the proxy saw (tunnels, credentials) and what the simulator received.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from airflow_provider_volteras._core import tokens
from airflow_provider_volteras._core.proxy import bypassed, choose_proxy
from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras.exceptions import VolterasConfigurationError, VolterasTransportError
from airflow_provider_volteras.hooks._async import AsyncVolterasClient
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger
from tests._proxy import ConnectProxy, self_signed_certificate
from tests.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
#: Few, fast retries: a refused tunnel is retried like any transport failure.
RETRIES = 2


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_server(certificate: tuple[Path, Path]) -> Iterator[Any]:
    from airflow_provider_volteras.simulator import SimulatorServer

    cert, key = certificate
    with SimulatorServer(
        port=0,
        default_delay=0.3,
        client_id=SIM_CLIENT_ID,
        client_secret=SIM_CLIENT_SECRET,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    ) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        yield server


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES + NO_PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_sim(https_server: Any) -> Iterator[Any]:
    """The https simulator, reset, with a cold token cache."""
    https_server.state.reset()
    https_server.state.configure(default_delay=0.3, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET)
    tokens.TOKEN_CACHE.clear()
    yield https_server
    tokens.TOKEN_CACHE.clear()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as running:
        yield running


class Logs:
    """Every log line of the test so far, from the standard logging (triggers) and structlog (the hook)."""

    def __init__(self, caplog: pytest.LogCaptureFixture, events: list[Any]) -> None:
        self.caplog, self.events = caplog, events

    def __iter__(self) -> Iterator[str]:
        yield from (json.dumps(event, default=str) for event in self.events)
        yield from (record.getMessage() for record in self.caplog.records)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        yield Logs(caplog, events)


def use(
    monkeypatch: pytest.MonkeyPatch,
    server: Any,
    certificate: tuple[Path, Path] | None,
    conn_id: str = "volteras_default",
    **extra: Any,
) -> str:
    """Point ``conn_id`` at ``server`` (``ca_bundle``: the certificate), with fast retries and ``extra``."""
    settings: dict[str, Any] = {
        "max_retries": RETRIES,
        "retry_max_wait": 0.1,
        "timeout": 5,
        "connect_timeout": 5,
        "shared_cache": False,
    }
    if certificate is not None:
        settings["ca_bundle"] = str(certificate[0])
    connection = {
        "conn_type": "volteras",
        "login": SIM_CLIENT_ID,
        "password": server.state.config.client_secret,
        "host": server.base_url,
        "extra": {**settings, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    return conn_id


def api_requests(server: Any, kind: str | None = None) -> list[dict[str, Any]]:
    return server.state.request_log(kind=kind)


def target(server: Any) -> str:
    return f"127.0.0.1:{server.port}"


def fresh_secret(server: Any) -> str:
    """A client secret no earlier test showed the process-wide masker."""
    secret = f"Vsecret-{uuid.uuid4().hex}"
    server.state.configure(client_secret=secret)
    return secret


def executed(server: Any, vehicle_id: str) -> str:
    """An execution that the simulator will report EXECUTED shortly (created without any client)."""
    server.state.set_scenario(vehicle_id, outcome="EXECUTED", delay=0.5)
    return str(server.state.create_command(vehicle_id, "CLIMATE_OFF")["id"])


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger yielded no event")


def assert_not_shown(texts: list[str], *secrets: str) -> None:
    for secret in secrets:
        leaks = [text for text in texts if secret in text]
        assert not leaks, f"{secret[:4]}... shown in {leaks[:1]}"


# -- the hook ---------------------------------------------------------------------------------------------


def test_the_hook_reaches_the_https_api_through_the_proxy_extra(tls_sim, certificate, proxy, monkeypatch):
    use(monkeypatch, tls_sim, certificate, proxy=proxy.url)
    hook = VolterasHook()
    execution = hook.create_command_execution("px-hook-1", "CLIMATE_OFF")
    assert hook.get_command_execution("px-hook-1", execution["id"])["id"] == execution["id"]

    assert proxy.log.opened >= 1 and proxy.log.refused == 0
    assert set(proxy.log.connects) == {target(tls_sim)} and proxy.log.forwarded == []
    kinds = [entry["kind"] for entry in api_requests(tls_sim)]
    assert kinds.count("token") == 1 and kinds.count("create") == 1 and kinds.count("poll") == 1
    assert [e["vehicleId"] for e in api_requests(tls_sim, "create")] == ["px-hook-1"]


def test_the_hook_honours_https_proxy_from_the_environment(tls_sim, certificate, proxy, monkeypatch):
    use(monkeypatch, tls_sim, certificate)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert VolterasHook().get_rate_limits("px-env-1")
    assert proxy.log.opened >= 1 and set(proxy.log.connects) == {target(tls_sim)}
    assert [e["kind"] for e in api_requests(tls_sim)] == ["token", "rate_limit"]


@pytest.mark.parametrize(
    ("no_proxy", "with_extra", "through_proxy"),
    [
        ("127.0.0.1", False, False),
        ("localhost,127.0.0.0/8", False, False),
        (".example.com,10.0.0.0/8", False, True),
        ("127.0.0.1", True, True),  # the connection's proxy extra wins over NO_PROXY
    ],
)
def test_no_proxy_sends_the_hook_direct(tls_sim, certificate, proxy, monkeypatch, no_proxy, with_extra, through_proxy):
    use(monkeypatch, tls_sim, certificate, **({"proxy": proxy.url} if with_extra else {}))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert VolterasHook().get_rate_limits("px-noproxy")
    assert (proxy.log.opened >= 1) is through_proxy and (proxy.log.connects != []) is through_proxy
    assert [e["kind"] for e in api_requests(tls_sim)] == ["token", "rate_limit"]


def test_a_proxy_that_asks_for_credentials_gets_them_from_the_extra(tls_sim, certificate, monkeypatch, logs):
    secret = fresh_secret(tls_sim)
    password = f"p@ss:{uuid.uuid4().hex}"
    with ConnectProxy(credentials=("alice", password)) as proxy:
        use(monkeypatch, tls_sim, certificate, proxy=proxy.url_with("alice", password))
        hook = VolterasHook()
        execution = hook.create_command_execution("px-cred-1", "CLIMATE_OFF")
        hook.get_command_execution("px-cred-1", execution["id"])
    expected = "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()
    assert proxy.log.opened >= 1 and proxy.log.refused == 0
    assert set(proxy.log.authorizations) == {expected}
    assert [e["vehicleId"] for e in api_requests(tls_sim, "create")] == ["px-cred-1"]
    assert_not_shown([*logs, repr(hook.settings), repr(hook.proxy)], password, secret)


def test_wrong_proxy_credentials_are_a_clear_retryable_error(tls_sim, certificate, monkeypatch, logs):
    secret = fresh_secret(tls_sim)
    wrong = f"wrong-{uuid.uuid4().hex}"
    with ConnectProxy(credentials=("alice", "right-password")) as proxy:
        use(monkeypatch, tls_sim, certificate, proxy=proxy.url_with("alice", wrong))
        with pytest.raises(VolterasTransportError) as info:
            VolterasHook().get_rate_limits("px-cred-2")
    err = info.value
    text = str(err)
    assert err.maybe_sent is False
    assert proxy.url in text and "refused the tunnel" in text and "407" in text
    assert "user and password in the connection's proxy extra" in text
    assert proxy.log.refused == RETRIES + 1 and proxy.log.opened == 0  # retried, like any transport failure
    assert api_requests(tls_sim) == []  # nothing reached the API
    assert any(proxy.url in line for line in logs)  # the retries' log lines name the proxy
    assert_not_shown([text, repr(err), repr(vars(err)), *logs], wrong, secret)


def test_a_refused_tunnel_is_a_clear_retryable_error_naming_the_proxy(tls_sim, certificate, monkeypatch, logs):
    secret = fresh_secret(tls_sim)
    password = f"pw-{uuid.uuid4().hex}"
    with ConnectProxy(refuse=403) as proxy:
        use(monkeypatch, tls_sim, certificate, proxy=proxy.url_with("bob", password))
        hook = VolterasHook()
        with pytest.raises(VolterasTransportError) as info:
            hook.get_rate_limits("px-refused")
        ok, message = hook.test_connection()
    err = info.value
    text = str(err)
    assert err.maybe_sent is False
    assert f"the proxy {proxy.url} (from the connection's proxy extra) refused the tunnel to {target(tls_sim)}" in text
    assert "403" in text and f"Check that the proxy allows CONNECT to {target(tls_sim)}" in text
    assert "Nothing reached the API" in text
    assert not ok and proxy.url in message
    assert api_requests(tls_sim) == []
    assert_not_shown([text, repr(err), message, *logs], password, secret)


def test_an_unreachable_proxy_says_so(tls_sim, certificate, monkeypatch):
    with ConnectProxy() as gone:
        url = gone.url
    use(monkeypatch, tls_sim, certificate, proxy=url, max_retries=0)
    with pytest.raises(VolterasTransportError) as info:
        VolterasHook().get_rate_limits("px-gone")
    assert info.value.maybe_sent is False
    assert f"could not reach the proxy {url} (from the connection's proxy extra)" in str(info.value)
    assert api_requests(tls_sim) == []


def test_a_create_through_a_refusing_proxy_was_not_sent_and_is_sent_once_when_retried(
    tls_sim, certificate, monkeypatch
):
    """A refused tunnel is "not sent": a create can be sent again safely (it was "maybe applied" before)."""
    use(monkeypatch, tls_sim, certificate)
    VolterasHook().get_access_token()  # a token is held: the create's own request meets the proxy
    with ConnectProxy(refuse=403) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        hook = VolterasHook()
        with pytest.raises(VolterasTransportError) as info:
            hook.create_command_execution("px-create", "SET_CHARGE_LIMIT", {"limit": 80}, before=set())
        assert info.value.maybe_sent is False
        assert proxy.log.refused == RETRIES + 1  # sent again on each retry: safe, nothing got through
        assert api_requests(tls_sim, "create") == [] and tls_sim.state.executions("px-create") == []

        proxy.refuse = None  # the proxy lets it through now: the retry sends it, once
        execution = VolterasHook().create_command_execution("px-create", "SET_CHARGE_LIMIT", {"limit": 80})
    assert [e["id"] for e in tls_sim.state.executions("px-create")] == [execution["id"]]
    assert len(api_requests(tls_sim, "create")) == 1 and proxy.log.opened >= 1


def test_plain_http_to_loopback_never_goes_through_a_configured_proxy(sim, proxy, monkeypatch):
    """The http simulator (``sim``), a ``proxy`` extra and every proxy variable set: all goes direct."""
    use(monkeypatch, sim, None, proxy=proxy.url)
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy.url)
    hook = VolterasHook()
    assert hook.proxy is None
    execution_id = hook.create_command_execution("px-plain", "CLIMATE_OFF")["id"]
    sim.state.set_scenario("px-plain", outcome="EXECUTED", delay=0)
    payload = asyncio.run(first_event(trigger_for("px-plain", execution_id)))
    assert payload["status"] == "executed"
    assert proxy.log.connects == [] and proxy.log.forwarded == [] and proxy.log.opened == 0
    assert {e["kind"] for e in sim.state.request_log()} >= {"token", "create", "poll"}


# -- the triggers -----------------------------------------------------------------------------------------


def trigger_for(vehicle_id: str, execution_id: str, seconds: float = 20) -> CommandExecutionTrigger:
    return CommandExecutionTrigger(
        vehicle_id=vehicle_id,
        command_execution_id=execution_id,
        deadline=time.time() + seconds,
        poll_interval=1,
        command="CLIMATE_OFF",
    )


async def test_the_trigger_waits_through_the_proxy_extra(tls_sim, certificate, proxy, monkeypatch):
    use(monkeypatch, tls_sim, certificate, proxy=proxy.url)
    execution_id = executed(tls_sim, "px-trig-1")
    payload = await first_event(trigger_for("px-trig-1", execution_id))
    assert payload["status"] == "executed" and payload["execution"]["id"] == execution_id
    assert proxy.log.opened >= 1 and set(proxy.log.connects) == {target(tls_sim)}
    polls = api_requests(tls_sim, "poll")
    assert polls and all(e["vehicleId"] == "px-trig-1" for e in polls)


async def test_the_fleet_trigger_honours_https_proxy_with_credentials(tls_sim, certificate, monkeypatch, logs):
    password = f"fleet-{uuid.uuid4().hex}"
    with ConnectProxy(credentials=("carol", password)) as proxy:
        use(monkeypatch, tls_sim, certificate)
        monkeypatch.setenv("https_proxy", proxy.url_with("carol", password))
        executions = {vid: executed(tls_sim, vid) for vid in ("px-fleet-1", "px-fleet-2")}
        trigger = FleetCommandTrigger(
            command="CLIMATE_OFF", executions=executions, deadline=time.time() + 20, poll_interval=1
        )
        payload = await first_event(trigger)
    assert payload["status"] == "done", payload
    assert {o["vehicle_id"]: o["status"] for o in payload["outcomes"]} == dict.fromkeys(executions, "EXECUTED")
    assert proxy.log.opened >= 1 and proxy.log.refused == 0
    assert {e["vehicleId"] for e in api_requests(tls_sim, "poll")} == set(executions)
    assert_not_shown(logs, password)


@pytest.mark.parametrize(
    ("credentials", "refuse", "expected"),
    [
        (None, 403, "refused the tunnel to {target} with HTTP 403"),
        (("dave", "right"), None, "with HTTP 407: it refused the credentials. Check the user and password in the "),
        (("erin", "right"), None, "with HTTP 407: it asks for credentials. Put them in the connection's proxy extra"),
    ],
    ids=["refused", "wrong-credentials", "no-credentials"],
)
async def test_the_async_client_says_which_proxy_refused_and_why(
    tls_sim, certificate, monkeypatch, logs, credentials, refuse, expected
):
    secret = fresh_secret(tls_sim)
    wrong = f"wrong-{uuid.uuid4().hex}"
    with ConnectProxy(credentials=credentials, refuse=refuse) as proxy:
        given = proxy.url if expected.endswith("proxy extra") else proxy.url_with("someone", wrong)
        conn_id = use(monkeypatch, tls_sim, certificate, "volteras_px_async", proxy=given)
        async with AsyncVolterasClient.open(conn_id) as client:
            with pytest.raises(VolterasTransportError) as info:
                await client.get_command_execution("px-async", "exec-1")
    text = str(info.value)
    assert info.value.maybe_sent is False
    assert f"the proxy {proxy.url} (from the connection's proxy extra)" in text
    assert expected.format(target=target(tls_sim)) in text and "Nothing reached the API" in text
    assert proxy.log.refused == RETRIES + 1 and api_requests(tls_sim) == []
    assert_not_shown([text, repr(info.value), *logs], wrong, secret)


async def test_a_trigger_behind_a_refusing_proxy_logs_the_proxy_never_a_secret(tls_sim, certificate, monkeypatch, logs):
    secret = fresh_secret(tls_sim)
    password = f"pw-{uuid.uuid4().hex}"
    with ConnectProxy(refuse=403) as proxy:
        use(monkeypatch, tls_sim, certificate, proxy=proxy.url_with("frank", password))
        payload = await first_event(trigger_for("px-trig-refused", "exec-1", seconds=3))
    # Failed polls are logged and retried until the wait's deadline; nothing was ever read.
    assert payload["status"] == "timeout" and payload["execution"] is None, payload
    assert proxy.log.refused >= 1 and api_requests(tls_sim) == []
    assert any(proxy.url in line and "refused the tunnel" in line for line in logs), list(logs)[-5:]
    assert_not_shown([json.dumps(payload), *logs], password, secret)


# -- the decision (core, no I/O) and the settings ---------------------------------------------------------


def settings_for(host: str = "https://api.volteras.com", **extra: Any) -> ClientSettings:
    conn = SimpleNamespace(conn_id="c1", login="cid", password="csecret", host=host, port=None, extra_dejson=extra)
    return ClientSettings.from_connection(conn)


@pytest.mark.parametrize(
    ("environ", "chosen"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://up:1"}, "http://up:1"),
        ({"HTTPS_PROXY": "up:3128"}, "http://up:3128"),
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, "http://low:1"),
        ({"https_proxy": "", "HTTPS_PROXY": "http://up:1"}, None),  # an empty lower-case one unsets
        ({"HTTP_PROXY": "http://h:1", "ALL_PROXY": "http://a:1"}, None),  # https only reads HTTPS_PROXY
        ({"HTTPS_PROXY": "http://up:1", "NO_PROXY": "volteras.com"}, None),
        ({"HTTPS_PROXY": "http://up:1", "no_proxy": "*"}, None),
        ({"HTTPS_PROXY": "http://up:1", "NO_PROXY": "api.volteras.com:8443"}, "http://up:1"),
        ({"HTTPS_PROXY": "http://up:1", "NO_PROXY": "other.com"}, "http://up:1"),
    ],
)
def test_which_proxy_the_core_chooses(environ, chosen):
    proxy = choose_proxy(settings_for(), environ)
    assert (proxy.url if proxy else None) == chosen


def test_the_proxy_extra_wins_and_plain_http_never_has_a_proxy():
    environ = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*", "HTTP_PROXY": "http://env:1"}
    chosen = choose_proxy(settings_for(proxy="http://u:p%40ss@extra:3128"), environ)
    assert chosen is not None and chosen.url == "http://extra:3128" and chosen.source == "the connection's proxy extra"
    assert (chosen.username, chosen.password) == ("u", "p@ss")
    assert chosen.with_credentials == "http://u:p%40ss@extra:3128"
    for host in ("http://127.0.0.1:8080", "http://localhost"):
        assert choose_proxy(settings_for(host, proxy="http://extra:3128"), environ) is None
    insecure = settings_for("http://api.internal", proxy="http://extra:3128", allow_insecure_http=True)
    assert choose_proxy(insecure, environ) is None


def test_no_proxy_entries():
    assert bypassed("api.volteras.com", 443, ".volteras.com") and bypassed("api.volteras.com", 443, "volteras.com")
    assert not bypassed("notvolteras.com", 443, "volteras.com")
    assert bypassed("10.1.2.3", 443, "10.0.0.0/8") and not bypassed("11.1.2.3", 443, "10.0.0.0/8")
    assert bypassed("::1", 443, "[::1]:443") and not bypassed("::1", 443, "[::1]:80")


def test_a_bad_proxy_is_a_configuration_error_that_never_shows_its_password():
    for value, words in (
        ("socks5://u:pw-secret-1@h:1080", "only http:// proxies"),
        ("http://u:pw-secret-1@h:99999", "not a valid URL"),
        ("http://u:pw-secret-1@h:3128/path", "without a path"),
    ):
        with pytest.raises(VolterasConfigurationError, match=words) as info:
            settings_for(proxy=value)
        assert "pw-secret-1" not in str(info.value) and "Connection 'c1'" in str(info.value)
        with pytest.raises(VolterasConfigurationError, match="HTTPS_PROXY environment variable") as info:
            choose_proxy(settings_for(), {"HTTPS_PROXY": value})
        assert "pw-secret-1" not in str(info.value)


def test_the_proxy_extra_is_a_secret_of_the_settings():
    settings = settings_for(proxy="http://u:pw-secret-2@h:3128")
    assert "pw-secret-2" not in repr(settings) and "pw-secret-2" not in repr(settings.proxy)
    assert "pw-secret-2" in settings.secrets and "http://u:pw-secret-2@h:3128" in settings.secrets
    # What the form saves for an untouched password field reads as "not set".
    assert settings_for(proxy="***").proxy is None and settings_for(proxy="").proxy is None


def test_the_hook_masks_the_proxy_password(tls_sim, certificate, proxy, monkeypatch):
    from airflow.sdk._shared.secrets_masker import redact

    password = f"mask-{uuid.uuid4().hex}"
    assert password in redact(f"before {password}")
    use(monkeypatch, tls_sim, certificate, proxy=proxy.url_with("gina", password))
    assert VolterasHook().settings.proxy is not None
    assert password not in str(redact(f"now {password}"))
    assert proxy.url_with("gina", password) not in str(redact(f"url {proxy.url_with('gina', password)}"))
