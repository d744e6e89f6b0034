"""Every example DAG runs green against the simulator with ``dag.test()``."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.dag_runner import run

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


@pytest.fixture(scope="module")
def examples(airflow_db):
    dags = {}
    for source in sorted(EXAMPLES.glob("*.py")):
        target = airflow_db / "dags" / source.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(source, target)
        spec = importlib.util.spec_from_file_location(f"example_{source.stem}", target)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dags[module.dag.dag_id] = module.dag
    return dags


def test_climate_off_two_task_example(sim, examples, capfd):
    sim.state.set_scenario("sim-ok", outcome="EXECUTED", delay=2)
    result = run(examples["volteras_climate_off"], {"vehicle_id": "sim-ok"})
    assert result.state == "success"
    assert result.task("climate_off").state == result.task("wait_for_climate_off").state == "success"
    assert sim.state.counters()["creates"] == {"sim-ok": {"CLIMATE_OFF": 1}}
    # The sending task says that its green is not the car's answer, and which task gives that answer.
    (said,) = [line for line in capfd.readouterr().out.splitlines() if "wait_for_completion=False" in line]
    assert "success means the API accepted CLIMATE_OFF for vehicle sim-ok, not that the car executed it" in said
    assert "is the state of task(s) 'wait_for_climate_off'." in said


@pytest.mark.parametrize(
    ("conf", "command"),
    [
        ({"vehicle_id": "sim-ok", "command": "CLIMATE_OFF", "arguments": None}, "CLIMATE_OFF"),
        (
            {
                "vehicle_id": "car-ui",
                "command": "SET_TEMPERATURE",
                "arguments": {"driverTemperature": 22, "passengerTemperature": 21},
            },
            "SET_TEMPERATURE",
        ),
        ({"vehicle_id": "car-ui", "command": "SET_CHARGE_LIMIT", "arguments": {"limit": 80}}, "SET_CHARGE_LIMIT"),
        # dag.test() runs share one params dict in-process: say "no arguments" explicitly.
        ({"vehicle_id": "car-ui", "command": "LOCK_DOORS", "arguments": None}, "LOCK_DOORS"),
    ],
)
def test_send_command_example_from_the_ui_form(sim, examples, conf, command):
    result = run(examples["volteras_send_command"], conf)
    assert result.state == "success"
    vehicle = conf.get("vehicle_id", "sim-ok")
    assert sim.state.counters()["creates"] == {vehicle: {command: 1}}


def test_fleet_example_with_its_default_vehicles(sim, examples):
    result = run(examples["volteras_fleet_climate_off"])
    assert result.state == "success"
    fleet = examples["volteras_fleet_climate_off"].params["vehicle_ids"]
    assert {vid: c["CLIMATE_OFF"] for vid, c in sim.state.counters()["creates"].items()} == dict.fromkeys(fleet, 1)
    # Each mapped task is labelled with its vehicle in the UI, not 0, 1, 2.
    labels = [result.task("climate_off", index).label for index in range(len(fleet))]
    assert labels == list(fleet)


@pytest.mark.parametrize("dag_id", ["volteras_fleet_climate_off", "volteras_fleet_climate_off_batch"])
def test_fleet_examples_never_run_on_a_schedule_unless_asked(examples, dag_id):
    """Unpausing a scheduled DAG also runs its latest slot: a physical-action example must not surprise."""
    dag = examples[dag_id]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "does not run on a schedule by default" in (dag.doc_md or "")


def test_fleet_batch_example_labels_each_chunk(sim, examples):
    dag = examples["volteras_fleet_climate_off_batch"]
    result = run(dag, {"vehicle_ids": ["sim-ok-b1", "sim-ok-b2"]})
    assert result.state == "success"
    [label] = [task.label for (task_id, _), task in result.tasks.items() if task_id == "climate_off"]
    assert "sim-ok-b1" in label and "sim-ok-b2" in label
