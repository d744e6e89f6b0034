"""Fixtures of the end-to-end tests: the simulator, a real Airflow deployment, and a timing/counter record.

Run with ``pytest -m e2e tests/e2e -x -q``. The deployment starts once per session (about a minute) and
is torn down at the end even when a test fails; a failing test's report carries the tails of every
component's log. ``VOLTERAS_E2E_KEEP=1`` keeps the temporary AIRFLOW_HOME (logs, DB) for a post-mortem
(it is always kept when a test failed); ``VOLTERAS_E2E_DB=postgres`` runs the metadata DB on a private
PostgreSQL server instead of SQLite (see ``_deployment.py``). ``-m "not e2e"`` leaves these tests out.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_volteras.simulator.webhooks import new_signing_secret

from ._deployment import Deployment
from ._support import REPORT_KEY

SIM_CLIENT_ID = "volteras-sim-client"
SIM_CLIENT_SECRET = "volteras-sim-secret"

_DEPLOYMENT: Deployment | None = None
_RESULTS: list[dict[str, Any]] = []
_FAILED = False
_KEPT: list[str] = []


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    """The Volteras simulator, served from a thread of the test process on 127.0.0.1."""
    from airflow_provider_volteras.simulator import SimulatorServer

    with SimulatorServer(port=0, default_delay=1.0, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET) as sim:
        yield sim


def _running(deployment: Deployment) -> Iterator[Deployment]:
    """Start a deployment, yield it, stop it; its home is kept after a failure or with VOLTERAS_E2E_KEEP=1."""
    global _DEPLOYMENT
    started = time.monotonic()
    try:
        deployment.start()
        deployment.wait_ready()
    except BaseException as err:  # tear down whatever started, then report (re-raised below if not an error)
        tails = deployment.log_tails(80)
        deployment.stop()
        if not isinstance(err, Exception):
            raise
        _KEPT.append(str(deployment.home))
        pytest.fail(f"Airflow deployment did not start: {err}\nhome: {deployment.home}\n{tails}", pytrace=False)
    _DEPLOYMENT = deployment
    what = (
        f"{deployment.executor}, {deployment.db}, {deployment.triggerers} triggerer(s), {deployment.workers} worker(s)"
    )
    print(
        f"\n[e2e] Airflow ({what}) ready in {time.monotonic() - started:.1f} s at {deployment.api_url}, "
        f"home {deployment.home}"
    )
    _RESULTS.append(
        {
            "test": "<startup>",
            "wall_s": round(time.monotonic() - started, 1),
            "db": deployment.db,
            "executor": deployment.executor,
        }
    )
    try:
        yield deployment
    finally:
        deployment.stop()
        _DEPLOYMENT = None
        keep = os.environ.get("VOLTERAS_E2E_KEEP") == "1" or _FAILED
        (deployment.home / "e2e-results.json").write_text(json.dumps(_RESULTS, indent=2))
        if keep:
            _KEPT.append(str(deployment.home))
        else:
            shutil.rmtree(deployment.home, ignore_errors=True)


@pytest.fixture(scope="module")
def airflow(simulator: Any) -> Iterator[Deployment]:
    """A running Airflow 3.3 deployment (LocalExecutor) on free ports, stopped when the test module ends."""
    yield from _running(
        Deployment(sim_base_url=simulator.base_url, sim_client_id=SIM_CLIENT_ID, sim_client_secret=SIM_CLIENT_SECRET)
    )


#: The signing secret of the Celery deployment's webhook endpoint (the simulator signs with it).
CELERY_WEBHOOK_SECRET = new_signing_secret()
#: The Celery deployment's safety poll: longer than any of its waits, so every read there is one a webhook woke.
CELERY_SAFETY_POLL = 300


@pytest.fixture(scope="module")
def celery_airflow(simulator: Any) -> Iterator[Deployment]:
    """Airflow on CeleryExecutor: PostgreSQL, Redis, two Celery workers and two triggerers, on free ports.

    Webhooks are on for ``volteras_default``, with the broker's Redis as the bus (the ``redis`` connection
    ``volteras_bus``). Until a test sends a webhook none flows, and every wait polls on the normal schedule."""
    yield from _running(
        Deployment(
            sim_base_url=simulator.base_url,
            sim_client_id=SIM_CLIENT_ID,
            sim_client_secret=SIM_CLIENT_SECRET,
            executor="CeleryExecutor",
            triggerers=2,
            workers=2,
            bus_conn_id="volteras_bus",
            connection_extra={
                "webhook_signing_secret": CELERY_WEBHOOK_SECRET,
                "webhook_redis_conn_id": "volteras_bus",
                "webhook_safety_poll": CELERY_SAFETY_POLL,
            },
            # Each triggerer claims one new trigger per loop (Airflow's advice for several triggerers), so the
            # waits of a run spread over both.
            extra_env={"AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "1"},
        )
    )


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with the counters it checked; the wall time is added here and all is printed."""
    entry: dict[str, Any] = {"test": request.node.name}
    started = time.monotonic()
    yield entry
    entry["wall_s"] = round(time.monotonic() - started, 1)
    _RESULTS.append(entry)
    print(f"\n[e2e] {json.dumps(entry, sort_keys=True)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    global _FAILED
    report = yield
    if report.when == "call":
        item.stash[REPORT_KEY] = report
    if report.failed and item.get_closest_marker("e2e") is not None:
        _FAILED = True
        if _DEPLOYMENT is not None:
            report.sections.append(("Airflow component logs", _DEPLOYMENT.log_tails(60)))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS and not _KEPT:
        return
    terminalreporter.section("volteras e2e: wall time and counters per test")
    for entry in _RESULTS:
        terminalreporter.write_line(json.dumps(entry, sort_keys=True))
    for home in _KEPT:
        terminalreporter.write_line(f"kept AIRFLOW_HOME (process logs in process-logs/, task logs in logs/): {home}")
