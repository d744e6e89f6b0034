"""Listing filters as the real API documents them ("listing-filter-json"): terms, boolean
functions, dotted fields, every operator and datetime comparison (state-level, hand-driven clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_volteras.simulator import SimulatorError, SimulatorState
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
    """Vehicle ``car-f`` with five executions made 10 s apart (oldest first):

    0 CLIMATE_ON executed, 1 SET_CHARGE_LIMIT 80 executed, 2 LOCK_DOORS failed
    (OEM_VEHICLE_OFFLINE), 3 SET_CHARGE_LIMIT 55 executed, 4 UNLOCK_DOORS still pending.
    """
    state = SimulatorState(default_delay=1.0, command_timeout=300.0, clock=clock)
    plan: list[tuple[str, dict[str, Any] | None, str]] = [
        ("CLIMATE_ON", None, "EXECUTED"),
        ("SET_CHARGE_LIMIT", {"limit": 80}, "EXECUTED"),
        ("LOCK_DOORS", None, "FAILED"),
        ("SET_CHARGE_LIMIT", {"limit": 55}, "EXECUTED"),
    ]
    for command, arguments, outcome in plan:
        state.set_scenario("car-f", outcome=outcome, failed_reason="OEM_VEHICLE_OFFLINE", delay=2)
        state.create_command("car-f", command, arguments)
        clock.now += 10
    state.set_scenario("car-f", delay=1000)
    state.create_command("car-f", "UNLOCK_DOORS")
    clock.now += 5
    return state


def ids(state: SimulatorState, flt: Any) -> list[int]:
    """Which of the fixture's executions (by position, oldest = 0) a filter lists, newest first."""
    order = [e["id"] for e in state.executions("car-f")]
    page = state.list_executions("car-f", filter_json=json.dumps(flt), max_page_size=100)
    assert page["totalResults"] == len(page["results"])
    return [order.index(e["id"]) for e in page["results"]]


def term(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


def test_equality_operators(state: SimulatorState) -> None:
    assert ids(state, term("command", "==", "SET_CHARGE_LIMIT")) == [3, 1]
    assert ids(state, term("status", "==", "PENDING")) == [4]
    assert ids(state, term("status", "!=", "EXECUTED")) == [4, 2]
    assert ids(state, term("failedReason", "==", "OEM_VEHICLE_OFFLINE")) == [2]
    # SQL semantics: a null field is neither equal nor unequal to a value ...
    assert ids(state, term("failedReason", "!=", "OEM_TIMEOUT")) == [2]
    # ... and "== null" / "!= null" are null checks.
    assert ids(state, term("failedReason", "==", None)) == [4, 3, 1, 0]
    assert ids(state, term("failedReason", "!=", None)) == [2]


def test_null_operators(state: SimulatorState) -> None:
    assert ids(state, term("executedAt", "isNull")) == [4, 2]
    assert ids(state, term("executedAt", "isNotNull")) == [3, 1, 0]
    assert ids(state, {"field": "commandArguments", "operator": "isNotNull"}) == [3, 1]
    assert ids(state, {"field": "commandArguments.limit", "operator": "isNull"}) == [4, 2, 0]


def test_ordering_operators_on_a_nested_number(state: SimulatorState) -> None:
    assert ids(state, term("commandArguments.limit", ">", 55)) == [1]
    assert ids(state, term("commandArguments.limit", ">=", 55)) == [3, 1]
    assert ids(state, term("commandArguments.limit", "<", 80)) == [3]
    assert ids(state, term("commandArguments.limit", "<=", 80)) == [3, 1]
    assert ids(state, term("commandArguments.limit", "==", 80)) == [1]
    # A string never equals or orders against a number.
    assert ids(state, term("commandArguments.limit", "==", "80")) == []


def test_like_operators(state: SimulatorState) -> None:
    assert ids(state, term("command", "like", "%_DOORS")) == [4, 2]
    assert ids(state, term("command", "like", "%_doors")) == []
    assert ids(state, term("command", "ilike", "%_doors")) == [4, 2]
    assert ids(state, term("command", "like", "CLIMATE_O_")) == [0]
    assert ids(state, term("command", "notIlike", "%doors")) == [3, 1, 0]
    # A null field matches no pattern, not even notIlike.
    assert ids(state, term("failedReason", "notIlike", "%TIMEOUT%")) == [2]
    assert ids(state, term("failedReason", "like", "OEM\\_VEHICLE%")) == [2]
    assert ids(state, term("failedReason", "like", "OEM\\%%")) == []


def test_created_at_compares_as_a_datetime(state: SimulatorState) -> None:
    # Executions were created at T0, T0+10, T0+20, T0+30 and T0+40.
    assert ids(state, term("createdAt", ">=", iso_utc(T0 + 20))) == [4, 3, 2]
    assert ids(state, term("createdAt", ">", iso_utc(T0 + 20))) == [4, 3]
    assert ids(state, term("createdAt", "<", iso_utc(T0 + 10))) == [0]
    assert ids(state, term("createdAt", "<=", iso_utc(T0 + 10))) == [1, 0]
    assert ids(state, term("createdAt", "==", iso_utc(T0 + 30))) == [3]
    # Any offset and precision: the same instant written in +02:00, without fractions.
    plus_two = "2023-11-15T00:13:40+02:00"  # T0 + 20 s
    assert ids(state, term("createdAt", ">=", plus_two)) == [4, 3, 2]
    assert ids(state, term("createdAt", ">=", "2023-11-14T22:13:40Z")) == [4, 3, 2]
    # No offset means UTC.
    assert ids(state, term("createdAt", ">=", "2023-11-14T22:13:40")) == [4, 3, 2]


def test_executed_at_compares_as_a_datetime(state: SimulatorState) -> None:
    executed = state.list_executions("car-f", filter_json=json.dumps(term("command", "==", "CLIMATE_ON")))
    stamp = executed["results"][0]["executedAt"]
    assert ids(state, term("executedAt", "==", stamp)) == [0]
    assert ids(state, term("executedAt", ">", stamp)) == [3, 1]


def test_boolean_functions(state: SimulatorState) -> None:
    climate = term("command", "==", "CLIMATE_ON")
    failed = term("status", "==", "FAILED")
    limit = term("command", "==", "SET_CHARGE_LIMIT")
    assert ids(state, {"or": [climate, failed]}) == [2, 0]
    assert ids(state, {"not": [limit]}) == [4, 2, 0]
    assert ids(state, {"and": [limit, term("commandArguments.limit", "<", 60)]}) == [3]
    assert ids(state, [limit, term("commandArguments.limit", "<", 60)]) == [3]
    nested = {"and": [{"or": [climate, limit]}, {"not": [term("commandArguments.limit", "==", 55)]}]}
    assert ids(state, nested) == [1, 0]
    assert ids(state, [{"or": [failed]}, {"not": [{"not": [failed]}]}]) == [2]


def test_legacy_operators_still_work(state: SimulatorState) -> None:
    assert ids(state, term("status", "eq", "FAILED")) == [2]
    assert ids(state, term("status", "ne", "EXECUTED")) == [4, 2]
    assert ids(state, term("command", "in", ["CLIMATE_ON", "LOCK_DOORS"])) == [2, 0]


def test_vehicle_listing_takes_the_same_filters(state: SimulatorState) -> None:
    state.get_vehicle("car-42")

    def listed(flt: Any) -> list[str]:
        return [v["id"] for v in state.list_vehicles(filter_json=json.dumps(flt), max_page_size=100)["results"]]

    assert listed(term("id", "like", "car-%")) == ["car-f", "car-42"]
    assert listed({"and": [term("id", "ilike", "CAR-%"), {"not": [term("id", "==", "car-f")]}]}) == ["car-42"]
    assert listed([term("id", "==", "car-42"), term("metadata.accountId", "==", "sim-account-1")]) == ["car-42"]
    assert listed([term("id", "==", "car-42"), term("isListening", "==", True)]) == ["car-42"]
    assert listed([term("id", "==", "car-42"), term("registrationPlate", "isNull")]) == ["car-42"]
    assert "car-42" in listed(term("metadata.lastSeenAt", ">=", iso_utc(T0)))
    assert listed(term("metadata.lastSeenAt", ">", iso_utc(T0 + 3600))) == []


@pytest.mark.parametrize(
    "bad",
    [
        term("status", "contains", "PEND"),
        term("status", "===", "PENDING"),
        term("colour", "==", "red"),
        term("status.name", "==", "x"),
        term("commandArguments.", "isNull"),
        term("status", "==", "DONE"),
        term("status", ">"),
        {"field": "status", "operator": "=="},
        {"field": "status", "operator": "==", "value": "PENDING", "extra": 1},
        term("createdAt", ">=", "yesterday"),
        term("createdAt", ">=", 1700000000),
        term("createdAt", "like", "2023%"),
        term("timeout", "==", "300"),
        term("commandArguments", "==", {"limit": 80}),
        term("command", "like", 5),
        {"and": []},
        {"or": []},
        {"not": []},
        {"not": [term("status", "==", "PENDING"), term("status", "==", "FAILED")]},
        {"not": term("status", "==", "PENDING")},
        {"and": term("status", "==", "PENDING")},
        {"xor": [term("status", "==", "PENDING")]},
        [[]],
        42,
        "status == PENDING",
    ],
)
def test_malformed_filters_answer_validation_errors(state: SimulatorState, bad: Any) -> None:
    with pytest.raises(SimulatorError) as caught:
        state.list_executions("car-f", filter_json=json.dumps(bad))
    assert caught.value.code == "REQUEST_VALIDATION_ERROR"


def test_unknown_operator_names_the_documented_ones(api: Api) -> None:
    response = api.get(
        "/v1/vehicles/sim-ok-1/command-executions", params={"filter": json.dumps(term("status", "eq!", "PENDING"))}
    )
    assert (response.status_code, response.json()["error"]) == (422, "REQUEST_VALIDATION_ERROR")
    assert response.json()["data"]["supportedOperators"] == [
        "isNull",
        "isNotNull",
        "==",
        "!=",
        ">",
        "<",
        ">=",
        "<=",
        "like",
        "ilike",
        "notIlike",
    ]


def test_filters_over_http(api: Api) -> None:
    first = api.created("sim-ok-d30", "climate-on")
    api.created("sim-ok-d30", "lock-doors")
    flt = {"or": [term("command", "==", "CLIMATE_ON"), term("command", "ilike", "climate%")]}
    page = api.get("/v1/vehicles/sim-ok-d30/command-executions", params={"filter": json.dumps(flt)}).json()
    assert [e["id"] for e in page["results"]] == [first["id"]] and page["totalResults"] == 1
