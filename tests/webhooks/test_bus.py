"""The webhook bus on a real redis-server: one connection per loop, announcements dispatched by execution id,
nothing lost before a wait registers, and a restarted Redis reconnected and resynced."""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_volteras.webhooks import bus as busmod
from airflow_provider_volteras.webhooks.bus import Bus, RedisSettings, Waiter, lend_bus, publish, status_key
from tests.webhooks._redis import RedisServer


def settings_of(server: RedisServer) -> RedisSettings:
    return RedisSettings("127.0.0.1", server.port, 0, None, None, False, None)


async def until(predicate, what: str, limit: float = 20.0) -> None:
    """Wait for ``predicate()``; fail with ``what`` after ``limit`` seconds (a bound on a hang, not on speed)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


async def test_one_connection_shared_by_many_waits_and_dispatch_by_execution_id(redis_server):
    settings = settings_of(redis_server)
    sender = settings.client()
    async with lend_bus(settings) as bus, lend_bus(settings) as same:
        assert same is bus
        await until(lambda: bus.connected, "the bus connected")
        waiters = [Waiter(bus, "volteras_default", f"exec-{i}") for i in range(200)]
        for waiter in waiters:
            await bus.register(waiter)
        assert not any(w.event.is_set() for w in waiters)
        assert await publish(sender, "volteras_default", "msg_1", "exec-7", "EXECUTED", "veh-1")
        await until(lambda: waiters[7].event.is_set(), "exec-7 woken")
        assert waiters[7].claim == "EXECUTED" and waiters[7].announced
        assert [i for i, w in enumerate(waiters) if w.announced] == [7]  # the others were only nudged (mode)
        # An announcement for another connection with the same execution id wakes nobody here.
        assert await publish(sender, "other_conn", "msg_2", "exec-8", "EXECUTED", "veh-1")
        await asyncio.sleep(0.2)
        assert not waiters[8].announced
        # The sender's pool plus the bus's one connection: the bus holds exactly one.
        await sender.aclose()
        await until(lambda: redis_server.clients() == 1, "only the bus's connection left")
        assert bus.connections_opened == 1
        assert bus.flowing("volteras_default")
    await until(lambda: redis_server.clients() == 0, "the bus closed with its last user")


async def test_an_announcement_made_before_the_wait_registered_is_not_lost(redis_server):
    settings = settings_of(redis_server)
    sender = settings.client()
    assert await publish(sender, "c1", "msg_early", "exec-early", "FAILED", "veh-1")
    async with lend_bus(settings) as bus:
        await until(lambda: bus.connected, "the bus connected")
        waiter = Waiter(bus, "c1", "exec-early")
        await bus.register(waiter)
        assert waiter.event.is_set() and waiter.claim == "FAILED"
        # A PENDING that arrives after the terminal status (reordered) does not hide it.
        assert await publish(sender, "c1", "msg_late", "exec-early", "PENDING", "veh-1")
        assert json.loads(await sender.get(status_key("c1", "exec-early")))["status"] == "FAILED"
    await sender.aclose()


async def test_a_message_id_is_accepted_once(redis_server):
    sender = settings_of(redis_server).client()
    assert await publish(sender, "c1", "msg_x", "exec-1", "EXECUTED", None) is True
    assert await publish(sender, "c1", "msg_x", "exec-1", "EXECUTED", None) is False
    await sender.aclose()


async def test_redis_restarted_the_bus_reconnects_and_resyncs(redis_server, monkeypatch):
    monkeypatch.setattr(busmod, "RECONNECT_FIRST", 0.1)
    settings = settings_of(redis_server)
    async with lend_bus(settings) as bus:
        await until(lambda: bus.connected, "the bus connected")
        waiter = Waiter(bus, "c1", "exec-r")
        await bus.register(waiter)
        redis_server.stop()
        await until(lambda: not bus.connected, "the bus saw Redis go")
        assert waiter.event.is_set() and not waiter.announced  # nudged: the wait re-plans (polls normally)
        waiter.event.clear()
        assert not bus.flowing("c1")
        redis_server.start()
        # The webhook arrives while the bus is still reconnecting: the resync reads the key.
        sender = settings.client()
        assert await publish(sender, "c1", "msg_r", "exec-r", "EXECUTED", None)
        await sender.aclose()
        await until(lambda: bus.connected and waiter.announced, "reconnected and resynced")
        assert waiter.claim == "EXECUTED" and bus.connections_opened == 2
        assert bus.flowing("c1")


def test_settings_from_an_airflow_redis_connection(redis_conn, redis_server):
    from airflow.sdk import BaseHook

    settings = RedisSettings.from_connection(BaseHook.get_connection(redis_conn))
    assert (settings.host, settings.port, settings.db, settings.ssl) == ("127.0.0.1", redis_server.port, 0, False)


def test_bus_needs_a_loop():
    with pytest.raises(RuntimeError):
        Bus(RedisSettings("127.0.0.1", 1, 0, None, None, False, None))


async def test_the_bus_connection_names_its_process(redis_server):
    import os

    import redis

    from airflow_provider_volteras.webhooks.bus import connection_name

    async with lend_bus(settings_of(redis_server)) as bus:
        await until(lambda: bus.connected, "the bus connected")
        probe = redis.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            names = [c["name"] for c in probe.client_list() if c["name"]]
        finally:
            probe.close()
    assert names == [connection_name()]
    assert connection_name().startswith("volteras-bus:") and connection_name().endswith(f":{os.getpid()}")
