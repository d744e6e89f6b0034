"""Helpers shared by the hardening tests (not a test module)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from airflow_provider_volteras.exceptions import VolterasError

#: Counts reported at the end of the run (see ``conftest.pytest_terminal_summary``).
STATS: Counter[str] = Counter()

SIM_CLIENT_ID = "volteras-sim-client"
#: Extras of every hardening connection: few, fast retries (Retry-After can still make a pause longer).
FAST_EXTRAS: dict[str, Any] = {"max_retries": 3, "retry_max_wait": 0.2, "timeout": 5, "shared_cache": False}
TEMPLATES = Path(__file__).resolve().parent / "dags"


def connection_json(base_url: str, secret: str, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "volteras",
            "login": SIM_CLIENT_ID,
            "password": secret,
            "host": base_url,
            "extra": {**FAST_EXTRAS, **extra},
        }
    )


def use_connection(monkeypatch: pytest.MonkeyPatch, sim: Any, *, secret: str | None = None, **extra: Any) -> None:
    """Point ``volteras_default`` at the simulator with these extras (and the simulator's secret)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        connection_json(sim.base_url, secret or sim.state.config.client_secret, **extra),
    )


def use_raw_connection(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    """``volteras_default`` with arbitrary fields (for hostile base URLs and extras)."""
    conn = {"conn_type": "volteras", "login": SIM_CLIENT_ID, "password": "volteras-sim-secret", **fields}
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", json.dumps(conn))


def creates(sim: Any, vehicle_id: str) -> int:
    """Commands the simulator created for the vehicle (all command types)."""
    return sum(sim.state.counters()["creates"].get(vehicle_id, {}).values())


def assert_documented(err: BaseException) -> None:
    """Only the provider's documented exceptions (``VolterasError`` subclasses) may escape."""
    assert isinstance(err, VolterasError), f"undocumented exception escaped: {type(err).__module__}.{err!r}"


async def collect_events(trigger: Any) -> list[Any]:
    return [event async for event in trigger.run()]


def run_trigger(trigger: Any) -> list[Any]:
    return asyncio.run(collect_events(trigger))


def install_dag(name: str) -> ModuleType:
    """Copy ``dags/<name>.py`` into the DAGS_FOLDER (``dag.test()`` needs it there) and import it."""
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    target = dags / f"{name}.py"
    shutil.copyfile(TEMPLATES / f"{name}.py", target)
    module_name = f"_hardening_dag_{name}"
    spec = importlib.util.spec_from_file_location(module_name, target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def task_states(dag_run: Any) -> dict[str, tuple[str | None, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
