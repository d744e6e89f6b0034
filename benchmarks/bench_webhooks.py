"""Webhooks vs polling, side by side in one run: N waiting commands in one triggerer-like event loop.

For each N and each mode, N CLIMATE_OFF executions (ended 5 to 15 s after the waits started, evenly) are
waited for by N ``CommandExecutionTrigger``s run in one asyncio loop on a thread of its own (a triggerer).
``webhooks``: the connection has webhooks on; the simulator sends each end as a Svix-signed ``command.updated``
to the receiver (served by uvicorn on 127.0.0.1), which announces it on a private Redis. ``polling``: the
same connection without webhooks. Measured:

* status reads per command: the simulator's ``pollsByExecution`` (GETs of the execution), averaged;
* detection delay: from the start of the webhook's delivery (``webhooks``) or from the execution's end
  (``polling``) to the trigger's event, p50/p95/max;
* CPU per waiting command: the CPU time of the triggers' thread (``time.thread_time``) divided by N;
* Redis connections per triggerer: connections the loop's bus opened, and buses alive in that loop.

Run: ``.venv/bin/python -m benchmarks.bench_webhooks [N ...]`` (default 1000 5000).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

from benchmarks._common import SIM_CLIENT_ID, SIM_CLIENT_SECRET


def _conn(base_url: str, webhooks: bool, secret: str) -> str:
    extra: dict[str, Any] = {"shared_cache": False}
    if webhooks:
        extra |= {"webhook_signing_secret": secret, "webhook_redis_conn_id": "volteras_bus", "webhook_safety_poll": 60}
    return json.dumps(
        {
            "conn_type": "volteras",
            "login": SIM_CLIENT_ID,
            "password": SIM_CLIENT_SECRET,
            "host": base_url,
            "extra": extra,
        }
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_one(sim: Any, sender: Any, n: int, mode: str, secret: str) -> dict[str, Any]:
    from airflow_provider_volteras._core import tokens
    from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
    from airflow_provider_volteras.webhooks import bus as busmod

    webhooks = mode == "webhooks"
    sim.state.reset(keep_config=True)
    tokens.TOKEN_CACHE.clear()
    # One connection per mode (Airflow caches connections in a process, and here all components share one).
    conn_id = "volteras_default" if webhooks else "volteras_polling"
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = _conn(sim.base_url, webhooks, secret)
    if webhooks:  # webhooks flow already (steady state): one was accepted a moment ago
        before = len(sender.deliveries())
        sender.send_now(f"warm-{n}", "EXECUTED")
        while len(sender.deliveries()) == before:
            time.sleep(0.05)
        print("warm-up webhook answered", sender.deliveries()[-1].status, flush=True)
    vehicles = [f"bench-{mode}-{n}-{i}" for i in range(n)]
    ids: dict[str, str] = {}
    for vid in vehicles:  # pending until the finisher ends them, 5 to 15 s after the waits started
        sim.state.set_scenario(vid, outcome="PENDING")
        ids[vid] = sim.state.create_command(vid, "CLIMATE_OFF")["id"]
    waits_started = threading.Event()

    def finisher() -> None:
        waits_started.wait()
        start = time.time()
        for i, vid in enumerate(vehicles):
            time.sleep(max(0.0, start + 5.0 + 10.0 * i / max(1, n - 1) - time.time()))
            sim.state.finish_execution(ids[vid], "EXECUTED")

    deadline = time.time() + 120
    fired: dict[str, float] = {}
    found: dict[str, Any] = {}

    async def one(vid: str) -> None:
        trigger = CommandExecutionTrigger(
            vehicle_id=vid,
            command_execution_id=ids[vid],
            deadline=deadline,
            command="CLIMATE_OFF",
            volteras_conn_id=conn_id,
        )
        async for event in trigger.run():
            fired[vid] = time.time()
            assert event.payload["status"] == "executed", event.payload

    async def main() -> None:
        async def sample() -> None:
            while True:
                await asyncio.sleep(2.0)
                live = [b for (loop_id, _), b in busmod.buses().items() if loop_id == id(asyncio.get_running_loop())]
                found["buses_max"] = max(found.get("buses_max", 0), len(live))
                found["bus_connections"] = sum(b.connections_opened for b in live) or found.get("bus_connections", 0)

        sampler = asyncio.create_task(sample())
        waits = [asyncio.create_task(one(v)) for v in vehicles]
        await asyncio.sleep(0)
        waits_started.set()
        await asyncio.gather(*waits)
        sampler.cancel()

    def thread() -> None:
        cpu = time.thread_time()
        asyncio.run(main())
        found["cpu"] = time.thread_time() - cpu

    started = time.time()
    worker = threading.Thread(target=thread)
    ending = threading.Thread(target=finisher)
    ending.start()
    worker.start()
    worker.join()
    ending.join()
    wall = time.time() - started
    counters = sim.state.counters()["pollsByExecution"]
    reads = [counters.get(ids[v], 0) for v in vehicles]
    delays = []
    for vid in vehicles:
        if webhooks:
            sent = [d.sent_at for d in sender.deliveries(ids[vid]) if d.sent_at is not None]
            start = min(sent) if sent else sim.state.mark_times(ids[vid])["terminalAt"]
        else:
            start = sim.state.mark_times(ids[vid])["terminalAt"]
        delays.append(fired[vid] - start)
    return {
        "n": n,
        "mode": mode,
        "reads_per_command": statistics.mean(reads),
        "reads_max": max(reads),
        "delay_p50": _pct(delays, 0.5),
        "delay_p95": _pct(delays, 0.95),
        "delay_max": max(delays),
        "cpu_ms_per_command": 1000.0 * found["cpu"] / n,
        "redis_connections": found.get("bus_connections", 0) if webhooks else 0,
        "buses": found.get("buses_max", 0) if webhooks else 0,
        "wall_s": wall,
    }


def main(argv: list[str]) -> None:
    import uvicorn

    from airflow_provider_volteras.simulator import SimulatorServer
    from airflow_provider_volteras.simulator.webhooks import WebhookSender, new_signing_secret
    from airflow_provider_volteras.webhooks.receiver import create_app
    from tests.webhooks._redis import RedisServer, free_port

    sizes = [int(a) for a in argv] or [1000, 5000]
    secret = new_signing_secret()
    redis_server = RedisServer().start()
    os.environ["AIRFLOW_CONN_VOLTERAS_BUS"] = json.dumps(
        {"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port}
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    rows = []
    try:
        with (
            SimulatorServer(port=0, client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET) as sim,
            WebhookSender(sim.state, f"http://127.0.0.1:{port}/webhooks/volteras_default", secret) as sender,
        ):
            for conn_id, on in (("volteras_default", True), ("volteras_polling", False)):
                os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = _conn(sim.base_url, on, secret)
            for n in sizes:
                for mode in ("polling", "webhooks"):
                    row = run_one(sim, sender, n, mode, secret)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        server.should_exit = True
        redis_server.stop()
    print()
    print(
        "| N | mode | status reads per command (max) | detection delay p50 / p95 / max (s) "
        "| CPU per waiting command (ms) | Redis connections per triggerer |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['mode']} | {r['reads_per_command']:.2f} ({r['reads_max']}) | "
            f"{r['delay_p50']:.2f} / {r['delay_p95']:.2f} / {r['delay_max']:.2f} | {r['cpu_ms_per_command']:.1f} | "
            f"{r['redis_connections'] if r['mode'] == 'webhooks' else '-'} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
