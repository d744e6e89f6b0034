"""The one watch routine with the webhook bus as a second source (a real redis-server and the simulator).

A webhook only wakes a wait: the wait reads the execution once from the API and decides on that answer. The
figures asserted are the simulator's status reads per execution (``pollsByExecution``), never wall-clock.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import pytest
import redis.asyncio as aredis

from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
from airflow_provider_volteras.webhooks import bus as busmod
from airflow_provider_volteras.webhooks.bus import publish
from tests.conftest import connection_json

SECRET = "whsec_" + base64.b64encode(b"volteras-watch-test-secret-00001").decode()


@pytest.fixture
def hooked(sim, redis_conn, monkeypatch):
    """``volteras_default`` with webhooks on (bus: the test's Redis), safety poll at its 5 s minimum."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        connection_json(
            sim.base_url,
            webhook_signing_secret=SECRET,
            webhook_redis_conn_id=redis_conn,
            webhook_safety_poll=5,
        ),
    )
    monkeypatch.setattr(busmod, "RECONNECT_FIRST", 0.1)
    return sim


class Logs:
    """What the triggers logged (structlog prints to stdout) and what the std logging caught, so far."""

    def __init__(self, capsys, caplog) -> None:
        self.capsys, self.caplog, self.seen = capsys, caplog, ""
        caplog.set_level(logging.INFO)

    @property
    def text(self) -> str:
        out = self.capsys.readouterr()
        self.seen += out.out + out.err
        return self.seen + self.caplog.text


@pytest.fixture
def logs(capsys, caplog) -> Logs:
    return Logs(capsys, caplog)


def reads(sim, execution_id: str) -> int:
    return int(sim.state.counters()["pollsByExecution"].get(execution_id, 0))


def create(vehicle_id: str) -> str:
    return VolterasHook().create_command_execution(vehicle_id, "CLIMATE_OFF")["id"]


async def announce(port: int, execution_id: str, status: str, msg_id: str, conn_id: str = "volteras_default") -> None:
    client = aredis.Redis(host="127.0.0.1", port=port)
    try:
        await publish(client, conn_id, msg_id, execution_id, status, None)
    finally:
        await client.aclose()


async def announce_when_done(sim, port: int, execution_id: str, msg_id: str) -> None:
    """What the platform does: the webhook once the execution ended (the simulator's clock decides)."""
    while (execution := sim.state.mark_times(execution_id))["status"] == "PENDING":
        await asyncio.sleep(0.05)
    await announce(port, execution_id, execution["status"], msg_id)


def trigger(execution_id: str, vehicle_id: str, seconds: float = 60, poll_interval: float = 15):
    return CommandExecutionTrigger(
        vehicle_id=vehicle_id,
        command_execution_id=execution_id,
        deadline=time.time() + seconds,
        poll_interval=poll_interval,
        command="CLIMATE_OFF",
    )


async def run(trig: CommandExecutionTrigger) -> dict:
    [event] = [e.payload async for e in trig.run()]
    return event


async def test_webhook_wakes_the_wait_and_one_status_read_decides(hooked, redis_server, logs):
    await announce(redis_server.port, "someone-elses", "EXECUTED", "msg_warm")  # webhooks flow
    hooked.state.set_scenario("wh-car-1", outcome="EXECUTED", delay=2.5)
    execution_id = create("wh-car-1")
    sender = asyncio.create_task(announce_when_done(hooked, redis_server.port, execution_id, "msg_1"))
    event = await run(trigger(execution_id, "wh-car-1"))
    await sender
    assert event["status"] == "executed" and event["execution"]["status"] == "EXECUTED"
    # Polling alone reads at 0, 1, 2.5 s...; with the webhook: the one read it triggered.
    assert reads(hooked, execution_id) == 1
    assert "Waiting on command.updated webhooks (connection volteras_default): safety poll every 5 s" in logs.text


async def test_a_webhook_that_came_before_the_wait_subscribed_is_not_lost(hooked, redis_server):
    await announce(redis_server.port, "warm", "EXECUTED", "msg_warm")
    hooked.state.set_scenario("wh-car-2", outcome="FAILED", failed_reason="OEM_VEHICLE_OFFLINE", delay=0.1)
    execution_id = create("wh-car-2")
    await announce_when_done(hooked, redis_server.port, execution_id, "msg_2")
    event = await run(trigger(execution_id, "wh-car-2"))
    assert event["status"] == "failed" and event["execution"]["failedReason"] == "OEM_VEHICLE_OFFLINE"
    assert reads(hooked, execution_id) == 1


async def test_a_signed_webhook_claiming_executed_is_not_believed_the_api_read_decides(hooked, redis_server, logs):
    await announce(redis_server.port, "warm", "EXECUTED", "msg_warm")
    hooked.state.set_scenario("wh-car-3", outcome="FAILED", failed_reason="OEM_VEHICLE_ASLEEP", delay=2.0)
    execution_id = create("wh-car-3")
    # A validly signed (accepted) webhook that says EXECUTED while the API still says PENDING.
    await announce(redis_server.port, execution_id, "EXECUTED", "msg_forged")
    event = await run(trigger(execution_id, "wh-car-3", poll_interval=1))
    assert event["status"] == "failed" and event["execution"]["status"] == "FAILED"
    assert "a webhook said EXECUTED but the API says PENDING" in logs.text
    assert reads(hooked, execution_id) >= 2  # the woken read (PENDING), then the normal schedule found FAILED


async def test_a_lost_webhook_costs_latency_only_and_polling_returns(hooked, redis_server, logs):
    await announce(redis_server.port, "warm", "EXECUTED", "msg_warm")
    hooked.state.set_scenario("wh-car-4", outcome="EXECUTED", delay=0.5)
    execution_id = create("wh-car-4")  # its webhook is lost: none is sent
    event = await run(trigger(execution_id, "wh-car-4"))
    assert event["status"] == "executed"
    assert reads(hooked, execution_id) == 1  # the safety poll (5 s here) found it
    # The next wait polls on the normal schedule: a status change came without its webhook.
    hooked.state.set_scenario("wh-car-5", outcome="EXECUTED", delay=2.0)
    second = create("wh-car-5")
    assert (await run(trigger(second, "wh-car-5", poll_interval=1)))["status"] == "executed"
    assert "Polling on the normal schedule: no command.updated webhook seen lately, or one was missed" in logs.text
    assert reads(hooked, second) >= 2


async def test_redis_stopped_mid_wait_falls_back_to_polling_then_resubscribes(hooked, redis_server, logs):
    await announce(redis_server.port, "warm", "EXECUTED", "msg_warm")
    hooked.state.set_scenario("wh-car-6", outcome="EXECUTED", delay=60)
    execution_id = create("wh-car-6")
    wait = asyncio.create_task(run(trigger(execution_id, "wh-car-6", poll_interval=1)))
    await asyncio.sleep(0.5)
    assert reads(hooked, execution_id) == 0  # webhooks flow: no read yet
    redis_server.stop()
    while "the webhook bus is not connected" not in logs.text:
        await asyncio.sleep(0.05)
    while reads(hooked, execution_id) < 2:  # polling on the normal schedule while the bus is down
        await asyncio.sleep(0.05)
    redis_server.start()
    while "reconnected to Redis" not in logs.text:
        await asyncio.sleep(0.05)
    # The bus is back and webhooks flow again (the API server recorded the last one in Redis).
    await announce(redis_server.port, "warm-again", "EXECUTED", "msg_warm2")
    hooked.state.finish_execution(execution_id, "EXECUTED")
    await announce_when_done(hooked, redis_server.port, execution_id, "msg_6")
    event = await wait
    assert event["status"] == "executed"
    assert logs.text.count("Waiting on command.updated webhooks") >= 2  # back in webhook mode


def test_the_in_worker_wait_uses_the_same_bus(hooked, redis_server):
    from airflow_provider_volteras.lifecycle.watch import wait_in_worker

    asyncio.run(announce(redis_server.port, "warm", "EXECUTED", "msg_warm"))
    hooked.state.set_scenario("wh-car-7", outcome="EXECUTED", delay=2.5)
    execution_id = create("wh-car-7")

    def later() -> None:
        asyncio.run(announce_when_done(hooked, redis_server.port, execution_id, "msg_7"))

    import threading

    sender = threading.Thread(target=later)
    sender.start()
    waits = wait_in_worker(
        VolterasHook(),
        {"wh-car-7": execution_id},
        command="CLIMATE_OFF",
        deadline=time.time() + 60,
        poll_interval=15,
        log=logging.getLogger("test"),
    )
    sender.join()
    assert waits["wh-car-7"]["status"] == "EXECUTED"
    assert reads(hooked, execution_id) == 1


async def test_without_webhooks_nothing_changes(sim, redis_server):
    sim.state.set_scenario("wh-car-8", outcome="EXECUTED", delay=2.5)
    execution_id = create("wh-car-8")
    event = await run(trigger(execution_id, "wh-car-8"))
    assert event["status"] == "executed"
    assert reads(sim, execution_id) >= 3  # the normal schedule: 0, 1, 2.5 s...
    assert redis_server.clients() == 0


def test_the_connection_test_says_whether_the_bus_is_reachable_and_when_a_webhook_came(hooked, redis_server):
    ok, said = VolterasHook().test_connection()
    assert ok and "no command.updated webhook accepted in the last 10 minutes" in said
    assert "/volteras/webhooks/volteras_default" in said
    asyncio.run(announce(redis_server.port, "warm", "EXECUTED", "msg_warm"))
    ok, said = VolterasHook().test_connection()
    assert ok and "the last command.updated webhook was accepted" in said
    redis_server.stop()
    ok, said = VolterasHook().test_connection()
    assert not ok and "the bus (redis connection 'volteras_bus') is unreachable" in said


def test_the_hooks_wait_uses_the_bus_too(hooked, redis_server):
    import threading

    asyncio.run(announce(redis_server.port, "warm", "EXECUTED", "msg_warm"))
    hooked.state.set_scenario("wh-car-9", outcome="EXECUTED", delay=2.5)
    execution_id = create("wh-car-9")
    sender = threading.Thread(
        target=lambda: asyncio.run(announce_when_done(hooked, redis_server.port, execution_id, "msg_9"))
    )
    sender.start()
    final = VolterasHook().wait_for_command_execution("wh-car-9", execution_id, deadline=time.time() + 60)
    sender.join()
    assert final is not None and final["status"] == "EXECUTED"
    assert reads(hooked, execution_id) == 1
