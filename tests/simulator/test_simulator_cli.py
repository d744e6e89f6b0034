"""The command line: start on a free port in a subprocess, answer, stop on a signal."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^Volteras simulator listening on (http://127\.0\.0\.1:(\d+))$")
#: How long the request in flight at the stop would take to be answered.
SLOW_SECONDS = 120.0


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """First stdout line of ``proc``, or fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        proc.kill()
        pytest.fail(f"no output from the simulator CLI within {timeout} s")
    return proc.stdout.readline().rstrip("\n")


@pytest.fixture
def cli() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_volteras.simulator",
            "--port",
            "0",
            "--default-delay",
            "0.05",
            "--client-secret",
            "cli-secret",
            "--command-timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = read_line(proc, 30)
    match = READY.match(line)
    assert match, f"unexpected first line {line!r}"
    assert int(match.group(2)) > 0
    yield proc, match.group(1)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly_on_signals(cli: tuple[subprocess.Popen[str], str], signum: int) -> None:
    proc, base_url = cli
    token = requests.post(
        f"{base_url}/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("volteras-sim-client", "cli-secret"),
        timeout=5,
    )
    assert token.status_code == 200
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    created = requests.post(f"{base_url}/v1/vehicles/sim-ok-cli/command-execution:lock-doors", headers=headers)
    assert created.json()["timeout"] == 60
    config = requests.get(f"{base_url}/_simulator/config").json()
    assert (config["defaultDelaySeconds"], config["clientSecret"]) == (0.05, "cli-secret")
    # A request still in flight, answered only after SLOW_SECONDS: the stop must not wait for it.
    requests.post(
        f"{base_url}/_simulator/faults", json={"kind": "slow", "delaySeconds": SLOW_SECONDS}, timeout=5
    ).raise_for_status()
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(requests.get(f"{base_url}/v1/vehicles", headers=headers, timeout=SLOW_SECONDS).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    in_flight = threading.Thread(target=call, daemon=True)
    in_flight.start()
    wait_until(lambda: requests.get(f"{base_url}/_simulator/counters", timeout=5).json()["faultsApplied"] == 1)
    started = time.monotonic()
    proc.send_signal(signum)
    # Excluded: waiting for the in-flight request (SLOW_SECONDS); a slow machine adds seconds, not a minute.
    assert proc.wait(SLOW_SECONDS / 2) == 0
    assert time.monotonic() - started < SLOW_SECONDS / 2
    assert proc.stderr is not None and proc.stderr.read() == ""
    in_flight.join(SLOW_SECONDS / 2)
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError), outcome
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/_simulator/health", timeout=5)


def test_cli_reports_a_busy_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "airflow_provider_volteras.simulator", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "cannot start the simulator" in result.stderr and result.stdout == ""


def test_cli_help_lists_the_magic_ids() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_volteras.simulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "sim-fail-<REASON>" in result.stdout and "--command-timeout" in result.stdout
