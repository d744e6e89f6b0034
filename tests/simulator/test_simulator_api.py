"""Functional tests of the simulated Connect API over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_volteras.simulator import SimulatorServer
from airflow_provider_volteras.simulator.state import DEMO_VEHICLE_IDS

from .conftest import CLIENT_ID, CLIENT_SECRET, TEST_DELAY, Api, wait_for


def token_request(base_url: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{base_url}/v1/oauth2/token", timeout=5, **kwargs)


def as_epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


# --------------------------------------------------------------------------- tokens


def test_client_credentials_with_basic_auth(simulator: SimulatorServer) -> None:
    response = token_request(
        simulator.base_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32 and body["access_token"] != body["refresh_token"]
    assert response.headers["cache-control"] == "no-store"
    check = requests.post(
        f"{simulator.base_url}/v1/oauth2/test-token", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert check.json() == {"clientId": CLIENT_ID, "organizationId": "volteras-sim-org"}


def test_client_credentials_in_the_form_are_still_accepted(simulator: SimulatorServer) -> None:
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert token_request(simulator.base_url, data=data).status_code == 200
    data["client_secret"] = "wrong"
    assert token_request(simulator.base_url, data=data).status_code == 401


def test_form_encoded_basic_credentials_are_accepted(simulator: SimulatorServer) -> None:
    simulator.state.configure(client_secret="s3cr:t/+")
    raw = base64.b64encode(b"volteras-sim-client:s3cr%3At%2F%2B").decode()
    response = token_request(
        simulator.base_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {raw}"}
    )
    assert response.status_code == 200
    response = token_request(
        simulator.base_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, "s3cr:t/+")
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("data", "auth", "code", "status"),
    [
        ({"grant_type": "client_credentials"}, (CLIENT_ID, "wrong"), "AUTHENTICATION_ERROR", 401),
        ({"grant_type": "client_credentials"}, ("someone-else", CLIENT_SECRET), "AUTHENTICATION_ERROR", 401),
        ({"grant_type": "client_credentials"}, None, "AUTHENTICATION_ERROR", 401),
        ({}, (CLIENT_ID, CLIENT_SECRET), "REQUEST_VALIDATION_ERROR", 422),
        ({"grant_type": "password"}, (CLIENT_ID, CLIENT_SECRET), "REQUEST_VALIDATION_ERROR", 422),
        ({"grant_type": "refresh_token"}, None, "REQUEST_VALIDATION_ERROR", 422),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, None, "AUTHENTICATION_ERROR", 401),
    ],
)
def test_token_errors(
    simulator: SimulatorServer, data: dict[str, str], auth: tuple[str, str] | None, code: str, status: int
) -> None:
    response = token_request(simulator.base_url, data=data, auth=auth)
    assert (response.status_code, response.json()["error"]) == (status, code)
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_refresh_tokens_rotate_and_are_single_use(simulator: SimulatorServer) -> None:
    first = token_request(
        simulator.base_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    ).json()
    renewed = token_request(
        simulator.base_url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert renewed.status_code == 200
    new = renewed.json()
    assert new["access_token"] != first["access_token"] and new["refresh_token"] != first["refresh_token"]
    reused = token_request(
        simulator.base_url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    api = Api(simulator.base_url)
    api.token = new["access_token"]
    assert api.post("/v1/oauth2/test-token").status_code == 200
    counters = simulator.state.counters()
    assert counters["tokenRequests"] == 3
    assert counters["tokenRequestsByGrant"] == {"client_credentials": 1, "refresh_token": 2}


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer not-a-token", "Basic dm9sdGVyYXM6c2VjcmV0", "bearer-typo abc"]
)
def test_requests_without_a_valid_bearer_are_rejected(simulator: SimulatorServer, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in [
        ("POST", "/v1/oauth2/test-token"),
        ("GET", "/v1/vehicles"),
        ("GET", "/v1/vehicles/sim-ok-1"),
        ("POST", "/v1/vehicles/sim-ok-1/command-execution:climate-on"),
        ("GET", "/v1/vehicles/sim-ok-1/command-executions"),
        ("GET", "/v1/vehicles/sim-ok-1/command-executions/abc"),
        ("GET", "/v1/rate-limits?objectId=sim-ok-1&domain=VEHICLE"),
    ]:
        response = requests.request(method, simulator.base_url + path, headers=headers, timeout=5)
        assert (response.status_code, response.json()["error"]) == (401, "AUTHENTICATION_ERROR"), (method, path)
    assert simulator.state.counters()["createsTotal"] == 0


def test_expiring_every_token_over_http(api: Api, simulator: SimulatorServer) -> None:
    assert api.post("/v1/oauth2/test-token").status_code == 200
    assert requests.post(f"{simulator.base_url}/_simulator/tokens/expire").json() == {"expired": 1}
    response = api.post("/v1/oauth2/test-token")
    assert (response.status_code, response.json()["message"]) == (401, "access token expired")
    api.login()
    assert api.post("/v1/oauth2/test-token").status_code == 200


def test_tokens_expire_after_their_lifetime(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.configure(token_ttl=0.3)
    api.login()
    issued = time.monotonic()
    if api.post("/v1/oauth2/test-token").status_code != 200:
        assert time.monotonic() - issued >= 0.3, "a fresh token was refused"
    wait_for(lambda: api.post("/v1/oauth2/test-token").status_code == 401)
    assert time.monotonic() - issued >= 0.3


def test_removing_the_commands_scope_only_blocks_commands(api: Api, simulator: SimulatorServer) -> None:
    execution = api.created("sim-ok-scope")
    requests.put(f"{simulator.base_url}/_simulator/config", json={"grantCommandsScope": False}).raise_for_status()
    refused = api.create("sim-ok-scope", "lock-doors")
    assert (refused.status_code, refused.json()["error"]) == (401, "AUTHENTICATION_ERROR")
    assert "vehicle:commands" in refused.json()["message"]
    assert api.poll("sim-ok-scope", execution["id"]).status_code == 200
    api.login()
    assert api.create("sim-ok-scope", "lock-doors").status_code == 401
    simulator.state.configure(grant_commands_scope=True)
    api.login()
    assert api.create("sim-ok-scope", "lock-doors").status_code == 200


# --------------------------------------------------------------------------- commands


def test_command_lifecycle_follows_the_delay(api: Api, simulator: SimulatorServer) -> None:
    created = api.created("sim-ok-d0.3")
    assert created["status"] == "PENDING"
    answers: list[str] = []  # the status of every poll, in order

    def poll() -> dict[str, Any]:
        body = dict(api.poll("sim-ok-d0.3", created["id"]).json())
        answers.append(body["status"])
        return body

    first = poll()
    times = simulator.state.mark_times(created["id"])
    assert times["terminalAt"] - times["createdAt"] == pytest.approx(0.3)
    if first["status"] == "PENDING":
        assert times["firstServedTerminalAt"] is None
    done = wait_for(lambda: (r := poll())["status"] != "PENDING" and r, timeout=30)
    assert done["status"] == "EXECUTED" and done["failedReason"] is None
    assert as_epoch(done["executedAt"]) == pytest.approx(times["terminalAt"], abs=1e-3)
    seen = simulator.state.mark_times(created["id"])["firstServedTerminalAt"]
    assert seen is not None and seen >= times["terminalAt"]
    # The command flips at its delay, not later: every poll that reached the simulator from the
    # moment it was due answered EXECUTED, and every PENDING answer came before that moment.
    arrivals = [e["time"] for e in simulator.state.request_log(kind="poll") if created["id"] in e["path"]]
    assert len(arrivals) == len(answers)
    for arrived, status in zip(arrivals, answers, strict=True):
        if arrived >= times["terminalAt"]:
            assert status == "EXECUTED", (arrivals, answers, times)


def test_default_delay_applies_to_plain_ids(api: Api, simulator: SimulatorServer) -> None:
    created = api.created("plain-vehicle-1")
    times = simulator.state.mark_times(created["id"])
    assert times["terminalAt"] - times["createdAt"] == pytest.approx(TEST_DELAY)
    assert times["finalStatus"] == "EXECUTED"


def test_failed_magic_ids(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.configure(default_delay=0)
    offline = api.created("sim-fail-OEM_VEHICLE_OFFLINE")
    text = api.created("sim-fail-text-7")
    bare = api.created("sim-fail")
    assert api.poll("sim-fail-OEM_VEHICLE_OFFLINE", offline["id"]).json()["failedReason"] == "OEM_VEHICLE_OFFLINE"
    assert api.poll("sim-fail-text-7", text["id"]).json()["failedReason"] == "Vehicle did not respond"
    assert api.poll("sim-fail", bare["id"]).json()["failedReason"] == "OEM_COMMAND_FAILED"


def test_stuck_commands_fail_at_the_platform_timeout(api: Api, simulator: SimulatorServer) -> None:
    requests.put(f"{simulator.base_url}/_simulator/config", json={"commandTimeoutSeconds": 0.4}).raise_for_status()
    stuck = api.created("sim-stuck-1")
    slow = api.created("sim-ok-d5")
    assert stuck["timeout"] == 1
    assert api.poll("sim-stuck-1", stuck["id"]).json()["status"] == "PENDING"
    deadline = simulator.state.mark_times(stuck["id"])["terminalAt"]
    assert deadline - simulator.state.mark_times(stuck["id"])["createdAt"] == pytest.approx(0.4)
    wait_for(lambda: api.poll("sim-ok-d5", slow["id"]).json()["status"] != "PENDING")
    assert time.time() >= deadline
    for vehicle, execution in (("sim-stuck-1", stuck), ("sim-ok-d5", slow)):
        polled = api.poll(vehicle, execution["id"]).json()
        assert (polled["status"], polled["failedReason"]) == ("FAILED", "OEM_COMMAND_TIMEOUT")
        assert polled["executedAt"] is None


def test_one_pending_command_per_type_and_vehicle(api: Api, simulator: SimulatorServer) -> None:
    first = api.created("sim-ok-d0.3")
    again = api.create("sim-ok-d0.3")
    assert again.status_code == 409
    assert again.json()["error"] == "COMMAND_ALREADY_IN_PROGRESS"
    assert again.json()["data"] == {"commandExecutionId": first["id"]}
    assert api.create("sim-ok-d0.3", "lock-doors").status_code == 200
    assert api.create("sim-ok-other", "climate-on").status_code == 200
    wait_for(lambda: api.poll("sim-ok-d0.3", first["id"]).json()["status"] == "EXECUTED")
    assert api.create("sim-ok-d0.3").status_code == 200
    counters = simulator.state.counters()
    assert counters["creates"]["sim-ok-d0.3"] == {"CLIMATE_ON": 2, "LOCK_DOORS": 1}
    assert counters["createAttempts"] == 5 and counters["createsTotal"] == 4


def test_concurrent_creates_admit_exactly_one(api: Api, simulator: SimulatorServer) -> None:
    results: list[int] = []

    def create() -> None:
        response = requests.post(
            f"{simulator.base_url}/v1/vehicles/sim-ok-race/command-execution:unlock-doors",
            headers=api.headers(),
            timeout=5,
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [409] * 11


@pytest.mark.parametrize(
    ("vehicle", "slug", "body", "ok"),
    [
        # Most vehicles: the API documents no temperature range; a charge limit is a percentage.
        ("sim-ok-args", "set-temperature", {"driverTemperature": 10, "passengerTemperature": 31.5}, True),
        ("sim-ok-args", "set-charge-limit", {"limit": 20}, True),
        ("sim-ok-args", "set-charge-limit", {"limit": 0}, True),
        ("sim-ok-args", "set-charge-limit", {"limit": 101}, False),
        # A stricter vehicle model (sim-strict...): 15-28 °C and a 50-100 % limit.
        ("sim-strict-args", "set-temperature", {"driverTemperature": 15, "passengerTemperature": 28}, True),
        ("sim-strict-args", "set-temperature", {"driverTemperature": 14.9, "passengerTemperature": 20}, False),
        ("sim-strict-args", "set-temperature", {"driverTemperature": 20, "passengerTemperature": 28.5}, False),
        ("sim-strict-args", "set-charge-limit", {"limit": 50}, True),
        ("sim-strict-args", "set-charge-limit", {"limit": 100}, True),
        ("sim-strict-args", "set-charge-limit", {"limit": 49}, False),
    ],
)
def test_command_argument_rules_are_per_vehicle(
    api: Api, vehicle: str, slug: str, body: dict[str, Any], ok: bool
) -> None:
    response = api.create(vehicle, slug, json=body)
    if ok:
        assert response.status_code == 200
        assert response.json()["commandArguments"] == body
    else:
        assert (response.status_code, response.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")


def test_unknown_vehicles_and_executions_are_not_found(api: Api) -> None:
    for method, path in [
        ("GET", "/v1/vehicles/sim-missing-car"),
        ("POST", "/v1/vehicles/sim-missing-car/command-execution:climate-on"),
        ("GET", "/v1/vehicles/sim-missing-car/command-executions"),
        ("GET", "/v1/vehicles/sim-missing-car/command-executions/abc"),
        ("GET", "/v1/rate-limits?objectId=sim-missing-car&domain=VEHICLE"),
        ("GET", "/v1/vehicles/bad%20id!"),
    ]:
        response = api.request(method, path)
        assert (response.status_code, response.json()["error"]) == (404, "RESOURCE_NOT_FOUND"), path
    execution = api.created("sim-ok-a")
    assert api.poll("sim-ok-b", execution["id"]).status_code == 404
    assert api.poll("sim-ok-a", "00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.poll("sim-ok-a", execution["id"]).status_code == 200


def test_vehicles_appear_on_first_sight(api: Api) -> None:
    listed = [v["id"] for v in api.get("/v1/vehicles").json()["results"]]
    assert listed == list(DEMO_VEHICLE_IDS)
    vehicle = api.get("/v1/vehicles/car-42").json()
    assert vehicle["id"] == "car-42" and len(vehicle["vin"]) == 17
    assert api.get("/v1/vehicles/car-42").json() == vehicle
    page = api.get("/v1/vehicles").json()
    assert [v["id"] for v in page["results"]][-1] == "car-42" and page["totalResults"] == len(DEMO_VEHICLE_IDS) + 1
    only = api.get("/v1/vehicles", params={"filter": json.dumps({"field": "id", "operator": "eq", "value": "car-42"})})
    assert [v["id"] for v in only.json()["results"]] == ["car-42"]


# --------------------------------------------------------------------------- listing


def test_listing_paginates_newest_first(api: Api) -> None:
    slugs = ["climate-on", "climate-off", "lock-doors", "unlock-doors", "start-charging", "stop-charging"]
    ids = []
    for slug in slugs:
        ids.append(api.created("sim-ok-d30", slug)["id"])
    pages = []
    token = None
    while True:
        params: dict[str, Any] = {"maxPageSize": 4}
        if token:
            params["pageToken"] = token
        page = api.get("/v1/vehicles/sim-ok-d30/command-executions", params=params).json()
        pages.append(page)
        assert page["totalResults"] == 6
        token = page["nextPageToken"]
        if token is None:
            break
    assert [len(p["results"]) for p in pages] == [4, 2]
    assert [e["id"] for p in pages for e in p["results"]] == ids[::-1]
    # New commands do not shift a cursor already handed out.
    first = api.get("/v1/vehicles/sim-ok-d30/command-executions", params={"maxPageSize": 3}).json()
    api.created("sim-ok-d30", "open-charge-port")
    second = api.get(
        "/v1/vehicles/sim-ok-d30/command-executions", params={"maxPageSize": 3, "pageToken": first["nextPageToken"]}
    ).json()
    assert [e["id"] for e in second["results"]] == ids[2::-1]
    assert second["nextPageToken"] is None


def test_page_size_rules(api: Api) -> None:
    path = "/v1/vehicles/sim-ok-1/command-executions"
    assert api.get(path, params={"maxPageSize": 100}).status_code == 200
    too_large = api.get(path, params={"maxPageSize": 101})
    assert (too_large.status_code, too_large.json()["error"]) == (400, "PAGE_SIZE_TOO_LARGE")
    for bad in ("0", "abc"):
        response = api.get(path, params={"maxPageSize": bad})
        assert (response.status_code, response.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")
    garbage = api.get(path, params={"pageToken": "not-a-token"})
    assert (garbage.status_code, garbage.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")


def test_default_page_size_is_fifty(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.configure(default_delay=0)
    for _ in range(51):
        api.created("sim-ok-many", "lock-doors")
    page = api.get("/v1/vehicles/sim-ok-many/command-executions").json()
    assert len(page["results"]) == 50 and page["totalResults"] == 51 and page["nextPageToken"]


def test_page_tokens_are_bound_to_their_filter_and_vehicle(api: Api) -> None:
    for slug in ("climate-on", "climate-off", "lock-doors"):
        api.created("sim-ok-d30", slug)
    pending = json.dumps({"field": "status", "operator": "eq", "value": "PENDING"})
    path = "/v1/vehicles/sim-ok-d30/command-executions"
    first = api.get(path, params={"maxPageSize": 1, "filter": pending}).json()
    same = json.dumps({"value": "PENDING", "operator": "eq", "field": "status"}, indent=2)
    assert api.get(path, params={"maxPageSize": 1, "filter": same, "pageToken": first["nextPageToken"]}).ok
    changed = api.get(path, params={"maxPageSize": 1, "pageToken": first["nextPageToken"]})
    assert (changed.status_code, changed.json()["error"]) == (400, "PAGINATED_QUERY_FILTER_CHANGED")
    other = api.get("/v1/vehicles/sim-ok-x/command-executions", params={"pageToken": first["nextPageToken"]})
    assert (other.status_code, other.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")


def test_filters(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.set_scenario("car-f", delay=30, sequence=[{"outcome": "EXECUTED", "delaySeconds": 0}] * 2)
    done = [api.created("car-f", "climate-on")["id"], api.created("car-f", "climate-off")["id"]]
    waiting = [api.created("car-f", "lock-doors")["id"], api.created("car-f", "unlock-doors")["id"]]
    path = "/v1/vehicles/car-f/command-executions"

    def ids(filter_value: Any) -> list[str]:
        response = api.get(path, params={"filter": json.dumps(filter_value)})
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["results"]]

    assert ids({"field": "status", "operator": "eq", "value": "PENDING"}) == waiting[::-1]
    assert ids({"field": "status", "operator": "ne", "value": "PENDING"}) == done[::-1]
    assert ids({"field": "command", "operator": "in", "value": ["CLIMATE_ON", "LOCK_DOORS"]}) == [waiting[0], done[0]]
    both = [
        {"field": "status", "operator": "eq", "value": "EXECUTED"},
        {"field": "command", "operator": "eq", "value": "CLIMATE_OFF"},
    ]
    assert ids(both) == [done[1]]
    assert ids({"and": both}) == [done[1]]
    assert ids({"field": "id", "operator": "eq", "value": waiting[1]}) == [waiting[1]]
    assert ids([]) == [*waiting[::-1], *done[::-1]]


@pytest.mark.parametrize(
    "bad",
    [
        "{",
        json.dumps({"field": "vehicleColour", "operator": "eq", "value": "red"}),
        json.dumps({"field": "status", "operator": "contains", "value": "PEND"}),
        json.dumps({"field": "status", "operator": "=", "value": "PENDING"}),
        json.dumps({"field": "status", "operator": "in", "value": "PENDING"}),
        json.dumps({"field": "status", "operator": "eq", "value": "DONE"}),
        json.dumps({"field": "status", "operator": "eq"}),
        json.dumps({"and": {"field": "status"}}),
        json.dumps(42),
    ],
)
def test_malformed_filters_are_rejected(api: Api, bad: str) -> None:
    response = api.get("/v1/vehicles/sim-ok-1/command-executions", params={"filter": bad})
    assert (response.status_code, response.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")


# --------------------------------------------------------------------------- rate limits


def test_rate_limits_count_creates_and_follow_the_scenario(api: Api, simulator: SimulatorServer) -> None:
    params = {"objectId": "sim-ok-rl", "domain": "VEHICLE"}
    (limit,) = api.get("/v1/rate-limits", params=params).json()
    assert (limit["maxRequests"], limit["remainingRequests"], limit["windowSizeSeconds"]) == (10, 10, 3600)
    api.created("sim-ok-rl", "lock-doors")
    api.created("sim-ok-rl", "unlock-doors")
    assert api.get("/v1/rate-limits", params=params).json()[0]["remainingRequests"] == 8
    requests.put(
        f"{simulator.base_url}/_simulator/vehicles/sim-ok-rl/scenario",
        json={"rateLimit": {"maxRequests": 3, "windowSizeSeconds": 60}},
    ).raise_for_status()
    (limit,) = api.get("/v1/rate-limits", params=params).json()
    assert (limit["maxRequests"], limit["remainingRequests"], limit["windowSizeSeconds"]) == (3, 1, 60)
    simulator.state.set_scenario("sim-ok-rl", rate_limit_remaining=0)
    assert api.get("/v1/rate-limits", params=params).json()[0]["remainingRequests"] == 0
    assert simulator.state.counters()["rateLimitRequests"] == 4


@pytest.mark.parametrize(
    "params", [{"objectId": "sim-ok-1"}, {"domain": "VEHICLE"}, {"objectId": "sim-ok-1", "domain": "ACCOUNT"}]
)
def test_rate_limit_parameters_are_validated(api: Api, params: dict[str, str]) -> None:
    response = api.get("/v1/rate-limits", params=params)
    assert (response.status_code, response.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")


# --------------------------------------------------------------------------- scenarios & control paths


def test_scenario_sequence_then_base(api: Api, simulator: SimulatorServer) -> None:
    response = requests.put(
        f"{simulator.base_url}/_simulator/vehicles/car-seq/scenario",
        json={
            "outcome": "FAILED",
            "failedReason": "OEM_COMMAND_FAILED",
            "delaySeconds": 0,
            "sequence": [
                {"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"},
                {"outcome": "EXECUTED", "delaySeconds": 0.05},
            ],
        },
    )
    assert response.status_code == 200
    assert len(response.json()["sequence"]) == 2
    results = []
    for _ in range(3):
        execution_id = api.created("car-seq", "start-charging")["id"]

        def finished(execution_id: str = execution_id) -> bool:
            return bool(api.poll("car-seq", execution_id).json()["status"] != "PENDING")

        wait_for(finished)
        polled = api.poll("car-seq", execution_id).json()
        results.append((polled["status"], polled["failedReason"]))
    assert results == [("FAILED", "OEM_VEHICLE_OFFLINE"), ("EXECUTED", None), ("FAILED", "OEM_COMMAND_FAILED")]
    scenario = requests.get(f"{simulator.base_url}/_simulator/vehicles/car-seq/scenario").json()
    assert scenario["sequence"] == [] and scenario["source"] == "explicit"


def test_explicit_scenario_overrides_the_magic_id(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.set_scenario("sim-fail-OEM_TIMEOUT", outcome="EXECUTED", delay=0)
    execution = api.created("sim-fail-OEM_TIMEOUT")
    assert api.poll("sim-fail-OEM_TIMEOUT", execution["id"]).json()["status"] == "EXECUTED"
    simulator.state.clear_scenario("sim-fail-OEM_TIMEOUT")
    scenario = requests.get(f"{simulator.base_url}/_simulator/vehicles/sim-fail-OEM_TIMEOUT-d2.5/scenario").json()
    assert scenario["source"] == "magic"
    assert (scenario["outcome"], scenario["failedReason"], scenario["delaySeconds"]) == ("FAILED", "OEM_TIMEOUT", 2.5)


def test_control_endpoints_validate_their_input(simulator: SimulatorServer) -> None:
    base = f"{simulator.base_url}/_simulator"
    assert requests.put(f"{base}/vehicles/x/scenario", json={"outcome": "MAYBE"}).status_code == 422
    assert requests.put(f"{base}/vehicles/x/scenario", json={"delaySeconds": -1}).status_code == 422
    assert requests.put(f"{base}/vehicles/x/scenario", json={"typo": 1}).status_code == 422
    assert requests.put(f"{base}/config", json={"commandTimeoutSeconds": 0}).status_code == 422
    assert requests.post(f"{base}/faults", json={"kind": "explode"}).status_code == 422
    assert requests.post(f"{base}/faults", json={"kind": "status", "path": "("}).status_code == 422
    assert requests.get(f"{base}/faults").json() == []


def test_config_round_trip_and_reset_restores_start_up_settings(simulator: SimulatorServer) -> None:
    base = f"{simulator.base_url}/_simulator"
    config = requests.get(f"{base}/config").json()
    assert config["defaultDelaySeconds"] == TEST_DELAY and config["commandTimeoutSeconds"] == 300
    updated = requests.put(f"{base}/config", json={"tokenTtlSeconds": 60, "defaultDelaySeconds": 0.5}).json()
    assert (updated["tokenTtlSeconds"], updated["defaultDelaySeconds"], updated["commandTimeoutSeconds"]) == (
        60,
        0.5,
        300,
    )
    assert simulator.state.config.token_ttl == 60
    assert requests.post(f"{base}/reset").json() == {"reset": True}
    assert requests.get(f"{base}/config").json() == config


def test_reset_clears_data_and_tokens(api: Api, simulator: SimulatorServer) -> None:
    execution = api.created("sim-ok-reset")
    simulator.state.set_scenario("sim-ok-reset", outcome="FAILED")
    simulator.state.add_fault("slow", count=None)
    requests.post(f"{simulator.base_url}/_simulator/reset").raise_for_status()
    assert simulator.state.executions() == [] and simulator.state.faults() == []
    assert simulator.state.scenario("sim-ok-reset")["source"] == "magic"
    assert api.post("/v1/oauth2/test-token").status_code == 401
    api.login()
    assert api.poll("sim-ok-reset", execution["id"]).status_code == 404
    assert simulator.state.counters()["requests"] == 3


def test_finishing_an_execution_by_hand(api: Api, simulator: SimulatorServer) -> None:
    execution = api.created("sim-stuck-manual")
    finished = requests.post(
        f"{simulator.base_url}/_simulator/executions/{execution['id']}/finish",
        json={"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"},
    ).json()
    assert (finished["status"], finished["failedReason"]) == ("FAILED", "OEM_VEHICLE_OFFLINE")
    assert api.poll("sim-stuck-manual", execution["id"]).json() == finished
    listing = requests.get(f"{simulator.base_url}/_simulator/executions", params={"vehicleId": "sim-stuck-manual"})
    (row,) = listing.json()
    assert row["times"]["finishedManually"] is True and row["status"] == "FAILED"


# --------------------------------------------------------------------------- accounting


def test_counters_and_request_log(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.configure(default_delay=0)
    execution = api.created("sim-ok-count")
    api.create("sim-ok-count", "set-charge-limit", json={"limit": 101})
    api.poll("sim-ok-count", execution["id"])
    api.poll("sim-ok-count", execution["id"])
    api.get("/v1/vehicles/sim-ok-count/command-executions")
    api.get("/v1/rate-limits", params={"objectId": "sim-ok-count", "domain": "VEHICLE"})
    api.post("/v1/oauth2/test-token")
    requests.get(f"{simulator.base_url}/_simulator/counters")
    counters = requests.get(f"{simulator.base_url}/_simulator/counters").json()
    assert counters == simulator.state.counters()
    expected = {
        "requests": 8,
        "tokenRequests": 1,
        "testTokenRequests": 1,
        "createAttempts": 2,
        "createsTotal": 1,
        "polls": 2,
        "lists": 1,
        "rateLimitRequests": 1,
        "faultsApplied": 0,
    }
    assert {key: counters[key] for key in expected} == expected
    assert counters["creates"] == {"sim-ok-count": {"CLIMATE_ON": 1}}
    assert counters["pollsByExecution"] == {execution["id"]: 2}
    assert counters["errorsByCode"] == {"REQUEST_VALIDATION_ERROR": 1}
    log = simulator.state.request_log()
    assert [(e["method"], e["status"]) for e in log] == [
        ("POST", 200),
        ("POST", 200),
        ("POST", 422),
        ("GET", 200),
        ("GET", 200),
        ("GET", 200),
        ("GET", 200),
        ("POST", 200),
    ]
    assert log[1]["path"] == "/v1/vehicles/sim-ok-count/command-execution:climate-on"
    assert all(e["time"] <= time.time() for e in log)
    assert requests.get(f"{simulator.base_url}/_simulator/requests", params={"limit": 2}).json()[-1] == log[-1]


def test_every_response_carries_a_fresh_request_id(api: Api, simulator: SimulatorServer) -> None:
    responses = [
        api.get("/v1/vehicles"),
        api.get("/v1/vehicles/sim-missing-1"),
        requests.get(f"{simulator.base_url}/_simulator/health"),
        api.get("/v1/nowhere"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == len(ids) and all(len(i) == 36 for i in ids)
    assert responses[1].json()["requestId"] == ids[1]
    assert [e["requestId"] for e in simulator.state.request_log()][-3:] == [ids[0], ids[1], ids[3]]


def test_fast_poll_path_matches_the_fastapi_route(api: Api, simulator: SimulatorServer) -> None:
    execution = api.created("sim-fail-OEM_TIMEOUT-d0")
    cases = [
        ("sim-fail-OEM_TIMEOUT-d0", execution["id"], api.headers()),
        ("sim-fail-OEM_TIMEOUT-d0", "missing", api.headers()),
        ("sim-fail-OEM_TIMEOUT-d0", execution["id"], {}),
        ("sim-missing-1", execution["id"], api.headers()),
    ]

    async def through_fastapi() -> list[httpx.Response]:
        # The FastAPI app alone, without the fast path of the outer ASGI layer.
        transport = httpx.ASGITransport(app=simulator.app.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://simulator") as client:
            return [await client.get(f"/v1/vehicles/{v}/command-executions/{e}", headers=h) for v, e, h in cases]

    routed = asyncio.run(through_fastapi())
    for (vehicle, execution_id, headers), slow in zip(cases, routed, strict=True):
        path = f"/v1/vehicles/{vehicle}/command-executions/{execution_id}"
        fast = requests.get(simulator.base_url + path, headers=headers, timeout=5)
        assert fast.status_code == slow.status_code
        fast_body, slow_body = fast.json(), slow.json()
        for body in (fast_body, slow_body):
            body.pop("requestId", None)
            body.pop("timestamp", None)
        assert fast_body == slow_body
        assert fast.headers.get("www-authenticate") == slow.headers.get("www-authenticate")


def test_server_restarts_on_the_same_port_and_keeps_state() -> None:
    # The client keeps its connections alive (a requests session) and the server would keep them
    # for 120 s: neither the stop nor the restart may wait for them.
    keep_alive = 120
    server = SimulatorServer(port=0, default_delay=0, timeout_keep_alive=keep_alive)
    with server:
        port = server.port
        api = Api(server.base_url)
        api.login()
        execution = api.created("sim-ok-restart")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/_simulator/health", timeout=5)
    started = time.monotonic()
    with server:
        assert server.port == port
        assert api.poll("sim-ok-restart", execution["id"]).json()["status"] == "EXECUTED"
    assert not server.running
    # Excluded: sitting out the 120 s keep-alive of the session's connection (a stop that waited would
    # also raise after its own 5 s); a slow machine adds seconds, not a minute.
    assert time.monotonic() - started < keep_alive / 2


def test_stop_is_quick_even_with_a_request_in_flight() -> None:
    in_flight_seconds = 120  # the request the stop must not wait for, and the client's patience
    server = SimulatorServer(port=0).start()
    server.state.add_fault("slow", delay=in_flight_seconds)
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(requests.get(f"{server.base_url}/v1/vehicles", timeout=in_flight_seconds).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    in_flight = threading.Thread(target=call, daemon=True)
    in_flight.start()
    wait_for(lambda: server.state.counters()["requests"] == 1, timeout=30)
    started = time.monotonic()
    server.stop()
    # Excluded: waiting for the 120 s in-flight request (the stop itself gives up after 5 s and raises).
    assert time.monotonic() - started < in_flight_seconds / 2
    assert not server.running
    in_flight.join(in_flight_seconds / 2)
    assert not in_flight.is_alive(), "the client still waits: the stop did not cut its connection"
    # The client sees the connection cut, not an HTTP error answer.
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError), outcome
