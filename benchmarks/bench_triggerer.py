"""Benchmark 1, child process: N triggers waiting at once in one asyncio event loop.

``python -m benchmarks.bench_triggerer --impl ours|theirs --poll-interval S --ready FILE --out FILE``

Imports everything first and touches ``--ready``; then reads one JSON line from stdin
(``{"items": [[vehicle_id, execution_id, not_ready_polls], ...], "token": ...}``), records the
baseline RSS and CPU time, and runs one trigger per item the way the triggerer does (created one by
one with ``await asyncio.sleep(0)`` in between, each in its own task, iterated to its end). A ticker
coroutine sleeping 50 ms measures the event-loop lag and samples RSS. Writes the measurements to
``--out``. Nothing but the triggers talks to the simulator from this process. Every garbage
collection is timed too (``gc.callbacks``): a full collection stops the event loop.

Diagnostics (environment): ``BENCH_PROFILE=PREFIX`` dumps a cProfile of the measured phase to
``PREFIX.<impl>``; ``BENCH_GC_SNAPSHOT=FILE`` writes the objects the collector tracks, by type, at the
start and 8 s in.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import rss_bytes

TICK = 0.05


def make_factory(impl: str, poll_interval: float, token: str | None) -> Any:
    if impl == "ours":
        from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger

        deadline = time.time() + 600

        def ours(vehicle_id: str, execution_id: str) -> Any:
            return CommandExecutionTrigger(
                vehicle_id=vehicle_id,
                command_execution_id=execution_id,
                deadline=deadline,
                volteras_conn_id="volteras_default",
                poll_interval=poll_interval,
                command="CLIMATE_OFF",
            )

        return ours

    from airflow.providers.http.triggers.http import HttpSensorTrigger

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def theirs(vehicle_id: str, execution_id: str) -> Any:
        return HttpSensorTrigger(
            endpoint=f"/v1/vehicles/{vehicle_id}/command-executions/{execution_id}",
            http_conn_id="http_bench",
            method="GET",
            headers=headers,
            poke_interval=poll_interval,
        )

    return theirs


async def _gc_snapshot(wall0: float) -> None:
    """Diagnostics (``BENCH_GC_SNAPSHOT=FILE``): objects the collector tracks, by type, at start and after 8 s."""
    from collections import Counter

    before = Counter(type(o).__qualname__ for o in gc.get_objects())
    await asyncio.sleep(max(0.0, 8.0 - (time.perf_counter() - wall0)))
    after = Counter(type(o).__qualname__ for o in gc.get_objects())
    diff = {k: v for k, v in (after - before).most_common(40)}
    with open(os.environ["BENCH_GC_SNAPSHOT"], "w") as f:
        json.dump({"tracked_before": sum(before.values()), "tracked_after": sum(after.values()), "diff": diff}, f)


class GcPauses:
    """Times the garbage collector's runs (``gc.callbacks``): a full collection stops the event loop too."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started is not None:
            self.pauses[info["generation"]].append(time.perf_counter() - self.started)
            self.started = None

    def close(self) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> dict[str, Any]:
        return {
            f"gen{g}": {"count": len(p), "total_ms": sum(p) * 1000, "max_ms": max(p, default=0.0) * 1000}
            for g, p in self.pauses.items()
        }


async def bench(impl: str, items: list[list[Any]], factory: Any) -> dict[str, Any]:
    n = len(items)
    gc.collect()
    base_rss = rss_bytes()
    peak_rss = base_rss
    worst_lag = 0.0
    lags: list[float] = []
    worst_lag_at = 0.0
    stop = asyncio.Event()
    event_times: dict[str, float] = {}
    statuses: dict[str, int] = {}

    async def ticker() -> None:
        nonlocal peak_rss, worst_lag, worst_lag_at
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(TICK)
            lag = time.perf_counter() - t - TICK
            lags.append(lag)
            if lag > worst_lag:
                worst_lag, worst_lag_at = lag, t + TICK - wall0
            peak_rss = max(peak_rss, rss_bytes())

    async def drive(trigger: Any, execution_id: str) -> None:
        async for event in trigger.run():
            event_times[execution_id] = time.time()
            payload = event.payload
            status = payload.get("status") if isinstance(payload, dict) else repr(payload)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    gc_pauses = GcPauses()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    start_epoch = time.time()
    tick_task = asyncio.create_task(ticker())
    snapshot_task = asyncio.create_task(_gc_snapshot(wall0)) if os.environ.get("BENCH_GC_SNAPSHOT") else None
    tasks: list[asyncio.Task[None]] = []
    for vehicle_id, execution_id, _ in items:
        await asyncio.sleep(0)  # like TriggerRunner.create_triggers
        tasks.append(asyncio.create_task(drive(factory(vehicle_id, execution_id), execution_id)))
    created_after = time.perf_counter() - wall0
    peak_rss = max(peak_rss, rss_bytes())
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    peak_rss = max(peak_rss, rss_bytes())
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    stop.set()
    await tick_task
    gc_pauses.close()
    if snapshot_task is not None:
        await snapshot_task
    lags.sort()
    return {
        "impl": impl,
        "n": n,
        "base_rss": base_rss,
        "peak_rss": peak_rss,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "created_after_seconds": created_after,
        "start_epoch": start_epoch,
        "worst_lag": worst_lag,
        "worst_lag_at": worst_lag_at,
        "gc": gc_pauses.summary(),
        "p99_lag": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "statuses": statuses,
        "errors": errors[:5],
        "error_count": len(errors),
        "event_times": event_times,
    }


# ---------------------------------------------------------------------------------------------
# Parent side (runs in the orchestrator process)
# ---------------------------------------------------------------------------------------------

CREATE_CONCURRENCY = 32


async def _create_commands(
    base_url: str, token: str, impl: str, delays: list[float], start_at: float, poll_interval: float
) -> list[list[Any]]:
    """Create one CLIMATE_OFF per vehicle so that command i turns terminal at ``start_at + delays[i]``.

    For the baseline, also queue a 404 fault for each execution that answers its first
    ``ceil(delay / poll_interval)`` polls (see ``run_case``). Uses aiohttp: setting up thousands of
    commands is not measured and should be quick.
    """
    import math
    import re

    import aiohttp

    auth = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(CREATE_CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CREATE_CONCURRENCY)
    async with aiohttp.ClientSession(base_url=base_url, connector=connector) as session:

        async def one(i: int) -> list[Any]:
            async with sem:
                remaining = max(0.0, start_at + delays[i] - time.time())
                vehicle_id = f"b1-{impl}-{len(delays)}-{i}-d{remaining:.3f}"
                async with session.post(f"/v1/vehicles/{vehicle_id}/command-execution:climate-off", headers=auth) as r:
                    r.raise_for_status()
                    execution_id = (await r.json())["id"]
                not_ready = 0
                if impl == "theirs":
                    not_ready = max(1, math.ceil(delays[i] / poll_interval))
                    fault = {
                        "kind": "status",
                        "status": 404,
                        "method": "GET",
                        "path": re.escape(execution_id) + "$",
                        "count": not_ready,
                    }
                    async with session.post("/_simulator/faults", json=fault) as r:
                        r.raise_for_status()
                return [vehicle_id, execution_id, not_ready]

        return list(await asyncio.gather(*(one(i) for i in range(len(delays)))))


def run_case(ctx: Any, impl: str, n: int, delay_range: tuple[float, float], poll_interval: float) -> dict[str, Any]:
    """One N for one implementation, in a fresh child process; returns the derived metrics."""
    import random
    import statistics
    import subprocess

    from benchmarks._common import read_json, wait_for_file

    sim = ctx.sim
    sim.reset()
    token = sim.token()
    rng = random.Random(1000 + n)  # the same delays for ours and the baseline at the same N
    delays = [rng.uniform(*delay_range) for _ in range(n)]
    tag = f"b1-{impl}-{n}"
    ready, out = ctx.workdir / f"{tag}.ready", ctx.workdir / f"{tag}.json"
    with open(ctx.workdir / f"{tag}.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_triggerer",
                "--impl",
                impl,
                "--poll-interval",
                str(poll_interval),
                "--ready",
                str(ready),
                "--out",
                str(out),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ctx.env,
            cwd=ctx.root,
        )
    try:
        # Once the child has imported everything, create the commands so that each turns terminal
        # relative to ``start_at``, leaving enough lead for the creation itself (not measured).
        wait_for_file(ready, proc, 180)
        lead = 2.0 + n * (0.003 if impl == "theirs" else 0.0015)
        start_at = time.time() + lead
        t = time.perf_counter()
        items = asyncio.run(_create_commands(sim.base_url, token, impl, delays, start_at, poll_interval))
        create_seconds = time.perf_counter() - t
        late = time.time() - start_at
        if late < 0:
            time.sleep(-late)
        before = sim.counters()
        assert proc.stdin is not None
        proc.stdin.write((json.dumps({"items": items, "token": token}) + "\n").encode())
        proc.stdin.close()
        proc.wait(timeout=delay_range[1] + 8 * poll_interval + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{tag}: child exited with {proc.returncode}; see {ctx.workdir / (tag + '.log')}")
    after = sim.counters()
    res = read_json(out)
    times = {e["id"]: e["times"] for e in sim.executions()}
    polls = after["polls"] - before["polls"]
    observed, detect = 0, []
    for _, execution_id, _ in items:
        fired = res["event_times"].get(execution_id)
        mark = times.get(execution_id, {})
        if fired is not None and mark.get("firstServedTerminalAt") is not None and fired >= mark["terminalAt"]:
            observed += 1
            detect.append(fired - mark["terminalAt"])
    if impl == "ours" and res["statuses"].get("executed", 0) != n:
        observed = min(observed, res["statuses"].get("executed", 0))
    detect.sort()
    return {
        "impl": impl,
        "n": n,
        "poll_interval": poll_interval,
        "delay_range": list(delay_range),
        "create_seconds": round(create_seconds, 2),
        "start_late_seconds": round(max(0.0, late), 2),
        "token_requests": after["tokenRequests"] - before["tokenRequests"],
        "polls": polls,
        "polls_per_command": polls / n,
        "cpu_seconds": res["cpu_seconds"],
        "cpu_per_1000_polls": res["cpu_seconds"] / polls * 1000 if polls else float("nan"),
        "rss_base_mib": res["base_rss"] / 2**20,
        "rss_peak_mib": res["peak_rss"] / 2**20,
        "rss_per_trigger_kib": (res["peak_rss"] - res["base_rss"]) / n / 1024,
        "worst_lag_ms": res["worst_lag"] * 1000,
        "worst_lag_at_s": res["worst_lag_at"],
        "gc": res["gc"],
        "p99_lag_ms": res["p99_lag"] * 1000,
        "wall_seconds": res["wall_seconds"],
        "observed_terminal": observed,
        "statuses": res["statuses"],
        "errors": res["errors"],
        "detect_median_s": statistics.median(detect) if detect else None,
        "detect_p95_s": detect[int(0.95 * (len(detect) - 1))] if detect else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("ours", "theirs"), required=True)
    parser.add_argument("--poll-interval", type=float, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    # Import everything the triggers need before the baseline (the triggerer has it loaded too).
    import airflow.sdk

    if args.impl == "ours":
        import aiohttp

        import airflow_provider_volteras.failures
        import airflow_provider_volteras.hooks._async
        import airflow_provider_volteras.triggers.command_execution  # noqa: F401
    else:
        import aiohttp  # noqa: F401
        import airflow.providers.common.compat.connection
        import airflow.providers.http.hooks.http
        import airflow.providers.http.triggers.http  # noqa: F401

    args.ready.touch()
    job = json.loads(sys.stdin.readline())
    factory = make_factory(args.impl, args.poll_interval, job.get("token"))
    profile_to = os.environ.get("BENCH_PROFILE")  # optional: a cProfile dump of the measured phase
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, bench(args.impl, job["items"], factory))
        profiler.dump_stats(f"{profile_to}.{args.impl}")
    else:
        result = asyncio.run(bench(args.impl, job["items"], factory))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
