"""History benchmark: API requests per command as a vehicle's command history grows.

    .venv/bin/python -m benchmarks.bench_history        # 0, 100, 1,000, 10,000; writes RESULTS-history.md
    .venv/bin/python -m benchmarks.bench_history --sizes 0,2000 --out /tmp/h.md    # quick (~10 s)

For each history size the embedded simulator (``SimulatorServer(port=0)`` on 127.0.0.1, in this process)
is reset and the vehicle is given that many past ``CLIMATE_OFF`` executions, all created a day ago
(``state.seed_history(..., age_seconds=86400)``). Then one ``ClimateOffOperator(deferrable=False)``
sends the command and waits for it (the vehicle ends it ``--delay`` seconds after the create, before the
first status read: one status read per command, none when a lost create's execution is adopted).
Requests are counted at the simulator, on that vehicle only (``requestsByVehicle``: listing GETs, create
POSTs, status GETs; the cached token is not a request of the command), with the wall time of ``execute()``.

Two paths per size:

- **create**: the create is answered; the only listing is the one before it (the recent ids a lost
  create could be confused with).
- **recovery**: the create's answer is lost (fault ``drop_after`` on the create POST, once: applied,
  then the connection is dropped), so the hook also runs its adoption listing and adopts the execution.

Two variants: **windowed** (the provider as shipped: listings filtered by ``createdAt >=`` a recent
window) and **unwindowed** (``command_filter`` patched to ignore ``since``: every listing pages through
the command's whole history on the vehicle, the behaviour before the window), for contrast. The
unwindowed variant also lifts the provider's cap of 50 pages (5,000 executions) per listing: with it, the
unwindowed create fails on a vehicle with 10,000 past executions ("the listing still had more pages after
50 pages") instead of being counted.

Every run checks that the command ended ``EXECUTED`` with exactly one execution created (and, for the
recovery path, that the fault fired). Nothing about timing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python benchmarks/bench_history.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BENCH_DIR, ROOT, SIM_CLIENT_ID, SIM_CLIENT_SECRET, prepare_airflow_home

SIZES = (0, 100, 1_000, 10_000)
COMMAND = "CLIMATE_OFF"
CREATE_PATH = r"/command-execution:climate-off$"
#: Seconds the command stays PENDING: less than the first status read (1 s) and than the hook's retry
#: pause after a lost create (0.5 s or more), so the request counts do not depend on timing.
DELAY = 0.3
VARIANTS = ("windowed", "unwindowed")
PATHS = ("create", "recovery")
KINDS = ("list", "create", "poll", "vehicle")


class Store:
    """The ``task_state_store`` accessor, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str, **_: Any) -> None:
        self.values.pop(key, None)


class Ti:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value


def connection_json(base_url: str) -> str:
    """``AIRFLOW_CONN_VOLTERAS_DEFAULT`` for the simulator, without the shared token file."""
    return json.dumps(
        {
            "conn_type": "volteras",
            "login": SIM_CLIENT_ID,
            "password": SIM_CLIENT_SECRET,
            "host": base_url,
            "extra": {"shared_cache": False},
        }
    )


#: The unwindowed variant's page cap per listing: the whole history, whatever its size.
UNBOUNDED_PAGES = 1_000_000


@contextmanager
def unwindowed() -> Iterator[None]:
    """``command_filter`` ignores ``since`` wherever the provider bound it: listings are not windowed.

    The cap on the pages one listing may read (``MAX_LISTING_PAGES``, 50: 5,000 executions) is lifted too,
    so the whole history is listed and counted; with the cap, a create on a vehicle with more history fails.
    """
    import airflow_provider_volteras.hooks.volteras  # noqa: F401 - bind its command_filter before patching
    from airflow_provider_volteras._core import wire

    original = wire.command_filter
    pager_defaults = wire.Pager.__init__.__defaults__

    def whole_history(command: Any, status: str | None = None, *, since: float | None = None) -> Any:
        return original(command, status)

    patched = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("airflow_provider_volteras") and vars(module).get("command_filter") is original
    ]
    for module in patched:
        module.command_filter = whole_history
    wire.Pager.__init__.__defaults__ = (UNBOUNDED_PAGES,)
    try:
        yield
    finally:
        wire.Pager.__init__.__defaults__ = pager_defaults
        for module in patched:
            module.command_filter = original


@contextmanager
def simulator() -> Iterator[Any]:
    """The embedded simulator, ``volteras_default`` pointing at it and a cold token cache (restored after)."""
    from airflow_provider_volteras._core import tokens
    from airflow_provider_volteras.simulator import SimulatorServer

    name = "AIRFLOW_CONN_VOLTERAS_DEFAULT"
    previous = os.environ.get(name)
    with SimulatorServer(port=0, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET) as sim:
        os.environ[name] = connection_json(sim.base_url)
        tokens.TOKEN_CACHE.clear()
        try:
            yield sim
        finally:
            tokens.TOKEN_CACHE.clear()
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous


def measure(sim: Any, size: int, *, path: str, variant: str, delay: float = DELAY) -> dict[str, Any]:
    """One command to a vehicle with ``size`` past executions; its API requests and wall time."""
    from airflow_provider_volteras.operators.commands import ClimateOffOperator

    state = sim.state
    state.reset(keep_config=True, keep_tokens=True)
    vehicle_id = f"sim-ok-history-{variant}-{path}-{size}-d{delay:g}"
    if size:
        state.seed_history(vehicle_id, COMMAND, size, age_seconds=86400)
    if path == "recovery":
        state.add_fault("drop_after", method="POST", path=CREATE_PATH, count=1)
    operator = ClimateOffOperator(task_id="t", vehicle_id=vehicle_id, deferrable=False, poll_interval=1, timeout=30)
    with unwindowed() if variant == "unwindowed" else _nothing():
        started = time.perf_counter()
        result = operator.execute({"task_state_store": Store(), "ti": Ti()})
        wall = time.perf_counter() - started
    counters = state.counters()
    per = counters["requestsByVehicle"].get(vehicle_id, dict.fromkeys(KINDS, 0))
    created = counters["creates"].get(vehicle_id, {}).get(COMMAND, 0)
    status = result.get("status") if isinstance(result, dict) else None
    if status != "EXECUTED" or created != 1:
        raise RuntimeError(f"{variant}/{path}/{size}: status {status!r}, {created} execution(s) created")
    if path == "recovery" and counters["faultsApplied"] != 1:
        raise RuntimeError(f"{variant}/{path}/{size}: the lost-answer fault did not fire")
    return {
        "variant": variant,
        "path": path,
        "history": size,
        **{kind: per.get(kind, 0) for kind in KINDS},
        "total": sum(per.values()),
        "wall_seconds": wall,
    }


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def run(
    sizes: Sequence[int] = SIZES,
    *,
    delay: float = DELAY,
    variants: Sequence[str] = VARIANTS,
    paths: Sequence[str] = PATHS,
) -> list[dict[str, Any]]:
    """Measure every (variant, path, size) on one embedded simulator; one row each."""
    rows = []
    with simulator() as sim:
        for variant in variants:
            for path in paths:
                for size in sizes:
                    print(f"[bench_history] {variant} {path} history={size:,} ...", file=sys.stderr, flush=True)
                    rows.append(measure(sim, size, path=path, variant=variant, delay=delay))
    return rows


def _ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}" if y else "—"


def table(rows: list[dict[str, Any]]) -> str:
    """Per path and size: the windowed requests by kind, then the unwindowed ones side by side."""
    by = {(r["variant"], r["path"], r["history"]): r for r in rows}
    sizes = sorted({r["history"] for r in rows})
    paths = [p for p in PATHS if any(r["path"] == p for r in rows)]
    contrast = any(r["variant"] == "unwindowed" for r in rows)
    head = ["path", "history", "listing GETs", "create POSTs", "status GETs", "total requests", "wall s"]
    if contrast:
        head += ["unwindowed: listing GETs", "unwindowed: total requests", "unwindowed: wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for path in paths:
        for size in sizes:
            w = by[("windowed", path, size)]
            cells = [path, f"{size:,}", w["list"], w["create"], w["poll"], w["total"], f"{w['wall_seconds']:.2f}"]
            if contrast:
                u = by[("unwindowed", path, size)]
                cells += [u["list"], u["total"], f"{u['wall_seconds']:.2f}"]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lo, hi = by[("windowed", path, sizes[0])], by[("windowed", path, sizes[-1])]
        cells = [
            f"**{path}: ratio {sizes[-1]:,} / {sizes[0]:,}**",
            "",
            _ratio(hi["list"], lo["list"]),
            _ratio(hi["create"], lo["create"]),
            _ratio(hi["poll"], lo["poll"]),
            f"**{_ratio(hi['total'], lo['total'])}**",
            _ratio(hi["wall_seconds"], lo["wall_seconds"]),
        ]
        if contrast:
            ulo, uhi = by[("unwindowed", path, sizes[0])], by[("unwindowed", path, sizes[-1])]
            cells += [
                _ratio(uhi["list"], ulo["list"]),
                f"**{_ratio(uhi['total'], ulo['total'])}**",
                _ratio(uhi["wall_seconds"], ulo["wall_seconds"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> str:
    by = {(r["variant"], r["path"], r["history"]): r for r in rows}
    sizes = sorted({r["history"] for r in rows})
    parts = []
    for path in PATHS:
        if ("windowed", path, sizes[0]) not in by:
            continue
        ratio = _ratio(by[("windowed", path, sizes[-1])]["total"], by[("windowed", path, sizes[0])]["total"])
        text = f"{path} {ratio}"
        if ("unwindowed", path, sizes[0]) in by:
            u = _ratio(by[("unwindowed", path, sizes[-1])]["total"], by[("unwindowed", path, sizes[0])]["total"])
            text += f" (unwindowed {u})"
        parts.append(text)
    return f"Requests per command at {sizes[-1]:,} / at {sizes[0]:,} past executions (goal 1.0, flat): " + "; ".join(
        parts
    )


def report(rows: list[dict[str, Any]], *, command: str, started: dt.datetime, wall: float, delay: float) -> str:
    return "\n".join(
        [
            "# History benchmark",
            "",
            f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Command: `{command}` ({wall:.0f} s wall)",
            f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "",
            "One `ClimateOffOperator(deferrable=False, poll_interval=1, timeout=30).execute()` per row against "
            "the embedded simulator (same process, 127.0.0.1), after seeding the vehicle with `history` past "
            f"CLIMATE_OFF executions created a day ago. The command ends {delay:g} s after its create. Requests "
            "are the simulator's `requestsByVehicle` for that vehicle (the token, cached, is not counted); "
            "wall time is `execute()`'s and includes the simulator's own work. **create**: the create is "
            "answered. **recovery**: the create's answer is lost (fault `drop_after` on the create POST, once), "
            "so the adoption listing runs too, at once (the create is never POSTed again; the listing shows "
            "it and it is adopted, then read once). **unwindowed**: "
            "`command_filter` patched to ignore `since` (the listings before the `createdAt >=` window: the "
            "whole history of the command on the vehicle, 100 per page, read newest first; the adoption "
            "listing stops at the first match, so only the listing before the create reads it all), and "
            "the provider's cap of 50 pages per listing lifted: with that cap, the unwindowed create on a "
            "vehicle with 10,000 past executions fails (`the listing still had more pages after 50 pages`) "
            "instead of being counted. Every run ended EXECUTED with one execution created. Wall times are "
            "mostly waiting (the first status read 1 s after the create or the adoption): "
            "the listings' cost shows in the unwindowed column at 10,000. Nothing is asserted on time.",
            "",
            summary(rows),
            "",
            table(rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="history sizes, comma-separated")
    parser.add_argument("--delay", type=float, default=DELAY, help="seconds each command stays PENDING")
    parser.add_argument("--no-unwindowed", action="store_true", help="skip the unwindowed contrast")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS-history.md", help="the report")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})

    # A private AIRFLOW_HOME before anything imports Airflow; the provider's warnings only.
    home = Path(tempfile.mkdtemp(prefix="volteras-bench-history-")) / "airflow_home"
    prepare_airflow_home(home)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    variants = ("windowed",) if args.no_unwindowed else VARIANTS
    rows = run(sizes, delay=args.delay, variants=variants)
    wall = time.perf_counter() - t0
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT) + os.sep) else "python"
    shown = argv if argv is not None else sys.argv[1:]
    command = f"{python} -m benchmarks.bench_history" + (" " + shlex.join(shown) if shown else "")
    text = report(rows, command=command, started=started, wall=wall, delay=args.delay)
    args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(text)
    print(f"Report: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
