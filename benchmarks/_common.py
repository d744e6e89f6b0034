"""Shared plumbing: the simulator process, its control API, child processes and the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
DAGS_DIR = BENCH_DIR / "dags"

SIM_CLIENT_ID = "volteras-sim-client"
SIM_CLIENT_SECRET = "volteras-sim-secret"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process, read from /proc (cheap enough to sample every 50 ms)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def connection_json(base_url: str) -> str:
    """``AIRFLOW_CONN_VOLTERAS_DEFAULT`` for the simulator (the provider's defaults otherwise)."""
    return json.dumps(
        {"conn_type": "volteras", "login": SIM_CLIENT_ID, "password": SIM_CLIENT_SECRET, "host": base_url}
    )


def http_connection_json(base_url: str) -> str:
    """``AIRFLOW_CONN_HTTP_BENCH``: a plain ``http`` connection for the http provider's baseline."""
    return json.dumps({"conn_type": "http", "host": base_url})


def child_env(airflow_home: Path, base_url: str | None) -> dict[str, str]:
    """The environment of every child: a private AIRFLOW_HOME with SQLite, nothing inherited from AIRFLOW_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["AIRFLOW_HOME"] = str(airflow_home)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{airflow_home / 'airflow.db'}"
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
    env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
    if base_url is not None:
        env["AIRFLOW_CONN_VOLTERAS_DEFAULT"] = connection_json(base_url)
        env["AIRFLOW_CONN_HTTP_BENCH"] = http_connection_json(base_url)
    return env


def prepare_airflow_home(airflow_home: Path) -> None:
    """An empty airflow.cfg: Airflow then uses its defaults and the env, and never races to write one."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    (airflow_home / "airflow.cfg").touch()


class Simulator:
    """``python -m airflow_provider_volteras.simulator --port 0`` in its own process, plus its control API."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.log_path = workdir / "simulator.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_volteras.simulator", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode().strip()
        if "listening on" not in first:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {first!r} (see {self.log_path})")
        self.base_url = first.rsplit(" ", 1)[-1]
        # Keep draining stdout so the simulator can never block on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.http = httpx.Client(base_url=self.base_url, timeout=60)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    # -- control API (/_simulator/..., no authentication) --------------------------------------

    def reset(self) -> None:
        r = self.http.post("/_simulator/reset", params={"keepConfig": "true", "keepTokens": "true"})
        r.raise_for_status()

    def counters(self) -> dict[str, Any]:
        r = self.http.get("/_simulator/counters")
        r.raise_for_status()
        return r.json()

    def executions(self) -> list[dict[str, Any]]:
        r = self.http.get("/_simulator/executions")
        r.raise_for_status()
        return r.json()

    def config(self) -> dict[str, Any]:
        r = self.http.get("/_simulator/config")
        r.raise_for_status()
        return r.json()

    def token(self) -> str:
        r = self.http.post(
            "/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=(SIM_CLIENT_ID, SIM_CLIENT_SECRET)
        )
        r.raise_for_status()
        return r.json()["access_token"]


def run_child(
    module: str, args: Sequence[str], env: dict[str, str], log_path: Path, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m benchmarks.<module> ...`` to its end, its output into ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            timeout=timeout,
            check=False,
        )


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"child exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"child not ready after {timeout:.0f} s")
        time.sleep(0.02)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
