"""Shared fixtures: a private AIRFLOW_HOME with a migrated SQLite DB, and the embedded simulator."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import version as _version
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
if _version("apache-airflow-core") < "3.3":
    # Airflow 3.1 and 3.2's in-process execution API (dag.test) signs its tokens with [api_auth] jwt_secret
    # and refuses to start without one (3.3's makes its own).
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))

ROOT = Path(__file__).resolve().parents[1]

SIM_CLIENT_ID = "volteras-sim-client"
SIM_CLIENT_SECRET = "volteras-sim-secret"


@pytest.fixture(scope="session", autouse=True)
def _in_process_api_waits_for_its_startup() -> None:
    """Airflow 3.1 and 3.2's ``dag.test()`` starts its in-process execution API without waiting for the
    app's startup (3.3 waits for it): a task's first request can meet an app whose lifespan has not
    registered its services yet (``'State' object has no attribute 'svcs_registry'``) and the task fails.
    Wait for the startup as Airflow 3.3 does; nothing changes on 3.3."""
    import asyncio

    from airflow_provider_volteras._compat import AIRFLOW_VERSION

    if AIRFLOW_VERSION >= (3, 3):
        return
    import airflow.sdk.execution_time.supervisor as supervisor

    started = supervisor.in_process_api_server
    schedule = asyncio.run_coroutine_threadsafe

    def in_process_api_server() -> object:
        api = started()
        startups: list = []

        def keep(coro, loop):  # type: ignore[no-untyped-def]
            startups.append(schedule(coro, loop))
            return startups[-1]

        asyncio.run_coroutine_threadsafe = keep
        try:
            api.transport  # noqa: B018 - schedules the app's lifespan on the transport's event loop
        finally:
            asyncio.run_coroutine_threadsafe = schedule
        for startup in startups:
            startup.result(timeout=60)
        return api

    supervisor.in_process_api_server = in_process_api_server


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
