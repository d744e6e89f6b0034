"""Tags and the vehicle listing by tag, on the pure state (no HTTP); the HTTP shapes are in test_contract.py."""

from __future__ import annotations

import json

import pytest

from airflow_provider_volteras.simulator import SimulatorError, SimulatorState
from airflow_provider_volteras.simulator.constants import DEMO_VEHICLE_IDS


def ids(page: dict) -> list[str]:
    return [v["id"] for v in page["results"]]


def test_demo_vehicles_carry_demo_tags_after_every_reset() -> None:
    state = SimulatorState()
    assert ids(state.list_vehicles(tag_key="fleet", tag_value="demo")) == ["sim-ok-demo-1", "sim-ok-demo-2"]
    assert ids(state.list_vehicles(tag_key="fleet", tag_value="demo-mixed")) == list(DEMO_VEHICLE_IDS)
    state.add_tag("DEVICE", "sim-ok-x", "fleet", "demo")
    state.remove_tag("DEVICE", "sim-ok-demo-1", "fleet", "demo")
    assert ids(state.list_vehicles(tag_key="fleet", tag_value="demo")) == ["sim-ok-demo-2", "sim-ok-x"]
    state.reset()
    assert ids(state.list_vehicles(tag_key="fleet", tag_value="demo")) == ["sim-ok-demo-1", "sim-ok-demo-2"]
    assert state.tags("DEVICE", "sim-ok-x") == {"tags": []}
    assert ids(SimulatorState(seed_demo_vehicles=False).list_vehicles(tag_key="fleet")) == []


def test_a_key_without_a_value_lists_every_value_and_a_value_needs_a_key() -> None:
    state = SimulatorState(seed_demo_vehicles=False)
    state.add_tag("DEVICE", "sim-ok-a", "site", "north")
    state.add_tag("DEVICE", "sim-ok-b", "site", "south")
    state.add_tag("DEVICE", "sim-ok-c", "owner", "north")
    assert ids(state.list_vehicles(tag_key="site")) == ["sim-ok-a", "sim-ok-b"]
    assert ids(state.list_vehicles(tag_key="site", tag_value="south")) == ["sim-ok-b"]
    with pytest.raises(SimulatorError) as caught:
        state.list_vehicles(tag_value="north")
    assert caught.value.code == "REQUEST_VALIDATION_ERROR"


def test_a_tag_and_a_filter_both_apply() -> None:
    state = SimulatorState(seed_demo_vehicles=False)
    for vid in ("sim-ok-a", "sim-fail-OEM_VEHICLE_OFFLINE-b", "sim-ok-c"):
        state.add_tag("DEVICE", vid, "fleet", "f")
    only_ok = json.dumps({"field": "id", "operator": "like", "value": "sim-ok-%"})
    assert ids(state.list_vehicles(tag_key="fleet", tag_value="f", filter_json=only_ok)) == ["sim-ok-a", "sim-ok-c"]


def test_another_tag_between_pages_is_a_changed_filter() -> None:
    state = SimulatorState(seed_demo_vehicles=False)
    for i in range(3):
        state.add_tag("DEVICE", f"sim-ok-{i}", "fleet", "f")
        state.add_tag("DEVICE", f"sim-ok-{i}", "fleet", "g")
    first = state.list_vehicles(tag_key="fleet", tag_value="f", max_page_size=1)
    assert first["nextPageToken"] and first["totalResults"] == 3
    with pytest.raises(SimulatorError) as caught:
        state.list_vehicles(tag_key="fleet", tag_value="g", max_page_size=1, page_token=first["nextPageToken"])
    assert caught.value.code == "PAGINATED_QUERY_FILTER_CHANGED"
    rest = state.list_vehicles(tag_key="fleet", tag_value="f", max_page_size=5, page_token=first["nextPageToken"])
    assert ids(rest) == ["sim-ok-1", "sim-ok-2"]


def test_tags_are_pairs_held_once_and_checked() -> None:
    state = SimulatorState(seed_demo_vehicles=False)
    state.add_tag("DEVICE", "sim-ok-a", "fleet", "f")
    state.add_tag("DEVICE", "sim-ok-a", "fleet", "f")
    state.add_tag("DEVICE", "sim-ok-a", "fleet", "g")
    assert state.tags("DEVICE", "sim-ok-a") == {
        "tags": [{"key": "fleet", "value": "f"}, {"key": "fleet", "value": "g"}]
    }
    for call, code in (
        (lambda: state.remove_tag("DEVICE", "sim-ok-a", "fleet", "h"), "RESOURCE_NOT_FOUND"),
        (lambda: state.add_tag("DEVICE", "sim-missing-1", "fleet", "f"), "RESOURCE_NOT_FOUND"),
        (lambda: state.add_tag("ACCOUNT", "sim-ok-a", "fleet", "f"), "REQUEST_VALIDATION_ERROR"),
        (lambda: state.add_tag("DEVICE", "sim-ok-a", "k" * 151, "f"), "REQUEST_VALIDATION_ERROR"),
    ):
        with pytest.raises(SimulatorError) as caught:
            call()
        assert caught.value.code == code
