"""The I/O-free protocol core: Retry-After, base URLs, ids, poll schedule, error mapping, token cache, settings."""

from __future__ import annotations

import itertools
import json
import math
from email.utils import formatdate
from types import SimpleNamespace

import pytest
import tenacity

from airflow_provider_volteras._core.answers import error_from_response, parse_execution, retry_after_seconds
from airflow_provider_volteras._core.basics import DEFAULT_POLL_INTERVAL, MAX_ID_LENGTH, validate_id
from airflow_provider_volteras._core.retry import retry_kwargs
from airflow_provider_volteras._core.settings import PRODUCTION_URL, ClientSettings, validate_base_url
from airflow_provider_volteras._core.tokens import TokenCache
from airflow_provider_volteras._core.waiting import WaitPlan, poll_delays
from airflow_provider_volteras._core.wire import (
    ApiRequest,
    RawResponse,
    create_command_request,
    get_execution_request,
    list_executions_request,
    rate_limits_request,
    token_request,
)
from airflow_provider_volteras.exceptions import (
    VolterasApiError,
    VolterasAuthenticationError,
    VolterasCommandInProgressError,
    VolterasConfigurationError,
    VolterasInvalidInputError,
    VolterasNotFoundError,
    VolterasPermissionError,
    VolterasRateLimitError,
    VolterasServerError,
    VolterasUnexpectedResponseError,
    VolterasValidationError,
)

NOW = 1_800_000_000.0

# -- Retry-After -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("120", 120.0),
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("Sun, 06 Nov 1994 08:49:37", None),  # a date without a zone
        ("Mon, 32 Foo 2020 99:99:99 GMT", None),
    ],
)
def test_retry_after_seconds(value, expected):
    assert retry_after_seconds(value, now=NOW) == expected


def test_retry_after_http_date_future_and_past():
    assert retry_after_seconds(formatdate(NOW + 30, usegmt=True), now=NOW) == pytest.approx(30)
    assert retry_after_seconds(formatdate(NOW - 30, usegmt=True), now=NOW) == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0


# -- base URL --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow_http", "expected"),
    [
        ("https://api.volteras.com", False, "https://api.volteras.com"),
        ("https://api.volteras.com/", False, "https://api.volteras.com"),
        ("  https://api.sandbox.volteras.com  ", False, "https://api.sandbox.volteras.com"),
        ("https://API.Volteras.com:8443", False, "https://api.volteras.com:8443"),
        ("http://127.0.0.1:8000", False, "http://127.0.0.1:8000"),
        ("http://127.5.6.7", False, "http://127.5.6.7"),
        ("http://localhost:1", False, "http://localhost:1"),
        ("http://[::1]:9", False, "http://[::1]:9"),
        ("http://api.example.com", True, "http://api.example.com"),
    ],
)
def test_validate_base_url_accepts(url, allow_http, expected):
    assert validate_base_url(url, allow_insecure_http=allow_http) == expected


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://api.volteras.com", "Refusing plain http://"),
        ("http://192.168.1.10", "Refusing plain http://"),
        ("http://localhost.evil.com", "Refusing plain http://"),
        ("https://user:pass@api.volteras.com", "credentials"),
        ("https://user@api.volteras.com", "credentials"),
        ("https://api.volteras.com/v1", "without a path"),
        ("https://api.volteras.com?a=b", "without a path"),
        ("https://api.volteras.com#frag", "without a path"),
        ("ftp://api.volteras.com", "must look like"),
        ("api.volteras.com", "must look like"),
        ("https://", "must look like"),
        ("https://api.volteras.com:70000", "not a valid URL"),
        ("https://[::1", "not a valid URL"),
    ],
)
def test_validate_base_url_refuses(url, needle):
    with pytest.raises(VolterasConfigurationError) as info:
        validate_base_url(url)
    assert needle in str(info.value)
    assert "pass@" not in str(info.value)


# -- ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["a", "sim-ok-1", "A_b.c:d~e-f", "a" * MAX_ID_LENGTH, "a.b"])
def test_validate_id_accepts(good):
    assert validate_id(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", " ", "a b", "a/b", "..", "a..b", "a?b", "a#b", "a%2F", "a\x00", "a\u200b", "／", "ａ", "a" * 201, None, 7],
)
def test_validate_id_refuses(bad):
    with pytest.raises(VolterasInvalidInputError):
        validate_id(bad, "vehicle_id")


def test_request_builders_encode_nothing_unexpected():
    assert get_execution_request("v-1", "e:1").path == "/v1/vehicles/v-1/command-executions/e%3A1"
    req = create_command_request("v-1", "set_charge_limit", {"limit": 80})
    assert (req.method, req.path, req.json_body, req.creates_command) == (
        "POST",
        "/v1/vehicles/v-1/command-execution:set-charge-limit",
        {"limit": 80},
        True,
    )
    assert create_command_request("v-1", "CLIMATE_OFF", None).json_body is None
    listing = list_executions_request(
        "v-1", filter={"field": "status", "operator": "eq", "value": "PENDING"}, max_page_size=5, page_token="t"
    )
    assert listing.params == {
        "filter": '{"field":"status","operator":"eq","value":"PENDING"}',
        "maxPageSize": "5",
        "pageToken": "t",
    }
    assert rate_limits_request("v-1").params == {"objectId": "v-1", "domain": "VEHICLE"}
    token = token_request(SimpleNamespace(), "r-1")  # type: ignore[arg-type]
    assert token.form == {"grant_type": "refresh_token", "refresh_token": "r-1"} and token.auth == "basic"
    assert "r-1" not in repr(token) and "secret-token" not in repr(req.with_token("secret-token"))


# -- poll schedule ---------------------------------------------------------------------------------


def test_poll_delays_start_at_one_second_grow_and_cap():
    delays = list(itertools.islice(poll_delays(15.0), 12))
    assert delays[0] == 1.0
    assert delays[1] == pytest.approx(1.5) and delays[2] == pytest.approx(2.25)
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) == 15.0 and delays[-1] == 15.0
    assert list(itertools.islice(poll_delays(0.5), 3)) == [0.5, 0.5, 0.5]
    assert list(itertools.islice(poll_delays(), 20))[-1] == DEFAULT_POLL_INTERVAL


def test_wait_plan_respects_deadline():
    plan = WaitPlan(deadline=NOW + 3.0, poll_interval=10)
    assert plan.next_sleep(now=NOW) == 1.0
    assert plan.next_sleep(now=NOW + 1.0) == 1.5
    assert plan.next_sleep(now=NOW + 2.5) == pytest.approx(0.5)  # 2.25 capped by the 0.5 s left
    assert plan.next_sleep(now=NOW + 3.0) is None
    assert plan.next_sleep(now=NOW + 100) is None


def test_wait_plan_poll_now_and_backoff():
    plan = WaitPlan(deadline=NOW + 60, poll_interval=5)
    plan.poll_now()
    assert plan.next_sleep(now=NOW) == 0.0
    assert plan.next_sleep(now=NOW) == 1.0
    assert [plan.backoff(n) for n in (1, 2, 3, 10)] == [2.0, 4.0, 5.0, 5.0]


# -- error mapping ---------------------------------------------------------------------------------

REQ = ApiRequest("GET", "/v1/rate-limits")


def response(status: int, body: object = None, headers: dict[str, str] | None = None, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    return RawResponse(status, {"content-type": "application/json", **(headers or {})}, data)


def envelope(code: str, message: str = "msg", request_id: str | None = "rid-body") -> dict:
    body = {"timestamp": "2026-01-01T00:00:00Z", "error": code, "message": message}
    if request_id:
        body["requestId"] = request_id
    return body


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "AUTHENTICATION_ERROR", VolterasAuthenticationError),
        (403, "NOT_PERMITTED", VolterasPermissionError),
        (404, "RESOURCE_NOT_FOUND", VolterasNotFoundError),
        (422, "REQUEST_VALIDATION_ERROR", VolterasValidationError),
        (400, "PAGE_SIZE_TOO_LARGE", VolterasValidationError),
        (409, "COMMAND_ALREADY_IN_PROGRESS", VolterasCommandInProgressError),
        (429, "INTERNAL_RATE_LIMITED", VolterasRateLimitError),
        (500, "SERVER_ERROR", VolterasServerError),
        # the code decides, whatever the status
        (400, "COMMAND_ALREADY_IN_PROGRESS", VolterasCommandInProgressError),
        (500, "RESOURCE_NOT_FOUND", VolterasNotFoundError),
        (200, "SERVER_ERROR", VolterasServerError),
        (404, "AUTHENTICATION_ERROR", VolterasAuthenticationError),
        (400, "INTERNAL_RATE_LIMITED", VolterasRateLimitError),
        # an unknown code falls back to the status
        (404, "SOMETHING_NEW", VolterasNotFoundError),
        (503, "SOMETHING_NEW", VolterasServerError),
        (418, "SOMETHING_NEW", VolterasApiError),
    ],
)
def test_error_from_response_code_first_then_status(status, code, cls):
    err = error_from_response(response(status, envelope(code, "it broke")), REQ)
    assert type(err) is cls
    assert (err.code, err.status_code, err.request_id, err.api_message) == (code, status, "rid-body", "it broke")
    assert (err.method, err.path) == ("GET", "/v1/rate-limits")
    assert str(err) == f"GET /v1/rate-limits: it broke (code={code}, HTTP status={status}, requestId=rid-body)"


def test_error_request_id_falls_back_to_header():
    err = error_from_response(
        response(404, envelope("RESOURCE_NOT_FOUND", request_id=None), {"x-request-id": "rid-h"}), REQ
    )
    assert err.request_id == "rid-h"


def test_rate_limit_error_carries_retry_after():
    err = error_from_response(response(429, envelope("INTERNAL_RATE_LIMITED"), {"retry-after": "7"}), REQ)
    assert isinstance(err, VolterasRateLimitError) and err.retry_after == 7.0
    err = error_from_response(response(429, envelope("INTERNAL_RATE_LIMITED")), REQ)
    assert err.retry_after is None


def test_fastapi_detail_shape():
    detail = [
        {"type": "missing", "loc": ["body", "limit"], "msg": "Field required", "input": {}},
        {"type": "float_parsing", "loc": ["body", "driverTemperature"], "msg": "Input should be a valid number"},
    ]
    err = error_from_response(response(422, {"detail": detail}, {"x-request-id": "rid-h"}), REQ)
    assert type(err) is VolterasValidationError
    assert err.code == "REQUEST_VALIDATION_ERROR" and err.request_id == "rid-h" and err.data == detail
    assert "limit: Field required" in err.api_message
    assert "driverTemperature: Input should be a valid number" in err.api_message


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (502, VolterasServerError),
        (500, VolterasServerError),
        (404, VolterasNotFoundError),
        (418, VolterasUnexpectedResponseError),
    ],
)
def test_non_json_error_bodies(status, cls):
    html = b"<html><body>Bad Gateway</body></html>"
    resp = RawResponse(status, {"content-type": "text/html; charset=utf-8", "x-request-id": "rid-h"}, html)
    err = error_from_response(resp, REQ)
    assert type(err) is cls
    assert err.code is None and err.request_id == "rid-h"
    assert f"HTTP {status} with a body that is not JSON (text/html, {len(html)} bytes)" in str(err)


@pytest.mark.parametrize("body", [{"unexpected": True}, [1, 2], "text", {"error": 5}])
def test_unrecognised_json_error_bodies(body):
    err = error_from_response(response(418, body), REQ)
    assert type(err) is VolterasUnexpectedResponseError
    assert "unrecognised error body" in str(err)
    assert type(error_from_response(response(503, body), REQ)) is VolterasServerError


def test_parse_execution_checks_identity_and_status():
    good = {"id": "e1", "vehicleId": "v1", "command": "CLIMATE_OFF", "status": "PENDING", "failedReason": None}
    assert parse_execution(response(200, good), REQ, vehicle_id="v1", execution_id="e1") == good
    for bad, needle in [
        ({**good, "vehicleId": "v2"}, "belongs to vehicle"),
        ({**good, "id": "e2"}, "asked for execution e1"),
        ({**good, "status": "DONE"}, "unknown status"),
        ({**good, "failedReason": 3}, "failedReason"),
        ({**good, "command": None}, "no command"),
    ]:
        with pytest.raises(VolterasUnexpectedResponseError, match=needle):
            parse_execution(response(200, bad), REQ, vehicle_id="v1", execution_id="e1")


# -- token cache and settings ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settings(**kw) -> ClientSettings:
    return ClientSettings(base_url="https://api.volteras.com", client_id="cid", client_secret="csecret", **kw)


def test_token_cache_lead_and_invalidate():
    clock = Clock()
    cache = TokenCache(clock)
    s = settings(token_refresh_lead=60)
    cache.store(s, "a1", "r1", 3600)
    assert cache.valid(s) == "a1"
    clock.now += 3600 - 60 - 0.001
    assert cache.valid(s) == "a1"
    clock.now += 0.002
    assert cache.valid(s) is None  # inside the lead: renew now
    assert cache.refresh_token(s) == "r1"
    cache.store(s, "a2", "r2", 3600)
    cache.invalidate(s, "a1")  # a stale rejection does not drop the newer token
    assert cache.valid(s) == "a2"
    cache.invalidate(s, "a2")
    assert cache.valid(s) is None and cache.refresh_token(s) == "r2"
    cache.drop_refresh(s)
    assert cache.refresh_token(s) is None


def test_cache_key_depends_on_credentials_not_holding_them():
    a, b = settings(), ClientSettings(base_url="https://api.volteras.com", client_id="cid", client_secret="other")
    assert a.cache_key != b.cache_key
    assert "csecret" not in a.cache_key and "csecret" not in repr(a)


def conn(host="https://api.volteras.com", extra=None, login="cid", password="csecret"):
    return SimpleNamespace(
        conn_id="c1", login=login, password=password, host=host, schema=None, port=None, extra_dejson=extra or {}
    )


def test_settings_from_connection():
    s = ClientSettings.from_connection(
        conn(extra={"timeout": "2.5", "max_retries": 0, "extra__volteras__refresh_lead": 5, "verify_ssl": "false"})
    )
    assert (s.timeout, s.max_retries, s.token_refresh_lead, s.verify, s.conn_id) == (2.5, 0, 5.0, False, "c1")
    assert ClientSettings.from_connection(conn(host="")).base_url == PRODUCTION_URL
    assert ClientSettings.from_connection(conn(extra={"ca_bundle": "/etc/ca.pem"})).verify == "/etc/ca.pem"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"login": ""},
        {"password": None},
        {"extra": {"max_retries": 21}},
        {"extra": {"timeout": math.nan}},
        {"extra": {"timeout": True}},
        {"extra": {"allow_insecure_http": "perhaps"}},
        {"extra": {"typo_field": 1}},
        {"host": "http://api.volteras.com"},
    ],
)
def test_settings_refuse_bad_connections(kwargs):
    with pytest.raises(VolterasConfigurationError):
        ClientSettings.from_connection(conn(**kwargs))


def test_retry_kwargs_bound_attempts():
    kwargs = retry_kwargs(settings(max_retries=2, retry_max_wait=0.0), SimpleNamespace(warning=lambda *a: None))
    attempts = 0
    with pytest.raises(VolterasServerError):
        for attempt in tenacity.Retrying(**kwargs):
            with attempt:
                attempts += 1
                raise VolterasServerError("boom")
    assert attempts == 3
    attempts = 0
    with pytest.raises(VolterasNotFoundError):
        for attempt in tenacity.Retrying(**kwargs):
            with attempt:
                attempts += 1
                raise VolterasNotFoundError("gone")
    assert attempts == 1
