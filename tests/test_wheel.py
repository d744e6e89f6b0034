"""The wheel as a user installs it: built from this checkout, installed into a clean venv beside each
supported Airflow release (pinned by that release's constraints file), then checked from outside the
repository. Airflow lists the provider, its plugin, every operator, sensor and trigger module; the
installed package defines the same components as the checkout; example DAGs run with ``airflow dags
test`` against the simulator started from the installed wheel (issue 17, item 4).

One venv per release and module (pip's cache is reused); marker ``wheel`` (``-m "not wheel"`` leaves
these out).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.provider_components import KINDS, defined_components

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"

pytestmark = [pytest.mark.wheel, pytest.mark.slow, pytest.mark.timeout(1200)]

#: Each supported Airflow release and the constraints file that pins its dependencies.
RELEASES = {
    "3.1.8": REQUIREMENTS / "constraints-airflow-3.1.txt",
    "3.2.2": REQUIREMENTS / "constraints-airflow-3.2.txt",
    "3.3.2": REQUIREMENTS / "constraints.txt",
}
DIST = "airflow-provider-volteras"
CLIENT_ID, CLIENT_SECRET = "wheel-client", "wheel-secret"
#: Ends EXECUTED after 8 s: past the first 5 s a task watches in the worker, so every wait defers.
SLOW_OK, SLOW_OK_2 = "sim-ok-wheel-a-d8", "sim-ok-wheel-b-d8"


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that points at the checkout or its Airflow setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "VOLTERAS", "PYTEST"))
    }
    return {**env, **extra}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel with the pinned build backend of .venv (no build isolation, no download)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", out, ROOT],
        check=True,
        cwd=out,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("airflow_provider_volteras-*.whl")
    return built


def test_the_wheel_holds_the_package_its_license_and_only_its_runtime_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
        [license_name] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        license_text = archive.read(license_name).decode()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert "License-Expression: Apache-2.0" in metadata
    # Every module of the checkout's package is in the wheel (lifecycle/ has no __init__), nothing else.
    shipped = {n for n in names if n.endswith(".py")}
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "airflow_provider_volteras").rglob("*.py")}
    assert shipped == expected
    assert not [n for n in names if n.startswith(("tests/", "example_dags/", "benchmarks/"))]
    # Requires-Dist is what pyproject's [project] declares: the runtime dependencies and the simulator extra.
    # The dependency groups (tests, linters, Celery, PostgreSQL drivers, Playwright) stay out of it.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = list(project["project"]["dependencies"])
    for extra, deps in project["project"]["optional-dependencies"].items():
        declared += [f"{dep}; extra == '{extra}'" for dep in deps]
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert sorted(map(_normalized, requires)) == sorted(map(_normalized, declared))
    names_required = {_name(r) for r in requires}
    for group, deps in project["dependency-groups"].items():
        tools = {_name(d) for d in deps if isinstance(d, str)}
        assert not names_required & tools, group
    assert "pendulum" not in names_required
    assert "Provides-Extra: simulator" in metadata and "Provides-Extra: dev" not in metadata
    assert "Project-URL" not in metadata  # none confirmed; none invented


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _normalized(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).replace('"', "'").lower()


@dataclass
class Installed:
    """A clean venv with one Airflow release and the wheel, and an Airflow home outside the checkout."""

    release: str
    root: Path
    home: Path
    install_seconds: float
    env: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    def run(self, *argv: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (``airflow ...``, ``python ...``) from a directory outside the checkout."""
        program = self.root / "venv" / "bin" / argv[0]
        return subprocess.run(
            [str(program), *argv[1:]],
            cwd=self.root,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def airflow_json(self, *argv: str) -> Any:
        done = self.run("airflow", *argv, "-o", "json")
        assert done.returncode == 0, done.stderr[-3000:]
        # Some releases print warnings before the JSON document.
        return json.loads(done.stdout[done.stdout.index("[") :])


@pytest.fixture(scope="module", params=sorted(RELEASES), ids=lambda r: f"airflow-{r}")
def installed(request, wheel, tmp_path_factory) -> Iterator[Installed]:
    release = str(request.param)
    constraints = RELEASES[release]
    if not constraints.exists():
        pytest.fail(f"{constraints.relative_to(ROOT)} is missing: Airflow {release} cannot be installed pinned")
    root = tmp_path_factory.mktemp(f"airflow-{release}")
    assert ROOT not in root.parents
    started = time.monotonic()
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", root / "venv"], check=True, capture_output=True, timeout=300)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "-c", str(constraints), f"apache-airflow=={release}", f"{DIST}[simulator] @ {wheel.as_uri()}"],
        cwd=root,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert install.returncode == 0, install.stderr[-5000:]
    home = root / "airflow-home"
    (home / "dags").mkdir(parents=True)
    env = _clean_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        XDG_CACHE_HOME=str(root / "cache"),
        PATH=f"{root / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    ready = Installed(release, root, home, time.monotonic() - started, env)
    migrate = ready.run("airflow", "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    yield ready
    print(f"\nairflow {release}: venv and install took {time.monotonic() - started:.0f} s in all")


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    done = installed.run(
        "python", "-c", "import airflow, airflow_provider_volteras as p; print(airflow.__version__, p.__file__)"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    version, location = done.stdout.split()
    assert version == installed.release
    assert Path(location).is_relative_to(installed.root / "venv")
    seconds = installed.install_seconds
    print(f"\nairflow {installed.release}: clean venv, pinned install, db migrate: {seconds:.0f} s")


def test_airflow_lists_the_provider_its_connection_type_and_every_trigger(installed):
    [ours] = [p for p in installed.airflow_json("providers", "list") if p["package_name"] == DIST]
    assert ours["version"] == "0.1.0"
    [info] = installed.airflow_json("providers", "get", DIST, "--full")
    hooks = installed.airflow_json("providers", "hooks")
    [hook] = [h for h in hooks if h["connection_type"] == "volteras"]
    assert hook["class"].endswith(".VolterasHook")
    triggers = {t["class"] for t in installed.airflow_json("providers", "triggers") if t["package_name"] == DIST}
    # What the checkout defines (tests/test_provider.py keeps get_provider_info equal to it).
    defined = defined_components()
    assert triggers == set(defined["triggers"])
    for kind in KINDS:
        listed = {module for entry in info[kind] for module in entry["python-modules"]}
        assert listed == set(defined[kind]), kind


def test_airflow_loads_the_plugin_from_the_wheel(installed):
    plugins = installed.airflow_json("plugins")
    [ours] = [p for p in plugins if p["name"] == "volteras"]
    assert f"{DIST}==0.1.0" in ours["source"] and "airflow.plugins" in ours["source"]
    assert any("ConnectionTestPortMiddleware" in m["middleware"] for m in ours["fastapi_root_middlewares"])


def test_the_installed_package_defines_every_operator_sensor_and_trigger_of_the_checkout(installed):
    """Each module is imported from the installed wheel (installed without optional extras but the
    simulator, as a user installs it): a module missing from the wheel, or a dependency it does not
    declare, fails here. Only modules that need an optional extra may not import, and none of them may
    define a hook, operator, sensor or trigger."""
    script = installed.root / "provider_components.py"
    shutil.copy(ROOT / "tests" / "provider_components.py", script)
    done = installed.run("python", str(script))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert Path(found["file"]).is_relative_to(installed.root / "venv")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = {_name(dep).replace("-", "_") for deps in project["optional-dependencies"].values() for dep in deps}
    for module, missing in found["unimportable"].items():
        assert missing.split(".")[0].replace("-", "_") in optional, (module, missing)
    assert found["components"] == defined_components()


@pytest.fixture(scope="module")
def simulator(installed) -> Iterator[str]:
    """The simulator of the installed wheel, on 127.0.0.1 with a free port; its base URL."""
    program = installed.root / "venv" / "bin" / "python"
    argv = [str(program), "-m", "airflow_provider_volteras.simulator", "--port", "0", "--host", "127.0.0.1"]
    argv += ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    proc = subprocess.Popen(argv, cwd=installed.root, env=installed.env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, f"the simulator did not start: {line!r}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _counters(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/_simulator/counters", timeout=10) as answer:
        return dict(json.load(answer))


@pytest.mark.parametrize(
    ("example", "conf", "creates"),
    [
        # The two-task example: the sensor (deferrable=True) waits in the triggerer, CommandExecutionTrigger.
        ("volteras_climate_off", {"vehicle_id": SLOW_OK}, {SLOW_OK: {"CLIMATE_OFF": 1}}),
        # The chunked fleet: one FleetCommandTrigger for the chunk of two vehicles.
        (
            "volteras_fleet_climate_off_batch",
            {"vehicle_ids": [SLOW_OK, SLOW_OK_2]},
            {SLOW_OK: {"CLIMATE_OFF": 1}, SLOW_OK_2: {"CLIMATE_OFF": 1}},
        ),
    ],
    ids=["climate_off", "fleet_batch"],
)
def test_an_example_dag_runs_against_the_simulator_from_outside_the_checkout(
    installed, simulator, example, conf, creates
):
    reset = urllib.request.Request(f"{simulator}/_simulator/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    shutil.copy(ROOT / "example_dags" / f"{example}.py", installed.home / "dags")
    connection = json.dumps({"conn_type": "volteras", "login": CLIENT_ID, "password": CLIENT_SECRET, "host": simulator})
    started = time.monotonic()
    done = installed.run(
        "airflow", "dags", "test", example, "-c", json.dumps(conf), AIRFLOW_CONN_VOLTERAS_DEFAULT=connection
    )
    seconds = time.monotonic() - started
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert re.search(r"DagRun Finished: dag_id=" + example + r".*state=success", log), log[-5000:]
    # Airflow's default_deferrable is False here; these examples pass deferrable=True, so the wait ran in
    # the trigger, loaded from the installed wheel.
    assert "deferring" in log and "running trigger in line" in log, log[-5000:]
    assert _counters(simulator)["creates"] == creates
    print(f"\nairflow {installed.release}: airflow dags test {example} {seconds:.0f} s")
