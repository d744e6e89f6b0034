"""Load the example DAGs as a DAGS_FOLDER would, under a chosen ``[operators] default_deferrable``."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable
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
