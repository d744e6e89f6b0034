"""Load: 1,000 concurrent waits through the real trigger, with ~5% of the polls faulted.

One event loop runs 1,000 ``CommandExecutionTrigger``s against the simulator, as a triggerer would.
Commands take 0.2 to 3 s; faults (500, 502 with an HTML page, 429 with Retry-After, connection
resets before and after the request) hit the GET execution path of 5% of the vehicles, chosen at
random, once each. Every trigger must yield exactly one event, ``executed``, for its own
execution; the whole fleet shares one token request and nothing is created.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import pytest

from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger

from ._support import STATS, collect_events, use_connection

N = 1_000
FAULTED_VEHICLES = 50  # 5% of the waits meet a fault (~4-5% of the GET execution requests)
FAULTS_EACH = 1
FAULT_MIX: list[dict[str, Any]] = [
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 502, "html": True},
    {"kind": "rate_limit", "retry_after": 1},
    {"kind": "drop_before"},
    {"kind": "drop_after"},
]


@pytest.mark.slow
def test_thousand_concurrent_trigger_waits(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, sim, timeout=15)
    rng = random.Random(20261123)
    waits: list[tuple[str, str]] = []
    for i in range(N):
        vehicle_id = f"sim-ok-load-{i:04d}-d{rng.uniform(0.2, 3.0):.2f}"
        waits.append((vehicle_id, sim.state.create_command(vehicle_id, "CLIMATE_OFF")["id"]))
    for j, i in enumerate(rng.sample(range(N), FAULTED_VEHICLES)):
        vehicle_id, execution_id = waits[i]
        spec = dict(FAULT_MIX[j % len(FAULT_MIX)])
        path = re.escape(f"/v1/vehicles/{vehicle_id}/command-executions/{execution_id}") + "$"
        sim.state.add_fault(spec.pop("kind"), method="GET", path=path, count=FAULTS_EACH, **spec)

    async def fleet() -> list[list[Any]]:
        deadline = time.time() + 120
        triggers = [
            CommandExecutionTrigger(
                vehicle_id=v, command_execution_id=e, deadline=deadline, poll_interval=1.0, command="CLIMATE_OFF"
            )
            for v, e in waits
        ]
        return await asyncio.gather(*(collect_events(t) for t in triggers))

    started = time.monotonic()
    results = asyncio.run(fleet())
    elapsed = time.monotonic() - started

    counters = sim.state.counters()
    assert len(results) == N
    problems = []
    for (vehicle_id, execution_id), events in zip(waits, results, strict=True):
        payloads = [e.payload for e in events]
        if len(payloads) != 1:
            problems.append(f"{vehicle_id}: {len(payloads)} events")
            continue
        (payload,) = payloads
        execution = payload.get("execution") or {}
        if (payload["status"], payload["command_execution_id"], execution.get("id"), execution.get("vehicleId")) != (
            "executed",
            execution_id,
            execution_id,
            vehicle_id,
        ):
            problems.append(f"{vehicle_id}: {payload}")
    assert not problems, f"{len(problems)} waits not accounted for:\n" + "\n".join(problems[:20])
    STATS["load_events"] += N

    assert counters["tokenRequests"] == 1, "the fleet must share one token"
    assert counters["createsTotal"] == N and counters["createAttempts"] == 0, "a trigger must never create"
    assert counters["faultsApplied"] == FAULTED_VEHICLES * FAULTS_EACH, "every injected fault was met"
    ratio = counters["faultsApplied"] / counters["polls"]
    assert 0.015 <= ratio <= 0.10, f"{ratio:.1%} of the polls were faulted"
    assert max(counters["pollsByExecution"].values()) <= 12, "a wait polled far more than its schedule"
    assert elapsed < 90, f"the fleet took {elapsed:.0f} s"
    STATS["faults_applied"] += counters["faultsApplied"]
    print(
        f"\nload: {N} waits in {elapsed:.1f} s, {counters['polls']} polls, "
        f"{counters['faultsApplied']} faulted ({ratio:.1%}), {counters['tokenRequests']} token request"
    )
