"""Token caching and renewal, and ``test_connection``, against the real simulator."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_volteras.exceptions import VolterasAuthenticationError
from airflow_provider_volteras.hooks.volteras import VolterasHook

from .conftest import log_entries

VEHICLE = "sim-ok-tokens"


def grants(sim) -> dict[str, int]:
    return sim.state.counters()["tokenRequestsByGrant"]


def test_100_calls_make_one_token_request(sim, connect, record_property):
    hook = connect()
    execution = hook.create_command_execution(VEHICLE, "CLIMATE_OFF")
    before = sim.state.counters()
    for _ in range(100):
        assert hook.get_command_execution(VEHICLE, execution["id"])["id"] == execution["id"]
    after = sim.state.counters()
    assert after["polls"] - before["polls"] == 100
    token_requests = after["tokenRequests"]
    record_property("token_requests_for_100_hook_calls", token_requests)
    print(f"token requests made by 100 hook calls (plus one create): {token_requests}")
    assert token_requests == 1
    assert grants(sim) == {"client_credentials": 1, "refresh_token": 0}


def test_second_hook_instance_reuses_cached_token(sim, connect):
    connect().get_rate_limits(VEHICLE)
    assert sim.state.counters()["tokenRequests"] == 1
    other = VolterasHook()  # same connection, new instance (as a new task would create)
    assert other.get_rate_limits(VEHICLE)
    assert other.get_access_token() == connect().get_access_token()
    assert sim.state.counters()["tokenRequests"] == 1


def test_other_credentials_do_not_share_the_token(sim, connect):
    connect().get_rate_limits(VEHICLE)
    # Same client id and URL but another (wrong) secret: must ask for its own token and be refused.
    with pytest.raises(VolterasAuthenticationError):
        connect("volteras_other", secret="another-secret-value").get_rate_limits(VEHICLE)
    assert sim.state.counters()["tokenRequests"] == 2


def test_concurrent_hooks_on_a_cold_cache_make_one_token_request(sim, connect):
    connect()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            VolterasHook().get_rate_limits(VEHICLE)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sim.state.counters()["rateLimitRequests"] == 8
    assert sim.state.counters()["tokenRequests"] == 1


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def token_clock(monkeypatch) -> FakeClock:
    """The process-wide token cache's clock (``TokenCache.clock``), moved by the test instead of sleeping.

    The simulator keeps real time: with a token lifetime far longer than the test, no token expires on
    the server, so only the hook's view of time decides when it renews.
    """
    from airflow_provider_volteras._core import tokens

    clock = FakeClock()
    monkeypatch.setattr(tokens.TOKEN_CACHE, "clock", clock)
    return clock


def test_token_renewed_before_expiry_with_refresh_grant(sim, connect, token_clock):
    sim.state.configure(token_ttl=600)
    hook = connect(refresh_lead=10)  # renew once fewer than 10 of the 600 s are left
    first = hook.get_access_token()
    hook.get_rate_limits(VEHICLE)
    assert grants(sim) == {"client_credentials": 1, "refresh_token": 0}

    token_clock.advance(589)  # 11 s left: not inside the lead yet, the token is reused
    hook.get_rate_limits(VEHICLE)
    assert hook.get_access_token() == first
    assert grants(sim) == {"client_credentials": 1, "refresh_token": 0}

    token_clock.advance(2)  # 9 s left: inside the lead, renewed with the refresh grant
    hook.get_rate_limits(VEHICLE)
    assert grants(sim) == {"client_credentials": 1, "refresh_token": 1}
    second = hook.get_access_token()
    assert second != first
    # Renewed before the first token expired: the server still accepts it (a refresh does not void it).
    assert sim.state.authenticate(f"Bearer {first}") == sim.state.config.client_id
    assert sim.state.authenticate(f"Bearer {second}") == sim.state.config.client_id

    hook.get_rate_limits(VEHICLE)  # the renewed token serves the next calls: no further token request
    assert hook.get_access_token() == second
    assert grants(sim) == {"client_credentials": 1, "refresh_token": 1}
    log = [(e["kind"], e["status"]) for e in sim.state.request_log()]
    # Never ran into an expired token (no 401), one token request per grant.
    assert log == [
        ("token", 200),
        ("rate_limit", 200),
        ("rate_limit", 200),
        ("token", 200),
        ("rate_limit", 200),
        ("rate_limit", 200),
    ]


def test_refused_refresh_token_falls_back_to_client_credentials(sim, connect, token_clock):
    sim.state.configure(token_ttl=600)
    hook = connect(refresh_lead=10)
    hook.get_rate_limits(VEHICLE)
    # The platform forgets every token it issued (keeps its settings): the refresh token is now unknown.
    sim.state.reset(keep_config=True)
    token_clock.advance(591)  # inside the refresh lead: the next call renews, with the refresh grant first
    assert hook.get_rate_limits(VEHICLE)[0]["objectId"] == VEHICLE
    assert grants(sim) == {"client_credentials": 1, "refresh_token": 1}
    log = sim.state.request_log()
    assert [(e["kind"], e["status"]) for e in log] == [("token", 401), ("token", 200), ("rate_limit", 200)]


def test_expired_token_answered_401_is_renewed_once(sim, connect):
    hook = connect()
    hook.get_rate_limits(VEHICLE)
    assert sim.state.expire_tokens() == 1
    assert hook.get_rate_limits(VEHICLE)[0]["objectId"] == VEHICLE
    counters = sim.state.counters()
    assert counters["tokenRequests"] == 2
    log = [(e["kind"], e["status"]) for e in sim.state.request_log()]
    assert log == [("token", 200), ("rate_limit", 200), ("rate_limit", 401), ("token", 200), ("rate_limit", 200)]


def test_401_twice_on_a_fresh_token_raises_after_one_renewal(sim, connect):
    hook = connect()
    hook.get_rate_limits(VEHICLE)
    sim.state.add_fault("unauthorized", method="GET", path="^/v1/rate-limits$", count=2)
    with pytest.raises(VolterasAuthenticationError) as info:
        hook.get_rate_limits(VEHICLE)
    err = info.value
    counters = sim.state.counters()
    assert counters["tokenRequests"] == 2  # exactly one renewal
    assert counters["rateLimitRequests"] == 3  # no retries of an authentication failure
    rejected = log_entries(sim, kind="rate_limit")[-1]
    assert rejected["status"] == 401
    assert (err.code, err.status_code, err.request_id) == ("AUTHENTICATION_ERROR", 401, rejected["requestId"])
    assert "scope" in str(err) and "volteras_default" in str(err)


def test_missing_commands_scope_fails_create(sim, connect):
    sim.state.configure(grant_commands_scope=False)
    with pytest.raises(VolterasAuthenticationError) as info:
        connect().create_command_execution(VEHICLE, "CLIMATE_OFF")
    assert info.value.status_code == 401
    assert "vehicle:commands" in str(info.value)
    counters = sim.state.counters()
    assert counters["createsTotal"] == 0
    assert counters["createAttempts"] == 2  # first token, then one renewal; never a third try
    assert counters["tokenRequests"] == 2


def test_wrong_secret_raises_authentication_error_without_retries(sim, connect):
    with pytest.raises(VolterasAuthenticationError) as info:
        connect(secret="not-the-right-secret").get_access_token()
    err = info.value
    token_log = log_entries(sim, kind="token")
    assert len(token_log) == 1
    assert (err.code, err.status_code, err.request_id) == ("AUTHENTICATION_ERROR", 401, token_log[0]["requestId"])
    assert "volteras_default" in str(err) and "refused" in str(err)


# -- test_connection ------------------------------------------------------------------------------


def test_test_connection_success_names_the_organization(sim, connect):
    sim.state.configure(organization_id="org-acme-4711")
    ok, message = connect().test_connection()
    assert ok is True
    assert "org-acme-4711" in message
    assert sim.state.config.client_id in message
    assert sim.state.counters()["testTokenRequests"] == 1


def test_test_connection_wrong_secret(sim, connect):
    ok, message = connect(secret="wrong-secret-123").test_connection()
    assert ok is False
    assert "refused" in message and "AUTHENTICATION_ERROR" in message
    assert "wrong-secret-123" not in message
    assert sim.state.counters()["tokenRequests"] == 1
    assert sim.state.counters()["testTokenRequests"] == 0


def test_test_connection_closed_port(sim, connect, closed_port):
    ok, message = connect("volteras_closed", host=f"http://127.0.0.1:{closed_port}", max_retries=0).test_connection()
    assert ok is False
    assert "/v1/oauth2/token failed" in message and "ConnectionError" in message
    assert str(closed_port) in message


def test_test_connection_unsafe_url(sim, connect):
    ok, message = connect("volteras_plain", host="http://api.example.com").test_connection()
    assert ok is False
    assert "http://" in message and "allow_insecure_http" in message
    assert sim.state.counters()["requests"] == 0
