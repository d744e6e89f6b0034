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


def long_waits_fleet(
    sim: Any, prefix: str, ok_count: int, delay: float
) -> tuple[list[str], dict[str, tuple[str, int, int]]]:
    """A fleet whose commands all stay PENDING for ``delay`` s (past a kill and a takeover): ``ok_count``
    vehicles that execute, one whose consent expired (fatal) and one offline at first (retryable, then
    executed). Returns the interleaved vehicle ids and, per vehicle, the (state, try, creates) expected."""
    ok = [f"{prefix}-ok-{i:02d}" for i in range(ok_count)]
    fatal, retryable = f"{prefix}-consent", f"{prefix}-offline"
    for vid in ok:
        set_scenario(sim, vid, outcome="EXECUTED", delay=delay)
    set_scenario(sim, fatal, outcome="FAILED", failed_reason="OEM_OAUTH_TOKEN_EXPIRED", delay=delay)
    set_scenario(
        sim,
        retryable,
        delay=delay,
        sequence=[
            {"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"},
            {"outcome": "EXECUTED", "delaySeconds": 10},
        ],
    )
    fleet = [*ok[:2], fatal, *ok[2:4], retryable, *ok[4:]]
    expected = {vid: ("success", 1, 1) for vid in ok} | {fatal: ("failed", 1, 1), retryable: ("success", 2, 2)}
    return fleet, expected


def fleet_outcomes(
    tis: dict[int, dict[str, Any]], counted: dict[str, int], fleet: list[str]
) -> dict[str, tuple[str, int, int]]:
    """Per vehicle of a mapped fleet run: (final state, try number, creates the simulator received)."""
    return {vid: (tis[i]["state"], tis[i]["try_number"], counted[vid]) for i, vid in enumerate(fleet)}


def send_with_a_hanging_first_read(
    airflow: Deployment, sim: Any, vid: str, *, pending_s: float, hang_s: float, hosts: set[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Trigger ``volteras_send_command`` for ``vid``; the task's first status read after the create hangs
    ``hang_s`` s, so the test can kill the task right there. Returns the run id and the running task
    instance (on one of ``hosts``, when given) once the command was created and recorded."""
    set_scenario(sim, vid, outcome="EXECUTED", delay=pending_s)
    sim.state.add_fault(
        "slow", method="GET", path=rf"^/v1/vehicles/{vid}/command-executions/[^/]+$", count=1, delay=hang_s
    )
    unpause(airflow, SEND)
    run_id = airflow.trigger(SEND, {"vehicle_id": vid, "command": "CLIMATE_OFF", "arguments": None})

    def created_and_running() -> dict[str, Any] | None:
        ti = airflow.task_instance(SEND, run_id, "send_command")
        running = ti["state"] == "running" and (hosts is None or ti["hostname"] in hosts)
        return ti if running and creates(sim, [vid])[vid] == 1 else None

    ti = wait_until("the command created by a running task", created_and_running, timeout=120, interval=0.2)
    store = airflow.get(f"/api/v2/dags/{SEND}/dagRuns/{run_id}/taskInstances/send_command/state-store/{STATE_KEY}")
    assert store["value"]["id"] == executions(sim, vid)[0]["id"], store
    assert executions(sim, vid)[0]["status"] == "PENDING"
    return run_id, ti


def assert_the_retry_reattached(
    airflow: Deployment, sim: Any, run_id: str, vid: str, seen: StateLog, record: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """After a killed first try: the run succeeded in try 2, which re-attached to the pending execution and
    waited for it in the triggerer. One command, not even a second attempt (the API's in-progress guard,
    409 then adopted, would hide one). Returns the final task instance and its tries, oldest first."""
    final = airflow.task_instance(SEND, run_id, "send_command")
    tries = sorted(airflow.tries(SEND, run_id, "send_command"), key=lambda t: t["try_number"])
    made = executions(sim, vid)
    record.update(
        state_mismatches=state_mismatches(airflow, SEND, run_id),
        tries=[(t["try_number"], t["state"], t["hostname"]) for t in tries],
        states=seen.states[("send_command", -1)],
        creates=creates(sim, [vid]),
        create_attempts=create_attempts(sim, [vid]),
        executions=[e["status"] for e in made],
    )
    assert airflow.dag_run(SEND, run_id)["state"] == "success", record
    assert (final["state"], final["try_number"]) == ("success", 2), record
    assert [t["try_number"] for t in tries] == [1, 2] and tries[0]["state"] in ("up_for_retry", "failed"), record
    assert 2 in seen.deferred_tries("send_command"), seen.states
    assert creates(sim, [vid]) == {vid: 1} == create_attempts(sim, [vid])
    assert len(made) == 1 and made[0]["status"] == "EXECUTED"
    reattached = [line for line in task_log(airflow, SEND, run_id, "send_command", 2) if "Re-attaching" in line]
    assert len(reattached) == 1 and made[0]["id"] in reattached[0], reattached
    return final, tries


def bus_connections(redis_port: int) -> list[int]:
    """The pids of the webhook bus connections Redis has now (each names itself ``volteras-bus:<host>:<pid>``)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_port)
    try:
        names = [str(c.get("name") or "") for c in client.client_list()]
    finally:
        client.close()
    return [int(n.rsplit(":", 1)[1]) for n in names if n.startswith("volteras-bus:")]


def bus_connections_per_triggerer(airflow: Deployment, redis_port: int) -> dict[str, int]:
    """Triggerer component -> bus connections held by its process tree (the triggerer and its trigger runner)."""
    from ._deployment import descendants

    pids = bus_connections(redis_port)
    counts: dict[str, int] = {}
    for name, comp in airflow.components.items():
        if name.startswith("triggerer") and comp.alive():
            tree = {comp.pid, *descendants(comp.pid)}
            counts[name] = sum(1 for pid in pids if pid in tree)
    return counts


def mapped_task_log(
    airflow: Deployment, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int = 1
) -> list[str]:
    """A mapped task instance's log as the UI shows it (its trigger's lines included), one string per line."""
    body = airflow.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true", "map_index": map_index},
        headers={"Accept": "application/json"},
    )
    content = body.get("content", [])
    return [f"{c.get('event')} {c.get('result', '')}" if isinstance(c, dict) else str(c) for c in content]


#: Seconds after a deferral before a test lets its trigger fire: a trigger that fires within seconds of the
#: deferral meets Airflow 3.3.2's stale defer-exit race on a loaded machine (see ``state_mismatches``).
DEFERRAL_SETTLE_S = 15.0


def deferrals_settled(tis: Iterable[dict[str, Any]], seconds: float = DEFERRAL_SETTLE_S) -> bool:
    """Every task instance is deferred, its trigger held by a triggerer and made at least ``seconds`` ago."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    for ti in tis:
        trigger = ti.get("trigger") or {}
        if ti["state"] != "deferred" or not trigger.get("triggerer_id") or not trigger.get("created_date"):
            return False
        made = datetime.fromisoformat(str(trigger["created_date"]).replace("Z", "+00:00"))
        if (now - made).total_seconds() < seconds:
            return False
    return True
