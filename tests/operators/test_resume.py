"""What a re-run task instance does with the execution an earlier try stored (task_state_store)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_volteras.exceptions import VolterasFatalCommandError
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import STATE_KEY, ClimateOffOperator


class Store:
    """The task_state_store accessor's get/set, kept in memory."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


class Ti:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def earlier_try(sim, vehicle_id: str, **scenario: Any) -> tuple[str, Store]:
    sim.state.set_scenario(vehicle_id, **scenario)
    execution = VolterasHook().create_command_execution(vehicle_id, "CLIMATE_OFF")
    record = {"id": execution["id"], "vehicle_id": vehicle_id, "command": "CLIMATE_OFF"}
    return execution["id"], Store(**{STATE_KEY: record})


def execute(vehicle_id: str, store: Store) -> dict:
    op = ClimateOffOperator(task_id="t", vehicle_id=vehicle_id, deferrable=False, poll_interval=1, timeout=20)
    return op.execute({"task_state_store": store, "ti": Ti()})


def creates(sim, vehicle_id: str) -> int:
    return sim.state.counters()["creates"].get(vehicle_id, {}).get("CLIMATE_OFF", 0)


def test_pending_execution_is_reattached(sim):
    execution_id, store = earlier_try(sim, "car-r1", outcome="EXECUTED", delay=1.5)
    result = execute("car-r1", store)
    assert result["id"] == execution_id and result["status"] == "EXECUTED"
    assert creates(sim, "car-r1") == 1


def test_executed_execution_is_returned_without_sending(sim):
    execution_id, store = earlier_try(sim, "car-r2", outcome="EXECUTED", delay=0)
    sim.state.finish_execution(execution_id, "EXECUTED")
    assert execute("car-r2", store)["id"] == execution_id
    assert creates(sim, "car-r2") == 1


def test_retryable_failure_sends_a_new_command(sim):
    execution_id, store = earlier_try(sim, "car-r3", outcome="FAILED", failed_reason="OEM_VEHICLE_OFFLINE", delay=0)
    sim.state.set_scenario("car-r3", outcome="EXECUTED", delay=0.2)
    result = execute("car-r3", store)
    assert result["id"] != execution_id and result["status"] == "EXECUTED"
    assert creates(sim, "car-r3") == 2
    assert store.values[STATE_KEY]["id"] == result["id"]  # the new execution is remembered


def test_fatal_failure_is_reported_again_without_sending(sim):
    execution_id, store = earlier_try(sim, "car-r4", outcome="FAILED", failed_reason="OEM_OAUTH_TOKEN_EXPIRED", delay=0)
    with pytest.raises(VolterasFatalCommandError, match="already got this final answer") as info:
        execute("car-r4", store)
    assert info.value.execution_id == execution_id and info.value.reason == "OEM_OAUTH_TOKEN_EXPIRED"
    assert "Clear task 't' in the Airflow UI" in str(info.value)  # a person's Clear sends again
    assert creates(sim, "car-r4") == 1


def test_record_for_another_vehicle_is_ignored(sim):
    _, store = earlier_try(sim, "car-r5", outcome="EXECUTED", delay=0)
    sim.state.set_scenario("car-r6", outcome="EXECUTED", delay=0.2)
    result = execute("car-r6", store)
    assert result["vehicleId"] == "car-r6"
    assert creates(sim, "car-r6") == 1
