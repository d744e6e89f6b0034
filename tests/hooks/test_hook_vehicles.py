"""VolterasHook: listing vehicles, reading tags, and resolving a vehicle selection, against the simulator.

What is asserted: the ids and fields a caller gets, the requests the simulator received (one listing
request when a selection is refused early, no command ever), and the errors a DAG author reads.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from airflow_provider_volteras._core.vehicles import DEFAULT_MAX_SELECTED, VehicleSelection
from airflow_provider_volteras._core.wire import ApiRequest, RawResponse
from airflow_provider_volteras.exceptions import VolterasInvalidInputError, VolterasUnexpectedResponseError
from airflow_provider_volteras.hooks.volteras import VolterasHook

from .conftest import log_entries


def tag(sim: Any, vehicle_ids: list[str], key: str = "fleet", value: str = "t") -> None:
    for vid in vehicle_ids:
        sim.state.add_tag("DEVICE", vid, key, value)


def listings(sim: Any) -> list[dict]:
    return [e for e in log_entries(sim, method="GET") if e["path"] == "/v1/vehicles"]


def test_every_page_is_read_and_vehicles_are_typed(sim, connect):
    fleet = [f"sim-ok-pg-{i:03d}" for i in range(130)]
    tag(sim, fleet)
    hook = connect()
    vehicles = list(hook.list_vehicles(tag="fleet=t", max_page_size=50))
    assert [v["id"] for v in vehicles] == fleet
    assert len(listings(sim)) == 3  # 50 + 50 + 30
    first = vehicles[0]
    assert first["make"] == "BMW" and len(first["vin"]) == 17 and first["metadata"]["accountId"] == "sim-account-1"
    everything = [v["id"] for v in hook.list_vehicles()]
    assert everything[:4] == ["sim-ok-demo-1", "sim-ok-demo-2", "sim-fail-OEM_VEHICLE_OFFLINE-demo", "sim-stuck-demo"]
    assert everything[4:] == fleet


def test_a_filter_and_a_tag_narrow_the_listing(sim, connect):
    tag(sim, ["sim-ok-a", "sim-fail-OEM_VEHICLE_OFFLINE-b", "sim-ok-c"])
    hook = connect()
    only_ok = {"field": "id", "operator": "like", "value": "sim-ok-%"}
    assert [v["id"] for v in hook.list_vehicles(tag={"key": "fleet", "value": "t"}, filter=only_ok)] == [
        "sim-ok-a",
        "sim-ok-c",
    ]
    assert [v["id"] for v in hook.list_vehicles(filter=json.dumps(only_ok))][:2] == ["sim-ok-demo-1", "sim-ok-demo-2"]


def test_bad_listing_arguments_fail_before_any_request(sim, connect):
    hook = connect()
    for kwargs in ({"tag": "fleet"}, {"tag": "=x"}, {"tag": "k=" + "v" * 151}, {"filter": "{"}, {"filter": []}):
        with pytest.raises(VolterasInvalidInputError):
            hook.list_vehicles(**kwargs)
    with pytest.raises(VolterasInvalidInputError, match="max_page_size"):
        hook.list_vehicles(max_page_size=101)
    assert sim.state.counters()["requests"] == 0


def test_tags_are_read_typed(sim, connect):
    hook = connect()
    assert hook.get_vehicle_tags("sim-ok-demo-1") == [
        {"key": "fleet", "value": "demo"},
        {"key": "fleet", "value": "demo-mixed"},
    ]
    assert hook.get_vehicle_tags("sim-ok-untagged") == []
    with pytest.raises(VolterasInvalidInputError):
        hook.get_vehicle_tags("bad/id")


# -- a listing that does not end ------------------------------------------------------------------------


def _pages(monkeypatch: pytest.MonkeyPatch, pages: Any) -> list[str]:
    """Answer vehicle listings with ``pages(token) -> (results, next_token)``; returns the tokens asked for."""
    asked: list[str] = []

    def call(self: VolterasHook, request: ApiRequest) -> RawResponse:
        token = (request.params or {}).get("pageToken", "")
        asked.append(token)
        results, next_token = pages(token)
        body = {"results": results, "nextPageToken": next_token, "totalResults": 0}
        return RawResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())

    monkeypatch.setattr(VolterasHook, "_call", call)
    return asked


def test_a_repeated_page_token_ends_the_vehicle_listing(sim, connect, monkeypatch):
    hook = connect()
    asked = _pages(monkeypatch, lambda token: ([{"id": "sim-ok-1"}], "same"))
    with pytest.raises(VolterasUnexpectedResponseError, match="repeated page token"):
        list(hook.list_vehicles())
    assert asked == ["", "same"]


def test_an_endless_vehicle_listing_is_capped(sim, connect, monkeypatch):
    hook = connect()
    asked = _pages(monkeypatch, lambda token: ([], f"t{len(asked)}"))
    with pytest.raises(VolterasUnexpectedResponseError, match="more pages after 5 pages"):
        list(hook.list_vehicles(max_pages=5))
    assert len(asked) == 5
    with pytest.raises(VolterasUnexpectedResponseError, match="more pages after"):
        hook.select_vehicles(tag="fleet=t", max_vehicles=10)


def test_a_listed_vehicle_without_a_usable_id_is_refused(sim, connect, monkeypatch):
    hook = connect()
    _pages(monkeypatch, lambda token: ([{"id": "../../oauth2/token"}], None))
    with pytest.raises(VolterasUnexpectedResponseError, match="without a usable id"):
        hook.select_vehicles(tag="fleet=t")


# -- selections -----------------------------------------------------------------------------------------


def test_a_tag_selection_lists_once_checks_each_vehicle_and_sends_nothing(sim, connect, hook_logs):
    fleet = ["sim-ok-s1", "sim-ok-s2", "sim-ok-s3"]
    tag(sim, fleet)
    hook = connect()
    assert hook.select_vehicles(tag="fleet=t") == fleet
    assert len(listings(sim)) == 1
    assert sorted(e["path"] for e in log_entries(sim, path="/v1/tags/")) == [f"/v1/tags/DEVICE/{v}" for v in fleet]
    assert sim.state.counters()["createAttempts"] == 0
    assert any("3 vehicle(s) selected by tag fleet=t: sim-ok-s1, sim-ok-s2, sim-ok-s3" in e["event"] for e in hook_logs)


def test_a_listing_that_ignores_the_tag_is_refused(sim, connect, monkeypatch):
    """An API (or a proxy) that drops tagKey/tagValue answers the whole organization: nothing is selected."""
    tag(sim, ["sim-ok-only"])
    hook = connect()
    real_call = VolterasHook._call

    def drop_tag(self: VolterasHook, request: ApiRequest) -> RawResponse:
        if request.path == "/v1/vehicles":
            params = {k: v for k, v in (request.params or {}).items() if k not in ("tagKey", "tagValue")}
            request = dataclasses.replace(request, params=params)
        return real_call(self, request)

    monkeypatch.setattr(VolterasHook, "_call", drop_tag)
    with pytest.raises(VolterasUnexpectedResponseError, match="returned vehicle sim-ok-demo-1, whose tags"):
        hook.select_vehicles(tag="fleet=t")
    assert sim.state.counters()["createAttempts"] == 0


def test_an_empty_selection_is_refused_clearly(sim, connect):
    hook = connect()
    with pytest.raises(VolterasInvalidInputError, match=r"\(tag fleet=nobody\) has no vehicles.*Nothing was sent"):
        hook.select_vehicles(tag="fleet=nobody")
    nothing = {"field": "make", "operator": "==", "value": "Nobody"}
    with pytest.raises(VolterasInvalidInputError, match="no listed vehicle matches this filter"):
        hook.select_vehicles(vehicle_filter=nothing)
    with pytest.raises(VolterasInvalidInputError, match="the list is empty"):
        hook.select_vehicles(vehicle_ids=[])


def test_an_oversized_selection_is_refused_after_one_page(sim, connect):
    tag(sim, [f"sim-ok-big-{i}" for i in range(250)])
    hook = connect()
    with pytest.raises(VolterasInvalidInputError, match=r"has 250 vehicles, above max_vehicles=200"):
        hook.select_vehicles(tag="fleet=t", max_vehicles=200)
    assert len(listings(sim)) == 1  # the first page's totalResults was enough
    assert log_entries(sim, path="/v1/tags/") == []  # no vehicle's tags were read
    assert hook.select_vehicles(tag="fleet=t", max_vehicles=250, verify_tags=False)[-1] == "sim-ok-big-249"
    with pytest.raises(VolterasInvalidInputError, match="has 3 vehicles, above max_vehicles=2"):
        hook.select_vehicles(vehicle_ids=["a", "b", "c"], max_vehicles=2)


def test_the_default_cap_of_a_listed_selection(sim, connect):
    tag(sim, [f"sim-ok-cap-{i}" for i in range(DEFAULT_MAX_SELECTED + 1)])
    hook = connect()
    with pytest.raises(VolterasInvalidInputError, match=f"above max_vehicles={DEFAULT_MAX_SELECTED}"):
        hook.select_vehicles(tag="fleet=t")
    # Given ids are not capped unless asked.
    assert len(hook.select_vehicles(vehicle_ids=[f"v{i}" for i in range(DEFAULT_MAX_SELECTED + 1)])) == 1001


def test_without_a_total_the_listing_stops_at_the_first_vehicle_past_the_cap(sim, connect, monkeypatch):
    hook = connect()
    asked = _pages(monkeypatch, lambda token: ([{"id": f"sim-ok-{len(token)}-{i}"} for i in range(3)], token + "x"))
    with pytest.raises(VolterasInvalidInputError, match="has at least 5 vehicles, above max_vehicles=4"):
        hook.select_vehicles(vehicle_filter={"field": "make", "operator": "==", "value": "BMW"}, max_vehicles=4)
    assert asked == ["", "x"]


def test_a_selection_takes_exactly_one_source(sim, connect):
    hook = connect()
    with pytest.raises(VolterasInvalidInputError, match="exactly one of vehicle_ids, tag and vehicle_filter; got none"):
        hook.select_vehicles()
    with pytest.raises(VolterasInvalidInputError, match="got vehicle_ids and tag"):
        hook.select_vehicles(vehicle_ids=["a"], tag="fleet=t")
    with pytest.raises(VolterasInvalidInputError, match="not valid"):
        hook.select_vehicles(vehicle_ids=["ok", "bad id"])
    assert sim.state.counters()["requests"] == 0


def test_given_ids_are_checked_not_looked_up(sim, connect):
    hook = connect()
    assert hook.select_vehicles(vehicle_ids=["b", "a", "b"]) == ["b", "a"]
    assert sim.state.counters()["requests"] == 0


def test_selection_sources_are_told_apart():
    by_tag = VehicleSelection.of(tag="fleet=t")
    assert (
        by_tag.source() == {"tag": {"key": "fleet", "value": "t"}} == VehicleSelection.of(tag=("fleet", "t")).source()
    )
    assert VehicleSelection.of(tag="fleet=u").source() != by_tag.source()
    flt = VehicleSelection.of(vehicle_filter='{"value": "i4", "field": "model", "operator": "=="}')
    assert flt.source() == {"filter": '{"field":"model","operator":"==","value":"i4"}'}
    assert VehicleSelection.of(vehicle_ids=["a"]).source() == "vehicle_ids"
