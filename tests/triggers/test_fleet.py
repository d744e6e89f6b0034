"""FleetCommandTrigger run in an asyncio loop against the simulator: one event with every vehicle's outcome."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from airflow_provider_volteras.exceptions import VolterasInvalidInputError
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger


def make(executions: dict[str, str], seconds: float = 20, **kw) -> FleetCommandTrigger:
    return FleetCommandTrigger(
        command="CLIMATE_OFF",
        executions=executions,
        deadline=time.time() + seconds,
        poll_interval=kw.pop("poll_interval", 1),
        **kw,
    )


async def events(trigger: FleetCommandTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def create(vehicle_id: str) -> str:
    return VolterasHook().create_command_execution(vehicle_id, "CLIMATE_OFF")["id"]


def test_serialize_round_trip_holds_ids_and_settings_only(sim):
    trigger = make({"car-1": "exec-1", "car-2": "exec-2"})
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_volteras.triggers.fleet.FleetCommandTrigger"
    assert set(kwargs) == {"command", "executions", "deadline", "volteras_conn_id", "poll_interval", "hold_until"}
    assert kwargs["executions"] == {"car-1": "exec-1", "car-2": "exec-2"}
    assert FleetCommandTrigger(**kwargs).serialize() == (path, kwargs)
    assert datetime.fromisoformat(kwargs["deadline"]).tzinfo == UTC
    assert "volteras-sim-secret" not in repr(kwargs) and "Bearer" not in repr(kwargs)


def test_bad_ids_are_refused_before_any_request(sim):
    with pytest.raises(VolterasInvalidInputError):
        make({"car/../x": "exec-1"})
    assert sim.state.counters()["requests"] == 0


async def test_one_event_with_each_vehicles_outcome_and_one_token(sim):
    sim.state.set_scenario("fl-ok-1", outcome="EXECUTED", delay=0.5)
    sim.state.set_scenario("fl-ok-2", outcome="EXECUTED", delay=1.5)
    sim.state.set_scenario("fl-consent", outcome="FAILED", failed_reason="OEM_OAUTH_TOKEN_EXPIRED", delay=0.5)
    sim.state.set_scenario("fl-offline", outcome="FAILED", failed_reason="OEM_VEHICLE_OFFLINE", delay=1.0)
    ids = {vid: create(vid) for vid in ("fl-ok-1", "fl-ok-2", "fl-consent", "fl-offline")}
    from airflow_provider_volteras._core import tokens

    tokens.TOKEN_CACHE.clear()  # the trigger gets its own token: count exactly its requests
    before = sim.state.counters()
    [payload] = await events(make(ids))
    after = sim.state.counters()
    assert payload["status"] == "done" and payload["command"] == "CLIMATE_OFF"
    by_vehicle = {o["vehicle_id"]: o for o in payload["outcomes"]}
    assert [o["vehicle_id"] for o in payload["outcomes"]] == list(ids)
    assert {vid: (o["status"], o["failed_reason"], o["execution_id"]) for vid, o in by_vehicle.items()} == {
        "fl-ok-1": ("EXECUTED", None, ids["fl-ok-1"]),
        "fl-ok-2": ("EXECUTED", None, ids["fl-ok-2"]),
        "fl-consent": ("FAILED", "OEM_OAUTH_TOKEN_EXPIRED", ids["fl-consent"]),
        "fl-offline": ("FAILED", "OEM_VEHICLE_OFFLINE", ids["fl-offline"]),
    }
    assert after["tokenRequests"] - before["tokenRequests"] == 1
    assert after["createsTotal"] == before["createsTotal"]  # a trigger never creates
    # Each execution is polled on its own schedule: the fast ones stop being polled once they ended.
    polls = {vid: after["pollsByExecution"][eid] - before["pollsByExecution"].get(eid, 0) for vid, eid in ids.items()}
    assert polls["fl-ok-1"] < polls["fl-ok-2"], polls


async def test_deadline_reports_pending_and_a_lasting_404_reports_an_error(sim):
    stuck = create("sim-stuck-fl")
    [payload] = await events(make({"sim-stuck-fl": stuck, "fl-gone": "no-such-execution"}, seconds=2))
    by_vehicle = {o["vehicle_id"]: o for o in payload["outcomes"]}
    assert by_vehicle["sim-stuck-fl"]["status"] == "PENDING" and by_vehicle["sim-stuck-fl"]["status_read"] is True
    # A 404 on an issued id is believed only after a grace period longer than this wait: still unknown.
    assert by_vehicle["fl-gone"]["status"] == "PENDING" and by_vehicle["fl-gone"]["status_read"] is False


async def test_missing_connection_is_one_error_event(sim, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_VOLTERAS_DEFAULT")
    [payload] = await events(make({"car-1": "exec-1"}, volteras_conn_id="volteras_nowhere"))
    assert payload["status"] == "error"
    assert payload["error"]["retryable"] is False and "volteras_nowhere" in payload["error"]["message"]
    assert sim.state.counters()["requests"] == 0
