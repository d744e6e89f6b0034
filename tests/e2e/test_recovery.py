"""End-to-end: Clear or retry after a failure, on the real deployment (``airflow`` fixture) and the simulator.

- a try killed after the API applied its create but before the execution id was recorded (only "create
  in flight" was): the next try, whether Airflow's own retry or the first try after a person's Clear,
  adopts that command and sends nothing new;
- the two-task example after a *retryable* FAILED: the sensor ends the run at once (its retries could
  only read the same FAILED execution) instead of showing it running through two 600 s retry delays, and
  a Clear of the sensor with its upstream (the sending task) sends one new command.

The browser tests (``test_browser.py``) click the same Clear in the UI after fatal failures.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from ._deployment import Deployment, cmdline, descendants
from ._support import (
    CLIMATE_OFF,
    SEND,
    STATE_KEY,
    create_attempts,
    creates,
    executions,
    seconds_between,
    set_scenario,
    state_mismatches,
    task_log,
    unpause,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _task_process(airflow: Deployment, ti_id: str) -> int | None:
    """The task runner process of a task instance (``... -- <ti id>``), under our scheduler."""
    for pid in descendants(airflow.components["scheduler"].pid):
        if cmdline(pid).endswith(f"-- {ti_id}"):
            return pid
    return None


@pytest.mark.parametrize("then", ["retry", "clear"])
def test_a_try_killed_between_create_and_record_sends_nothing_new(
    airflow: Deployment, simulator: Any, record: dict[str, Any], then: str
) -> None:
    vid = f"e2e-kill-in-flight-{then}"
    set_scenario(simulator, vid, outcome="EXECUTED", delay=60.0)
    # The create is applied at once, but its answer hangs 25 s (the connection's timeout is 30 s): the task is
    # killed in that window, after "create in flight" was recorded and before the id could be.
    simulator.state.add_fault(
        "slow", method="POST", path=rf"^/v1/vehicles/{vid}/command-execution:", count=1, delay=25.0, apply=True
    )
    unpause(airflow, SEND)
    run_id = airflow.trigger(SEND, {"vehicle_id": vid, "command": "CLIMATE_OFF", "arguments": None})

    def applied_and_running() -> dict[str, Any] | None:
        ti = airflow.task_instance(SEND, run_id, "send_command")
        return ti if ti["state"] == "running" and creates(simulator, [vid])[vid] == 1 else None

    ti = wait_until("the create applied while its answer hangs", applied_and_running, timeout=120, interval=0.2)
    stored = airflow.get(f"/api/v2/dags/{SEND}/dagRuns/{run_id}/taskInstances/send_command/state-store/{STATE_KEY}")
    assert "in_flight" in stored["value"] and "id" not in stored["value"], stored  # the id is not recorded
    pid = wait_until("the task process", lambda: _task_process(airflow, ti["id"]), timeout=10, interval=0.2)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    if then == "clear":
        # A person clears the task as soon as Airflow has taken the killed try for failed.
        wait_until(
            "the killed try failed",
            lambda: airflow.task_instance(SEND, run_id, "send_command")["state"] in ("up_for_retry", "failed"),
            timeout=120,
        )
        cleared = airflow.request(
            "POST",
            f"/api/v2/dags/{SEND}/clearTaskInstances",
            json={"dag_run_id": run_id, "task_ids": ["send_command"], "only_failed": False, "dry_run": False},
        )
        assert [t["task_id"] for t in cleared["task_instances"]] == ["send_command"], cleared

    run = airflow.wait_run(SEND, run_id, timeout=240)
    final = airflow.task_instance(SEND, run_id, "send_command")
    tries = sorted(airflow.tries(SEND, run_id, "send_command"), key=lambda t: t["try_number"])
    made = executions(simulator, vid)
    log = task_log(airflow, SEND, run_id, "send_command", 2)
    adopted = [line for line in log if "adopting it instead of sending the command again" in line]
    record.update(
        run_state=run["state"],
        seconds_after_kill=round(time.monotonic() - killed_at, 1),
        tries=[(t["try_number"], t["state"]) for t in tries],
        max_tries=final["max_tries"],
        creates=creates(simulator, [vid]),
        create_attempts=create_attempts(simulator, [vid]),
        executions=[e["status"] for e in made],
        adopted=adopted,
        state_mismatches=state_mismatches(airflow, SEND, run_id),
    )
    assert run["state"] == "success", record
    assert (final["state"], final["try_number"]) == ("success", 2), record
    # After the Clear Airflow counts a new series of tries (max_tries = try_number + retries); not after a retry.
    assert final["max_tries"] == (3 if then == "clear" else 2), record
    # One command: try 2 sent nothing, not even an attempt, and adopted try 1's command.
    assert creates(simulator, [vid]) == {vid: 1} == create_attempts(simulator, [vid]), record
    assert len(made) == 1 and made[0]["status"] == "EXECUTED", record
    assert len(adopted) == 1 and made[0]["id"] in adopted[0], record


def test_the_sensor_ends_at_once_on_a_retryable_failure_and_a_clear_with_upstream_sends_again(
    airflow: Deployment, simulator: Any, record: dict[str, Any]
) -> None:
    vid = "e2e-sensor-offline"
    set_scenario(
        simulator,
        vid,
        # FAILED 3 s after the create: the sensor reads it in its first seconds in the worker, without a
        # deferral (a trigger firing soon after a deferral meets Airflow 3.3.2's stale defer-exit race, which
        # fails the try in the scheduler: an extra try this test would take for a sensor retry).
        delay=3.0,
        sequence=[{"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"}, {"outcome": "EXECUTED"}],
    )
    unpause(airflow, CLIMATE_OFF)
    run_id = airflow.trigger(CLIMATE_OFF, {"vehicle_id": vid})
    first = airflow.wait_run(CLIMATE_OFF, run_id, timeout=180)
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(CLIMATE_OFF, run_id)}
    # The failure's message, as the log carries it (the exception's text is in the entry's error detail).
    log = json.dumps(
        airflow.get(
            f"/api/v2/dags/{CLIMATE_OFF}/dagRuns/{run_id}/taskInstances/wait_for_climate_off/logs/1",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
    )
    record.update(
        first_state=first["state"],
        first_tis={k: (v["state"], v["try_number"]) for k, v in tis.items()},
        seconds=round(seconds_between(first["start_date"], first["end_date"]), 1),
    )
    # One clear state at once: the sending task green (it sent), the sensor red at its first try (it has two
    # retries, 600 s apart in the example, which could only read the same FAILED execution).
    assert first["state"] == "failed", record
    assert record["first_tis"] == {"climate_off": ("success", 1), "wait_for_climate_off": ("failed", 1)}, record
    assert "FAILED: OEM_VEHICLE_OFFLINE (Airflow will NOT retry this sensor" in log, log[-3000:]
    assert "Clear task 'climate_off' with Downstream selected" in log, log[-3000:]

    # The sensor cleared with Upstream selected: the sending task is cleared with it and sends once.
    cleared = airflow.request(
        "POST",
        f"/api/v2/dags/{CLIMATE_OFF}/clearTaskInstances",
        json={
            "dag_run_id": run_id,
            "task_ids": ["wait_for_climate_off"],
            "include_upstream": True,
            "only_failed": False,
            "dry_run": False,
        },
    )
    assert sorted(t["task_id"] for t in cleared["task_instances"]) == ["climate_off", "wait_for_climate_off"]
    wait_until("the cleared run running again", lambda: airflow.dag_run(CLIMATE_OFF, run_id)["state"] != "failed", 60)
    second = airflow.wait_run(CLIMATE_OFF, run_id, timeout=180)
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(CLIMATE_OFF, run_id)}
    record.update(
        second_state=second["state"],
        second_tis={k: (v["state"], v["try_number"]) for k, v in tis.items()},
        executions=[e["status"] for e in executions(simulator, vid)],
        state_mismatches=state_mismatches(airflow, CLIMATE_OFF, run_id),
    )
    assert second["state"] == "success", record
    assert record["second_tis"] == {"climate_off": ("success", 2), "wait_for_climate_off": ("success", 2)}, record
    assert record["executions"] == ["FAILED", "EXECUTED"], record
