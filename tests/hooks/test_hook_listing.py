"""Listing executions (lazy cursor pagination, filters) and rate limits, against the real simulator."""

from __future__ import annotations

import itertools
import json

import pytest

from airflow_provider_volteras.exceptions import VolterasValidationError

from .conftest import log_entries

VEHICLE = "sim-ok-listing"


@pytest.fixture
def history(sim) -> list[dict]:
    """Seven finished executions on VEHICLE, oldest first: 5 CLIMATE_OFF then 2 LOCK_DOORS."""
    sim.state.set_scenario(VEHICLE, delay=0)
    made = [sim.state.create_command(VEHICLE, "CLIMATE_OFF") for _ in range(5)]
    made += [sim.state.create_command(VEHICLE, "LOCK_DOORS") for _ in range(2)]
    return made


def lists(sim) -> int:
    return sim.state.counters()["lists"]


def test_pages_are_fetched_lazily(sim, connect, history):
    iterator = connect().list_command_executions(VEHICLE, max_page_size=2)
    assert lists(sim) == 0  # nothing fetched until iteration starts
    first = next(iterator)
    assert lists(sim) == 1
    second = next(iterator)
    assert lists(sim) == 1
    third = next(iterator)
    assert lists(sim) == 2
    rest = list(iterator)
    assert lists(sim) == 4  # 7 results in pages of 2
    got = [first["id"], second["id"], third["id"], *(e["id"] for e in rest)]
    assert got == [e["id"] for e in reversed(history)]  # newest first, nothing lost or repeated
    page_requests = log_entries(sim, kind="list")
    assert all(e["status"] == 200 for e in page_requests)


def test_partial_iteration_stops_fetching(sim, connect, history):
    taken = list(itertools.islice(connect().list_command_executions(VEHICLE, max_page_size=2), 3))
    assert len(taken) == 3
    assert lists(sim) == 2


@pytest.mark.parametrize(
    "flt",
    [
        {"field": "command", "operator": "eq", "value": "LOCK_DOORS"},
        [{"field": "command", "operator": "eq", "value": "LOCK_DOORS"}],
        json.dumps({"field": "command", "operator": "eq", "value": "LOCK_DOORS"}),
    ],
    ids=["term", "list", "json-text"],
)
def test_filter_is_applied(sim, connect, history, flt):
    results = list(connect().list_command_executions(VEHICLE, filter=flt, max_page_size=1))
    assert [e["id"] for e in results] == [e["id"] for e in reversed(history[5:])]
    assert lists(sim) == 2  # filtered results paginate too


def test_filter_on_status_and_command(sim, connect, history):
    flt = [
        {"field": "command", "operator": "eq", "value": "CLIMATE_OFF"},
        {"field": "status", "operator": "eq", "value": "EXECUTED"},
    ]
    results = list(connect().list_command_executions(VEHICLE, filter=flt))
    assert len(results) == 5 and {e["command"] for e in results} == {"CLIMATE_OFF"}
    none = list(
        connect().list_command_executions(VEHICLE, filter={"field": "status", "operator": "eq", "value": "PENDING"})
    )
    assert none == []


def test_invalid_filter_is_reported(sim, connect, history):
    with pytest.raises(VolterasValidationError) as info:
        list(connect().list_command_executions(VEHICLE, filter={"field": "colour", "operator": "eq", "value": "red"}))
    assert info.value.code == "REQUEST_VALIDATION_ERROR"
    assert "colour" in str(info.value)


def test_empty_listing(sim, connect):
    assert list(connect().list_command_executions("sim-ok-nothing")) == []
    assert lists(sim) == 1


def test_rate_limits_are_the_simulators(sim, connect):
    sim.state.set_scenario(VEHICLE, rate_limit_max=7, rate_limit_window_seconds=60, rate_limit_remaining=3)
    got = connect().get_rate_limits(VEHICLE)
    assert got == sim.state.rate_limits(VEHICLE, "VEHICLE")
    assert len(got) == 1
    (limit,) = got
    assert (limit["remainingRequests"], limit["maxRequests"], limit["windowSizeSeconds"]) == (3, 7, 60)
    assert limit["objectId"] == VEHICLE
    request = log_entries(sim, kind="rate_limit")[0]
    assert request["path"] == "/v1/rate-limits"


def test_rate_limits_count_down_with_creates(sim, connect):
    hook = connect()
    before = hook.get_rate_limits("sim-ok-count")[0]["remainingRequests"]
    hook.create_command_execution("sim-ok-count", "LOCK_DOORS")
    assert hook.get_rate_limits("sim-ok-count")[0]["remainingRequests"] == before - 1
