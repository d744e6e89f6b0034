"""The fleet examples pick their vehicles from the simulator's ``/v1/vehicles`` (by tag), with ``dag.test()``.

Asserted: which vehicles were sent a create, that the vehicle listing was read, the UI labels, and that a
preview or an empty selection sends nothing.
"""

from __future__ import annotations

import pytest

from tests.dag_runner import run
from tests.example_loading import load_examples

pytestmark = pytest.mark.slow

FLEET_EXAMPLES = ["volteras_fleet_climate_off", "volteras_fleet_climate_off_batch", "volteras_fleet_climate_off_by_tag"]
DEMO = ["sim-ok-demo-1", "sim-ok-demo-2"]  # the simulator's vehicles tagged fleet=demo


@pytest.fixture(scope="module")
def examples(airflow_db):
    return load_examples(airflow_db, FLEET_EXAMPLES, prefix="selection")


def created(sim) -> dict[str, int]:
    return {vid: c.get("CLIMATE_OFF", 0) for vid, c in sim.state.counters()["creates"].items()}


def listings(sim) -> int:
    return sum(1 for e in sim.state.request_log() if e["method"] == "GET" and e["path"] == "/v1/vehicles")


def tag(sim, vehicle_ids: list[str], value: str) -> None:
    for vid in vehicle_ids:
        sim.state.add_tag("DEVICE", vid, "fleet", value)


@pytest.mark.parametrize("dag_id", FLEET_EXAMPLES)
def test_each_fleet_example_selects_the_demo_tag_by_default(sim, examples, dag_id):
    dag = examples[dag_id]
    assert dag.params["tag"] == "fleet=demo"
    result = run(dag)
    assert result.state == "success"
    assert created(sim) == dict.fromkeys(DEMO, 1)
    assert listings(sim) == 1


def test_the_mapped_example_maps_over_the_vehicles_a_tag_selects(sim, examples):
    fleet = ["sim-ok-t1", "sim-ok-t2", "sim-ok-t3"]
    tag(sim, fleet, "t")
    result = run(examples["volteras_fleet_climate_off"], {"tag": "fleet=t"})
    assert result.state == "success"
    assert created(sim) == dict.fromkeys(fleet, 1)
    assert [result.task("climate_off", i).label for i in range(3)] == fleet


def test_a_run_can_still_name_its_vehicles(sim, examples):
    result = run(examples["volteras_fleet_climate_off"], {"vehicle_ids": ["sim-ok-named"]})
    assert result.state == "success"
    assert created(sim) == {"sim-ok-named": 1}
    assert listings(sim) == 0  # named vehicles are not looked up


def test_an_empty_tag_fails_the_selection_and_sends_nothing(sim, examples):
    result = run(examples["volteras_fleet_climate_off_batch"], {"tag": "fleet=nobody"})
    assert result.state == "failed"
    assert result.task("fleet").state == "failed"
    assert sim.state.counters()["createAttempts"] == 0


def test_the_tag_example_previews_without_sending(sim, examples, capfd):
    result = run(examples["volteras_fleet_climate_off_by_tag"], {"preview": True})
    assert result.state == "success"
    assert sim.state.counters()["createAttempts"] == 0
    assert "Preview: CLIMATE_OFF would be sent to these 2 vehicle(s) (selected by tag fleet=demo)" in (
        capfd.readouterr().out
    )


def test_the_tag_example_never_runs_on_a_schedule_unless_asked(examples):
    dag = examples["volteras_fleet_climate_off_by_tag"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "does not run on a schedule by default" in (dag.doc_md or "")
