"""Every example DAG runs green against the simulator with ``dag.test()``, under Airflow's default
``[operators] default_deferrable = False`` and under ``True``: the same outcome either way, each task
waiting where its example says (issue 17, item 5)."""

from __future__ import annotations

import pytest

from tests.dag_runner import run
from tests.example_loading import (
    DEFAULT_DEFERRABLE,
    finished_once_waited_on,
    load_examples,
    under_default_deferrable,
    waited_in,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=DEFAULT_DEFERRABLE, ids=lambda s: f"default_deferrable={s}")
def default_deferrable(request) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def examples(airflow_db, default_deferrable):
    patch = under_default_deferrable(default_deferrable)
    try:
        yield load_examples(airflow_db)
    finally:
        patch.undo()


def test_climate_off_two_task_example(sim, examples, capfd):
    # Pending when the sensor first reads it (however long the sender took), EXECUTED once it waited.
    with finished_once_waited_on(sim, "sim-ok"):
        result = run(examples["volteras_climate_off"], {"vehicle_id": "sim-ok"})
    assert result.state == "success"
    assert result.task("climate_off").state == result.task("wait_for_climate_off").state == "success"
    assert sim.state.counters()["creates"] == {"sim-ok": {"CLIMATE_OFF": 1}}
    out = capfd.readouterr().out
    # The sending task says that its green is not the car's answer, and which task gives that answer.
    (said,) = [line for line in out.splitlines() if "wait_for_completion=False" in line]
    assert "success means the API accepted CLIMATE_OFF for vehicle sim-ok, not that the car executed it" in said
    assert "is the state of task(s) 'wait_for_climate_off'." in said
    # The sensor passes deferrable=True: it waits in the triggerer whatever default_deferrable says.
    assert examples["volteras_climate_off"].task_dict["wait_for_climate_off"].deferrable is True
    assert waited_in(out) == {"triggerer"}


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
def test_send_command_example_from_the_ui_form(sim, examples, default_deferrable, capfd, conf, command):
    result = run(examples["volteras_send_command"], conf)
    assert result.state == "success"
    vehicle = conf.get("vehicle_id", "sim-ok")
    assert sim.state.counters()["creates"] == {vehicle: {command: 1}}
    # This example follows the setting: in the worker by Airflow's default, in the triggerer when True.
    assert waited_in(capfd.readouterr().out) == {"triggerer" if default_deferrable == "True" else "worker"}


def test_fleet_example_with_its_default_vehicles(sim, examples, capfd):
    result = run(examples["volteras_fleet_climate_off"])
    assert result.state == "success"
    # Its default tag fleet=demo selects the simulator's two demo vehicles that execute.
    fleet = ["sim-ok-demo-1", "sim-ok-demo-2"]
    assert {vid: c["CLIMATE_OFF"] for vid, c in sim.state.counters()["creates"].items()} == dict.fromkeys(fleet, 1)
    # Each mapped task is labelled with its vehicle in the UI, not 0, 1, 2.
    labels = [result.task("climate_off", index).label for index in range(len(fleet))]
    assert labels == list(fleet)
    # deferrable=True: up to 1,024 mapped tasks never wait in worker slots, whatever the setting.
    assert waited_in(capfd.readouterr().out) == {"triggerer"}


@pytest.mark.parametrize("dag_id", ["volteras_fleet_climate_off", "volteras_fleet_climate_off_batch"])
def test_fleet_examples_never_run_on_a_schedule_unless_asked(examples, dag_id):
    """Unpausing a scheduled DAG also runs its latest slot: a physical-action example must not surprise."""
    dag = examples[dag_id]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "does not run on a schedule by default" in (dag.doc_md or "")


def test_fleet_batch_example_labels_each_chunk(sim, examples, capfd):
    dag = examples["volteras_fleet_climate_off_batch"]
    result = run(dag, {"vehicle_ids": ["sim-ok-b1", "sim-ok-b2"]})
    assert result.state == "success"
    [label] = [task.label for (task_id, _), task in result.tasks.items() if task_id == "climate_off"]
    assert "sim-ok-b1" in label and "sim-ok-b2" in label
    assert waited_in(capfd.readouterr().out) == {"triggerer"}


def test_every_example_says_where_it_waits(examples):
    """Each example's doc names the place its tasks wait; those that must not hold worker slots through a
    long wait pass deferrable=True themselves rather than rely on the setting."""
    for dag_id, dag in examples.items():
        assert "**Where" in (dag.doc_md or "") and "wait" in dag.doc_md, dag_id
    explicit = {
        ("volteras_climate_off", "wait_for_climate_off"),
        ("volteras_fleet_climate_off", "climate_off"),
        ("volteras_fleet_climate_off_batch", "climate_off"),
        ("volteras_fleet_climate_off_by_tag", "climate_off"),
    }
    for dag_id, task_id in explicit:
        task = examples[dag_id].task_dict[task_id]
        kwargs = getattr(task, "partial_kwargs", None)
        deferrable = kwargs.get("deferrable") if kwargs is not None else task.deferrable
        assert deferrable is True, (dag_id, task_id)
