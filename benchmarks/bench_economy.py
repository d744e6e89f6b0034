"""Benchmark 2, child process: polls and detection delay, adaptive trigger versus a fixed 5 s poller.

``python -m benchmarks.bench_economy --delays 2,10,60 --per-case 3 --out FILE``

For every delay and every poller, ``--per-case`` commands are created (each on its own vehicle whose
magic id sets the delay) and watched concurrently, all cases at once, so the longest delay bounds the
wall time. The adaptive side is ``CommandExecutionTrigger`` with its default ``poll_interval`` (15 s);
the fixed side is a plain loop polling every 5 s (first poll at once) with the same async client
(``AsyncVolterasClient``). The time each watcher reports the end is compared with the simulator's
``terminalAt``; polls per command come from the simulator's per-execution counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

FIXED_INTERVAL = 5.0


async def bench(base_url: str, delays: list[float], per_case: int) -> dict[str, Any]:
    import httpx

    from airflow_provider_volteras._core.basics import is_terminal
    from airflow_provider_volteras.hooks._async import AsyncVolterasClient
    from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
    from benchmarks._common import SIM_CLIENT_ID, SIM_CLIENT_SECRET

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as setup:
        r = await setup.post(
            "/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=(SIM_CLIENT_ID, SIM_CLIENT_SECRET)
        )
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}

        async def create(vehicle_id: str) -> str:
            r = await setup.post(f"/v1/vehicles/{vehicle_id}/command-execution:climate-off", headers=auth)
            r.raise_for_status()
            return str(r.json()["id"])

        async def adaptive(vehicle_id: str, execution_id: str) -> tuple[float, str]:
            trigger = CommandExecutionTrigger(
                vehicle_id=vehicle_id,
                command_execution_id=execution_id,
                deadline=time.time() + 600,
                volteras_conn_id="volteras_default",
                command="CLIMATE_OFF",
            )  # default poll_interval (15 s)
            status = "none"
            async for event in trigger.run():
                status = event.payload["status"]
                fired = time.time()
            return fired, status

        async def fixed(vehicle_id: str, execution_id: str) -> tuple[float, str]:
            async with AsyncVolterasClient.open("volteras_default") as client:
                while True:
                    execution = await client.get_command_execution(vehicle_id, execution_id)
                    if is_terminal(execution):
                        return time.time(), str(execution["status"]).lower()
                    await asyncio.sleep(FIXED_INTERVAL)

        async def watch(poller: str, delay: float, j: int) -> dict[str, Any]:
            vehicle_id = f"b2-{poller}-{j}-d{delay:g}"
            execution_id = await create(vehicle_id)
            fired, status = await (adaptive if poller == "adaptive" else fixed)(vehicle_id, execution_id)
            return {"poller": poller, "delay": delay, "execution_id": execution_id, "fired": fired, "status": status}

        jobs = [watch(poller, d, j) for d in delays for poller in ("adaptive", "fixed5") for j in range(per_case)]
        return {"runs": list(await asyncio.gather(*jobs))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--delays", required=True)
    parser.add_argument("--per-case", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import airflow.sdk  # noqa: F401 - loaded before the clock starts

    delays = [float(d) for d in args.delays.split(",")]
    result = asyncio.run(bench(args.base_url, delays, args.per_case))
    args.out.write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def run_benchmark(ctx: Any, delays: list[float], per_case: int) -> dict[str, Any]:
    import statistics

    from benchmarks._common import read_json, run_child

    out = ctx.workdir / "b2.json"
    proc = run_child(
        "bench_economy",
        [
            "--base-url",
            ctx.sim.base_url,
            "--delays",
            ",".join(f"{d:g}" for d in delays),
            "--per-case",
            str(per_case),
            "--out",
            str(out),
        ],
        ctx.env,
        ctx.workdir / "b2.log",
        timeout=max(delays) + 180,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark 2 child exited with {proc.returncode}; see {ctx.workdir / 'b2.log'}")
    runs = read_json(out)["runs"]
    counters = ctx.sim.counters()["pollsByExecution"]
    times = {e["id"]: e["times"] for e in ctx.sim.executions()}
    cases: dict[str, dict[str, Any]] = {}
    for d in delays:
        for poller in ("adaptive", "fixed5"):
            sel = [r for r in runs if r["delay"] == d and r["poller"] == poller]
            polls = [counters.get(r["execution_id"], 0) for r in sel]
            detect = [r["fired"] - times[r["execution_id"]]["terminalAt"] for r in sel]
            cases[f"{d:g}/{poller}"] = {
                "delay": d,
                "poller": poller,
                "commands": len(sel),
                "polls_per_command": statistics.mean(polls),
                "polls": polls,
                "detect_median_s": statistics.median(detect),
                "detect_max_s": max(detect),
                "statuses": sorted({r["status"] for r in sel}),
            }
    return {"delays": delays, "per_case": per_case, "fixed_interval": FIXED_INTERVAL, "cases": cases}


if __name__ == "__main__":
    sys.exit(main())
