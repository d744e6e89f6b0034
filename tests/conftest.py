"""Shared fixtures: a private AIRFLOW_HOME with a migrated SQLite DB, and the embedded simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Airflow reads its configuration on first import: point it at a private home before anything imports it.
_HOME = Path(tempfile.mkdtemp(prefix="volteras-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# The operators follow [operators] default_deferrable (Airflow ships it False); the suite runs deferrable.
os.environ["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = "True"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
os.environ.pop("AIRFLOW_CONN_VOLTERAS_DEFAULT", None)

ROOT = Path(__file__).resolve().parents[1]

SIM_CLIENT_ID = "volteras-sim-client"
SIM_CLIENT_SECRET = "volteras-sim-secret"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the private SQLite metadata DB once per session (needed by ``dag.test()``)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return _HOME


@pytest.fixture(scope="session")
def simulator_server() -> Iterator:
    from airflow_provider_volteras.simulator import SimulatorServer

    with SimulatorServer(port=0, default_delay=0.3, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET) as sim:
        yield sim


def connection_json(base_url: str, secret: str = SIM_CLIENT_SECRET, **extra: object) -> str:
    return json.dumps(
        {
            "conn_type": "volteras",
            "login": SIM_CLIENT_ID,
            "password": secret,
            "host": base_url,
            # The shared token file is off unless a test asks for it: tests count token requests.
            "extra": {"max_retries": 3, "retry_max_wait": 0.2, "timeout": 5, "shared_cache": False, **extra},
        }
    )


@pytest.fixture
def sim(simulator_server, monkeypatch) -> Iterator:
    """The running simulator, reset, with ``volteras_default`` pointing at it and a cold token cache."""
    from airflow_provider_volteras._core import tokens

    simulator_server.state.reset()
    simulator_server.state.configure(default_delay=0.3, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET)
    tokens.TOKEN_CACHE.clear()
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", connection_json(simulator_server.base_url))
    yield simulator_server
    tokens.TOKEN_CACHE.clear()


@pytest.fixture(autouse=True)
def _defer_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests defer at once and fire at once (the first seconds in the worker and the trigger's
    hold guard a scheduler race of real deployments; tests/e2e and tests/lifecycle check them)."""
    from airflow_provider_volteras.lifecycle.task import CommandTaskMixin

    monkeypatch.setattr(CommandTaskMixin, "worker_first_seconds", 0.0)
    monkeypatch.setattr(CommandTaskMixin, "trigger_hold_seconds", 0.0)
