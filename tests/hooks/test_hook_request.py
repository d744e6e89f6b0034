"""``VolterasHook.request``: any endpoint, with the token, retries, timeouts and errors of every other call.

Against the simulator: what the caller gets back, and how many times the simulator received each request
(a POST that may have been applied is never sent twice; a GET is retried).
"""

from __future__ import annotations

import pytest

from airflow_provider_volteras.exceptions import (
    VolterasAuthenticationError,
    VolterasInvalidInputError,
    VolterasNotFoundError,
    VolterasServerError,
    VolterasTransportError,
    VolterasValidationError,
)

from .conftest import log_entries, warnings_of

TAG = {"key": "fleet", "value": "r", "objectType": "DEVICE", "objectId": "sim-ok-r1"}
UNTAG = {"key": "fleet", "value": "r", "entityType": "DEVICE", "entityId": "sim-ok-r1"}


def test_any_endpoint_with_one_token(sim, connect):
    hook = connect()
    vehicle = hook.request("GET", "/v1/vehicles/sim-ok-demo-1")
    assert vehicle["id"] == "sim-ok-demo-1" and vehicle["make"] == "BMW"
    assert hook.request("post", "/v1/tags", json=TAG) is None  # the API answers no body
    assert hook.request("GET", "/v1/tags/DEVICE/sim-ok-r1") == {"tags": [{"key": "fleet", "value": "r"}]}
    page = hook.request("GET", "/v1/vehicles", params={"tagKey": "fleet", "tagValue": "r", "maxPageSize": 10})
    assert [v["id"] for v in page["results"]] == ["sim-ok-r1"]
    hook.request("DELETE", "/v1/tags", params=UNTAG)
    assert sim.state.tags("DEVICE", "sim-ok-r1") == {"tags": []}
    assert sim.state.counters()["tokenRequests"] == 1
    # The query is sent as given: the simulator saw the tag listing's parameters.
    limits = hook.request("GET", "/v1/rate-limits", params={"objectId": "sim-ok-r1", "domain": "VEHICLE"})
    assert limits[0]["domain"] == "VEHICLE"


def test_a_refused_token_is_renewed_once(sim, connect):
    hook = connect()
    hook.request("GET", "/v1/vehicles")
    sim.state.expire_tokens()
    assert hook.request("GET", "/v1/tags/DEVICE/sim-ok-demo-2")["tags"][0]["key"] == "fleet"
    assert sim.state.counters()["tokenRequests"] == 2


def test_errors_are_typed_by_the_api_code(sim, connect):
    hook = connect()
    with pytest.raises(VolterasNotFoundError) as missing:
        hook.request("GET", "/v1/tags/DEVICE/sim-missing-1")
    assert missing.value.code == "RESOURCE_NOT_FOUND" and missing.value.status_code == 404
    with pytest.raises(VolterasValidationError) as invalid:
        hook.request("DELETE", "/v1/tags", params={"key": "fleet"})
    assert invalid.value.code == "REQUEST_VALIDATION_ERROR"
    with pytest.raises(VolterasAuthenticationError):
        connect("volteras_other", secret="not-the-secret").request("GET", "/v1/vehicles")


def test_a_get_is_retried_on_transient_failures(sim, connect, hook_logs):
    hook = connect()
    sim.state.add_fault("status", status=503, method="GET", path="^/v1/vehicles$", count=2)
    assert hook.request("GET", "/v1/vehicles")["totalResults"] == 4
    assert [e["status"] for e in log_entries(sim, method="GET", path="/v1/vehicles")] == [503, 503, 200]
    assert len(warnings_of(hook_logs)) == 2
    sim.state.add_fault("drop_after", method="GET", path="^/v1/vehicles$")
    assert hook.request("GET", "/v1/vehicles")["totalResults"] == 4


def test_a_post_that_may_have_been_applied_is_never_sent_twice(sim, connect):
    hook = connect()
    sim.state.add_fault("status", status=503, method="POST", path="^/v1/tags$", apply=True)
    with pytest.raises(VolterasServerError):
        hook.request("POST", "/v1/tags", json=TAG)
    sim.state.add_fault("drop_after", method="POST", path="^/v1/tags$")
    with pytest.raises(VolterasTransportError) as dropped:
        hook.request("POST", "/v1/tags", json=TAG)
    assert dropped.value.maybe_sent
    sim.state.add_fault("slow", delay=2.0, method="POST", path="^/v1/tags$")
    with pytest.raises(VolterasTransportError, match="timed out"):
        connect("volteras_slow", timeout=0.5).request("POST", "/v1/tags", json=TAG)
    assert len(log_entries(sim, method="POST", path="/v1/tags")) == 3  # one per call


def test_a_post_refused_for_its_rate_is_sent_again(sim, connect):
    hook = connect()
    sim.state.add_fault("rate_limit", method="POST", path="^/v1/tags$", retry_after=0)
    assert hook.request("POST", "/v1/tags", json=TAG) is None
    assert [e["status"] for e in log_entries(sim, method="POST", path="/v1/tags")] == [429, 200]
    assert sim.state.tags("DEVICE", "sim-ok-r1") == {"tags": [{"key": "fleet", "value": "r"}]}


def test_a_post_that_never_connected_is_retried(sim, connect, closed_port, hook_logs):
    hook = connect(host=f"http://127.0.0.1:{closed_port}", max_retries=2)
    with pytest.raises(VolterasTransportError) as failed:
        hook.request("POST", "/v1/tags", json=TAG)
    assert not failed.value.maybe_sent
    assert len([w for w in warnings_of(hook_logs) if "retry" in w]) == 2


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "match"),
    [
        ("GET", "https://elsewhere.example/v1/vehicles", {}, "path must be an API path"),
        ("GET", "//elsewhere.example/v1/vehicles", {}, "path must be an API path"),
        ("GET", "v1/vehicles", {}, "path must be an API path"),
        ("GET", "/v1/vehicles?tagKey=fleet", {}, "path must be an API path"),
        ("GET", "/v1/vehicles/a b", {}, "path must be an API path"),
        ("GET", "/v1/vehicles/%zz", {}, "path must be an API path"),
        ("GET", "/v1/vehicles/../oauth2/token", {}, "'..' segment"),
        ("GET", "/v1/vehicles/%2e%2e/x", {}, "'..' segment"),
        ("POST", "/v1/vehicles/sim-ok-1/command-execution:climate-off", {}, "commands are not sent through"),
        ("POST", "/v1/vehicles/sim-ok-1/command-execution%3Aclimate-off", {}, "commands are not sent through"),
        ("TRACE", "/v1/vehicles", {}, "method must be one of"),
        ("GET", "/v1/vehicles", {"params": {"tagKey": ["a", "b"]}}, "must be text, a number or a boolean"),
        ("POST", "/v1/tags", {"json": {"bad": float("nan")}}, "cannot be sent"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_sent(sim, connect, method, path, kwargs, match):
    hook = connect()
    with pytest.raises(VolterasInvalidInputError, match=match):
        hook.request(method, path, **kwargs)
    assert sim.state.counters()["requests"] == 0
