"""Property tests of the response parsers: any answer gives a valid result or a documented error.

Each parser is fed arbitrary JSON (shaped like its answer, or not at all), arbitrary bytes, status
codes and headers, >= 1,000 examples per target. Nothing but ``VolterasError`` subclasses may come
out, results must be well formed, and a parsed execution always belongs to the requested vehicle
(and execution) and has a known status.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from airflow_provider_volteras._core.answers import (
    _CODE_TO_ERROR,
    error_from_response,
    parse_api_access,
    parse_execution,
    parse_json_answer,
    parse_page,
    parse_rate_limits,
    parse_token,
    retry_after_seconds,
)
from airflow_provider_volteras._core.basics import EXECUTION_STATUSES
from airflow_provider_volteras._core.wire import ApiRequest, RawResponse
from airflow_provider_volteras.exceptions import (
    VolterasApiError,
    VolterasError,
    VolterasRateLimitError,
    VolterasUnexpectedResponseError,
)

from ._support import STATS

# Hypothesis keeps caches (its unicode tables take seconds to build) and failure patches in ./.hypothesis:
# keep them out of the work tree, in a temp directory that later runs on this machine reuse.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "volteras-hardening-hypothesis")
pytestmark = pytest.mark.slow  # ~1,000 examples per test

SETTINGS = settings(
    max_examples=1000,
    deadline=None,
    database=None,  # no .hypothesis directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
VEHICLE = "sim-ok-prop"
EXECUTION = "exec-1"

# --------------------------------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**1000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=6,
)
#: A cheap stand-in for any JSON value in a field: a scalar or a shallow list/object.
odd = scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.text(max_size=4), scalars, max_size=2)
text_or_any = st.text(max_size=12) | odd


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with any subset of ``fields`` (each plausible or arbitrary) and maybe unknown extra keys."""
    return st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(st.text(max_size=8), scalars, max_size=2),
    )


def _mutated(base: dict[str, Any], changes: dict[str, Any], drops: list[str]) -> dict[str, Any]:
    return {k: v for k, v in {**base, **changes}.items() if k not in drops}


_EXECUTION_KEYS = ["id", "vehicleId", "status", "command", "failedReason", "executedAt"]
#: Valid executions (of VEHICLE or another car), with no, one or two fields replaced or dropped.
near_valid_executions = st.builds(
    _mutated,
    st.fixed_dictionaries(
        {
            "id": st.sampled_from([EXECUTION, EXECUTION, "exec-2"]),
            "vehicleId": st.sampled_from([VEHICLE, VEHICLE, "other-car"]),
            "status": st.sampled_from(["PENDING", "EXECUTED", "FAILED"]),
            "command": st.sampled_from(["CLIMATE_OFF", "SET_TEMPERATURE"]),
            "failedReason": st.none() | st.sampled_from(["OEM_TIMEOUT", "Vehicle did not respond"]),
            "executedAt": st.none() | st.just("2026-01-01T00:00:00Z"),
            "commandArguments": st.none() | st.just({"limit": 80}),
        }
    ),
    st.one_of(
        st.just({}), st.just({}), st.just({}), st.dictionaries(st.sampled_from(_EXECUTION_KEYS), odd, max_size=2)
    ),
    st.one_of(st.just([]), st.just([]), st.just([]), st.lists(st.sampled_from(_EXECUTION_KEYS), max_size=2)),
)
executions = near_valid_executions | shaped(
    {
        "id": st.sampled_from([EXECUTION, "exec-2", ""]) | odd,
        "vehicleId": st.sampled_from([VEHICLE, "other-car", VEHICLE.upper(), VEHICLE + " "]) | odd,
        "status": st.sampled_from(["PENDING", "EXECUTED", "FAILED", "pending", "CANCELLED", ""]) | odd,
        "command": st.sampled_from(["CLIMATE_OFF", "WAKE_UP"]) | odd,
        "failedReason": st.none() | st.sampled_from(["OEM_TIMEOUT", "Vehicle did not respond"]) | odd,
        "executedAt": st.none() | st.just("2026-01-01T00:00:00Z") | odd,
        "commandArguments": st.none() | odd,
        "timeout": st.integers() | odd,
    }
)
pages = shaped(
    {
        "results": st.lists(executions | odd, max_size=4) | odd,
        "nextPageToken": st.none() | st.text(max_size=12) | odd,
        "totalResults": st.integers() | odd,
    }
)
tokens = shaped(
    {
        "access_token": st.sampled_from(["tok-abc", ""]) | text_or_any,
        "token_type": st.just("Bearer") | odd,
        "expires_in": st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.integers(min_value=10**300, max_value=10**1000)
        | odd,
        "refresh_token": st.none() | text_or_any,
    }
)
rate_limits = st.lists(
    shaped(
        {
            "remainingRequests": st.integers() | odd,
            "maxRequests": st.integers() | odd,
            "windowSizeSeconds": st.integers() | odd,
            "objectId": st.just(VEHICLE) | odd,
        }
    )
    | odd,
    max_size=3,
)
api_access = shaped({"clientId": text_or_any, "organizationId": text_or_any})
errors = shaped(
    {
        "error": st.sampled_from(sorted(_CODE_TO_ERROR)) | st.text(max_size=12) | odd,
        "message": text_or_any,
        "requestId": text_or_any,
        "timestamp": text_or_any,
        "data": odd,
        "detail": st.lists(
            shaped({"loc": st.lists(st.text(max_size=6) | st.integers(), max_size=3) | odd, "msg": text_or_any}) | odd,
            max_size=3,
        )
        | odd,
    }
)


#: Answers that are valid as far as each parser is concerned, so the success paths are exercised too.
valid_pages = st.fixed_dictionaries(
    {"results": st.lists(near_valid_executions, max_size=3), "nextPageToken": st.none() | st.text(max_size=8)}
)
valid_tokens = st.fixed_dictionaries(
    {
        "access_token": st.text(min_size=1, max_size=12),
        "token_type": st.just("Bearer"),
        "expires_in": st.integers(min_value=1, max_value=10**6) | st.floats(min_value=0.001, max_value=1e6),
    },
    optional={"refresh_token": st.none() | st.text(max_size=12)},
)
valid_rate_limits = st.lists(
    st.fixed_dictionaries({"remainingRequests": st.integers(0, 10), "maxRequests": st.just(10)}), max_size=2
)
valid_api_access = st.fixed_dictionaries({"clientId": st.text(max_size=8), "organizationId": st.text(max_size=8)})


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON texts of ``values`` (UTF-8 or UTF-16), arbitrary bytes, or broken JSON."""

    def dump(value: Any, encoding: str, cut: bool) -> bytes:
        data = json.dumps(value, ensure_ascii=False).encode(encoding, "surrogatepass")
        return data[: len(data) // 2] if cut else data

    return (
        st.builds(dump, values, st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16"]), st.just(False))
        | st.builds(dump, values, st.just("utf-8"), st.just(True))
        | st.binary(max_size=64)
        | st.sampled_from([b"", b"null", b"<html>502 Bad Gateway</html>", b"[" * 5_000])
    )


statuses = (
    st.just(200)
    | st.sampled_from([200, 200, 200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503])
    | st.integers(min_value=-1, max_value=1000)
)
header_values = st.text(max_size=40) | st.sampled_from(
    ["1", "0", "-5", "nan", "inf", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 32 Foo 99999 99:99:99 GMT", ""]
)
headers = st.dictionaries(
    st.sampled_from(["content-type", "retry-after", "x-request-id"]) | st.text(max_size=10).map(str.lower),
    header_values,
    max_size=4,
)


def responses(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[RawResponse]:
    return st.builds(RawResponse, statuses, headers, encoded(bodies))


REQUEST = ApiRequest("GET", f"/v1/vehicles/{VEHICLE}/command-executions/{EXECUTION}")


#: Valid results per target: the success paths must be exercised too (checked by the last test).
_VALID: dict[str, int] = {}


def _documented(call: Callable[[], Any], target: str = "") -> tuple[Any, VolterasError | None]:
    """Run a parser: a result, or a documented error whose message renders. Anything else fails."""
    STATS["hypothesis_examples"] += 1
    try:
        result = call()
        _VALID[target] = _VALID.get(target, 0) + 1
        return result, None
    except VolterasError as err:
        assert isinstance(err, VolterasApiError), repr(err)
        assert str(err) and err.method == REQUEST.method and err.path == REQUEST.path
        return None, err


# --------------------------------------------------------------------------------------- properties


@SETTINGS
@given(
    resp=responses(near_valid_executions | executions | json_values), execution_id=st.sampled_from([None, EXECUTION])
)
@example(resp=RawResponse(200, {}, b"[" * 100_000), execution_id=None)  # RecursionError before the fix
def test_parse_execution(resp: RawResponse, execution_id: str | None) -> None:
    result, error = _documented(
        lambda: parse_execution(resp, REQUEST, vehicle_id=VEHICLE, execution_id=execution_id), "execution"
    )
    if error is not None:
        return
    assert 200 <= resp.status < 300
    assert isinstance(result, dict)
    assert result["vehicleId"] == VEHICLE
    assert result["status"] in EXECUTION_STATUSES
    assert isinstance(result["id"], str) and result["id"]
    assert execution_id is None or result["id"] == execution_id
    assert isinstance(result["command"], str)
    assert result.get("failedReason") is None or isinstance(result["failedReason"], str)


@SETTINGS
@given(
    body=st.one_of(near_valid_executions, near_valid_executions, near_valid_executions, executions),
    vehicle_id=st.sampled_from([VEHICLE, "other-car"]),
    execution_id=st.sampled_from([None, EXECUTION]),
)
def test_parsed_execution_is_of_the_requested_vehicle(
    body: dict[str, Any], vehicle_id: str, execution_id: str | None
) -> None:
    """The property the operators rely on: never another vehicle's (or execution's) answer, never an odd status."""
    resp = RawResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())
    result, error = _documented(
        lambda: parse_execution(resp, REQUEST, vehicle_id=vehicle_id, execution_id=execution_id)
    )
    if error is not None:
        assert isinstance(error, VolterasUnexpectedResponseError)
        return
    assert result["vehicleId"] == vehicle_id
    assert result["status"] in {"PENDING", "EXECUTED", "FAILED"}
    assert execution_id is None or result["id"] == execution_id
    STATS["hypothesis_parsed_executions"] += 1
    _VALID["property"] = _VALID.get("property", 0) + 1


@SETTINGS
@given(resp=responses(valid_pages | pages | json_values))
@example(resp=RawResponse(200, {}, b'{"results":' * 50_000))  # RecursionError before the fix
def test_parse_page(resp: RawResponse) -> None:
    result, error = _documented(lambda: parse_page(resp, REQUEST), "page")
    if error is not None:
        return
    results, token = result
    assert isinstance(results, list) and all(isinstance(r, dict) for r in results)
    assert token is None or (isinstance(token, str) and token)


@SETTINGS
@given(resp=responses(valid_tokens | tokens | json_values))
@example(resp=RawResponse(200, {}, b'{"access_token":"a","expires_in":1' + b"0" * 400 + b"}"))  # OverflowError
def test_parse_token(resp: RawResponse) -> None:
    result, error = _documented(lambda: parse_token(resp, REQUEST), "token")
    if error is not None:
        return
    access, refresh, expires_in = result
    assert isinstance(access, str) and access
    assert refresh is None or (isinstance(refresh, str) and refresh)
    assert isinstance(expires_in, float) and math.isfinite(expires_in) and expires_in > 0


@SETTINGS
@given(resp=responses(valid_rate_limits | rate_limits | json_values))
@example(resp=RawResponse(200, {}, b"[" * 100_000))  # RecursionError before the fix
def test_parse_rate_limits(resp: RawResponse) -> None:
    result, error = _documented(lambda: parse_rate_limits(resp, REQUEST), "rate_limits")
    if error is not None:
        return
    assert isinstance(result, list) and all(isinstance(r, dict) for r in result)


@SETTINGS
@given(resp=responses(valid_api_access | api_access | json_values))
@example(resp=RawResponse(200, {}, b'{"a":' * 50_000))  # RecursionError before the fix
def test_parse_api_access(resp: RawResponse) -> None:
    result, error = _documented(lambda: parse_api_access(resp, REQUEST), "api_access")
    if error is not None:
        return
    assert isinstance(result, dict) and isinstance(result["organizationId"], str)


@SETTINGS
@given(resp=responses(errors | json_values))
@example(resp=RawResponse(502, {"retry-after": "1e400"}, b'{"detail":' * 50_000))
def test_error_from_response(resp: RawResponse) -> None:
    """Always returns (never raises) a typed error; a 429 keeps a usable Retry-After."""
    STATS["hypothesis_examples"] += 1
    err = error_from_response(resp, REQUEST)
    assert isinstance(err, VolterasApiError)
    assert err.status_code == resp.status and str(err)
    if isinstance(err, VolterasRateLimitError) and err.retry_after is not None:
        assert math.isfinite(err.retry_after) and err.retry_after >= 0
    if 200 <= resp.status < 300:
        return
    _, raised = _documented(lambda: parse_json_answer(resp, REQUEST))
    assert type(raised) is type(err)


@SETTINGS
@given(value=header_values | st.none(), now=st.floats(min_value=0, max_value=4e9))
def test_retry_after_seconds(value: str | None, now: float) -> None:
    STATS["hypothesis_examples"] += 1
    seconds = retry_after_seconds(value, now=now)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


def test_success_paths_were_exercised() -> None:
    """The properties above are not vacuous: every parser returned valid results too (runs last)."""
    if not _VALID:
        pytest.skip("the property tests did not run in this session")
    for target in ("execution", "page", "token", "rate_limits", "api_access"):
        assert _VALID.get(target, 0) >= 10, f"{target}: only {_VALID.get(target, 0)} valid results"
    assert _VALID.get("property", 0) >= 20, "too few executions parsed for the vehicle/status property"
    STATS["hypothesis_valid_results"] = sum(v for k, v in _VALID.items() if k != "property")
