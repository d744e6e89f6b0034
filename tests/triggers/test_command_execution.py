"""CommandExecutionTrigger run in an asyncio loop against the simulator."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime

import pytest

from airflow_provider_volteras.hooks import _async as _async_client
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger


def make(vehicle_id: str, execution_id: str, seconds: float = 20, **kw) -> CommandExecutionTrigger:
    return CommandExecutionTrigger(
        vehicle_id=vehicle_id,
        command_execution_id=execution_id,
        deadline=time.time() + seconds,
        poll_interval=kw.pop("poll_interval", 1),
        command="CLIMATE_OFF",
        **kw,
    )


async def first_event(trigger: CommandExecutionTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger yielded no event")


def create(sim, vehicle_id: str, **scenario) -> str:
    if scenario:
        sim.state.set_scenario(vehicle_id, **scenario)
    return VolterasHook().create_command_execution(vehicle_id, "CLIMATE_OFF")["id"]


def test_serialize_round_trip_holds_ids_and_settings_only(sim):
    trigger = make("car-1", "exec-1")
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_volteras.triggers.command_execution.CommandExecutionTrigger"
    clone = CommandExecutionTrigger(**kwargs)
    assert clone.serialize() == (path, kwargs)
    assert datetime.fromisoformat(kwargs["deadline"]).tzinfo == UTC
    assert "volteras-sim-secret" not in repr(kwargs) and "volteras-sim-secret" not in repr(trigger)


def test_naive_deadline_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        CommandExecutionTrigger(vehicle_id="v", command_execution_id="e", deadline=datetime(2030, 1, 1))


async def test_executed_event(sim):
    execution_id = create(sim, "car-ok", outcome="EXECUTED", delay=0.3)
    payload = await first_event(make("car-ok", execution_id))
    assert payload["status"] == "executed"
    assert payload["execution"]["id"] == execution_id and payload["execution"]["status"] == "EXECUTED"
    assert payload["vehicle_id"] == "car-ok" and payload["command"] == "CLIMATE_OFF"


async def test_failed_event_carries_the_reason(sim):
    execution_id = create(sim, "sim-fail-OEM_VEHICLE_OFFLINE-d0.3")
    payload = await first_event(make("sim-fail-OEM_VEHICLE_OFFLINE-d0.3", execution_id))
    assert payload["status"] == "failed"
    assert payload["execution"]["failedReason"] == "OEM_VEHICLE_OFFLINE"


async def test_timeout_event_at_the_absolute_deadline(sim):
    execution_id = create(sim, "sim-stuck-t")
    timeout = sim.state.config.command_timeout  # a sim-stuck command stays PENDING until then
    assert timeout >= 300
    started = time.monotonic()
    payload = await first_event(make("sim-stuck-t", execution_id, seconds=2))
    elapsed = time.monotonic() - started
    # The wait ended at its own 2 s deadline, still PENDING: not when the platform fails the command.
    assert payload["status"] == "timeout"
    assert payload["execution"]["status"] == "PENDING"
    assert elapsed >= 1.5  # the deadline was honoured, not cut short
    # Excluded: waiting for the platform timeout (300 s) that ends a stuck command; a slow machine
    # stretches a 2 s wait by seconds, not by minutes.
    assert elapsed < timeout / 2, f"a 2 s wait took {elapsed:.0f} s"


async def test_resumed_trigger_keeps_the_original_deadline(sim):
    """A triggerer restart re-creates the trigger from its kwargs: the deadline does not move.

    The deadline passes while the trigger is "down": the resumed trigger must not open a new wait
    (which starts with an immediate poll), only make the one short read that follows a deadline.
    """
    execution_id = create(sim, "sim-stuck-r")
    _, kwargs = make("sim-stuck-r", execution_id, seconds=1).serialize()
    deadline = datetime.fromisoformat(kwargs["deadline"]).timestamp()
    await asyncio.sleep(max(0.0, deadline - time.time()) + 0.2)
    assert time.time() > deadline
    polls_before = sim.state.counters()["pollsByExecution"].get(execution_id, 0)
    payload = await first_event(CommandExecutionTrigger(**kwargs))
    assert payload["status"] == "timeout"
    # A moved deadline (one counted again from the restart) would poll at once and again at its end.
    assert sim.state.counters()["pollsByExecution"].get(execution_id, 0) - polls_before <= 1


async def test_a_lasting_404_gives_a_fatal_error_event(sim, monkeypatch):
    """A 404 is a read-after-write lag at first; once it lasts past the grace it is believed."""
    from airflow_provider_volteras._core import waiting

    monkeypatch.setattr(waiting, "NOT_FOUND_GRACE", 1.0)
    payload = await first_event(make("sim-missing-9", "exec-9", seconds=20))
    assert payload["status"] == "error"
    assert payload["error"]["retryable"] is False
    assert payload["error"]["reason"] == "RESOURCE_NOT_FOUND"
    assert "sim-missing-9" in payload["error"]["message"]


async def test_transient_errors_are_survived(sim):
    execution_id = create(sim, "car-flaky", outcome="EXECUTED", delay=0.5)
    # More 500s than one poll's retries (3): the trigger backs off and polls on.
    sim.state.add_fault("status", method="GET", path="command-executions/", status=502, html=True, count=6)
    payload = await first_event(make("car-flaky", execution_id, seconds=30))
    assert payload["status"] == "executed"
    assert sim.state.counters()["faultsApplied"] == 6


async def test_concurrent_triggers_share_one_token_and_one_client(sim):
    ids = [create(sim, f"car-{i}", outcome="EXECUTED", delay=0.5) for i in range(50)]
    tokens_before = sim.state.counters()["tokenRequests"]
    from airflow_provider_volteras._core import tokens

    tokens.TOKEN_CACHE.clear()
    clients: set[int] = set()
    original = _async_client.AsyncVolterasClient._send

    async def spy(self, request):
        clients.add(id(self._shared.session))
        return await original(self, request)

    _async_client.AsyncVolterasClient._send = spy  # type: ignore[method-assign]
    try:
        payloads = await asyncio.gather(*(first_event(make(f"car-{i}", e)) for i, e in enumerate(ids)))
    finally:
        _async_client.AsyncVolterasClient._send = original  # type: ignore[method-assign]
    assert [p["status"] for p in payloads] == ["executed"] * 50
    assert sim.state.counters()["tokenRequests"] - tokens_before == 1
    assert len(clients) == 1
    assert not _async_client._POOL  # the shared client is closed when the last trigger ends


async def test_polling_starts_fast_and_slows_down(sim, monkeypatch):
    from airflow_provider_volteras._core.waiting import WaitPlan

    pauses: list[float] = []  # the pauses the trigger's schedule asked for before each poll
    next_sleep = WaitPlan.next_sleep

    def recorded(self, now=None):
        pause = next_sleep(self, now)
        if pause is not None:
            pauses.append(pause)
        return pause

    monkeypatch.setattr(WaitPlan, "next_sleep", recorded)
    execution_id = create(sim, "car-slow", outcome="EXECUTED", delay=6)
    payload = await first_event(make("car-slow", execution_id, poll_interval=3))
    assert payload["status"] == "executed"
    polls = [e["time"] for e in sim.state.request_log() if e["method"] == "GET" and execution_id in e["path"]]
    assert len(polls) == len(pauses)  # one poll after each pause, none besides
    assert len(polls) <= 7  # a fixed 1 s poller would need 6-7; a fixed 0.5 s one 12 (load only lowers it)
    # Fast at first: at once, then after about a second (not the 3 s poll_interval); then each pause
    # grows by half (jitter shortens one by at most 10 %), never beyond poll_interval.
    assert pauses[0] == 0 and 0.9 <= pauses[1] <= 1.0
    for k, pause in enumerate(pauses[1:]):
        assert 0.9 * min(1.5**k, 3) <= pause <= min(1.5**k, 3), pauses
    assert max(pauses) <= 3
    # The simulator saw the polls no closer together than those pauses: the trigger slept them.
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert all(gap >= pause - 0.01 for gap, pause in zip(gaps, pauses[1:], strict=True)), (gaps, pauses)


async def test_waiting_in_the_worker_and_in_the_triggerer_fail_alike(sim, monkeypatch):
    """The same lasting 404 gives the same task failure (class, reason, delay kind) in both wait modes:
    both run the one watch routine and are judged by the one outcome builder."""
    from airflow_provider_volteras._core import waiting
    from airflow_provider_volteras.hooks.volteras import VolterasHook
    from airflow_provider_volteras.lifecycle.outcomes import Judge, failure_of
    from airflow_provider_volteras.lifecycle.watch import wait_in_worker
    from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

    monkeypatch.setattr(waiting, "NOT_FOUND_GRACE", 1.0)
    judge = Judge(command="CLIMATE_OFF", arguments=None)
    executions = {"sim-missing-7": "exec-7"}
    in_worker = await asyncio.to_thread(
        wait_in_worker,
        VolterasHook(),
        executions,
        command="CLIMATE_OFF",
        deadline=time.time() + 20,
        poll_interval=1,
        log=logging.getLogger("test"),
    )
    trigger = FleetCommandTrigger(
        command="CLIMATE_OFF", executions=executions, deadline=time.time() + 20, poll_interval=1
    )
    [event] = [e.payload async for e in trigger.run()]
    [in_triggerer] = event["outcomes"]
    worker = failure_of(judge.of_wait(in_worker["sim-missing-7"], 20), "CLIMATE_OFF")
    triggerer = failure_of(judge.of_wait(in_triggerer, 20), "CLIMATE_OFF")
    assert type(worker) is type(triggerer)
    assert (worker.reason, worker.delay_kind, worker.retryable) == (
        triggerer.reason,
        triggerer.delay_kind,
        triggerer.retryable,
    )
    assert worker.reason == "RESOURCE_NOT_FOUND"


async def test_clients_sharing_a_session_keep_their_own_connection_retry_settings(sim):
    """Two connections with the same credentials share one session; each keeps its own max_retries."""
    from airflow_provider_volteras._core.settings import ClientSettings
    from airflow_provider_volteras.exceptions import VolterasServerError

    execution_id = create(sim, "car-retry-set", outcome="EXECUTED", delay=0)

    class Conn:
        def __init__(self, conn_id: str, max_retries: int) -> None:
            self.conn_id, self.login, self.password, self.host = (
                conn_id,
                "volteras-sim-client",
                "volteras-sim-secret",
                sim.base_url,
            )
            self.schema, self.port = None, None
            self.extra_dejson = {"max_retries": max_retries, "retry_max_wait": 0.1, "timeout": 5}

    patient = ClientSettings.from_connection(Conn("patient", 3))
    impatient = ClientSettings.from_connection(Conn("impatient", 0))
    async with _async_client.AsyncVolterasClient.lend(patient) as first:
        async with _async_client.AsyncVolterasClient.lend(impatient) as second:
            assert first._shared is second._shared  # one session for both
            await first.get_command_execution("car-retry-set", execution_id)  # token in hand
            sim.state.add_fault("status", method="GET", path="command-executions/", status=503, count=1)
            with pytest.raises(VolterasServerError):
                await second.get_command_execution("car-retry-set", execution_id)
            sim.state.add_fault("status", method="GET", path="command-executions/", status=503, count=2)
            assert (await first.get_command_execution("car-retry-set", execution_id))["id"] == execution_id
