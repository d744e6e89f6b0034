"""VolterasFleetCommandOperator through ``dag.test()`` against the simulator.

What is asserted is what a user sees: the task's state and try number, the per-vehicle outcomes it
returns (XCom), its log table, and what the simulator received (creates per vehicle, and which
vehicles were sent a create during which try).
"""

from __future__ import annotations

import importlib.util
import textwrap
from typing import Any

import pytest

from airflow_provider_volteras._compat import AIRFLOW_VERSION
from airflow_provider_volteras.operators.fleet import FLEET_STATE_KEY, chunk_label_template, chunked
from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

pytestmark = pytest.mark.slow

DAGS = textwrap.dedent(
    '''
    """DAGs of tests/operators/test_fleet.py (written into the test DAGS_FOLDER by the test module)."""
    from __future__ import annotations

    import threading
    from datetime import datetime, timedelta

    from airflow.sdk import DAG, task

    from airflow_provider_volteras.operators.fleet import (
        FleetClimateOffOperator,
        VolterasFleetCommandOperator,
        chunk_label_template,
        chunked,
    )

    FAST_RETRY = {"retries": 2, "retry_delay": timedelta(seconds=1)}
    FLEET = "{{ dag_run.conf['vehicle_ids'] }}"


    def _dag(dag_id):
        return DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
                   render_template_as_native_obj=True)


    with _dag("vf_deferrable") as vf_deferrable:
        FleetClimateOffOperator(task_id="send", vehicle_ids=FLEET, poll_interval=1, timeout=60, **FAST_RETRY)

    with _dag("vf_sync") as vf_sync:
        FleetClimateOffOperator(
            task_id="send", vehicle_ids=FLEET, deferrable=False, poll_interval=1, timeout=60, **FAST_RETRY
        )


    class CrashAfterCreates(FleetClimateOffOperator):
        """On its first try, dies like a killed worker once 3 of its creates were answered."""

        def execute(self, context):
            self._first_try = context["ti"].try_number == 1
            self._answered = 0
            self._lock = threading.Lock()
            return super().execute(context)

        def lifecycle(self, records, spec, arguments):
            lifecycle = super().lifecycle(records, spec, arguments)
            prepare_one = lifecycle.prepare_one

            def crashing(vid):
                step = prepare_one(vid)
                with self._lock:
                    self._answered += 1
                    if self._first_try and self._answered >= 3:
                        raise RuntimeError("simulated worker crash after some creates")
                return step

            lifecycle.prepare_one = crashing
            return lifecycle


    with _dag("vf_crash") as vf_crash:
        CrashAfterCreates(
            task_id="send", vehicle_ids=FLEET, poll_interval=1, timeout=60, max_concurrent_creates=2, **FAST_RETRY
        )

    with _dag("vf_chunked") as vf_chunked:

        @task
        def chunks(dag_run=None):
            return chunked(dag_run.conf["vehicle_ids"], 500)

        VolterasFleetCommandOperator.partial(
            task_id="send",
            command="CLIMATE_OFF",
            poll_interval=2,
            timeout=120,
            max_concurrent_creates=8,
            map_index_template=chunk_label_template(500),
        ).expand(vehicle_ids=chunks())
    '''
)


@pytest.fixture(scope="module")
def dags(airflow_db):
    target = airflow_db / "dags" / "volteras_fleet_test_dags.py"
    target.parent.mkdir(exist_ok=True)
    target.write_text(DAGS)
    spec = importlib.util.spec_from_file_location("volteras_fleet_test_dags", target)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def triggers(monkeypatch):
    """Serialized kwargs of every FleetCommandTrigger that really ran."""
    seen: list[dict] = []
    original = FleetCommandTrigger.run

    async def recording_run(self):
        seen.append(self.serialize()[1])
        async for event in original(self):
            yield event

    monkeypatch.setattr(FleetCommandTrigger, "run", recording_run)
    return seen


def run(dag, vehicle_ids: list[str]) -> Any:
    return dag.test(run_conf={"vehicle_ids": vehicle_ids})


def tis(dr) -> dict[tuple[str, int], Any]:
    return {(ti.task_id, ti.map_index): ti for ti in dr.get_task_instances()}


def xcom(dr, key: str = "return_value", task_id: str = "send", map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, key=key, task_ids=task_id, dag_ids=dr.dag_id, map_indexes=map_index)
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None


def creates(sim, vehicle_ids) -> dict[str, int]:
    counted = sim.state.counters()["creates"]
    return {vid: counted.get(vid, {}).get("CLIMATE_OFF", 0) for vid in vehicle_ids}


def create_posts(sim) -> list[str]:
    """The vehicle of every create POST the simulator received, in order (answered or not)."""
    return [e["path"].split("/")[3] for e in sim.state.request_log() if e["kind"] == "create"]


def summary(outcomes: list[dict]) -> dict[str, tuple]:
    return {o["vehicle_id"]: (o["status"], o["failed_reason"], o["classification"]) for o in outcomes}


MODES = ["vf_deferrable", "vf_sync"]


@pytest.mark.parametrize("dag_id", MODES)
def test_all_executed_in_one_task(sim, dags, triggers, capfd, dag_id):
    fleet = [f"sim-ok-fl-{i}" for i in range(12)]
    dr = run(getattr(dags, dag_id), fleet)
    ti = tis(dr)[("send", -1)]
    assert (str(dr.state), ti.state, ti.try_number) == ("success", "success", 1)
    assert creates(sim, fleet) == dict.fromkeys(fleet, 1)
    outcomes = xcom(dr)
    assert [o["vehicle_id"] for o in outcomes] == fleet
    executions = {vid: sim.state.executions(vid)[0]["id"] for vid in fleet}
    assert {o["vehicle_id"]: o["execution_id"] for o in outcomes} == executions
    assert {o["status"] for o in outcomes} == {"EXECUTED"} and {o["classification"] for o in outcomes} == {"executed"}
    counters = sim.state.counters()
    assert counters["tokenRequests"] == 1  # one hook, one token, for the whole fleet
    if dag_id == "vf_deferrable":
        [kwargs] = triggers  # ONE trigger for all 12 vehicles
        assert kwargs["executions"] == executions
        assert "volteras-sim-secret" not in repr(kwargs)
    else:
        assert triggers == []
    # The log has one table row per vehicle with its execution id.
    log = capfd.readouterr().out
    assert "CLIMATE_OFF outcome per vehicle:" in log
    for vid, eid in executions.items():
        assert any(f" {vid} " in line and eid in line and "EXECUTED" in line for line in log.splitlines()), vid


MIXED = {
    "fl-ok-1": ("EXECUTED", None, "executed"),
    "fl-consent": ("FAILED", "OEM_OAUTH_TOKEN_EXPIRED", "fatal"),
    "fl-offline": ("FAILED", "OEM_VEHICLE_OFFLINE", "retryable"),
    "fl-ok-2": ("EXECUTED", None, "executed"),
}


def mixed_scenarios(sim) -> list[str]:
    sim.state.set_scenario("fl-ok-1", outcome="EXECUTED", delay=0.5)
    sim.state.set_scenario("fl-ok-2", outcome="EXECUTED", delay=1.5)
    sim.state.set_scenario("fl-consent", outcome="FAILED", failed_reason="OEM_OAUTH_TOKEN_EXPIRED", delay=0.5)
    sim.state.set_scenario(
        "fl-offline",
        outcome="EXECUTED",
        delay=0.5,
        sequence=[{"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE", "delaySeconds": 1.0}],
    )
    return list(MIXED)


@pytest.mark.parametrize("dag_id", MODES)
def test_mixed_outcomes_retry_resends_only_to_the_retryable_vehicle(sim, dags, capfd, dag_id):
    fleet = mixed_scenarios(sim)
    dr = run(getattr(dags, dag_id), fleet)
    ti = tis(dr)[("send", -1)]
    # Try 1: one retryable vehicle -> retry. Try 2: the offline vehicle executes, the fatal one stays fatal
    # (reported again, never re-sent) -> the task fails without using its last retry.
    assert (str(dr.state), ti.state, ti.try_number) == ("failed", "failed", 2)
    assert creates(sim, fleet) == {"fl-ok-1": 1, "fl-consent": 1, "fl-offline": 2, "fl-ok-2": 1}
    posts = create_posts(sim)
    assert sorted(posts[:4]) == sorted(fleet)  # try 1 sent to every vehicle once
    assert posts[4:] == ["fl-offline"]  # try 2 re-sent to the retryable vehicle only
    assert [e["status"] for e in sim.state.executions("fl-offline")] == ["FAILED", "EXECUTED"]
    outcomes = xcom(dr, "outcomes")
    assert summary(outcomes) == MIXED | {"fl-offline": ("EXECUTED", None, "executed")}
    by_vehicle = {o["vehicle_id"]: o for o in outcomes}
    assert by_vehicle["fl-offline"]["execution_id"] == sim.state.executions("fl-offline")[1]["id"]
    assert by_vehicle["fl-ok-1"]["origin"] == "earlier try" and by_vehicle["fl-offline"]["origin"] == "sent"
    messages = capfd.readouterr().out.splitlines()
    assert any(
        "2 of 4 vehicle(s) EXECUTED, 1 failed fatally, 1 failed retryably" in m
        and "Retryable: fl-offline (OEM_VEHICLE_OFFLINE)" in m
        for m in messages
    ), "try 1's failure message"
    assert any(
        "3 of 4 vehicle(s) EXECUTED, 1 failed fatally, 0 failed retryably" in m
        and "fl-consent (OEM_OAUTH_TOKEN_EXPIRED)" in m
        and "will NOT retry" in m
        for m in messages
    ), "try 2's failure message"


def test_deferrable_and_worker_modes_agree(sim, dags):
    results = {}
    for dag_id in MODES:
        fleet = mixed_scenarios(sim)
        dr = run(getattr(dags, dag_id), fleet)
        ti = tis(dr)[("send", -1)]
        results[dag_id] = (str(dr.state), ti.try_number, summary(xcom(dr, "outcomes")), creates(sim, fleet))
        sim.state.reset(keep_config=True)
    assert results["vf_deferrable"] == results["vf_sync"]
    assert results["vf_sync"][:2] == ("failed", 2)


def test_worker_killed_after_some_creates_retry_reattaches_without_duplicates(sim, dags, capfd):
    fleet = [f"fl-crash-{i}" for i in range(8)]
    for vid in fleet:
        sim.state.set_scenario(vid, outcome="EXECUTED", delay=3)  # still pending when try 2 starts
    dr = run(dags.vf_crash, fleet)
    ti = tis(dr)[("send", -1)]
    assert (str(dr.state), ti.state, ti.try_number) == ("success", "success", 2)
    assert creates(sim, fleet) == dict.fromkeys(fleet, 1)  # every vehicle exactly once over both tries
    posts = create_posts(sim)
    assert sorted(posts) == sorted(fleet)
    log = capfd.readouterr().out
    assert "simulated worker crash after some creates" in log
    outcomes = xcom(dr)
    assert {o["status"] for o in outcomes} == {"EXECUTED"}
    origins = {o["vehicle_id"]: o["origin"] for o in outcomes}
    sent_in_try_1 = [vid for vid in fleet if origins[vid] == "earlier try"]
    assert len(sent_in_try_1) >= 3, origins  # try 2 re-attached to what try 1 created
    if AIRFLOW_VERSION >= (3, 3):  # the dag.test() of Airflow 3.1 and 3.2 does not print the task's own log lines
        assert "still pending (re-attached)" in log


def test_bad_vehicle_id_fails_fatal_before_any_request(sim, dags):
    dr = run(dags.vf_deferrable, ["sim-ok-1", "bad/id", "sim-ok-2"])
    ti = tis(dr)[("send", -1)]
    assert (str(dr.state), ti.try_number) == ("failed", 1)
    assert sim.state.counters()["requests"] == 0


def test_1500_vehicles_in_one_run_are_3_chunk_tasks(sim, dags):
    sim.state.configure(default_delay=2.0)
    fleet = [f"sim-ok-{i}" for i in range(1, 1501)]
    dr = run(dags.vf_chunked, fleet)
    assert str(dr.state) == "success"
    chunk_tis = {mi: ti for (task_id, mi), ti in tis(dr).items() if task_id == "send"}
    assert sorted(chunk_tis) == [0, 1, 2]  # 1,500 vehicles, far below max_map_length: no per-vehicle mapping
    assert {ti.state for ti in chunk_tis.values()} == {"success"}
    assert {ti.try_number for ti in chunk_tis.values()} == {1}
    assert chunk_tis[0].rendered_map_index == "vehicles 1–500 (sim-ok-1 … sim-ok-500)"
    assert chunk_tis[2].rendered_map_index == "vehicles 1001–1500 (sim-ok-1001 … sim-ok-1500)"
    assert creates(sim, fleet) == dict.fromkeys(fleet, 1)
    assert sum(len(xcom(dr, map_index=mi)) for mi in range(3)) == 1500


def test_chunk_helpers():
    assert chunked(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert chunked([], 2) == []
    with pytest.raises(ValueError):
        chunked(["a"], 0)
    from jinja2 import Environment

    template = Environment().from_string(chunk_label_template(2))

    class Ti:
        map_index = 1

    class Task:
        vehicle_ids = ["c"]

    assert template.render(ti=Ti, task=Task) == "c"
    Task.vehicle_ids = ["c", "d"]
    assert template.render(ti=Ti, task=Task) == "vehicles 3–4 (c … d)"
    assert FLEET_STATE_KEY == "volteras_fleet_command_executions"
