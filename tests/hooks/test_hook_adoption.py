"""A create whose answer got lost must never send the command twice: the hook adopts what it created."""

from __future__ import annotations

import pytest

from airflow_provider_volteras.exceptions import VolterasServerError, VolterasTransportError

from .conftest import log_entries, warnings_of

CREATE_PATH = r"/command-execution:climate-off$"


def creates(sim, vehicle: str) -> dict[str, int]:
    return sim.state.counters()["creates"].get(vehicle, {})


def only_execution(sim, vehicle: str) -> dict:
    (execution,) = sim.state.executions(vehicle)
    return execution


def test_drop_after_create_adopts_the_created_execution(sim, connect, hook_logs):
    vehicle = "sim-ok-drop-after"
    sim.state.add_fault("drop_after", method="POST", path=CREATE_PATH, count=1)
    execution = connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}
    assert sim.state.counters()["createAttempts"] == 1  # never re-sent
    assert log_entries(sim, kind="create")[0]["appliedStatus"] == 200
    assert execution["id"] == only_execution(sim, vehicle)["id"]
    assert any("adopting it" in w and execution["id"] in w for w in warnings_of(hook_logs))


def test_drop_after_adopts_even_when_already_executed(sim, connect):
    vehicle = "sim-ok-drop-fast"
    sim.state.set_scenario(vehicle, delay=0)
    sim.state.add_fault("drop_after", method="POST", path=CREATE_PATH, count=1)
    execution = connect(retry_max_wait=0.3).create_command_execution(vehicle, "CLIMATE_OFF")
    assert execution["status"] == "EXECUTED"  # finished before the hook looked again
    assert execution["id"] == only_execution(sim, vehicle)["id"]
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}
    assert sim.state.counters()["createAttempts"] == 1


def test_drop_after_on_stuck_vehicle_adopts_pending_execution(sim, connect):
    vehicle = "sim-stuck-drop"
    sim.state.add_fault("drop_after", method="POST", path=CREATE_PATH, count=1, reset=True)
    execution = connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert execution["status"] == "PENDING"
    assert execution["id"] == only_execution(sim, vehicle)["id"]
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}


def test_a_create_without_an_answer_is_never_sent_again_in_the_call(sim, connect):
    """A reset before the server handled the POST looks the same as one after: it is not sent again."""
    vehicle = "sim-ok-drop-before"
    sim.state.add_fault("drop_before", method="POST", path=CREATE_PATH, count=1)
    with pytest.raises(VolterasTransportError) as info:
        connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert info.value.maybe_sent
    assert creates(sim, vehicle) == {}
    assert sim.state.counters()["createAttempts"] == 1  # the reset one only: none after it


def test_500_after_the_server_applied_the_create_is_adopted(sim, connect):
    vehicle = "sim-ok-500-applied"
    sim.state.add_fault("status", method="POST", path=CREATE_PATH, count=1, status=500, apply=True)
    execution = connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}
    assert sim.state.counters()["createAttempts"] == 1
    assert log_entries(sim, kind="create")[0]["status"] == 500
    assert execution["id"] == only_execution(sim, vehicle)["id"]


def test_503_without_create_is_resent(sim, connect):
    vehicle = "sim-ok-503"
    sim.state.add_fault("status", method="POST", path=CREATE_PATH, count=1, status=503)
    execution = connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}
    assert sim.state.counters()["createAttempts"] == 2
    assert execution["id"] == only_execution(sim, vehicle)["id"]


def test_unreadable_2xx_create_is_adopted(sim, connect):
    vehicle = "sim-ok-garbled"
    sim.state.add_fault("malformed_json", method="POST", path=CREATE_PATH, count=1)
    execution = connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}
    assert sim.state.counters()["createAttempts"] == 1
    assert execution["id"] == only_execution(sim, vehicle)["id"]


def test_read_timeout_after_apply_is_adopted(sim, connect):
    vehicle = "sim-ok-slow-create"
    sim.state.add_fault("slow", method="POST", path=CREATE_PATH, count=1, delay=0.8, apply=True)
    execution = connect(timeout=0.3).create_command_execution(vehicle, "CLIMATE_OFF")
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 1}
    assert sim.state.counters()["createAttempts"] == 1
    assert execution["id"] == only_execution(sim, vehicle)["id"]


def test_older_executions_are_not_adopted(sim, connect):
    """An execution that existed before the call is never taken for the one this call created."""
    vehicle = "sim-ok-history"
    sim.state.set_scenario(vehicle, delay=0)
    old = sim.state.create_command(vehicle, "CLIMATE_OFF")
    sim.state.add_fault("drop_after", method="POST", path=CREATE_PATH, count=1)
    execution = connect().create_command_execution(vehicle, "CLIMATE_OFF")
    assert execution["id"] != old["id"]
    assert creates(sim, vehicle) == {"CLIMATE_OFF": 2}  # the old one plus exactly one new
    assert sim.state.counters()["createAttempts"] == 1


def test_persistent_500_on_create_never_duplicates(sim, connect):
    vehicle = "sim-ok-500-forever"
    sim.state.add_fault("status", method="POST", path=CREATE_PATH, count=None, status=500)
    with pytest.raises(VolterasServerError):
        connect(max_retries=2).create_command_execution(vehicle, "CLIMATE_OFF")
    assert creates(sim, vehicle) == {}
    assert sim.state.counters()["createAttempts"] == 3
