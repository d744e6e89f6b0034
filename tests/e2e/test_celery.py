"""End-to-end at fleet scale on Airflow's distributed engine: CeleryExecutor with Redis and PostgreSQL, two
Celery workers and two triggerers, all started here on 127.0.0.1 with free ports (``celery_airflow`` in
``conftest.py``).

What a data-platform team running the fleet example would check: one create per vehicle across two
workers, token requests per worker host and triggerer rather than per vehicle, a SIGKILLed triggerer's
waits taken over by the other one, and a worker killed between the create and the deferral re-attaching on
its retry. Redis and PostgreSQL come from Debian's packages (``apt-get install redis-server postgresql``,
done by ``.ci/run``); without them these tests fail and say so.

Webhooks are on for the deployment's connection, with the broker's Redis as the bus; the first three tests
send none, so their waits poll as they would without webhooks. The last one sends the simulator's webhooks
to the API server's receiver: every wait ends on its webhook with one status read, and each triggerer
holds one bus connection, shared by all its waits.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_volteras.simulator.webhooks import WebhookSender

from ._deployment import Deployment, descendants
from ._support import (
    FLEET,
    SEND,
    StateLog,
    assert_the_retry_reattached,
    bus_connections_per_triggerer,
    create_attempts,
    creates,
    deferrals_settled,
    executions,
    fleet_outcomes,
    long_waits_fleet,
    mapped_task_log,
    mapped_tis,
    polls,
    prepare_fleet,
    seconds_between,
    send_with_a_hanging_first_read,
    set_scenario,
    state_mismatches,
    wait_until,
)
from .conftest import CELERY_SAFETY_POLL, CELERY_WEBHOOK_SECRET

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.timeout(900)]

WORKERS = {"worker-1", "worker-2"}


def triggerer_hosts(airflow: Deployment) -> dict[int, str]:
    """Triggerer job id -> the host name its process reported (``triggerer``, ``triggerer-2``)."""
    jobs = airflow.get("/api/v2/jobs", params={"job_type": "TriggererJob", "limit": 100})["jobs"]
    return {int(j["id"]): str(j["hostname"]) for j in jobs}


def holders(tis: dict[int, dict[str, Any]]) -> dict[int, int]:
    """Map index -> the triggerer job holding its trigger (deferred task instances only)."""
    return {
        i: int(ti["trigger"]["triggerer_id"])
        for i, ti in tis.items()
        if ti["state"] == "deferred" and (ti.get("trigger") or {}).get("triggerer_id")
    }


# --------------------------------------------------------------------------- 1. a fleet across two workers


def test_fleet_on_two_workers_sends_one_command_per_vehicle(
    celery_airflow: Deployment, simulator: Any, record: dict[str, Any]
) -> None:
    airflow = celery_airflow
    fleet = [f"cel1-ok-{i:02d}" for i in range(40)]
    for vid in fleet:  # long enough for every task to defer, short enough for a quick run
        set_scenario(simulator, vid, outcome="EXECUTED", delay=8.0)
    before = simulator.state.counters()
    prepare_fleet(airflow)
    started = time.monotonic()
    run_id = airflow.trigger(FLEET, {"vehicle_ids": fleet})
    seen = StateLog()
    run = airflow.wait_run(FLEET, run_id, timeout=600, on_poll=seen, interval=1.0)
    wall = time.monotonic() - started
    after = simulator.state.counters()

    tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
    counted = creates(simulator, fleet)
    hosts = triggerer_hosts(airflow)
    trigger_jobs = {t["triggerer_id"] for ts in seen.triggers.values() for t in ts if t.get("triggerer_id")}
    token_requests = after["tokenRequests"] - before["tokenRequests"]
    record.update(
        run_state=run["state"],
        wall_s_run=round(wall, 1),
        state_mismatches=state_mismatches(airflow, FLEET, run_id),
        vehicles=len(fleet),
        creates_total=sum(counted.values()),
        create_attempts_total=sum(create_attempts(simulator, fleet).values()),
        token_requests=token_requests,
        status_reads=after["polls"] - before["polls"],
        tasks_per_worker={h: sum(1 for ti in tis.values() if ti["hostname"] == h) for h in sorted(WORKERS)},
        triggerers_used=sorted(hosts.get(int(j), str(j)) for j in trigger_jobs),
    )
    assert run["state"] == "success", record
    assert len(tis) == len(fleet)
    assert {(ti["state"], ti["try_number"]) for ti in tis.values()} == {("success", 1)}, record
    assert seen.deferred_tries("climate_off", 0) == {1}, seen.states
    # One command per vehicle, none refused and adopted, however the tasks were spread.
    assert counted == dict.fromkeys(fleet, 1) == create_attempts(simulator, fleet)
    assert all([e["status"] for e in executions(simulator, vid)] == ["EXECUTED"] for vid in fleet)
    # The tasks really ran on both Celery workers, and their triggers in a triggerer.
    assert {ti["hostname"] for ti in tis.values()} == WORKERS, record["tasks_per_worker"]
    assert trigger_jobs and {hosts.get(int(j)) for j in trigger_jobs} <= {"triggerer", "triggerer-2"}
    # Tokens: one per worker host (the task processes of a host share the token file) and one per
    # triggerer process, not one per vehicle.
    assert token_requests <= len(WORKERS) + airflow.triggerers, record


# --------------------------------------------------------------------------- 2. triggerer SIGKILL, takeover


def test_sigkilled_triggerer_waits_are_taken_over_by_the_other(
    celery_airflow: Deployment, simulator: Any, record: dict[str, Any]
) -> None:
    airflow = celery_airflow
    # Every command stays PENDING well past the kill and the takeover.
    fleet, expected = long_waits_fleet(simulator, "cel2", ok_count=10, delay=45.0)
    prepare_fleet(airflow)
    run_id = airflow.trigger(FLEET, {"vehicle_ids": fleet})
    seen = StateLog()

    def all_held() -> bool:
        tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
        seen(list(tis.values()))
        return len(tis) == len(fleet) and len(holders(tis)) == len(fleet)

    wait_until("every mapped task deferred and held by a triggerer", all_held, timeout=180)
    ids = {vid: executions(simulator, vid)[0]["id"] for vid in fleet}
    wait_until("the triggerers polling every execution", lambda: min(polls(simulator, ids.values()).values()) >= 2, 60)
    hosts = triggerer_hosts(airflow)
    held = holders(mapped_tis(airflow, FLEET, run_id, "climate_off"))
    by_job: dict[int, int] = {}
    for job in held.values():
        by_job[job] = by_job.get(job, 0) + 1
    victim_job = max(by_job, key=lambda j: by_job[j])
    victim = hosts[victim_job]  # the component name: triggerer or triggerer-2
    survivor = ({"triggerer", "triggerer-2"} - {victim}).pop()
    moved = [i for i, job in held.items() if job == victim_job]
    old_pid = airflow.components[victim].pid
    airflow.kill_component(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    assert not descendants(old_pid), "the killed triggerer's trigger runner survived"

    def taken_over() -> bool:
        tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
        seen(list(tis.values()))
        now = holders(tis)
        return all(tis[i]["state"] != "deferred" or hosts.get(now.get(i, -1)) == survivor for i in moved)

    wait_until(f"{survivor} taking over the waits of {victim}", taken_over, timeout=90)
    takeover_s = time.monotonic() - killed_at
    run = airflow.wait_run(FLEET, run_id, timeout=300, on_poll=seen, interval=1.0)

    tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
    counted = creates(simulator, fleet)
    actual = fleet_outcomes(tis, counted, fleet)
    mismatch = state_mismatches(airflow, FLEET, run_id)
    record.update(
        run_state=run["state"],
        state_mismatches=mismatch,
        killed=victim,
        survivor=survivor,
        triggers_held_by_killed=len(moved),
        takeover_s=round(takeover_s, 1),
        outcomes={vid: actual[vid][:2] for vid in fleet},
        creates_total=sum(counted.values()),
    )
    mismatches = {vid: (actual[vid], expected[vid]) for vid in fleet if actual[vid] != expected[vid]}
    assert not mismatches, f"(state, try, creates) actual vs expected: {mismatches}; state mismatches: {mismatch}"
    assert create_attempts(simulator, fleet) == counted
    assert moved, "the killed triggerer held no trigger"
    assert run["state"] == "failed"  # the fatal vehicle only
    # The health check declares a triggerer dead 10 s after its last heartbeat (this deployment's setting).
    assert takeover_s < 60, record
    airflow.start_component(victim)  # back to two triggerers for the next test
    wait_until(f"{victim} running again", lambda: airflow.health()["triggerer"]["status"] == "healthy", 60)


# --------------------------------------------------------------------------- 3. worker killed before the deferral


def test_worker_killed_between_create_and_defer_retry_reattaches_on_the_other(
    celery_airflow: Deployment, simulator: Any, record: dict[str, Any]
) -> None:
    airflow = celery_airflow
    vid = "cel3-kill"
    run_id, ti = send_with_a_hanging_first_read(airflow, simulator, vid, pending_s=90.0, hang_s=25.0, hosts=WORKERS)
    victim = str(ti["hostname"])
    survivor = (WORKERS - {victim}).pop()
    killed_utc = datetime.now(UTC).isoformat()
    airflow.kill_component(victim, signal.SIGKILL)  # the whole worker: Celery node, pool and task processes
    killed_at = time.monotonic()

    seen = StateLog()
    run = airflow.wait_run(SEND, run_id, timeout=300, on_poll=seen)
    record.update(run_state=run["state"], killed=victim, recovery_s=round(time.monotonic() - killed_at, 1))
    final, tries = assert_the_retry_reattached(airflow, simulator, run_id, vid, seen, record)
    record.update(
        # [scheduler] task_instance_heartbeat_timeout is 20 s here, the DAG's retry_delay 30 s.
        try_1_failed_after_kill_s=round(seconds_between(killed_utc, tries[0]["end_date"]), 1),
        try_2_started_after_kill_s=round(seconds_between(killed_utc, tries[-1]["start_date"]), 1),
    )
    # The retry ran on the surviving worker.
    assert final["hostname"] == survivor, record


# --------------------------------------------------------------------------- 4. webhooks on the broker's Redis


def test_webhooks_end_each_wait_with_one_read_and_each_triggerer_holds_one_bus_connection(
    celery_airflow: Deployment, simulator: Any, record: dict[str, Any]
) -> None:
    airflow, sim = celery_airflow, simulator
    assert airflow.redis_port is not None
    fleet = [f"celwh-{i:02d}" for i in range(10)]
    for vid in fleet:  # PENDING until the test ends them all at once
        set_scenario(sim, vid, outcome="EXECUTED", delay=240.0)
    url = f"{airflow.api_url}/volteras/webhooks/volteras_default"
    with WebhookSender(sim.state, url, CELERY_WEBHOOK_SECRET) as sender:
        sender.send_now("celwh-warm-up", "EXECUTED")  # webhooks flow from here on
        wait_until("the warm-up webhook answered", lambda: sender.deliveries(), timeout=60, interval=0.2)
        assert sender.deliveries()[0].status == 202, sender.deliveries()
        prepare_fleet(airflow)
        run_id = airflow.trigger(FLEET, {"vehicle_ids": fleet})
        seen = StateLog()

        def all_held() -> bool:
            tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
            seen(list(tis.values()))
            return len(tis) == len(fleet) and deferrals_settled(tis.values())

        wait_until("every mapped task deferred, held by a triggerer, settled", all_held, timeout=300, interval=1.0)
        ids = {vid: executions(sim, vid)[0]["id"] for vid in fleet}
        hosts = triggerer_hosts(airflow)
        held: dict[str, int] = {}
        for job in holders(mapped_tis(airflow, FLEET, run_id, "climate_off")).values():
            held[hosts[job]] = held.get(hosts[job], 0) + 1
        # A trigger runs a moment after it is assigned; a triggerer's bus connects with its first wait.
        redis_port = airflow.redis_port
        wait_until(
            "each triggerer holding waits on its bus",
            lambda: bus_connections_per_triggerer(airflow, redis_port) == {h: int(h in held) for h in hosts.values()},
            timeout=60,
        )
        connections = bus_connections_per_triggerer(airflow, redis_port)
        reads_while_pending = polls(sim, ids.values())
        for vid in fleet:
            sim.state.finish_execution(ids[vid], "EXECUTED")
        run = airflow.wait_run(FLEET, run_id, timeout=300, on_poll=seen, interval=1.0)
        wait_until("every webhook answered", lambda: all(sender.deliveries(e) for e in ids.values()), 60)
        answers = {vid: [d.status for d in sender.deliveries(ids[vid]) if d.kind == "ok"] for vid in fleet}

    tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
    reads = polls(sim, ids.values())
    delays = sorted(
        sim.state.mark_times(ids[vid])["firstServedTerminalAt"]
        - next(d.sent_at for d in sender.deliveries(ids[vid]) if d.kind == "ok")
        for vid in fleet
    )
    log = mapped_task_log(airflow, FLEET, run_id, "climate_off", 0)
    record.update(
        run_state=run["state"],
        state_mismatches=state_mismatches(airflow, FLEET, run_id),
        triggers_per_triggerer=held,
        bus_connections_per_triggerer=connections,
        reads_while_pending=sum(reads_while_pending.values()),
        reads_per_command=sorted(set(reads.values())),
        detected_after_webhook_s=[round(d, 3) for d in delays],
        creates_total=sum(creates(sim, fleet).values()),
    )
    assert run["state"] == "success", record
    assert {(ti["state"], ti["try_number"]) for ti in tis.values()} == {("success", 1)}, record
    assert creates(sim, fleet) == dict.fromkeys(fleet, 1) == create_attempts(sim, fleet), record
    assert answers == {vid: [202] for vid in fleet}, answers
    # Each command's one status read is the one its webhook woke: none while it was pending (the first seconds
    # in a worker, the hand-over and the triggers read nothing), one after.
    assert reads_while_pending == dict.fromkeys(ids.values(), 0), record
    assert reads == dict.fromkeys(ids.values(), 1), record
    # Both triggerers held waits, each on the one bus connection of its trigger runner.
    assert set(held) == {"triggerer", "triggerer-2"}, record
    assert connections == {"triggerer": 1, "triggerer-2": 1}, record
    assert any(
        f"Waiting on command.updated webhooks (connection volteras_default): safety poll every {CELERY_SAFETY_POLL} s"
        in line
        for line in log
    ), log
