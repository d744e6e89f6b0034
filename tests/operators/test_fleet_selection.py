"""Fleet tasks whose vehicles are a selection (a tag, a filter, an upstream XCom), through ``dag.test()``.

What is asserted is what a user sees and what the simulator received: the task's state and try number,
its log, its XCom, the vehicles that were sent a create (per try), and how often the vehicle listing
was read. The selection is recorded before anything is sent, and every later try acts on it: a vehicle
tagged after the first try is never sent to.
"""

from __future__ import annotations

import importlib.util
import textwrap
from typing import Any

import pytest

from airflow_provider_volteras.exceptions import VolterasInvalidInputError
from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator, VolterasFleetCommandOperator

pytestmark = pytest.mark.slow

DAGS = textwrap.dedent(
    '''
    """DAGs of tests/operators/test_fleet_selection.py (written into the test DAGS_FOLDER by the test module)."""
    from __future__ import annotations

    from datetime import datetime, timedelta

    from airflow.sdk import DAG, task

    from airflow_provider_volteras.hooks.volteras import VolterasHook
    from airflow_provider_volteras.lifecycle.records import FLEET_STATE_KEY
    from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator

    FAST_RETRY = {"retries": 2, "retry_delay": timedelta(seconds=1)}
    TAG = "{{ dag_run.conf['tag'] }}"
    #: The fleet record as each try found it once its selection was resolved (before any create).
    RECORDS = []


    def _dag(dag_id):
        return DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
                   render_template_as_native_obj=True)


    def retag(conf):
        """Move the tag as the conf says: tag conf['tag_after'] vehicles, untag conf['untag_after'] ones."""
        hook = VolterasHook()
        key, value = conf["tag"].split("=")
        for vid in conf.get("tag_after", []):
            hook.request("POST", "/v1/tags", json={"key": key, "value": value, "objectType": "DEVICE", "objectId": vid})
        for vid in conf.get("untag_after", []):
            hook.request("DELETE", "/v1/tags",
                         params={"key": key, "value": value, "entityType": "DEVICE", "entityId": vid})


    class RetagAfterSending(FleetClimateOffOperator):
        """Try 1 changes the tag's membership once its creates were sent (while its commands run)."""

        def on_prepared(self, context, pending):
            if context["ti"].try_number == 1:
                retag(context["dag_run"].conf)
            return super().on_prepared(context, pending)


    class CrashBeforeSending(FleetClimateOffOperator):
        """Try 1 records its selection, the tag changes, and the worker dies before any create."""

        def run_commands(self, context, vehicles, spec, arguments, **kwargs):
            from airflow_provider_volteras._compat import task_state_store

            RECORDS.append(task_state_store(context).get(FLEET_STATE_KEY))
            if context["ti"].try_number == 1:
                retag(context["dag_run"].conf)
                raise RuntimeError("simulated worker crash before any create")
            return super().run_commands(context, vehicles, spec, arguments, **kwargs)


    with _dag("vs_tag") as vs_tag:
        FleetClimateOffOperator(task_id="send", tag=TAG, poll_interval=1, timeout=60, **FAST_RETRY)

    with _dag("vs_retag") as vs_retag:
        RetagAfterSending(task_id="send", tag=TAG, poll_interval=1, timeout=60, **FAST_RETRY)

    with _dag("vs_retag_sync") as vs_retag_sync:
        RetagAfterSending(task_id="send", tag=TAG, deferrable=False, poll_interval=1, timeout=60, **FAST_RETRY)

    with _dag("vs_crash") as vs_crash:
        CrashBeforeSending(task_id="send", tag=TAG, poll_interval=1, timeout=60, **FAST_RETRY)

    with _dag("vs_capped") as vs_capped:
        FleetClimateOffOperator(task_id="send", tag=TAG, max_vehicles=2, **FAST_RETRY)

    with _dag("vs_preview") as vs_preview:
        FleetClimateOffOperator(task_id="send", tag=TAG, preview="{{ dag_run.conf['preview'] }}", **FAST_RETRY)

    with _dag("vs_filter") as vs_filter:
        FleetClimateOffOperator(
            task_id="send",
            vehicle_filter={"field": "id", "operator": "like", "value": "{{ dag_run.conf['pattern'] }}"},
            poll_interval=1,
            timeout=60,
            **FAST_RETRY,
        )

    with _dag("vs_upstream") as vs_upstream:

        @task
        def pick(dag_run=None):
            return VolterasHook().select_vehicles(tag=dag_run.conf["tag"])

        FleetClimateOffOperator(task_id="send", vehicle_ids=pick(), poll_interval=1, timeout=60, **FAST_RETRY)
    '''
)


@pytest.fixture(scope="module")
def dags(airflow_db):
    target = airflow_db / "dags" / "volteras_fleet_selection_dags.py"
    target.parent.mkdir(exist_ok=True)
    target.write_text(DAGS)
    spec = importlib.util.spec_from_file_location("volteras_fleet_selection_dags", target)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tag(sim, vehicle_ids: list[str], value: str) -> None:
    for vid in vehicle_ids:
        sim.state.add_tag("DEVICE", vid, "fleet", value)


def ti(dr, task_id: str = "send") -> Any:
    return {t.task_id: t for t in dr.get_task_instances()}[task_id]


def xcom(dr, key: str = "return_value", task_id: str = "send") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, key=key, task_ids=task_id, dag_ids=dr.dag_id, map_indexes=-1)
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None


def create_posts(sim) -> list[str]:
    """The vehicle of every create POST the simulator received, in order (answered or not)."""
    return [e["path"].split("/")[3] for e in sim.state.request_log() if e["kind"] == "create"]


def listings(sim) -> int:
    return sum(1 for e in sim.state.request_log() if e["method"] == "GET" and e["path"] == "/v1/vehicles")


def test_a_tag_selects_the_fleet_when_the_task_runs(sim, dags, capfd):
    fleet = ["sel-ok-1", "sel-ok-2", "sel-ok-3"]
    tag(sim, fleet, "a")
    tag(sim, ["sel-other"], "b")
    dr = dags.vs_tag.test(run_conf={"tag": "fleet=a"})
    assert (str(dr.state), ti(dr).try_number) == ("success", 1)
    assert sorted(create_posts(sim)) == fleet
    assert [o["vehicle_id"] for o in xcom(dr)] == fleet
    assert listings(sim) == 1
    log = capfd.readouterr().out
    assert "Selected 3 vehicle(s) by tag fleet=a and recorded them before sending anything" in log
    assert "sel-ok-1, sel-ok-2, sel-ok-3" in log


@pytest.mark.parametrize("dag_id", ["vs_retag", "vs_retag_sync"])
def test_a_retry_acts_on_the_recorded_selection_when_the_tag_changed(sim, dags, capfd, dag_id):
    """Try 1 selects {ok, offline} by tag and sends to both; the tag then moves (a new vehicle gets it, the
    offline one loses it) and the offline vehicle's command fails retryably. Try 2 re-sends to the offline
    vehicle (it is in the recorded selection) and never to the newly tagged one."""
    sim.state.set_scenario(
        "sel-offline",
        outcome="EXECUTED",
        delay=0.5,
        sequence=[{"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE", "delaySeconds": 0.5}],
    )
    tag(sim, ["sel-ok", "sel-offline"], "m")
    conf = {"tag": "fleet=m", "tag_after": ["sel-new"], "untag_after": ["sel-offline"]}
    dr = getattr(dags, dag_id).test(run_conf=conf)
    assert (str(dr.state), ti(dr).try_number) == ("success", 2)
    # The tag did move: a listing now would give another fleet.
    assert [v["id"] for v in sim.state.list_vehicles(tag_key="fleet", tag_value="m")["results"]] == [
        "sel-ok",
        "sel-new",
    ]
    posts = create_posts(sim)
    assert sorted(posts[:2]) == ["sel-offline", "sel-ok"]  # try 1: the whole selection
    assert posts[2:] == ["sel-offline"]  # try 2: only the retryable vehicle of the recorded selection
    assert "sel-new" not in posts and sim.state.executions("sel-new") == []
    assert listings(sim) == 1  # listed once, by try 1; the deferral's resume and try 2 read the record
    assert [o["vehicle_id"] for o in xcom(dr)] == ["sel-ok", "sel-offline"]
    log = capfd.readouterr().out
    assert "Acting on the 2 vehicle(s) an earlier try of this task (try 1) selected by tag fleet=m" in log


def test_a_try_that_died_before_any_create_leaves_its_selection_to_the_next(sim, dags):
    dags.RECORDS.clear()
    tag(sim, ["sel-a", "sel-b"], "c")
    conf = {"tag": "fleet=c", "tag_after": ["sel-late"], "untag_after": ["sel-a"]}
    dr = dags.vs_crash.test(run_conf=conf)
    assert (str(dr.state), ti(dr).try_number) == ("success", 2)
    first, second = dags.RECORDS
    # Written before try 1 sent anything: the selection, and no vehicle entry yet.
    assert first["selection"]["vehicles"] == ["sel-a", "sel-b"] and first["vehicles"] == {}
    assert first["selection"]["source"] == {"tag": {"key": "fleet", "value": "c"}} and first["selection"]["try"] == 1
    assert second["selection"] == first["selection"]
    assert sorted(create_posts(sim)) == ["sel-a", "sel-b"]  # sel-a was untagged, sel-late tagged: neither counts
    assert listings(sim) == 1


def test_an_empty_selection_fails_at_once_and_sends_nothing(sim, dags, capfd):
    dr = dags.vs_tag.test(run_conf={"tag": "fleet=nobody"})
    assert (str(dr.state), ti(dr).try_number) == ("failed", 1)  # fatal: its 2 retries are not used
    assert sim.state.counters()["createAttempts"] == 0
    assert "the selection (tag fleet=nobody) has no vehicles" in capfd.readouterr().out


def test_an_oversized_selection_fails_at_once_naming_the_count_and_the_cap(sim, dags, capfd):
    tag(sim, ["sel-1", "sel-2", "sel-3"], "big")
    dr = dags.vs_capped.test(run_conf={"tag": "fleet=big"})
    assert (str(dr.state), ti(dr).try_number) == ("failed", 1)
    assert sim.state.counters()["createAttempts"] == 0
    assert "has 3 vehicles, above max_vehicles=2" in capfd.readouterr().out


def test_a_preview_logs_the_selection_and_sends_nothing(sim, dags, capfd):
    tag(sim, ["sel-p1", "sel-p2"], "p")
    dr = dags.vs_preview.test(run_conf={"tag": "fleet=p", "preview": True})
    assert (str(dr.state), ti(dr).try_number) == ("success", 1)
    assert xcom(dr) == ["sel-p1", "sel-p2"]
    assert sim.state.counters()["createAttempts"] == 0
    log = capfd.readouterr().out
    assert "Preview: CLIMATE_OFF would be sent to these 2 vehicle(s) (selected by tag fleet=p)" in log
    assert "sel-p1, sel-p2" in log
    # The same task without preview sends: a preview recorded nothing that the real run would reuse.
    tag(sim, ["sel-p3"], "p")
    dr = dags.vs_preview.test(run_conf={"tag": "fleet=p", "preview": False})
    assert str(dr.state) == "success"
    assert sorted(create_posts(sim)) == ["sel-p1", "sel-p2", "sel-p3"]


def test_a_filter_selects_the_fleet(sim, dags):
    for vid in ("sel-f-1", "sel-f-2", "sel-g-1"):
        sim.state.get_vehicle(vid)  # the simulator lists a vehicle once it has seen it
    dr = dags.vs_filter.test(run_conf={"pattern": "sel-f-%"})
    assert str(dr.state) == "success"
    assert sorted(create_posts(sim)) == ["sel-f-1", "sel-f-2"]


def test_an_upstream_task_selects_and_the_fleet_task_sends(sim, dags):
    tag(sim, ["sel-u1", "sel-u2"], "u")
    dr = dags.vs_upstream.test(run_conf={"tag": "fleet=u"})
    assert str(dr.state) == "success"
    assert xcom(dr, task_id="pick") == ["sel-u1", "sel-u2"]
    assert sorted(create_posts(sim)) == ["sel-u1", "sel-u2"]


def test_a_selection_is_checked_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="exactly one of vehicle_ids, tag and vehicle_filter"):
        FleetClimateOffOperator(task_id="none")
    with pytest.raises(ValueError, match="got vehicle_ids and tag"):
        FleetClimateOffOperator(task_id="two", vehicle_ids=["a"], tag="fleet=x")
    with pytest.raises(VolterasInvalidInputError, match="key=value"):
        FleetClimateOffOperator(task_id="tag", tag="fleet")
    with pytest.raises(VolterasInvalidInputError, match="not valid JSON"):
        VolterasFleetCommandOperator(task_id="f", command="CLIMATE_OFF", vehicle_filter="{")
    with pytest.raises(VolterasInvalidInputError, match="has 3 vehicles, above max_vehicles=2"):
        FleetClimateOffOperator(task_id="cap", vehicle_ids=["a", "b", "c"], max_vehicles=2)
    with pytest.raises(VolterasInvalidInputError, match="the list is empty"):
        FleetClimateOffOperator(task_id="empty", vehicle_ids=[])
    with pytest.raises(ValueError, match="max_vehicles"):
        FleetClimateOffOperator(task_id="zero", tag="fleet=x", max_vehicles=0)
    with pytest.raises(ValueError, match="preview"):
        FleetClimateOffOperator(task_id="p", tag="fleet=x", preview="yes")
    # Templates are checked when the task runs.
    FleetClimateOffOperator(task_id="later", tag="{{ params.tag }}", preview="{{ params.preview }}")


def test_a_clear_sends_again_within_the_recorded_selection(sim, dags, capfd):
    """A person's Clear after a fatal failure is a new try of the same selection: the vehicle whose command
    FAILED gets one new command, the one that EXECUTED nothing, and a vehicle tagged since nothing."""
    from tests.lifecycle.test_clear import Run

    sim.state.set_scenario(
        "sel-consent",
        outcome="EXECUTED",
        delay=0.3,
        sequence=[{"outcome": "FAILED", "failedReason": "OEM_OAUTH_TOKEN_EXPIRED", "delaySeconds": 0.3}],
    )
    tag(sim, ["sel-consent", "sel-fine"], "clr")
    run = Run(dags.vs_tag, {"tag": "fleet=clr"})
    first = run.go()
    assert (first.state, first.task().try_number) == ("failed", 1)
    sim.state.add_tag("DEVICE", "sel-later", "fleet", "clr")
    sim.state.remove_tag("DEVICE", "sel-consent", "fleet", "clr")
    cleared = run.go()
    assert (cleared.state, cleared.task().try_number) == ("success", 2)
    assert sorted(create_posts(sim)) == ["sel-consent", "sel-consent", "sel-fine"]
    assert listings(sim) == 1
    assert "selected by tag fleet=clr" in capfd.readouterr().out
