"""What the end-to-end tests share: DAG ids, the simulator's counters per vehicle, polling helpers and a
record of the states each task instance went through."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from ._deployment import Deployment

CLIMATE_OFF = "volteras_climate_off"
FLEET = "volteras_fleet_climate_off"
SEND = "volteras_send_command"
TRIGGER_CLASSPATH = "airflow_provider_volteras.triggers.command_execution.CommandExecutionTrigger"
STATE_KEY = "volteras_command_execution"

_UNPAUSED: set[tuple[str, str]] = set()
#: Where ``conftest.py`` keeps a test's call report, for fixtures that act on failure (screenshots).
REPORT_KEY = pytest.StashKey[Any]()


# --------------------------------------------------------------------------- helpers


def unpause(airflow: Deployment, dag_id: str) -> None:
    if (airflow.api_url, dag_id) not in _UNPAUSED:
        airflow.unpause(dag_id)
        _UNPAUSED.add((airflow.api_url, dag_id))


def scheduled_fleet_runs(airflow: Deployment) -> list[dict[str, Any]]:
    """Runs of the fleet DAG that nobody triggered. The DAG has no schedule by default (unpausing a
    scheduled DAG also runs its latest slot, which sent the command twice): there must be none."""
    return [r for r in airflow.dag_runs(FLEET) if r["run_type"] != "manual"]


def prepare_fleet(airflow: Deployment) -> None:
    """Unpause the fleet DAG; being unscheduled, it starts no run of its own."""
    unpause(airflow, FLEET)
    assert not scheduled_fleet_runs(airflow)


def creates(sim: Any, vehicle_ids: Iterable[str], command: str = "CLIMATE_OFF") -> dict[str, int]:
    all_creates = sim.state.counters()["creates"]
    return {vid: all_creates.get(vid, {}).get(command, 0) for vid in vehicle_ids}


def create_attempts(sim: Any, vehicle_ids: Iterable[str]) -> dict[str, int]:
    """POSTs that tried to create a command, per vehicle, answered or not (a 409 COMMAND_ALREADY_IN_PROGRESS
    counts here but not in ``creates``): a re-attaching retry never even tries."""
    log = sim.state.request_log()
    return {
        vid: sum(1 for e in log if e["kind"] == "create" and e["path"].startswith(f"/v1/vehicles/{vid}/"))
        for vid in vehicle_ids
    }


def executions(sim: Any, vehicle_id: str) -> list[dict[str, Any]]:
    return sim.state.executions(vehicle_id)


def polls(sim: Any, execution_ids: Iterable[str]) -> dict[str, int]:
    by_execution = sim.state.counters()["pollsByExecution"]
    return {eid: by_execution.get(eid, 0) for eid in execution_ids}


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class StateLog:
    """Every (state, try_number) each task instance was seen in while polling, and the triggers seen."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, int], list[tuple[str | None, int]]] = defaultdict(list)
        self.triggers: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)

    def __call__(self, tis: list[dict[str, Any]]) -> None:
        for ti in tis:
            key = (ti["task_id"], ti["map_index"])
            seen = (ti["state"], ti["try_number"])
            if not self.states[key] or self.states[key][-1] != seen:
                self.states[key].append(seen)
            trigger = ti.get("trigger")
            if trigger and trigger not in self.triggers[key]:
                self.triggers[key].append(trigger)

    def deferred_tries(self, task_id: str, map_index: int = -1) -> set[int]:
        return {t for s, t in self.states[(task_id, map_index)] if s == "deferred"}


def mapped_tis(airflow: Deployment, dag_id: str, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
    return {ti["map_index"]: ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == task_id}


def task_log(airflow: Deployment, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
    """The task's log as the UI shows it (the trigger's log lines included), one string per line."""
    body = airflow.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true"},
        headers={"Accept": "application/json"},
    )
    content = body.get("content", [])
    return [f"{c.get('event')} {c.get('result', '')}" if isinstance(c, dict) else str(c) for c in content]


def state_mismatches(airflow: Deployment, dag_id: str, run_id: str) -> list[str]:
    """Airflow's "state mismatch" audit events of a run: the scheduler failed a task instance because it
    drained a stale executor event (e.g. the defer-exit success of a task whose trigger had already fired,
    apache/airflow#72716 / #71580). Printed with every failed expectation, so such a failure is not taken
    for the provider's."""
    logs = airflow.get(
        "/api/v2/eventLogs", params={"dag_id": dag_id, "run_id": run_id, "event": "state mismatch", "limit": 100}
    )
    return [f"{e.get('task_id')}[{e.get('map_index')}] try {e.get('try_number')}" for e in logs["event_logs"]]


def set_scenario(sim: Any, vehicle_id: str, **kwargs: Any) -> None:
    sim.state.set_scenario(vehicle_id, **kwargs)


def seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (
        datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()
