"""Run test DAGs with ``dag.test()`` and read back what a user would see."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DAGS_SRC = Path(__file__).resolve().parent / "dags"


@dataclass
class TaskResult:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    label: str | None = None
    """The map index label the UI shows (``rendered_map_index``), for mapped tasks."""


@dataclass
class RunResult:
    state: str
    tasks: dict[tuple[str, int], TaskResult]

    def task(self, task_id: str = "send", map_index: int = -1) -> TaskResult:
        return self.tasks[(task_id, map_index)]


def install_dags(home: Path, name: str = "volteras_test_dags.py") -> Any:
    """Copy a test DAG file of ``tests/dags`` into the DAGS_FOLDER and import it."""
    dags = home / "dags"
    dags.mkdir(exist_ok=True)
    target = dags / name
    shutil.copy(DAGS_SRC / name, target)
    spec = importlib.util.spec_from_file_location(target.stem, target)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(dag: Any, conf: dict[str, Any] | None = None) -> RunResult:
    dr = dag.test(run_conf=conf)
    tasks = {
        (ti.task_id, ti.map_index): TaskResult(
            ti.task_id, ti.map_index, ti.state, ti.try_number, getattr(ti, "rendered_map_index", None)
        )
        for ti in dr.get_task_instances()
    }
    return RunResult(str(dr.state), tasks)
