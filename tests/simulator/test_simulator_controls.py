"""Control API for realistic listings: seeded history, other clients' executions, listing lag,
argument clamping and per-vehicle request counters."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
import requests

from airflow_provider_volteras.simulator import SimulatorError, SimulatorServer, SimulatorState
from airflow_provider_volteras.simulator.state import iso_utc

from .conftest import Api

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> SimulatorState:
    return SimulatorState(default_delay=1.0, command_timeout=300.0, clock=clock)


def control(simulator: SimulatorServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{simulator.base_url}/_simulator{path}", timeout=10, **kwargs)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def list_all(api: Api, vehicle_id: str, flt: Any = None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    params: dict[str, Any] = {"maxPageSize": 100}
    if flt is not None:
        params["filter"] = json.dumps(flt)
    while True:
        response = api.get(f"/v1/vehicles/{vehicle_id}/command-executions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        results.extend(page["results"])
        if page["nextPageToken"] is None:
            return results
        params["pageToken"] = page["nextPageToken"]


# --------------------------------------------------------------------------- history


def test_history_is_listed_older_than_new_commands_and_not_counted(api: Api, simulator: SimulatorServer) -> None:
    fresh = api.created("car-h", "climate-off")
    response = control(
        simulator,
        "POST",
        "/vehicles/car-h/history",
        json={"command": "CLIMATE_OFF", "count": 1300, "status": "EXECUTED", "ageSeconds": 86400, "arguments": None},
    )
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["vehicleId"], summary["command"], summary["count"], summary["status"]) == (
        "car-h",
        "CLIMATE_OFF",
        1300,
        "EXECUTED",
    )
    assert summary["executions"] == 1301
    now = time.time()
    assert epoch(summary["newestCreatedAt"]) == pytest.approx(now - 86400, abs=5)
    assert epoch(summary["newestCreatedAt"]) - epoch(summary["oldestCreatedAt"]) == pytest.approx(1299, abs=0.01)

    listed = list_all(api, "car-h")
    assert len(listed) == 1301
    assert listed[0]["id"] == fresh["id"]
    assert (listed[1]["id"], listed[-1]["id"]) == (summary["newestId"], summary["oldestId"])
    old = listed[1]
    assert (old["status"], old["command"], old["commandArguments"], old["failedReason"]) == (
        "EXECUTED",
        "CLIMATE_OFF",
        None,
        None,
    )
    assert epoch(old["executedAt"]) == pytest.approx(epoch(summary["newestCreatedAt"]) + 0.5, abs=0.01)
    assert api.poll("car-h", summary["oldestId"]).json()["status"] == "EXECUTED"

    counters = simulator.state.counters()
    assert counters["createsTotal"] == 1 and counters["creates"] == {"car-h": {"CLIMATE_OFF": 1}}
    assert counters["historySeeded"] == 1300
    limits = api.get("/v1/rate-limits", params={"objectId": "car-h", "domain": "VEHICLE"}).json()[0]
    assert limits["maxRequests"] - limits["remainingRequests"] == 1


def test_history_can_be_filtered_by_created_at(api: Api, simulator: SimulatorServer) -> None:
    control(
        simulator, "POST", "/vehicles/car-h/history", json={"command": "LOCK_DOORS", "count": 500}
    ).raise_for_status()
    control(
        simulator,
        "POST",
        "/vehicles/car-h/history",
        json={"command": "LOCK_DOORS", "count": 10, "ageSeconds": 60, "status": "FAILED"},
    ).raise_for_status()
    since = iso_utc(time.time() - 3600)
    recent = list_all(api, "car-h", {"field": "createdAt", "operator": ">=", "value": since})
    assert len(recent) == 10
    assert {(e["status"], e["failedReason"]) for e in recent} == {("FAILED", "OEM_COMMAND_FAILED")}
    older = list_all(api, "car-h", {"field": "createdAt", "operator": "<", "value": since})
    assert len(older) == 500 and {e["status"] for e in older} == {"EXECUTED"}


def test_seeding_ten_thousand_executions_is_fast(
    api: Api, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeding is one batch and a page of a big history costs that page: the work is counted, not timed
    (a loaded machine slows both). A batch sorts the vehicle's list once at most (one key per execution,
    where sorting per execution would take ~n²/2) and serializes nothing; a page serializes its own
    executions only, not the whole history."""
    from airflow_provider_volteras.simulator import records
    from airflow_provider_volteras.simulator import state as state_module

    work = {"keys": 0, "serialized": 0}
    created_at, to_api = state_module._created_at, records._Execution.to_api

    def counted_key(execution: Any) -> float:
        work["keys"] += 1
        return created_at(execution)

    def counted_to_api(execution: Any, now: float) -> dict[str, Any]:
        work["serialized"] += 1
        return to_api(execution, now)

    monkeypatch.setattr(state_module, "_created_at", counted_key)
    monkeypatch.setattr(records._Execution, "to_api", counted_to_api)
    response = control(simulator, "POST", "/vehicles/car-big/history", json={"command": "CLIMATE_ON", "count": 10_000})
    assert response.status_code == 200 and response.json()["executions"] == 10_000
    # An older batch lands before the first one: the list has to be put back in order, once.
    response = control(
        simulator,
        "POST",
        "/vehicles/car-big/history",
        json={"command": "CLIMATE_OFF", "count": 10_000, "ageSeconds": 200_000},
    )
    assert response.status_code == 200 and response.json()["executions"] == 20_000  # the vehicle's total
    assert work["keys"] <= 20_000, work
    assert work["serialized"] == 0, work
    page = api.get("/v1/vehicles/car-big/command-executions", params={"maxPageSize": 100}).json()
    assert page["totalResults"] == 20_000 and len(page["results"]) == 100
    assert {e["command"] for e in page["results"]} == {"CLIMATE_ON"}  # newest first: still in order
    assert work["serialized"] == 100, work


def test_history_inserted_mid_listing_does_not_shift_the_cursor(api: Api, simulator: SimulatorServer) -> None:
    ids = [api.created("sim-ok-d30", slug)["id"] for slug in ("climate-on", "climate-off", "lock-doors")]
    first = api.get("/v1/vehicles/sim-ok-d30/command-executions", params={"maxPageSize": 2}).json()
    assert [e["id"] for e in first["results"]] == ids[:0:-1]
    simulator.state.seed_history("sim-ok-d30", "WAKE_UP", 5)
    rest = api.get(
        "/v1/vehicles/sim-ok-d30/command-executions", params={"maxPageSize": 2, "pageToken": first["nextPageToken"]}
    ).json()
    assert rest["results"][0]["id"] == ids[0] and rest["results"][1]["command"] == "WAKE_UP"
    assert rest["totalResults"] == 8


def test_history_keeps_odd_statuses_and_arguments(state: SimulatorState, clock: Clock) -> None:
    state.seed_history("car-h", "SET_CHARGE_LIMIT", 2, status=None, age_seconds=0, arguments={"limit": 70})
    state.seed_history("car-h", "SET_CHARGE_LIMIT", 1, status="QUEUED", age_seconds=10)
    state.seed_history("car-h", "SET_CHARGE_LIMIT", 1, status="PENDING", age_seconds=20)
    listed = state.list_executions("car-h")["results"]
    assert [e["status"] for e in listed] == [None, None, "QUEUED", "PENDING"]
    assert listed[0]["commandArguments"] == {"limit": 70} and listed[2]["commandArguments"] is None
    clock.now += 3600
    assert [e["status"] for e in state.list_executions("car-h")["results"]] == [None, None, "QUEUED", "PENDING"]
    # Stale history holds no slot: a new command is accepted.
    assert state.create_command("car-h", "SET_CHARGE_LIMIT", {"limit": 60})["status"] == "PENDING"


@pytest.mark.parametrize(
    "body",
    [
        {"command": "FLY", "count": 1},
        {"command": "CLIMATE_ON", "count": 0},
        {"command": "CLIMATE_ON", "count": 1, "ageSeconds": -1},
        {"command": "CLIMATE_ON", "count": 1, "colour": "red"},
        {"count": 1},
    ],
)
def test_bad_history_requests_are_refused(simulator: SimulatorServer, body: dict[str, Any]) -> None:
    assert control(simulator, "POST", "/vehicles/car-h/history", json=body).status_code == 422


def test_history_for_a_missing_vehicle_is_not_found(simulator: SimulatorServer) -> None:
    response = control(simulator, "POST", "/vehicles/sim-missing/history", json={"command": "CLIMATE_ON", "count": 1})
    assert (response.status_code, response.json()["error"]) == (404, "RESOURCE_NOT_FOUND")


def test_reset_forgets_history(state: SimulatorState) -> None:
    state.seed_history("car-h", "CLIMATE_ON", 3)
    state.reset()
    with pytest.raises(SimulatorError):
        state.list_executions("sim-missing")
    assert state.list_executions("car-h")["totalResults"] == 0


# --------------------------------------------------------------------------- other clients' executions


def test_a_foreign_pending_execution_holds_the_slot_and_finishes(api: Api, simulator: SimulatorServer) -> None:
    response = control(
        simulator,
        "POST",
        "/vehicles/car-o/executions",
        json={"command": "CLIMATE_OFF", "status": "PENDING", "arguments": {"by": "app"}, "delaySeconds": 0.4},
    )
    assert response.status_code == 200, response.text
    foreign = response.json()
    assert (foreign["status"], foreign["command"], foreign["vehicleId"], foreign["commandArguments"]) == (
        "PENDING",
        "CLIMATE_OFF",
        "car-o",
        {"by": "app"},
    )
    refused = api.create("car-o", "climate-off")
    assert (refused.status_code, refused.json()["error"]) == (409, "COMMAND_ALREADY_IN_PROGRESS")
    assert refused.json()["data"]["commandExecutionId"] == foreign["id"]
    assert api.create("car-o", "climate-on").status_code == 200  # other commands are free
    assert [e["id"] for e in list_all(api, "car-o")][1] == foreign["id"]
    time.sleep(0.5)
    assert api.poll("car-o", foreign["id"]).json()["status"] == "EXECUTED"
    assert api.create("car-o", "climate-off").status_code == 200
    counters = simulator.state.counters()
    assert counters["foreignExecutions"] == 1 and counters["createsTotal"] == 2


def test_a_foreign_pending_execution_takes_the_default_delay(state: SimulatorState, clock: Clock) -> None:
    foreign = state.add_execution("car-o", "LOCK_DOORS")
    assert foreign["status"] == "PENDING"
    with pytest.raises(SimulatorError) as caught:
        state.create_command("car-o", "LOCK_DOORS")
    assert caught.value.code == "COMMAND_ALREADY_IN_PROGRESS"
    with pytest.raises(SimulatorError):
        state.add_execution("car-o", "LOCK_DOORS")  # another client would have been refused too
    clock.now += 1.0
    assert state.get_execution("car-o", foreign["id"])["status"] == "EXECUTED"
    assert state.create_command("car-o", "LOCK_DOORS")["status"] == "PENDING"


def test_a_foreign_pending_execution_can_fail_time_out_or_leave_the_slot(state: SimulatorState, clock: Clock) -> None:
    failing = state.add_execution("car-o", "CLIMATE_ON", outcome="FAILED", failed_reason="OEM_VEHICLE_OFFLINE", delay=5)
    stuck = state.add_execution("car-o", "CLIMATE_OFF", outcome="PENDING")
    aside = state.add_execution("car-o", "LOCK_DOORS", holds_slot=False, delay=100)
    assert state.create_command("car-o", "LOCK_DOORS")["status"] == "PENDING"
    clock.now += 5
    assert state.get_execution("car-o", failing["id"])["failedReason"] == "OEM_VEHICLE_OFFLINE"
    assert state.get_execution("car-o", stuck["id"])["status"] == "PENDING"
    assert state.get_execution("car-o", aside["id"])["status"] == "PENDING"
    clock.now += 300
    timed_out = state.get_execution("car-o", stuck["id"])
    assert (timed_out["status"], timed_out["failedReason"]) == ("FAILED", "OEM_COMMAND_TIMEOUT")
    # A pending one created long ago has already timed out.
    old = state.add_execution("car-o", "WAKE_UP", created_at=clock.now - 1000)
    assert (old["status"], old["failedReason"]) == ("FAILED", "OEM_COMMAND_TIMEOUT")


@pytest.mark.parametrize(
    ("status", "reason"),
    [(None, None), ("QUEUED", None), ("EXECUTED", None), ("FAILED", "OEM_COMMAND_FAILED"), ("CANCELLED", None)],
)
def test_foreign_executions_keep_any_status(api: Api, simulator: SimulatorServer, status: Any, reason: Any) -> None:
    response = control(
        simulator, "POST", "/vehicles/car-o/executions", json={"command": "CLIMATE_OFF", "status": status}
    )
    assert response.status_code == 200, response.text
    foreign = response.json()
    assert (foreign["status"], foreign["failedReason"]) == (status, reason)
    assert (foreign["executedAt"] is not None) == (status == "EXECUTED")
    assert api.poll("car-o", foreign["id"]).json() == foreign
    assert list_all(api, "car-o") == [foreign]
    assert api.create("car-o", "climate-off").status_code == 200  # holds no slot


def test_a_foreign_execution_can_be_dated(api: Api, simulator: SimulatorServer) -> None:
    api.created("car-o", "climate-on")
    response = control(
        simulator,
        "POST",
        "/vehicles/car-o/executions",
        json={"command": "CLIMATE_OFF", "status": "EXECUTED", "createdAt": "2024-05-01T12:00:00Z"},
    )
    foreign = response.json()
    assert epoch(foreign["executedAt"]) == epoch("2024-05-01T12:00:00Z")
    assert list_all(api, "car-o")[-1]["id"] == foreign["id"]  # the oldest
    flt = {"field": "createdAt", "operator": "<", "value": "2024-05-01T12:00:00.000001+00:00"}
    assert [e["id"] for e in list_all(api, "car-o", flt)] == [foreign["id"]]
    naive = control(
        simulator,
        "POST",
        "/vehicles/car-o/executions",
        json={"command": "WAKE_UP", "status": None, "createdAt": "2024-05-01T11:00:00"},
    )
    assert naive.status_code == 200
    flt = {"field": "createdAt", "operator": "==", "value": "2024-05-01T11:00:00Z"}
    assert [e["id"] for e in list_all(api, "car-o", flt)] == [naive.json()["id"]]


def test_adding_a_pending_execution_to_a_busy_slot_is_refused(api: Api, simulator: SimulatorServer) -> None:
    simulator.state.set_scenario("car-o", delay=30)
    created = api.created("car-o", "climate-off")
    response = control(simulator, "POST", "/vehicles/car-o/executions", json={"command": "CLIMATE_OFF"})
    assert (response.status_code, response.json()["error"]) == (409, "COMMAND_ALREADY_IN_PROGRESS")
    assert response.json()["data"]["commandExecutionId"] == created["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"command": "FLY"},
        {"command": "CLIMATE_ON", "outcome": "MAYBE"},
        {"command": "CLIMATE_ON", "status": "QUEUED", "holdsSlot": True},
        {"command": "CLIMATE_ON", "createdAt": "last week"},
        {"command": "CLIMATE_ON", "delaySeconds": -1},
        {"command": "CLIMATE_ON", "colour": "red"},
    ],
)
def test_bad_foreign_executions_are_refused(simulator: SimulatorServer, body: dict[str, Any]) -> None:
    assert control(simulator, "POST", "/vehicles/car-o/executions", json=body).status_code == 422


# --------------------------------------------------------------------------- listing lag


def test_listing_lag_hides_young_executions_from_listings_only(state: SimulatorState, clock: Clock) -> None:
    state.seed_history("car-l", "CLIMATE_ON", 3, age_seconds=3600)
    config = state.configure(listing_lag_seconds=5)
    assert config.listing_lag_seconds == 5.0 and config.to_dict()["listingLagSeconds"] == 5.0
    created = state.create_command("car-l", "CLIMATE_OFF")
    foreign = state.add_execution("car-l", "LOCK_DOORS", status="EXECUTED")
    page = state.list_executions("car-l")
    assert page["totalResults"] == 3 and created["id"] not in [e["id"] for e in page["results"]]
    assert state.get_execution("car-l", created["id"])["id"] == created["id"]
    clock.now += 4.9
    assert state.list_executions("car-l")["totalResults"] == 3
    clock.now += 0.1
    listed = [e["id"] for e in state.list_executions("car-l")["results"]]
    assert listed[:2] == [foreign["id"], created["id"]] and len(listed) == 5
    state.configure(listing_lag_seconds=0)
    assert state.configure().listing_lag_seconds == 0.0


def test_listing_lag_over_http(api: Api, simulator: SimulatorServer) -> None:
    response = control(simulator, "PUT", "/config", json={"listingLagSeconds": 0.3})
    assert response.status_code == 200 and response.json()["listingLagSeconds"] == 0.3
    created = api.created("car-l", "climate-on")
    assert list_all(api, "car-l") == []
    assert api.poll("car-l", created["id"]).status_code == 200
    time.sleep(0.35)
    assert [e["id"] for e in list_all(api, "car-l")] == [created["id"]]
    assert control(simulator, "PUT", "/config", json={"listingLagSeconds": -1}).status_code == 422
    simulator.state.reset()
    assert simulator.state.config.listing_lag_seconds == 0.0


# --------------------------------------------------------------------------- clamping, create answers


def test_charge_limits_are_clamped_everywhere(api: Api, simulator: SimulatorServer) -> None:
    response = control(simulator, "PUT", "/config", json={"clampChargeLimit": {"min": 50, "max": 100}})
    assert response.json()["clampChargeLimit"] == {"min": 50, "max": 100}
    path = "/v1/vehicles/car-c/command-executions"
    for asked, stored in ((30, 50), (150, 100), (80, 80), (-5, 50)):
        created = api.created("car-c", "set-charge-limit", json={"limit": asked})
        assert created["commandArguments"] == {"limit": stored}, asked
        assert api.poll("car-c", created["id"]).json()["commandArguments"] == {"limit": stored}
        listed = api.get(path, params={"maxPageSize": 1}).json()["results"][0]
        assert (listed["id"], listed["commandArguments"]) == (created["id"], {"limit": stored})
        simulator.state.finish_execution(created["id"])
    assert simulator.state.counters()["creates"]["car-c"] == {"SET_CHARGE_LIMIT": 4}
    # Without a clamp the documented range applies again.
    cleared = control(simulator, "PUT", "/config", json={"clampChargeLimit": None})
    assert cleared.json()["clampChargeLimit"] is None
    refused = api.create("car-c", "set-charge-limit", json={"limit": 150})
    assert (refused.status_code, refused.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")
    # Other settings leave the clamp alone; bad clamps are refused.
    control(simulator, "PUT", "/config", json={"clampChargeLimit": {"min": 20, "max": 90}}).raise_for_status()
    assert control(simulator, "PUT", "/config", json={"defaultDelaySeconds": 0.1}).json()["clampChargeLimit"] == {
        "min": 20,
        "max": 90,
    }
    for bad in ({"min": 90, "max": 20}, {"min": 20}, {"min": 20, "max": 90, "step": 1}):
        assert control(simulator, "PUT", "/config", json={"clampChargeLimit": bad}).status_code == 422
    assert simulator.state.config.clamp_charge_limit == (20, 90)


def test_clamping_leaves_other_commands_alone(state: SimulatorState) -> None:
    state.configure(clamp_charge_limit={"min": 50, "max": 90})
    temperature = {"driverTemperature": 40.0, "passengerTemperature": 10.0}
    assert state.create_command("car-c", "SET_TEMPERATURE", temperature)["commandArguments"] == temperature
    assert state.create_command("car-c", "SET_CHARGE_LIMIT", {"limit": 95})["commandArguments"] == {"limit": 90}
    state.configure(clamp_charge_limit=None)
    assert state.config.clamp_charge_limit is None
    with pytest.raises(ValueError):
        state.configure(clamp_charge_limit=(9, 1))
    assert SimulatorState(clamp_charge_limit=(50, 100)).config.clamp_charge_limit == (50, 100)


def test_create_answers_can_leave_the_arguments_out(api: Api, simulator: SimulatorServer) -> None:
    response = control(simulator, "PUT", "/config", json={"omitCreateArguments": True})
    assert response.json()["omitCreateArguments"] is True
    created = api.created("car-c", "set-charge-limit", json={"limit": 70})
    assert "commandArguments" not in created and created["status"] == "PENDING"
    assert api.poll("car-c", created["id"]).json()["commandArguments"] == {"limit": 70}
    assert list_all(api, "car-c")[0]["commandArguments"] == {"limit": 70}
    plain = api.created("car-c", "climate-on")
    assert "commandArguments" not in plain
    control(simulator, "PUT", "/config", json={"omitCreateArguments": False}).raise_for_status()
    assert api.created("car-c", "lock-doors")["commandArguments"] is None


# --------------------------------------------------------------------------- per-vehicle counting


def test_requests_are_counted_per_vehicle(api: Api, simulator: SimulatorServer) -> None:
    created = api.created("car-1", "climate-on")
    assert api.create("car-1", "climate-on").status_code == 409
    api.created("car-10", "climate-on")
    for _ in range(3):
        api.get("/v1/vehicles/car-1/command-executions")
    api.get("/v1/vehicles/car-10/command-executions")
    api.poll("car-1", created["id"])
    api.get("/v1/vehicles/car-1")
    api.get("/v1/vehicles")
    api.get("/v1/rate-limits", params={"objectId": "car-1", "domain": "VEHICLE"})
    counters = requests.get(f"{simulator.base_url}/_simulator/counters", timeout=5).json()
    assert counters["listsByVehicle"] == {"car-1": 3, "car-10": 1}
    assert counters["createAttemptsByVehicle"] == {"car-1": 2, "car-10": 1}
    assert counters["requestsByVehicle"] == {
        "car-1": {"list": 3, "create": 2, "poll": 1, "vehicle": 1},
        "car-10": {"list": 1, "create": 1, "poll": 0, "vehicle": 0},
    }
    assert counters["creates"] == {"car-1": {"CLIMATE_ON": 1}, "car-10": {"CLIMATE_ON": 1}}

    lists = simulator.state.request_log(vehicle_id="car-1", kind="list")
    assert len(lists) == 3 and {(e["method"], e["status"], e["vehicleId"]) for e in lists} == {("GET", 200, "car-1")}
    posts = requests.get(
        f"{simulator.base_url}/_simulator/requests", params={"vehicleId": "car-1", "kind": "create"}, timeout=5
    ).json()
    assert [e["status"] for e in posts] == [200, 409]
    assert all(
        e["vehicleId"] is None for e in simulator.state.request_log(kind="vehicle") if e["path"] == "/v1/vehicles"
    )
    simulator.state.reset()
    assert simulator.state.counters()["requestsByVehicle"] == {}
