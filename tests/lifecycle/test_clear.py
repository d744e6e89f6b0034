"""A person's Clear after a FAILED command is a new intent; Airflow's own retries and crashed tries are not.

Each case runs a DAG with ``dag.test()`` against the simulator, then runs the same DAG run again the way
a person's Clear does: ``dag.test()`` with the same logical date first clears the run's task instances with
Airflow's own ``clear_task_instances`` (``max_tries = try_number + retries``), and here it then resumes that
run (``dag.test()`` would otherwise replace the run, and its task state store with it). Assertions are on
task states, try numbers, the creates the simulator received and the task logs.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from airflow_provider_volteras.lifecycle.tries import Attempt, attempt_of
from tests.dag_runner import RunResult, TaskResult

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "dags" / "volteras_clear_dags.py"
FATAL = {"outcome": "FAILED", "failedReason": "OEM_OAUTH_TOKEN_EXPIRED"}
RETRYABLE = {"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"}
EXECUTED = {"outcome": "EXECUTED"}


@pytest.fixture(scope="module")
def dags(airflow_db: Path) -> Any:
    folder = airflow_db / "dags"
    folder.mkdir(exist_ok=True)
    target = folder / SRC.name
    shutil.copy(SRC, target)
    spec = importlib.util.spec_from_file_location("volteras_clear_dags", target)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Run:
    """One DAG run, run again (cleared) as often as asked."""

    def __init__(self, dag: Any, conf: dict[str, Any] | None = None) -> None:
        self.dag = dag
        self.conf = conf
        # A logical date of its own per run: another test's runs of the same DAG are never cleared with it.
        self.logical_date = datetime.now(UTC)

        self.ran = False

    def go(self) -> RunResult:
        """The first call runs the DAG; every later one is a Clear of every task instance of the same run."""
        resume = patch("airflow.models.dagrun.get_or_create_dagrun", _the_same_run) if self.ran else nullcontext()
        with resume:
            dr = self.dag.test(logical_date=self.logical_date, run_conf=self.conf)
        self.ran = True
        tasks = {
            (ti.task_id, ti.map_index): TaskResult(ti.task_id, ti.map_index, ti.state, ti.try_number)
            for ti in dr.get_task_instances()
        }
        return RunResult(str(dr.state), tasks)


def _the_same_run(*, dag: Any, logical_date: datetime, session: Any, **_: Any) -> Any:
    """The run ``dag.test()`` just cleared, running again (as the scheduler takes up a cleared run)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date))
    dr.state = DagRunState.RUNNING
    dr.dag = dag
    session.commit()
    return dr


def creates(sim: Any, vehicle_id: str) -> int:
    return sim.state.counters()["creates"].get(vehicle_id, {}).get("CLIMATE_OFF", 0)


def statuses(sim: Any, vehicle_id: str) -> list[str]:
    return [e["status"] for e in sim.state.executions(vehicle_id)]


# -- the signal ---------------------------------------------------------------------------------------


class _Ti:
    def __init__(self, try_number: Any, max_tries: Any, map_index: int = -1) -> None:
        self.try_number, self.max_tries, self.map_index = try_number, max_tries, map_index


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "first"),
    [
        (1, 2, 2, 1),  # a first try
        (2, 2, 2, 1),  # an automatic retry
        (3, 2, 2, 1),
        (2, 1, 0, 2),  # the first try after a Clear of try 1 (max_tries = 1 + 0)
        (4, 5, 2, 4),  # the first try after a Clear of try 3 (max_tries = 3 + 2)
        (5, 5, 2, 4),  # an automatic retry after that
    ],
)
def test_the_first_try_since_a_clear_comes_from_max_tries(try_number: int, max_tries: int, retries: int, first: int):
    attempt = attempt_of({"ti": _Ti(try_number, max_tries)}, retries)
    assert attempt == Attempt(number=try_number, first=first)
    assert attempt is not None
    if first > 1:
        assert attempt.cleared_since({"try": first - 1}) is True  # written before the Clear
    assert attempt.cleared_since({"try": first}) is False
    assert attempt.cleared_since({}) is False  # unknown: the safe reading is "a retry"


def test_without_what_airflow_says_every_try_is_taken_for_a_retry():
    assert attempt_of({}, 2) is None
    assert attempt_of({"ti": object()}, 2) is None
    assert attempt_of({"ti": _Ti(2, None)}, 2) is None
    assert attempt_of({"ti": _Ti(1, 5)}, 0) is None  # a first try past this try: not what Airflow leaves
    assert attempt_of({"ti": _Ti(2, 1, map_index=3)}, 0) == Attempt(number=2, first=2, map_index=3)


# -- single task ----------------------------------------------------------------------------------------


def test_a_clear_after_a_fatal_failure_sends_exactly_one_new_command(sim: Any, dags: Any, capsys: Any) -> None:
    vid = "car-clear-single"
    sim.state.set_scenario(vid, delay=0.3, sequence=[FATAL, EXECUTED])
    run = Run(dags.vt_clear_single, {"vehicle_id": vid})

    first = run.go()
    assert first.state == "failed" and first.task().try_number == 1
    assert statuses(sim, vid) == ["FAILED"]

    second = run.go()  # a person's Clear
    log = capsys.readouterr().out
    assert second.state == "success" and second.task().try_number == 2, log[-3000:]
    assert creates(sim, vid) == 2 and statuses(sim, vid) == ["FAILED", "EXECUTED"]
    assert "a person's Clear is a new intent, so this try sends one new command" in log

    third = run.go()  # cleared again after the success: nothing is sent
    assert third.state == "success" and third.task().try_number == 3
    assert creates(sim, vid) == 2


def test_a_clear_after_a_retryable_failure_sends_once_too(sim: Any, dags: Any) -> None:
    vid = "car-clear-single-offline"
    sim.state.set_scenario(vid, delay=0.3, sequence=[RETRYABLE, EXECUTED])
    run = Run(dags.vt_clear_single, {"vehicle_id": vid})
    assert run.go().state == "failed"  # retries=0
    assert run.go().state == "success"
    assert statuses(sim, vid) == ["FAILED", "EXECUTED"]


def test_an_automatic_retry_after_a_recorded_fatal_failure_sends_nothing(sim: Any, dags: Any) -> None:
    """Try 1 recorded the fatal FAILED and died before reporting it: try 2 is Airflow's retry, not a person."""
    vid = "car-clear-retry-fatal"
    sim.state.set_scenario(vid, delay=0.3, sequence=[FATAL, EXECUTED])
    run = Run(dags.vt_clear_crash_after_conclusion, {"vehicle_id": vid})
    first = run.go()
    assert first.state == "failed" and first.task().try_number == 2  # the retry ran, and failed at once
    assert creates(sim, vid) == 1

    second = run.go()  # now a person clears it
    assert second.state == "success" and second.task().try_number == 3
    assert statuses(sim, vid) == ["FAILED", "EXECUTED"]


def test_a_retry_after_a_try_killed_between_create_and_record_sends_nothing_new(sim: Any, dags: Any) -> None:
    vid = "car-clear-killed-retry"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=1.0)
    result = Run(dags.vt_clear_crash_in_flight, {"vehicle_id": vid}).go()
    assert result.state == "success" and result.task().try_number == 2
    assert creates(sim, vid) == 1  # try 2 adopted try 1's command


def test_a_clear_after_a_try_killed_between_create_and_record_sends_nothing_new(sim: Any, dags: Any) -> None:
    """A crashed try's command may still be in flight: the Clear adopts it rather than sending again."""
    vid = "car-clear-killed-clear"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=3.0)
    run = Run(dags.vt_clear_crash_in_flight_no_retry, {"vehicle_id": vid})
    first = run.go()
    assert first.state == "failed" and first.task().try_number == 1
    assert statuses(sim, vid) == ["PENDING"]
    second = run.go()
    assert second.state == "success" and second.task().try_number == 2
    assert creates(sim, vid) == 1


def test_a_clear_after_a_killed_try_whose_command_failed_sends_once(sim: Any, dags: Any) -> None:
    """Nothing of a killed try is in flight once its command FAILED: the Clear sends one new command."""
    vid = "car-clear-killed-failed"
    sim.state.set_scenario(vid, delay=0.2, sequence=[FATAL, EXECUTED])
    run = Run(dags.vt_clear_crash_in_flight_no_retry, {"vehicle_id": vid})
    assert run.go().state == "failed"
    # The Clear comes once the killed try's command has FAILED (still PENDING, it is re-attached to instead).
    give_up = time.monotonic() + 60
    while statuses(sim, vid) != ["FAILED"] and time.monotonic() < give_up:
        time.sleep(0.05)
    assert statuses(sim, vid) == ["FAILED"]
    second = run.go()
    assert second.state == "success" and second.task().try_number == 2
    assert statuses(sim, vid) == ["FAILED", "EXECUTED"]


# -- two tasks: send, then a sensor ------------------------------------------------------------------------


@pytest.mark.parametrize("first_failure", [FATAL, RETRYABLE], ids=["fatal", "retryable"])
def test_the_two_task_pattern_ends_at_once_and_a_clear_sends_one_new_command(
    sim: Any, dags: Any, capsys: Any, first_failure: dict[str, str]
) -> None:
    vid = f"car-clear-two-{first_failure['failedReason']}"
    sim.state.set_scenario(vid, delay=0.5, sequence=[first_failure, EXECUTED])
    run = Run(dags.vt_clear_two_task, {"vehicle_id": vid})

    first = run.go()
    log = capsys.readouterr().out
    assert (first.task("send").state, first.task("wait").state) == ("success", "failed")
    # The sensor's retries would only read the same FAILED execution: it fails at its first try.
    assert first.task("wait").try_number == 1
    assert "Airflow will NOT retry this sensor: it would read the same FAILED execution" in log
    assert "Clear task 'send' with Downstream selected" in log

    second = run.go()  # Clear of the sending task with Downstream (here: the whole run)
    assert second.state == "success", capsys.readouterr().out[-3000:]
    assert (second.task("send").state, second.task("wait").state) == ("success", "success")
    assert statuses(sim, vid) == ["FAILED", "EXECUTED"]  # exactly one new command


# -- fleets: a mapped task per vehicle, and one batch task ---------------------------------------------------


def _fleet_scenarios(sim: Any, dags: Any) -> tuple[str, str]:
    ok, consent = dags.FLEET
    sim.state.set_scenario(ok, outcome="EXECUTED", delay=0.3)
    sim.state.set_scenario(consent, delay=0.3, sequence=[FATAL, EXECUTED])
    return ok, consent


def test_a_clear_of_a_mapped_fleet_sends_again_only_where_the_command_failed(sim: Any, dags: Any) -> None:
    ok, consent = _fleet_scenarios(sim, dags)
    run = Run(dags.vt_clear_mapped)
    first = run.go()
    assert (first.task("send", 0).state, first.task("send", 1).state) == ("success", "failed")
    second = run.go()
    assert second.state == "success"
    assert [second.task("send", i).try_number for i in (0, 1)] == [2, 2]
    assert statuses(sim, ok) == ["EXECUTED"]  # EXECUTED is never sent again, Clear or not
    assert statuses(sim, consent) == ["FAILED", "EXECUTED"]


def test_a_clear_of_a_batch_fleet_task_sends_again_only_where_the_command_failed(sim: Any, dags: Any) -> None:
    ok, consent = _fleet_scenarios(sim, dags)
    run = Run(dags.vt_clear_batch)
    assert run.go().state == "failed"
    second = run.go()
    assert second.state == "success" and second.task().try_number == 2
    assert statuses(sim, ok) == ["EXECUTED"]
    assert statuses(sim, consent) == ["FAILED", "EXECUTED"]
