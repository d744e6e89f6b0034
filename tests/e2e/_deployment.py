"""A real Airflow 3.3 deployment for the end-to-end tests: one temporary AIRFLOW_HOME, one process per component.

Started once per session by the ``airflow`` fixture (see ``conftest.py``): ``airflow db migrate``, then
scheduler (LocalExecutor), dag-processor, triggerer and api-server, all on 127.0.0.1 with free ports, the
repository's ``example_dags`` as DAGS_FOLDER and ``volteras_default`` pointing at the simulator.

Metadata DB: SQLite by default (Airflow 3.3 runs LocalExecutor on SQLite, as ``airflow standalone`` does;
tasks reach the DB only through the API server's execution API). ``VOLTERAS_E2E_DB=postgres`` runs a
private PostgreSQL server instead (needs the Debian ``postgresql`` package and ``psycopg2-binary``).

``executor="CeleryExecutor"`` is Airflow's distributed engine: a private PostgreSQL server (metadata DB and
Celery result backend) and a private Redis server (broker), ``workers`` Celery workers and ``triggerers``
triggerers. Each worker and triggerer reports its own host name (``VOLTERAS_E2E_HOSTNAME``, read by
``tests/e2e/_hostname.py`` as ``[core] hostname_callable``), so a task instance's ``hostname`` and a
triggerer job's ``hostname`` tell which process ran it; each worker has its own token-cache directory, as
two machines would.

Only processes started here are ever signalled: each component is a ``Popen`` in its own session, and
stopping it kills its process group plus every descendant found under it in ``/proc`` (task processes and
the triggerer's trigger runner put themselves in process groups of their own).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "example_dags"
VENV_BIN = Path(sys.executable).parent
ADMIN_USER = "admin"
ADMIN_PASSWORD = "volteras-e2e-admin"  # a throwaway deployment's throwaway password
EXPECTED_DAGS = ("volteras_climate_off", "volteras_fleet_climate_off", "volteras_send_command")
HOSTNAME_CALLABLE = "tests.e2e._hostname.hostname"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log, without the API server's access-log noise."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    kept = [line for line in text.splitlines() if "[http.access]" not in line]
    return "\n".join(kept[-lines:])


# --------------------------------------------------------------------------- process tree helpers


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the ppid is the 2nd field after it.
        fields_after = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields_after[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first, then theirs)."""
    children = _children_map()
    found: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, ()))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _signal_tree(root: int, sig: int) -> None:
    """Signal ``root``'s process group and every descendant (and their own groups)."""
    targets = [root, *descendants(root)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # a no-op error unless pid leads a group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    user: str | None = None  # run as this user (PostgreSQL refuses to run as root)
    env: dict[str, str] | None = None  # instead of the deployment's Airflow environment
    killed: bool = False  # by the test on purpose: not a crash

    def __post_init__(self) -> None:
        self.base_log = self.log_path

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Deployment:
    """The running deployment; ``start()`` brings it up, ``stop()`` tears it down (idempotent)."""

    sim_base_url: str
    sim_client_id: str
    sim_client_secret: str
    db: str = field(default_factory=lambda: os.environ.get("VOLTERAS_E2E_DB", "sqlite").strip().lower())
    executor: str = "LocalExecutor"
    triggerers: int = 1
    workers: int = 0  # Celery workers (CeleryExecutor only)
    worker_concurrency: int = 4
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="volteras-e2e-home-")))
    api_port: int = field(default_factory=free_port)
    components: dict[str, Component] = field(default_factory=dict)
    postgres: Component | None = None
    redis: Component | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: More extras of ``volteras_default`` and more environment for every component (the webhook tests').
    connection_extra: dict[str, Any] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: CeleryExecutor: an Airflow ``redis`` connection of this id to the broker's Redis (the webhook bus).
    bus_conn_id: str | None = None
    redis_port: int | None = None
    _token: str | None = None
    _http: requests.Session = field(default_factory=requests.Session)

    # ------------------------------------------------------------------ environment

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "process-logs"

    @property
    def component_names(self) -> list[str]:
        """Start order; stopped in reverse. The first triggerer is ``triggerer``, then ``triggerer-2``, ..."""
        names = ["scheduler", "dag-processor"]
        names += ["triggerer" if i == 1 else f"triggerer-{i}" for i in range(1, self.triggerers + 1)]
        names += [f"worker-{i}" for i in range(1, self.workers + 1)]
        return [*names, "api-server"]

    def connection_json(self, secret: str | None = None, token_cache: str = "token-cache") -> str:
        return json.dumps(
            {
                "conn_type": "volteras",
                "login": self.sim_client_id,
                "password": secret or self.sim_client_secret,
                "host": self.sim_base_url,
                # timeout > the 20 s "slow" fault of the worker-kill test: that request must hang, not time out.
                # Tokens are shared by the task processes through a file in this deployment's own home.
                "extra": {
                    "timeout": 30,
                    "max_retries": 3,
                    "retry_max_wait": 0.5,
                    "shared_cache_dir": str(self.home / token_cache),
                    **self.connection_extra,
                },
            }
        )

    def _build_env(self, sql_conn: str) -> dict[str, str]:
        from cryptography.fernet import Fernet

        # Start from the test process's environment minus every Airflow setting (tests/conftest.py sets some).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}) + "\n")
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__API_AUTH__JWT_ISSUER": "volteras-e2e",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                # A restarted triggerer takes over a SIGKILLed one's triggers once its heartbeat is this old.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
                "AIRFLOW_CONN_VOLTERAS_DEFAULT": self.connection_json(),
                # Read by the fleet example DAG at parse time: transient retries after 2 s.
                "VOLTERAS_EXAMPLE_RETRY_SECONDS": "2",
                # Each worker and triggerer names itself (see _hostname.py); the repository root makes it importable.
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
                "VOLTERAS_E2E_HOSTNAME": "main",
                **self.extra_env,
            }
        )
        return env

    def _component_env(self, name: str) -> dict[str, str] | None:
        """A worker or a second triggerer gets its own host name; a worker its own token cache (own machine)."""
        if name.startswith("worker-"):
            return {
                **self.env,
                "VOLTERAS_E2E_HOSTNAME": name,
                "AIRFLOW_CONN_VOLTERAS_DEFAULT": self.connection_json(token_cache=f"token-cache-{name}"),
            }
        if name.startswith("triggerer"):
            return {**self.env, "VOLTERAS_E2E_HOSTNAME": name}
        return None

    # ------------------------------------------------------------------ processes

    def _spawn(self, comp: Component) -> None:
        comp.generation += 1
        if comp.generation > 1:  # a restart logs to triggerer.2.log, ...
            comp.log_path = comp.base_log.with_suffix(f".{comp.generation}.log")
        log = open(comp.log_path, "ab")  # the child keeps its copy
        try:
            comp.proc = subprocess.Popen(
                comp.argv,
                env=comp.env if comp.env is not None else self.env,
                cwd=self.home if comp.user is None else "/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=comp.user,
                group=comp.user,
            )
        finally:
            log.close()

    def start_component(self, name: str) -> Component:
        comp = self.components[name]
        if comp.alive():
            raise RuntimeError(f"{name} is already running (pid {comp.pid})")
        self._spawn(comp)
        comp.killed = False
        return comp

    def kill_component(self, name: str, sig: int = signal.SIGKILL, timeout: float = 20.0) -> None:
        """Signal a component's whole process tree and wait for the component to exit."""
        comp = self.components[name]
        if comp.proc is None:
            return
        comp.killed = True
        _signal_tree(comp.pid, sig)
        try:
            comp.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_tree(comp.pid, signal.SIGKILL)
            comp.proc.wait(10)

    def start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        celery = self.executor == "CeleryExecutor"
        if celery:
            self.db = "postgres"  # Celery's result backend and several writers need a real server
            missing = [
                pkg
                for pkg, found in (("redis-server", _redis_server()), ("postgresql", _postgres_bindir()))
                if found is None
            ]
            if missing:
                raise RuntimeError(
                    f"the CeleryExecutor end-to-end tests need Debian's {' and '.join(missing)}: "
                    f"apt-get install {' '.join(missing)} (.ci/run does this; see the README's Tests section)"
                )
        sql_conn = self._start_postgres() if self.db == "postgres" else f"sqlite:///{self.home / 'airflow.db'}"
        self.env = self._build_env(sql_conn)
        if celery:
            broker = self._start_redis()
            if self.bus_conn_id:
                bus = {"conn_type": "redis", "host": "127.0.0.1", "port": self.redis_port, "extra": {"db": 0}}
                self.env[f"AIRFLOW_CONN_{self.bus_conn_id.upper()}"] = json.dumps(bus)
            self.env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": broker,
                    # "db+postgresql://" would pick psycopg 3, which is not installed: name psycopg2.
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql_conn,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                    "AIRFLOW__CELERY__SYNC_PARALLELISM": "2",
                    "AIRFLOW__CORE__PARALLELISM": str(max(8, 2 * self.workers * self.worker_concurrency)),
                    # A killed worker's task is failed (and retried) after this many seconds without a heartbeat.
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                }
            )
        airflow = str(VENV_BIN / "airflow")
        migrate_log = self.logs_dir / "db-migrate.log"
        with open(migrate_log, "wb") as log:
            result = subprocess.run(
                [airflow, "db", "migrate"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed ({result.returncode}):\n{tail(migrate_log)}")
        argvs = {
            "api-server": [
                airflow,
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--workers",
                "1",
            ],
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
            "dag-processor": [airflow, "dag-processor"],
        }
        for name in self.component_names:
            if name.startswith("triggerer"):
                argv = [airflow, "triggerer", "--skip-serve-logs", "--pid", str(self.home / f"{name}.pid")]
            elif name.startswith("worker-"):
                # -H: two workers on one machine need distinct Celery node names; --pid: distinct pid files.
                argv = [airflow, "celery", "worker", "-H", name, "--skip-serve-logs"]
                argv += ["--pid", str(self.home / f"{name}.pid"), "--without-gossip", "--without-mingle"]
            else:
                argv = argvs[name]
            self.components[name] = Component(name, argv, self.logs_dir / f"{name}.log", env=self._component_env(name))
            self._spawn(self.components[name])

    def _start_postgres(self) -> str:
        try:
            import asyncpg  # noqa: F401
            import psycopg2  # noqa: F401
        except ImportError as err:
            raise RuntimeError(
                "VOLTERAS_E2E_DB=postgres needs Airflow's PostgreSQL drivers in the venv: "
                "pip install 'psycopg2-binary==2.9.*' 'asyncpg>=0.30'"
            ) from err
        bindir = _postgres_bindir()
        if bindir is None:
            raise RuntimeError(
                "a PostgreSQL metadata DB needs Debian's postgresql package: apt-get install postgresql "
                "(.ci/run does this; see the README's Tests section)"
            )
        port = free_port()
        data = self.home / "pgdata"
        sockdir = self.home / "pgsock"
        for folder in (data, sockdir):
            folder.mkdir()
            shutil.chown(folder, "postgres", "postgres")
        os.chmod(self.home, 0o755)
        run_as = "postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            user=run_as,
            group=run_as,
            cwd="/",
        )
        self.postgres = Component(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            self.logs_dir / "postgres.log",
            user=run_as,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        self._spawn(self.postgres)
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True, check=False
            )
            if probe.returncode == 0:
                break
            if not self.postgres.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{tail(self.postgres.log_path)}")
            time.sleep(0.3)
        subprocess.run(
            [
                str(bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE airflow",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow"

    def _start_redis(self) -> str:
        """A private Redis server (the Celery broker) on a free port; returns its URL."""
        server = _redis_server()
        assert server is not None
        port = self.redis_port = free_port()
        folder = self.home / "redis"
        folder.mkdir()
        self.redis = Component(
            "redis",
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--protected-mode",
                "yes",
            ],
            self.logs_dir / "redis.log",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        self._spawn(self.redis)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return f"redis://127.0.0.1:{port}/0"
            except OSError:
                pass
            if not self.redis.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not start:\n{tail(self.redis.log_path)}")
            time.sleep(0.2)

    def stop(self) -> None:
        for name in reversed(self.component_names):
            if name in self.components:
                comp = self.components[name]
                if comp.alive():
                    _signal_tree(comp.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for comp in self.components.values():
            if comp.proc is None:
                continue
            try:
                comp.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left of the tree (task processes, trigger runner) goes now.
            _signal_tree(comp.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(10)
        if self.redis is not None and self.redis.proc is not None:
            _signal_tree(self.redis.pid, signal.SIGKILL)  # nothing in it is worth keeping
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.proc.wait(10)
        if self.postgres is not None and self.postgres.proc is not None:
            _signal_tree(self.postgres.pid, signal.SIGINT)  # fast shutdown
            try:
                self.postgres.proc.wait(20)
            except subprocess.TimeoutExpired:
                _signal_tree(self.postgres.pid, signal.SIGKILL)
                self.postgres.proc.wait(10)
        self._http.close()

    def log_tails(self, lines: int = 60) -> str:
        parts = []
        for path in sorted(self.logs_dir.glob("*.log")):
            parts.append(f"===== {path.name} (last {lines} lines) =====\n{tail(path, lines)}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ REST API

    def token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            resp = self._http.post(
                f"{self.api_url}/auth/token", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}, timeout=30
            )
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        url = f"{self.api_url}{path}"
        extra_headers = kwargs.pop("headers", {})
        for attempt in range(2):
            headers = {**extra_headers, "Authorization": f"Bearer {self.token(refresh=attempt > 0)}"}
            resp = self._http.request(method, url, headers=headers, timeout=60, **kwargs)
            if resp.status_code != 401:
                break
        if resp.status_code not in expect:
            raise AssertionError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp.json() if resp.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def health(self) -> dict[str, Any]:
        resp = self._http.get(f"{self.api_url}/api/v2/monitor/health", timeout=10)
        resp.raise_for_status()
        return resp.json()

    def wait_ready(self, timeout: float = 240.0) -> dict[str, Any]:
        """Wait for health (metadatabase, scheduler, triggerer, dag_processor) and the three example DAGs."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for comp in self.components.values():
                if not comp.alive():
                    raise RuntimeError(f"{comp.name} exited with {comp.proc.returncode if comp.proc else '?'}")
            try:
                last = self.health()
                healthy = all(
                    (last.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                )
                if healthy:
                    dags = self.get("/api/v2/dags", params={"dag_id_pattern": "volteras_", "limit": 100})
                    ids = {d["dag_id"] for d in dags["dags"]}
                    errors = self.get("/api/v2/importErrors")
                    if errors.get("total_entries"):
                        raise RuntimeError(f"DAG import errors: {json.dumps(errors)[:3000]}")
                    if set(EXPECTED_DAGS) <= ids and self.workers_ready():
                        return last
                    last = {"health": last, "dags": sorted(ids)}
            except (requests.RequestException, AssertionError) as err:
                last = repr(err)
            time.sleep(1.0)
        raise RuntimeError(f"Airflow was not ready in {timeout:.0f} s; last: {last}")

    def workers_ready(self) -> bool:
        """Every Celery worker has connected to the broker and said so in its log."""
        for name, comp in self.components.items():
            if name.startswith("worker-") and f"{name} ready" not in comp.log_path.read_text(errors="replace"):
                return False
        return True

    # -- runs

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """Trigger a run as the UI's "Trigger DAG" form does: no logical date, a conf."""
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf)})
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[
            "task_instances"
        ]

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        suffix = f"/{map_index}" if map_index >= 0 else ""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}")

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        suffix = f"/{map_index}" if map_index >= 0 else ""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}/tries")[
            "task_instances"
        ]

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """Poll the run (and its task instances, passed to ``on_poll``) until it ends."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if on_poll is not None:
                on_poll(self.task_instances(dag_id, run_id))
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                tis = self.task_instances(dag_id, run_id)
                summary = [(t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis]
                raise AssertionError(f"run {run_id} of {dag_id} still {run['state']} after {timeout:.0f} s: {summary}")
            self.assert_components_alive()
            time.sleep(interval)

    def assert_components_alive(self) -> None:
        for comp in self.components.values():
            if not comp.alive() and not comp.killed:
                raise AssertionError(f"Airflow {comp.name} died (exit {comp.proc.returncode if comp.proc else '?'})")


def _postgres_bindir() -> Path | None:
    """The PostgreSQL server binaries of Debian's ``postgresql`` package, newest version first; None if absent."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    return None


def _redis_server() -> str | None:
    """Debian's ``redis-server`` binary; None if absent."""
    return shutil.which("redis-server") or next(
        (str(p) for p in (Path("/usr/bin/redis-server"), Path("/usr/sbin/redis-server")) if p.exists()), None
    )
