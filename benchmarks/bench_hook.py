"""Benchmark 5, child process: ``VolterasHook.get_command_execution`` throughput, pooled versus fresh.

``python -m benchmarks.bench_hook --calls 1000 --vehicle V --execution E --out FILE``

Interleaves blocks of 50 calls: the hook (its one pooled ``requests.Session``, token from the
process-wide cache) and a fresh ``requests.get`` per call (a new connection each time) with the
same bearer token and headers. Token requests are the simulator's ``tokenRequests`` counter over the
whole run; the baseline's token is the hook's cached one, so it adds none.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

BLOCK = 50


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--vehicle", required=True)
    parser.add_argument("--execution", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import httpx
    import requests

    from airflow_provider_volteras._core.tokens import TOKEN_CACHE
    from airflow_provider_volteras.hooks.volteras import VolterasHook

    control = httpx.Client(base_url=args.base_url)
    tokens_before = control.get("/_simulator/counters").json()["tokenRequests"]

    hook = VolterasHook(volteras_conn_id="volteras_default")
    url = f"{args.base_url}/v1/vehicles/{args.vehicle}/command-executions/{args.execution}"
    headers: dict[str, str] = {}
    pooled_s = fresh_s = 0.0
    pooled_n = fresh_n = 0
    while pooled_n < args.calls or fresh_n < args.calls:
        if pooled_n < args.calls:
            k = min(BLOCK, args.calls - pooled_n)
            t = time.perf_counter()
            for _ in range(k):
                hook.get_command_execution(args.vehicle, args.execution)
            pooled_s += time.perf_counter() - t
            pooled_n += k
            if not headers:
                token = TOKEN_CACHE.valid(hook.settings)
                assert token is not None
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if fresh_n < args.calls:
            k = min(BLOCK, args.calls - fresh_n)
            t = time.perf_counter()
            for _ in range(k):
                r = requests.get(url, headers=headers, timeout=30)
                r.raise_for_status()
                r.json()
            fresh_s += time.perf_counter() - t
            fresh_n += k
    hook.close()
    tokens = control.get("/_simulator/counters").json()["tokenRequests"] - tokens_before
    result: dict[str, Any] = {
        "calls": args.calls,
        "pooled_seconds": pooled_s,
        "fresh_seconds": fresh_s,
        "pooled_calls_per_s": pooled_n / pooled_s,
        "fresh_calls_per_s": fresh_n / fresh_s,
        "token_requests": tokens,
    }
    args.out.write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def run_benchmark(ctx: Any, calls: int) -> dict[str, Any]:
    from benchmarks._common import read_json, run_child

    sim = ctx.sim
    token = sim.token()
    vehicle = "b5-hook-d1"
    r = sim.http.post(
        f"/v1/vehicles/{vehicle}/command-execution:climate-off", headers={"Authorization": f"Bearer {token}"}
    )
    r.raise_for_status()
    out = ctx.workdir / "b5.json"
    proc = run_child(
        "bench_hook",
        [
            "--base-url",
            sim.base_url,
            "--calls",
            str(calls),
            "--vehicle",
            vehicle,
            "--execution",
            r.json()["id"],
            "--out",
            str(out),
        ],
        ctx.env,
        ctx.workdir / "b5.log",
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark 5 child exited with {proc.returncode}; see {ctx.workdir / 'b5.log'}")
    return read_json(out)


if __name__ == "__main__":
    sys.exit(main())
