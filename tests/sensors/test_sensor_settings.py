"""``CommandExecutionSensor`` and Airflow's sensor settings, through ``dag.test()``: ``mode="reschedule"``
frees the worker between single checks and keeps every outcome; ``soft_fail`` skips what Airflow's sensors
skip (a failure that is not retried, the timeout) in every way of waiting; settings it cannot honour are
refused when the DAG is parsed. The sensor never sends: the only create is the test's own."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor
from tests.dag_runner import install_dags

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dags(airflow_db):
    return install_dags(airflow_db, "volteras_sensor_settings_dags.py")


def send(sim, vehicle_id: str, **scenario) -> str:
    sim.state.set_scenario(vehicle_id, **scenario)
    return VolterasHook().create_command_execution(vehicle_id, "LOCK_DOORS")["id"]


def polls(sim, execution_id: str) -> int:
    return int(sim.state.counters()["pollsByExecution"].get(execution_id, 0))


def run_wait(dag, vehicle_id: str, execution_id: str) -> dict[str, Any]:
    """Run the DAG; what the user sees of task ``wait``: state, try, and how often it was rescheduled."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    dr = dag.test(run_conf={"vehicle_id": vehicle_id, "execution_id": execution_id})
    (ti,) = [t for t in dr.get_task_instances() if t.task_id == "wait"]
    with create_session() as session:
        reschedules = session.scalar(
            select(func.count()).select_from(TaskReschedule).where(TaskReschedule.ti_id == ti.id)
        )
    return {"state": str(ti.state), "try": ti.try_number, "reschedules": int(reschedules or 0), "run": str(dr.state)}


# --------------------------------------------------------------------------- mode="reschedule"


def test_reschedule_checks_once_per_try_and_succeeds_when_executed(sim, dags, deferred):
    execution_id = send(sim, "car-r1", outcome="PENDING")

    def finish_after_three_checks() -> None:
        deadline = time.monotonic() + 120
        while polls(sim, execution_id) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        sim.state.finish_execution(execution_id, "EXECUTED")

    finisher = threading.Thread(target=finish_after_three_checks, daemon=True)
    finisher.start()
    seen = run_wait(dags.vs_reschedule, "car-r1", execution_id)
    finisher.join(timeout=5)
    assert (seen["state"], seen["try"], seen["run"]) == ("success", 1, "success"), seen
    # Up for reschedule between checks (the worker slot free), one read of the execution per check.
    assert seen["reschedules"] >= 3, seen
    assert polls(sim, execution_id) == seen["reschedules"] + 1, seen
    assert deferred == []  # mode="reschedule" wins over [operators] default_deferrable
    assert sim.state.counters()["createsTotal"] == 1  # the sensor sent nothing


def test_reschedule_fails_a_fatal_failure_with_its_message(sim, dags, capfd):
    execution_id = send(sim, "car-r2", outcome="FAILED", failed_reason="OEM_USER_ACCOUNT_LOCKED", delay=2.5)
    seen = run_wait(dags.vs_reschedule, "car-r2", execution_id)
    assert (seen["state"], seen["try"]) == ("failed", 1), seen
    assert seen["reschedules"] >= 1, seen  # it was pending at the first check
    assert "LOCK_DOORS on vehicle car-r2 FAILED: OEM_USER_ACCOUNT_LOCKED" in capfd.readouterr().out
    assert sim.state.counters()["createsTotal"] == 1


def test_reschedule_times_out_with_the_waits_message(sim, dags, capfd):
    execution_id = send(sim, "car-r3", outcome="PENDING")
    seen = run_wait(dags.vs_reschedule_timeout, "car-r3", execution_id)
    assert (seen["state"], seen["try"]) == ("failed", 1), seen
    assert seen["reschedules"] >= 1, seen
    out = capfd.readouterr().out
    assert "LOCK_DOORS on vehicle car-r3 still PENDING at the task's timeout" in out
    assert sim.state.counters()["createsTotal"] == 1


# --------------------------------------------------------------------------- soft_fail, never_fail

SOFT_FAIL_DAGS = ["vs_soft_fail_deferrable", "vs_soft_fail_worker", "vs_soft_fail_reschedule"]


@pytest.mark.parametrize("dag_id", SOFT_FAIL_DAGS)
def test_soft_fail_skips_a_fatal_failure(sim, dags, dag_id, capfd):
    execution_id = send(sim, "car-f1", outcome="FAILED", failed_reason="OEM_USER_ACCOUNT_LOCKED", delay=1.5)
    seen = run_wait(dags.soft_fail_dags[dag_id], "car-f1", execution_id)
    assert (seen["state"], seen["try"]) == ("skipped", 1), seen
    # The person still reads why.
    assert "soft_fail=True" in (out := capfd.readouterr().out) and "OEM_USER_ACCOUNT_LOCKED" in out
    assert sim.state.counters()["createsTotal"] == 1


@pytest.mark.parametrize("dag_id", SOFT_FAIL_DAGS)
def test_soft_fail_skips_at_the_timeout(sim, dags, dag_id):
    execution_id = send(sim, "car-f2", outcome="PENDING")
    seen = run_wait(dags.soft_fail_dags[dag_id], "car-f2", execution_id)
    assert (seen["state"], seen["try"]) == ("skipped", 1), seen  # no retry: a skipped sensor is done
    assert sim.state.counters()["createsTotal"] == 1


def test_never_fail_skips_a_retryable_failure_too(sim, dags):
    execution_id = send(sim, "car-f3", outcome="FAILED", failed_reason="OEM_NETWORK_ERROR", delay=1)
    seen = run_wait(dags.vs_never_fail, "car-f3", execution_id)
    assert (seen["state"], seen["try"]) == ("skipped", 1), seen
    assert sim.state.counters()["createsTotal"] == 1


# --------------------------------------------------------------------------- refused when the DAG is parsed


def test_reschedule_with_deferrable_is_refused_when_parsed():
    with pytest.raises(ValueError, match=r"mode='reschedule' or deferrable=True, not both"):
        CommandExecutionSensor(
            task_id="w", vehicle_id="car", command_execution_id="e1", mode="reschedule", deferrable=True
        )


@pytest.mark.parametrize(
    ("setting", "value"), [("exponential_backoff", True), ("max_wait", 120), ("silent_fail", True)]
)
def test_settings_the_sensor_cannot_honour_are_refused_when_parsed(setting, value):
    with pytest.raises(ValueError, match=rf"does not take {setting}="):
        CommandExecutionSensor(task_id="w", vehicle_id="car", command_execution_id="e1", **{setting: value})


def test_explicit_settings_keep_their_meaning():
    sensor = CommandExecutionSensor(task_id="w", vehicle_id="car", command_execution_id="e1", mode="reschedule")
    assert (sensor.reschedule, sensor.deferrable) == (True, False)
    sensor = CommandExecutionSensor(task_id="w2", vehicle_id="car", command_execution_id="e1", deferrable=True)
    assert (sensor.reschedule, sensor.deferrable) == (False, True)
