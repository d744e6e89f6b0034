"""Load the example DAGs as a DAGS_FOLDER would, under a chosen ``[operators] default_deferrable``."""

from __future__ import annotations

import importlib.util
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"

#: ``[operators] default_deferrable``: Airflow ships ``False`` (the path most deployments take); the
#: suite's own default is ``True`` (tests/conftest.py). The example tests run under both.
DEFAULT_DEFERRABLE = ["False", "True"]

#: What a task logs when its command is not finished yet, per place it then waits in.
DEFERS = "not finished; deferring"
WAITS_IN_WORKER = "not finished; waiting in the worker"


def load_examples(airflow_home: Path, names: Iterable[str] | None = None, prefix: str = "example") -> dict[str, Any]:
    """Copy the examples into the DAGS_FOLDER (``dag.test()`` syncs from there) and import them: dag_id to
    DAG. The operators read ``default_deferrable`` when they are built, so load under the setting wanted."""
    dags: dict[str, Any] = {}
    sources = sorted(EXAMPLES.glob("*.py")) if names is None else [EXAMPLES / f"{name}.py" for name in names]
    for source in sources:
        target = airflow_home / "dags" / source.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(source, target)
        spec = importlib.util.spec_from_file_location(f"{prefix}_{source.stem}", target)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dags[module.dag.dag_id] = module.dag
    return dags


def under_default_deferrable(setting: str) -> pytest.MonkeyPatch:
    """A MonkeyPatch (undo it when done) that sets ``[operators] default_deferrable`` for the operators
    built from now on, mapped ones included (they are built when their task runs)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
    return patch


def waited_in(log: str) -> set[str]:
    """Where the tasks of a run waited for a command that was not finished: "triggerer", "worker"."""
    return {place for place, line in (("triggerer", DEFERS), ("worker", WAITS_IN_WORKER)) if line in log}


@contextmanager
def finished_once_waited_on(sim: Any, vehicle_id: str, polls: int = 2) -> Iterator[None]:
    """Keep the vehicle's command PENDING until it was read ``polls`` times, then finish it EXECUTED: a task
    reading it once and finding it pending must wait (in the worker or the triggerer), however slowly
    ``dag.test()`` runs, and the wait then ends at once."""
    sim.state.set_scenario(vehicle_id, outcome="EXECUTED", delay=600)
    done = threading.Event()

    def finish() -> None:
        while not done.wait(0.05):
            if len(sim.state.request_log(vehicle_id=vehicle_id, kind="poll")) >= polls:
                for execution in sim.state.executions(vehicle_id):
                    if execution["status"] == "PENDING":
                        sim.state.finish_execution(execution["id"])
                return

    thread = threading.Thread(target=finish, name=f"finish-{vehicle_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(10)
