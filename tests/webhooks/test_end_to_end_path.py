"""The whole webhook path in one process: the simulator's signed deliveries (with faults), the receiver served
over HTTP by uvicorn, the Redis bus and a trigger's wait. The simulator's read counter tells how many status
reads each wait made."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.simulator.webhooks import WebhookFaults, WebhookSender, new_signing_secret
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
from airflow_provider_volteras.webhooks import bus as busmod
from airflow_provider_volteras.webhooks.receiver import create_app
from tests.conftest import connection_json
from tests.webhooks._redis import free_port

SECRET = new_signing_secret()


@pytest.fixture
def receiver_url(sim, redis_conn, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        connection_json(
            sim.base_url, webhook_signing_secret=SECRET, webhook_redis_conn_id=redis_conn, webhook_safety_poll=5
        ),
    )
    monkeypatch.setattr(busmod, "RECONNECT_FIRST", 0.1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/webhooks/volteras_default"
    server.should_exit = True
    thread.join(10)


def reads(sim, execution_id: str) -> int:
    return int(sim.state.counters()["pollsByExecution"].get(execution_id, 0))


async def wait_for(execution_id: str, vehicle_id: str) -> dict:
    trigger = CommandExecutionTrigger(
        vehicle_id=vehicle_id,
        command_execution_id=execution_id,
        deadline=time.time() + 60,
        poll_interval=15,
        command="CLIMATE_OFF",
    )
    [event] = [e.payload async for e in trigger.run()]
    return event


async def test_duplicated_late_forged_and_stale_webhooks(sim, receiver_url):
    faults = WebhookFaults(delay=0.3, duplicate=1.0, seed=1)
    with WebhookSender(sim.state, receiver_url, SECRET, faults) as sender:
        sender.send_now("warm-up", "EXECUTED")  # webhooks flow
        sender.send_now("exec-forged", "EXECUTED", kind="forged")
        sender.send_now("exec-stale", "EXECUTED", kind="stale")
        while len(sender.deliveries()) < 3:
            await asyncio.sleep(0.05)
        sim.state.set_scenario("e2p-car-1", outcome="EXECUTED", delay=2.0)
        execution_id = VolterasHook().create_command_execution("e2p-car-1", "CLIMATE_OFF")["id"]
        event = await wait_for(execution_id, "e2p-car-1")
        while len(sender.deliveries(execution_id)) < 2:
            await asyncio.sleep(0.05)
    assert event["status"] == "executed"
    assert reads(sim, execution_id) == 1
    answers = {d.kind: d.status for d in sender.deliveries()}
    assert answers == {"ok": 202, "forged": 401, "stale": 400, "duplicate": 409}


async def test_lost_webhooks_the_safety_poll_concludes(sim, receiver_url):
    with WebhookSender(sim.state, receiver_url, SECRET, WebhookFaults(loss=1.0, seed=2)) as sender:
        sender.send_now("warm-up", "EXECUTED")
        while not sender.deliveries():
            await asyncio.sleep(0.05)
        sim.state.set_scenario("e2p-car-2", outcome="FAILED", failed_reason="OEM_VEHICLE_OFFLINE", delay=0.5)
        execution_id = VolterasHook().create_command_execution("e2p-car-2", "CLIMATE_OFF")["id"]
        event = await wait_for(execution_id, "e2p-car-2")
    assert event["status"] == "failed" and event["execution"]["failedReason"] == "OEM_VEHICLE_OFFLINE"
    assert [d.kind for d in sender.deliveries(execution_id)] == ["lost"]
    assert reads(sim, execution_id) == 1  # the safety poll's one read


def test_faults_per_vehicle_and_a_forced_end_replaces_the_planned_one(sim, receiver_url):
    by_vehicle = {"snd-lost": WebhookFaults(loss=1.0), "snd-dup": WebhookFaults(duplicate=1.0)}
    with WebhookSender(sim.state, receiver_url, SECRET, by_vehicle=by_vehicle) as sender:
        ids = {}
        for vid in ("snd-plain", "snd-lost", "snd-dup"):
            sim.state.set_scenario(vid, outcome="EXECUTED", delay=1.0)  # the planned end, 1 s after the create
            ids[vid] = VolterasHook().create_command_execution(vid, "CLIMATE_OFF")["id"]
            sim.state.finish_execution(ids[vid], "FAILED", "OEM_VEHICLE_OFFLINE")  # ends earlier, otherwise
        expected = {"snd-plain": 2, "snd-lost": 2, "snd-dup": 4}
        deadline = time.monotonic() + 30
        while any(len(sender.deliveries(ids[v])) < n for v, n in expected.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
    kinds = {v: sorted((d.kind, d.status) for d in sender.deliveries(ids[v])) for v in ids}
    assert kinds == {
        "snd-plain": [("ok", 202), ("superseded", None)],
        "snd-lost": [("lost", None), ("superseded", None)],
        "snd-dup": [("duplicate", 409), ("ok", 202), ("superseded", None), ("superseded", None)],
    }
    # What was sent announced the end that happened (FAILED), never the planned EXECUTED.
    sent = [d for d in sender.deliveries() if d.status is not None]
    assert sent and all('"status": "FAILED"' in d.body for d in sent)
