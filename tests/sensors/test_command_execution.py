"""CommandExecutionSensor through ``dag.test()``: deferrable and in-worker waits give the same outcomes."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_volteras.hooks.volteras import VolterasHook
from tests.dag_runner import install_dags, run

pytestmark = pytest.mark.slow

MODES = ["vt_sensor", "vt_sensor_sync"]


@pytest.fixture(scope="module")
def dags(airflow_db):
    return install_dags(airflow_db)


def finish_after_first_poll(sim, execution_id: str) -> threading.Thread:
    """Keep the execution PENDING until the sensor has polled it once, then mark it EXECUTED."""

    def finish() -> None:
        deadline = time.monotonic() + 120
        while sim.state.counters()["pollsByExecution"].get(execution_id, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        sim.state.finish_execution(execution_id, "EXECUTED")

    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    return thread


def send(sim, vehicle_id: str, **scenario) -> str:
    if scenario:
        sim.state.set_scenario(vehicle_id, **scenario)
    return VolterasHook().create_command_execution(vehicle_id, "LOCK_DOORS")["id"]


@pytest.mark.parametrize("dag_id", MODES)
def test_sensor_succeeds_when_executed(sim, dags, deferred, dag_id):
    execution_id = send(sim, "car-s1", outcome="PENDING")
    finisher = finish_after_first_poll(sim, execution_id)
    result = run(getattr(dags, dag_id), {"vehicle_id": "car-s1", "execution_id": execution_id})
    assert result.task("wait").state == "success" and result.task("wait").try_number == 1
    finisher.join(timeout=5)
    assert deferred == ([execution_id] if dag_id == "vt_sensor" else [])
    assert sim.state.counters()["createsTotal"] == 1  # a sensor never sends anything


@pytest.mark.parametrize("dag_id", MODES)
def test_sensor_fails_fatal_without_retry(sim, dags, dag_id):
    execution_id = send(sim, "car-s2", outcome="FAILED", failed_reason="OEM_USER_ACCOUNT_LOCKED", delay=1)
    result = run(getattr(dags, dag_id), {"vehicle_id": "car-s2", "execution_id": execution_id})
    assert result.task("wait").state == "failed" and result.task("wait").try_number == 1


@pytest.mark.parametrize("dag_id", MODES)
def test_sensor_does_not_retry_a_failed_execution_whatever_its_reason(sim, dags, dag_id):
    execution_id = send(sim, "car-s3", outcome="FAILED", failed_reason="OEM_NETWORK_ERROR", delay=1)
    result = run(getattr(dags, dag_id), {"vehicle_id": "car-s3", "execution_id": execution_id})
    # The sensor cannot resend: a retry would read the same FAILED execution, so it fails at its first try
    # although the sensor has a retry left.
    assert result.task("wait").state == "failed" and result.task("wait").try_number == 1
    assert sim.state.counters()["createsTotal"] == 1


@pytest.mark.parametrize("dag_id", MODES)
def test_sensor_on_unknown_execution_is_fatal(sim, dags, dag_id):
    result = run(getattr(dags, dag_id), {"vehicle_id": "car-s4", "execution_id": "no-such-execution"})
    assert result.task("wait").state == "failed" and result.task("wait").try_number == 1
