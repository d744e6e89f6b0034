"""Fault injection as seen by real HTTP clients: every kind with ``requests`` and ``httpx``."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_volteras.simulator import SimulatorServer

from .conftest import Api


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """The same calls through ``requests`` or ``httpx``."""

    def __init__(self, lib: str, base_url: str, token: str) -> None:
        self.lib = lib
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self._requests = requests.Session()
        self._httpx = httpx.Client()

    def call(self, method: str, path: str, *, timeout: float = 5, **kwargs: Any) -> Answer:
        url = self.base_url + path
        if self.lib == "requests":
            r = self._requests.request(method, url, headers=self.headers, timeout=timeout, **kwargs)
            return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)
        h = self._httpx.request(method, url, headers=self.headers, timeout=timeout, **kwargs)
        return Answer(h.status_code, dict(h.headers), h.content)

    def create(self, vehicle_id: str, slug: str = "climate-on", **kwargs: Any) -> Answer:
        return self.call("POST", f"/v1/vehicles/{vehicle_id}/command-execution:{slug}", **kwargs)

    def poll(self, vehicle_id: str, execution_id: str, **kwargs: Any) -> Answer:
        return self.call("GET", f"/v1/vehicles/{vehicle_id}/command-executions/{execution_id}", **kwargs)

    def disconnect_errors(self) -> tuple[type[BaseException], ...]:
        """What a connection closed without any response raises."""
        if self.lib == "requests":
            return (requests.ConnectionError,)
        return (httpx.RemoteProtocolError, httpx.ReadError)

    def read_timeout(self) -> type[BaseException]:
        return requests.ReadTimeout if self.lib == "requests" else httpx.ReadTimeout

    def close(self) -> None:
        self._requests.close()
        self._httpx.close()


@pytest.fixture(params=["requests", "httpx"])
def client(request: pytest.FixtureRequest, api: Api) -> Any:
    c = Client(request.param, api.base_url, api.login())
    yield c
    c.close()


def add_fault(sim: SimulatorServer, **fault: Any) -> dict[str, Any]:
    """Queue a fault through the HTTP control path (camelCase)."""
    response = requests.post(f"{sim.base_url}/_simulator/faults", json=fault, timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_status_fault_answers_the_envelope_once(client: Client, simulator: SimulatorServer) -> None:
    add_fault(simulator, kind="status", status=503, method="GET", path="^/v1/vehicles$")
    answer = client.call("GET", "/v1/vehicles")
    assert answer.status == 503 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["error"] == "SERVER_ERROR" and body["requestId"] == answer.headers["x-request-id"]
    assert client.call("GET", "/v1/vehicles").status == 200
    counters = simulator.state.counters()
    assert counters["faultsApplied"] == 1 and counters["faultsAppliedByKind"] == {"status": 1}


def test_status_fault_can_answer_a_proxy_html_page(client: Client, simulator: SimulatorServer) -> None:
    add_fault(simulator, kind="status", status=502, html=True)
    answer = client.call("GET", "/v1/vehicles/sim-ok-1")
    assert answer.status == 502
    assert answer.headers["content-type"].startswith("text/html")
    assert b"502 Bad Gateway" in answer.body
    with pytest.raises(ValueError):
        answer.json()


def test_token_endpoint_failures(client: Client, simulator: SimulatorServer) -> None:
    add_fault(simulator, kind="status", status=500, path="/oauth2/token", count=2)
    form = {
        "grant_type": "client_credentials",
        "client_id": "volteras-sim-client",
        "client_secret": "volteras-sim-secret",
    }
    statuses = [client.call("POST", "/v1/oauth2/token", data=form).status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert client.call("GET", "/v1/vehicles").status == 200


def test_applied_status_fault_creates_the_command_anyway(client: Client, simulator: SimulatorServer) -> None:
    add_fault(simulator, kind="status", status=502, html=True, apply=True, path="command-execution:")
    assert client.create("sim-ok-d30").status == 502
    (execution,) = simulator.state.executions("sim-ok-d30")
    retry = client.create("sim-ok-d30")
    assert retry.status == 409
    assert retry.json()["data"] == {"commandExecutionId": execution["id"]}


def test_rate_limit_with_retry_after_seconds(client: Client, simulator: SimulatorServer) -> None:
    add_fault(simulator, kind="rate_limit", retryAfter=2, path="command-execution:")
    answer = client.create("sim-ok-rl")
    assert answer.status == 429 and answer.headers["retry-after"] == "2"
    assert answer.json()["error"] == "INTERNAL_RATE_LIMITED"
    assert simulator.state.executions() == []
    assert client.create("sim-ok-rl").status == 200


def test_rate_limit_with_retry_after_date(client: Client, simulator: SimulatorServer) -> None:
    simulator.state.add_fault("rate_limit", retry_after=3, retry_after_date=True)
    before = time.time()
    answer = client.call("GET", "/v1/vehicles")
    after = time.time()
    assert answer.status == 429
    when = email.utils.parsedate_to_datetime(answer.headers["retry-after"]).timestamp()
    # 3 s after the moment the server answered (a whole second of HTTP date: rounded up), which lies
    # between the call's start and end however long the call took.
    assert before + 3 <= when <= after + 4


def test_unauthorized_fault_rejects_a_fresh_token(client: Client, simulator: SimulatorServer) -> None:
    simulator.state.add_fault("unauthorized", path="/command-execution")
    answer = client.create("sim-ok-auth")
    assert (answer.status, answer.json()["error"]) == (401, "AUTHENTICATION_ERROR")
    assert answer.headers["www-authenticate"] == "Bearer"
    assert client.create("sim-ok-auth").status == 200


def test_slow_fault_times_out_the_client_without_blocking_the_server(
    client: Client, simulator: SimulatorServer
) -> None:
    # A server of its own: the slow request sleeps on after the test, and its stop ends it.
    slow_seconds = 120.0
    with SimulatorServer(port=0) as server:
        own = Client(client.lib, server.base_url, Api(server.base_url).login())
        try:
            server.state.add_fault("slow", delay=slow_seconds, path="/oauth2/test-token")
            with pytest.raises(own.read_timeout()):
                own.call("POST", "/v1/oauth2/test-token", timeout=0.2)
            # Served while the slow one still sleeps: a server blocked by it would answer only after
            # 120 s, when this call has long timed out.
            other = own.call("GET", "/v1/vehicles", timeout=slow_seconds / 2)
            assert other.status == 200
            [slow] = [e for e in server.state.request_log() if e["fault"] == "slow"]
            assert slow["status"] is None, "the slow request was answered: nothing overlapped"
        finally:
            own.close()
    simulator.state.add_fault("slow", delay=0.3)
    started = time.monotonic()
    assert client.call("POST", "/v1/oauth2/test-token").status == 200
    assert time.monotonic() - started >= 0.3


def test_slow_fault_can_apply_the_request_before_waiting(client: Client, simulator: SimulatorServer) -> None:
    simulator.state.add_fault("slow", delay=0.4, apply=True, path="command-execution:")
    with pytest.raises(client.read_timeout()):
        client.create("sim-ok-slow", timeout=0.2)
    assert len(simulator.state.executions("sim-ok-slow")) == 1


@pytest.mark.parametrize("reset", [False, True])
def test_drop_before_cuts_the_connection_without_applying(
    client: Client, simulator: SimulatorServer, reset: bool
) -> None:
    add_fault(simulator, kind="drop_before", path="command-execution:", reset=reset)
    with pytest.raises(client.disconnect_errors()):
        client.create("sim-ok-drop")
    counters = simulator.state.counters()
    assert counters["createAttempts"] == 1 and counters["createsTotal"] == 0
    assert simulator.state.executions() == []
    assert simulator.state.request_log()[-1]["status"] is None
    assert client.create("sim-ok-drop").status == 200


@pytest.mark.parametrize("reset", [False, True])
def test_drop_after_applies_then_cuts_the_connection(client: Client, simulator: SimulatorServer, reset: bool) -> None:
    simulator.state.add_fault("drop_after", path="command-execution:", reset=reset)
    with pytest.raises(client.disconnect_errors()):
        client.create("sim-ok-d30")
    counters = simulator.state.counters()
    assert counters["creates"] == {"sim-ok-d30": {"CLIMATE_ON": 1}} and counters["createAttempts"] == 1
    (execution,) = simulator.state.executions("sim-ok-d30")
    entry = simulator.state.request_log()[-1]
    assert (entry["status"], entry["appliedStatus"], entry["fault"]) == (None, 200, "drop_after")
    retry = client.create("sim-ok-d30")
    assert (retry.status, retry.json()["data"]["commandExecutionId"]) == (409, execution["id"])


def test_malformed_json(client: Client, simulator: SimulatorServer) -> None:
    simulator.state.add_fault("malformed_json", path="command-execution:")
    answer = client.create("sim-ok-json")
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        answer.json()
    assert len(simulator.state.executions("sim-ok-json")) == 1


@pytest.mark.parametrize(
    ("shape", "check"),
    [
        ("list", lambda body: isinstance(body, list) and body[0]["status"] == "PENDING"),
        ("missing_status", lambda body: isinstance(body, dict) and "status" not in body and "id" in body),
        ("empty_object", lambda body: body == {}),
    ],
)
def test_wrong_shape(client: Client, simulator: SimulatorServer, shape: str, check: Any) -> None:
    execution = client.create("sim-ok-d30").json()
    add_fault(simulator, kind="wrong_shape", shape=shape, path="/command-executions/")
    answer = client.poll("sim-ok-d30", execution["id"])
    assert answer.status == 200 and check(answer.json())


def test_wrong_shape_on_a_list_page(client: Client, simulator: SimulatorServer) -> None:
    client.create("sim-ok-d30")
    simulator.state.add_fault("wrong_shape", path="/command-executions$")
    page = client.call("GET", "/v1/vehicles/sim-ok-d30/command-executions").json()
    assert page["totalResults"] == 1 and "status" not in page["results"][0]


def test_unknown_status(client: Client, simulator: SimulatorServer) -> None:
    execution = client.create("sim-ok-d30").json()
    simulator.state.add_fault("unknown_status", path="/command-executions/")
    add_fault(simulator, kind="unknown_status", statusValue="QUEUED", path="/command-executions/")
    assert client.poll("sim-ok-d30", execution["id"]).json()["status"] == "CANCELLED"
    assert client.poll("sim-ok-d30", execution["id"]).json()["status"] == "QUEUED"
    assert client.poll("sim-ok-d30", execution["id"]).json()["status"] == "PENDING"


def test_extra_fields(client: Client, simulator: SimulatorServer) -> None:
    execution = client.create("sim-ok-d30").json()
    add_fault(simulator, kind="extra_fields", fields={"retries": 3, "status2": None}, path="/command-executions/")
    body = client.poll("sim-ok-d30", execution["id"]).json()
    assert body["retries"] == 3 and "status2" in body
    assert {k: body[k] for k in execution} == execution


def test_null_executed_at(client: Client, simulator: SimulatorServer) -> None:
    execution = client.create("sim-stuck-1").json()
    simulator.state.add_fault("null_executed_at", path="/command-executions/")
    body = client.poll("sim-stuck-1", execution["id"]).json()
    assert (body["status"], body["executedAt"], body["failedReason"]) == ("EXECUTED", None, None)
    assert client.poll("sim-stuck-1", execution["id"]).json()["status"] == "PENDING"


def test_fault_matching_counting_and_clearing(client: Client, simulator: SimulatorServer) -> None:
    fault = add_fault(simulator, kind="status", status=500, method="POST", count=None)
    assert fault["count"] is None
    assert client.call("GET", "/v1/vehicles").status == 200
    assert [client.create("sim-ok-m", slug).status for slug in ("lock-doors", "unlock-doors")] == [500, 500]
    # Control paths are never faulted.
    assert requests.post(f"{simulator.base_url}/_simulator/tokens/expire").status_code == 200
    (listed,) = requests.get(f"{simulator.base_url}/_simulator/faults").json()
    assert listed["applied"] == 2 and listed["id"] == fault["id"]
    assert requests.delete(f"{simulator.base_url}/_simulator/faults").json() == {"removed": 1}
    log = simulator.state.request_log()
    assert [e["fault"] for e in log[-3:]] == [None, "status", "status"]


def test_faults_apply_in_order_and_can_be_removed_by_id(client: Client, simulator: SimulatorServer) -> None:
    first = simulator.state.add_fault("status", status=503, count=2)
    simulator.state.add_fault("status", status=504)
    assert client.call("GET", "/v1/vehicles").status == 503
    assert simulator.state.clear_faults(first.id) == 1
    assert client.call("GET", "/v1/vehicles").status == 504
    assert client.call("GET", "/v1/vehicles").status == 200
