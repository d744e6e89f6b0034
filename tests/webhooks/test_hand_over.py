"""Status reads of a wait longer than a task's first seconds in the worker, with webhooks flowing.

A deferrable task watches its command in the worker for its first seconds, then hands the wait over to a
trigger. While webhooks flow, that hand-over makes no read of its own: the trigger subscribes, reads the
execution's key, and reads the execution once when its webhook comes. The figures are the simulator's reads
per execution (``pollsByExecution``); a real redis-server is the bus.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_volteras._compat import TaskDeferred
from airflow_provider_volteras.lifecycle.task import CommandTaskMixin
from airflow_provider_volteras.operators.commands import ClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor
from tests.lifecycle.test_promise import Store, context
from tests.webhooks.test_watch import Logs, announce, announce_when_done, create, hooked, logs, reads

__all__ = ["hooked", "logs"]  # the fixtures, imported for pytest

FIRST_SECONDS = 2.0


@pytest.fixture
def worker_first(monkeypatch: pytest.MonkeyPatch) -> float:
    """The first seconds in the worker, as deployed (tests/conftest.py turns them off for other tests)."""
    monkeypatch.setattr(CommandTaskMixin, "worker_first_seconds", FIRST_SECONDS)
    return FIRST_SECONDS


def defer(op: Any, store: Store) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(store, op))
    return deferred.value


def fire(sim: Any, port: int, deferred: TaskDeferred, execution_id: str, msg_id: str) -> dict[str, Any]:
    """Run the deferral's trigger while the platform sends the execution's webhook when it ends."""

    async def main() -> dict[str, Any]:
        sender = asyncio.create_task(announce_when_done(sim, port, execution_id, msg_id))
        [event] = [e.payload async for e in deferred.trigger.run()]
        await sender
        return event

    return asyncio.run(main())


def test_a_deferred_command_costs_one_status_read_in_all(hooked, redis_server, worker_first, logs: Logs) -> None:
    asyncio.run(announce(redis_server.port, "warm", "EXECUTED", "msg_warm"))  # webhooks flow
    hooked.state.set_scenario("ho-car-1", outcome="EXECUTED", delay=worker_first + 3.0)
    op = ClimateOffOperator(task_id="climate_off", vehicle_id="ho-car-1", deferrable=True)
    store = Store()
    deferred = defer(op, store)
    [execution] = hooked.state.executions("ho-car-1")
    # The first seconds in the worker read nothing (no webhook came), nor does the hand-over.
    assert reads(hooked, execution["id"]) == 0
    # The first seconds ended at their deadline, which is no failed read.
    assert "did not end by the wait's deadline" not in logs.text and "failure(s) in a row" not in logs.text
    event = fire(hooked, redis_server.port, deferred, execution["id"], "msg_ho1")
    result = op.execute_complete(context(store, op), event=event, **(deferred.kwargs or {}))
    assert result["status"] == "EXECUTED" and result["id"] == execution["id"]
    assert reads(hooked, execution["id"]) == 1  # the read the webhook woke decided
    assert hooked.state.counters()["creates"]["ho-car-1"] == {"CLIMATE_OFF": 1}


def test_the_sensor_reads_once_to_learn_the_execution_then_once_on_its_webhook(
    hooked, redis_server, worker_first
) -> None:
    asyncio.run(announce(redis_server.port, "warm", "EXECUTED", "msg_warm"))
    hooked.state.set_scenario("ho-car-2", outcome="EXECUTED", delay=worker_first + 3.0)
    execution_id = create("ho-car-2")
    op = CommandExecutionSensor(
        task_id="wait", vehicle_id="ho-car-2", command_execution_id=execution_id, deferrable=True
    )
    store = Store()
    deferred = defer(op, store)
    # The sensor's own read: it learns the execution's command and vehicle (what every later answer is
    # checked against) and ends at once when the command ended before the sensor started.
    assert reads(hooked, execution_id) == 1
    event = fire(hooked, redis_server.port, deferred, execution_id, "msg_ho2")
    assert op.execute_complete(context(store, op), event=event)["status"] == "EXECUTED"
    assert reads(hooked, execution_id) == 2


def test_without_webhooks_flowing_the_hand_over_keeps_its_last_read(hooked, redis_server, worker_first) -> None:
    # No webhook accepted yet: polling on the normal schedule (a read about 1 s in, then none before the
    # deadline). The last read at the deadline finds the end and spares the deferral.
    hooked.state.set_scenario("ho-car-3", outcome="EXECUTED", delay=worker_first - 0.3)
    op = ClimateOffOperator(task_id="climate_off", vehicle_id="ho-car-3", deferrable=True)
    result = op.execute(context(Store(), op))
    assert result["status"] == "EXECUTED"
