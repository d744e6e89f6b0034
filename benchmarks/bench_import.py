"""Benchmark 4: DAG-parse cost of the provider's operator and sensor modules.

Each measurement is a fresh interpreter running
``import airflow.sdk; t = perf_counter(); import X; print(perf_counter() - t)``; the two modules
alternate run by run and the median is reported (with the median CPU time of the same import,
which other load on the machine inflates less). One more fresh interpreter compares
``sys.modules`` before and after importing both modules (after ``import airflow.sdk``) and spies on
``__import__`` to list any direct import of httpx, fastapi, uvicorn, starlette, aiohttp or the
simulator by the provider's own modules.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

MODULES = (
    "airflow_provider_volteras.operators.commands",
    "airflow_provider_volteras.sensors.command_execution",
)
HEAVY = ("httpx", "fastapi", "uvicorn", "starlette", "aiohttp", "airflow_provider_volteras.simulator")

MEASURE = (
    "from time import perf_counter, process_time\n"
    "import airflow.sdk\n"
    "t, c = perf_counter(), process_time()\n"
    "import {module}\n"
    "print(perf_counter() - t, process_time() - c)"
)

CHECK = """
import builtins, json, sys
import airflow.sdk
HEAVY = {heavy!r}
def loaded(names):
    return {{h: any(m == h or m.startswith(h + ".") for m in names) for h in HEAVY}}
before = set(sys.modules)
direct = []
real_import = builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {{}}).get("__name__") or ""
    if importer.startswith("airflow_provider_volteras"):
        target = name if level == 0 else importer.rsplit(".", level)[0] + "." + name
        wanted = [target] + [target + "." + f for f in (fromlist or ()) if isinstance(f, str)]
        for t in wanted:
            if any(t == h or t.startswith(h + ".") for h in HEAVY):
                direct.append([importer, t])
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = spy
for module in {modules!r}:
    __import__(module)
builtins.__import__ = real_import
new = sorted(set(sys.modules) - before)
print(json.dumps({{
    "loaded_by_airflow_sdk": loaded(before),
    "added_by_ours": [h for h, v in loaded(new).items() if v],
    "direct_imports_by_ours": direct,
    "new_modules": len(new),
    "new_packages": sorted({{m.split(".")[0] for m in new}}),
}}))
"""


def run_benchmark(ctx: Any, runs: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {m: [] for m in MODULES}
    cpu: dict[str, list[float]] = {m: [] for m in MODULES}
    for _ in range(runs):
        for module in MODULES:
            out = subprocess.run(
                [sys.executable, "-c", MEASURE.format(module=module)],
                capture_output=True,
                text=True,
                env=ctx.env,
                cwd=ctx.root,
                check=True,
                timeout=120,
            )
            wall, used = out.stdout.strip().splitlines()[-1].split()
            times[module].append(float(wall))
            cpu[module].append(float(used))
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(heavy=HEAVY, modules=MODULES)],
        capture_output=True,
        text=True,
        env=ctx.env,
        cwd=ctx.root,
        check=True,
        timeout=120,
    )
    check = json.loads(out.stdout.strip().splitlines()[-1])
    # Where the time goes: -X importtime self times of the provider's modules (one more interpreter).
    code = "import airflow.sdk\n" + "\n".join(f"import {m}" for m in MODULES)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=ctx.env,
        cwd=ctx.root,
        check=True,
        timeout=120,
    )
    self_ms: dict[str, float] = {}
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip().startswith("airflow_provider_volteras"):
            self_ms[parts[2].strip()] = int(parts[0].split(":")[1]) / 1000
    return {
        "runs": runs,
        "median_ms": {m: statistics.median(v) * 1000 for m, v in times.items()},
        "median_cpu_ms": {m: statistics.median(v) * 1000 for m, v in cpu.items()},
        "min_ms": {m: min(v) * 1000 for m, v in times.items()},
        "max_ms": {m: max(v) * 1000 for m, v in times.items()},
        "self_ms": dict(sorted(self_ms.items(), key=lambda kv: -kv[1])),
        **check,
    }
