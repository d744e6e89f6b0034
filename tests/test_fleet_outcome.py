"""A fleet's outcome at a glance (``dag.test()`` on the fleet examples): the mapped fleet's log ends, like the
chunked fleet's, with every vehicle's outcome, counts by outcome and by failed reason and the vehicles to act
on; each mapped task keeps its vehicle as its label."""

from __future__ import annotations

import os
import threading

import pytest

from tests.dag_runner import run
from tests.example_loading import load_examples

pytestmark = pytest.mark.slow

MAPPED = "volteras_fleet_climate_off"
BATCH = "volteras_fleet_climate_off_batch"
OK, RETRIED, FATAL = "sim-ok-glance-1", "car-glance-offline-once", "sim-fail-OEM_OAUTH_TOKEN_EXPIRED"


@pytest.fixture(scope="module")
def fleet_examples(airflow_db):
    """The fleet examples with their retry delays shortened to 1 s (read when the DAG file is parsed)."""
    saved = os.environ.get("VOLTERAS_EXAMPLE_RETRY_SECONDS")
    os.environ["VOLTERAS_EXAMPLE_RETRY_SECONDS"] = "1"
    try:
        return load_examples(airflow_db, [MAPPED, BATCH], prefix="glance")
    finally:
        if saved is None:
            os.environ.pop("VOLTERAS_EXAMPLE_RETRY_SECONDS", None)
        else:
            os.environ["VOLTERAS_EXAMPLE_RETRY_SECONDS"] = saved


def preload() -> None:
    """Load what dag.test() and the watcher use before the watcher's thread starts: two threads loading
    Airflow's models at once deadlock."""
    import airflow.models.dag
    import airflow.models.dagrun
    import airflow.models.taskinstance
    import airflow.serialization.definitions.dag  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    configure_mappers()


class RowWatcher(threading.Thread):
    """Records the (state, label) pairs the UI's row of one mapped task instance goes through."""

    def __init__(self, dag_id: str, task_id: str, map_index: int) -> None:
        super().__init__(daemon=True, name="row-watcher")
        self.where = (dag_id, task_id, map_index)
        self.seen: list[tuple[str, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        dag_id, task_id, map_index = self.where
        while not self.done.wait(0.05):
            try:
                with create_session() as session:
                    row = session.execute(
                        select(TI.state, TI.rendered_map_index).where(
                            TI.dag_id == dag_id, TI.task_id == task_id, TI.map_index == map_index
                        )
                    ).first()
            except Exception:  # noqa: BLE001 - SQLite busy: look again
                continue
            if row is not None and (not self.seen or self.seen[-1] != (str(row[0]), row[1])):
                self.seen.append((str(row[0]), row[1]))


def lines_after(out: str, first: str) -> list[str]:
    """The log lines from the first one holding ``first`` on."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if first in line)
    return lines[start:]


def test_a_mapped_fleet_ends_with_its_outcome_at_a_glance(sim, fleet_examples, capfd, caplog):
    preload()
    sim.state.set_scenario(
        RETRIED, sequence=[{"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"}, {"outcome": "EXECUTED"}]
    )
    vehicles = [OK, RETRIED, FATAL]
    watcher = RowWatcher(MAPPED, "climate_off", 1)
    watcher.start()
    try:
        result = run(fleet_examples[MAPPED], {"vehicle_ids": vehicles, "tag": "fleet=demo"})
    finally:
        watcher.done.set()
        watcher.join(10)
    out = "\n".join(capfd.readouterr())  # the operators' logs and the task runner's
    told = caplog.text  # fleet_outcome's: a @task logs through logging (in the task's log, as the operators')

    climate_off = [result.task("climate_off", i) for i in range(3)]
    assert [(t.state, t.try_number) for t in climate_off] == [("success", 1), ("success", 2), ("failed", 1)]
    # Every row ends labelled with its vehicle, whatever its state.
    assert [t.label for t in climate_off] == vehicles
    summary = result.task("fleet_outcome")
    assert (summary.state, summary.try_number, result.state) == ("failed", 1, "failed")
    # The summary reads; only the vehicles' tasks sent (the retried vehicle twice: its first command FAILED).
    assert sim.state.counters()["creates"] == {
        OK: {"CLIMATE_OFF": 1},
        RETRIED: {"CLIMATE_OFF": 2},
        FATAL: {"CLIMATE_OFF": 1},
    }

    # fleet_outcome's log: the table, the counts, the vehicles to act on, then its failure naming them.
    tail = lines_after(told, "CLIMATE_OFF outcome per vehicle (task climate_off)")
    table = "\n".join(tail[:6])
    assert all(vid in table for vid in vehicles), table
    counts = next(i for i, line in enumerate(tail) if "CLIMATE_OFF: 2 executed, 1 fatal" in line)
    assert "by reason: OEM_OAUTH_TOKEN_EXPIRED 1" in tail[counts]
    assert f"CLIMATE_OFF: vehicles to act on (1): {FATAL} (OEM_OAUTH_TOKEN_EXPIRED, fatal)" in tail[counts + 1]
    assert "Volteras fleet command CLIMATE_OFF: 2 of 3 vehicle(s) EXECUTED. CLIMATE_OFF: vehicles to act on (1)" in out

    # What the row shows while it waits for its retry is Airflow's (docs/fleet.md: the task runner reports
    # up_for_retry without the label); a poller of the row can miss that short state or the last one, so the
    # watcher's record is kept for the report only and the labels above are asserted on the finished rows.
    print("row states seen:", watcher.seen)


def test_a_chunked_fleet_ends_with_the_same_lines(sim, fleet_examples, capfd):
    result = run(fleet_examples[BATCH], {"vehicle_ids": [OK, FATAL]})
    out = "\n".join(capfd.readouterr())  # the task logs go to stdout and stderr
    assert result.task("climate_off", 0).state == "failed"
    tail = lines_after(out, "CLIMATE_OFF outcome per vehicle:")
    counts = next(i for i, line in enumerate(tail) if "CLIMATE_OFF: 1 executed, 1 fatal" in line)
    assert "by reason: OEM_OAUTH_TOKEN_EXPIRED 1" in tail[counts]
    assert f"CLIMATE_OFF: vehicles to act on (1): {FATAL} (OEM_OAUTH_TOKEN_EXPIRED, fatal)" in tail[counts + 1]


def test_an_all_green_fleet_says_so(sim, fleet_examples, capfd, caplog):
    result = run(fleet_examples[MAPPED], {"vehicle_ids": [OK, "sim-ok-glance-2"], "tag": "fleet=demo"})
    assert (result.state, result.task("fleet_outcome").state) == ("success", "success")
    out = caplog.text
    assert "CLIMATE_OFF: 2 executed" in out and "CLIMATE_OFF: no vehicle to act on" in out
