"""The promise under plausible API behaviour: each case is one the two drifted copies of the lifecycle broke.

Tries are run as Airflow would run them (the same task state store across tries), in the worker, against
the embedded simulator; assertions are on what the simulator received and what each try reported.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasFatalCommandError,
    VolterasInvalidInputError,
    VolterasRetryableCommandError,
)
from airflow_provider_volteras.lifecycle.records import FLEET_STATE_KEY, STATE_KEY
from airflow_provider_volteras.operators.commands import ClimateOffOperator, VolterasCommandOperator
from airflow_provider_volteras.operators.fleet import VolterasFleetCommandOperator
from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

CREATE = r"/command-execution:"
READ = r"/command-executions/[^/]+$"


class Store:
    """The task_state_store accessor, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class Ti:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class Events:
    """``outlet_events``: records every asset event a try adds."""

    def __init__(self) -> None:
        self.added: list[tuple[str, dict[str, Any]]] = []

    def __getitem__(self, alias: Any) -> Any:
        events = self

        class Accessor:
            def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
                events.added.append((asset.uri, dict(extra or {})))

        return Accessor()


def context(store: Store, op: Any, events: Events | None = None) -> dict[str, Any]:
    return {"task_state_store": store, "ti": Ti(), "task": op, "outlet_events": events or Events()}


def tries(make: Any, store: Store, count: int, *, pause: float = 0.0, events: Events | None = None) -> list[Any]:
    """Run up to ``count`` tries of one task instance; each try's result or task failure."""
    results: list[Any] = []
    for _ in range(count):
        op = make()
        try:
            results.append(op.execute(context(store, op, events)))
            break
        except VolterasRetryableCommandError as err:
            results.append(err)
        except VolterasFatalCommandError as err:
            results.append(err)
            break
        time.sleep(pause)
    return results


def creates(sim: Any, vehicle_id: str) -> int:
    return sum(sim.state.counters()["creates"].get(vehicle_id, {}).values())


def create_posts(sim: Any, vehicle_id: str) -> int:
    return sum(
        1
        for e in sim.state.request_log()
        if e["method"] == "POST" and f"/vehicles/{vehicle_id}/command-execution:" in e["path"]
    )


def listings(sim: Any, vehicle_id: str) -> int:
    return sum(
        1
        for e in sim.state.request_log()
        if e["method"] == "GET" and e["path"].endswith(f"/{vehicle_id}/command-executions")
    )


def single(vehicle_id: str, **kw: Any) -> Any:
    return lambda: ClimateOffOperator(task_id="t", vehicle_id=vehicle_id, deferrable=False, poll_interval=0.5, **kw)


# -- 1. ids the API issued are checked as issued ids, in the fleet trigger too -------------------------------


def test_the_fleet_trigger_takes_base64_shaped_ids_the_api_issued() -> None:
    trigger = FleetCommandTrigger(
        command="CLIMATE_OFF", executions={"car-b64": "+/+PjfePMQ=="}, deadline=time.time() + 60, poll_interval=1
    )
    _, kwargs = trigger.serialize()
    assert kwargs["executions"] == {"car-b64": "+/+PjfePMQ=="}
    with pytest.raises(VolterasInvalidInputError):  # a vehicle id is still one a person typed
        FleetCommandTrigger(command="CLIMATE_OFF", executions={"car/b64": "x"}, deadline=time.time() + 60)


# -- 2. waits keep their deadline, whatever Retry-After says ---------------------------------------------------


@pytest.mark.parametrize("shape", ["single", "fleet"])
def test_a_wait_ends_at_its_deadline_although_the_api_asks_to_wait_longer(sim: Any, shape: str) -> None:
    vehicle = f"car-deadline-{shape}"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=600)
    sim.state.add_fault("rate_limit", method="GET", path=vehicle + READ, count=None, retry_after=120)
    if shape == "single":
        op: Any = ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=3, poll_interval=1)
    else:
        op = VolterasFleetCommandOperator(
            task_id="t", vehicle_ids=[vehicle], command="CLIMATE_OFF", deferrable=False, timeout=3, poll_interval=1
        )
    started = time.monotonic()
    with pytest.raises(VolterasRetryableCommandError) as info:
        op.execute(context(Store(), op))
    # The API asked for 120 s between reads; the task's own 3 s timeout wins by far.
    assert time.monotonic() - started < 60
    if shape == "single":
        assert info.value.reason == "STATUS_UNKNOWN_AT_DEADLINE"


def test_the_trigger_ends_at_its_deadline_although_the_api_asks_to_wait_longer(sim: Any) -> None:
    vehicle = "car-deadline-trigger"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=600)
    from airflow_provider_volteras.hooks.volteras import VolterasHook

    execution = VolterasHook().create_command_execution(vehicle, "CLIMATE_OFF")
    sim.state.add_fault("rate_limit", method="GET", path=vehicle + READ, count=None, retry_after=120)
    trigger = FleetCommandTrigger(
        command="CLIMATE_OFF", executions={vehicle: execution["id"]}, deadline=time.time() + 3, poll_interval=1
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    started = time.monotonic()
    payload = asyncio.run(first())
    assert time.monotonic() - started < 60
    [outcome] = payload["outcomes"]
    assert outcome["status"] == "PENDING" and outcome["status_read"] is False


# -- 3. another sender's pending command is never taken as ours ------------------------------------------------


def test_a_fleet_retry_never_reports_another_senders_command_as_its_own(sim: Any) -> None:
    vehicle = "car-foreign-limit"
    foreign = sim.state.add_execution(
        vehicle, "SET_CHARGE_LIMIT", status="PENDING", arguments={"limit": 90}, delay=1.0, outcome="EXECUTED"
    )
    store = Store()

    def make() -> Any:
        return VolterasFleetCommandOperator(
            task_id="t",
            vehicle_ids=[vehicle],
            command="SET_CHARGE_LIMIT",
            arguments={"limit": 55},
            deferrable=False,
            timeout=10,
            poll_interval=0.5,
        )

    results = tries(make, store, 3, pause=1.5)
    assert isinstance(results[0], VolterasRetryableCommandError)
    assert results[0].reason == "COMMAND_ALREADY_IN_PROGRESS"
    entry = store.values[FLEET_STATE_KEY]["vehicles"][vehicle]
    assert foreign["id"] not in str(entry.get("id")), "the other sender's execution was recorded as ours"
    [outcome] = results[-1]
    assert outcome["status"] == "EXECUTED" and outcome["execution_id"] != foreign["id"]
    ours = [e for e in sim.state.executions(vehicle) if e["id"] == outcome["execution_id"]]
    assert ours and ours[0]["commandArguments"] == {"limit": 55}
    assert creates(sim, vehicle) == 1


# -- 6. success only for the arguments asked ---------------------------------------------------------------------


@pytest.mark.parametrize("omit", [False, True], ids=["create-answer-has-arguments", "create-answer-omits-them"])
@pytest.mark.parametrize("shape", ["single", "fleet"])
def test_clamped_arguments_are_never_reported_as_success(sim: Any, shape: str, omit: bool) -> None:
    vehicle = f"car-clamp-{shape}-{omit}"
    sim.state.configure(clamp_charge_limit=(50, 100), omit_create_arguments=omit)
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.3)
    if shape == "single":
        op: Any = VolterasCommandOperator(
            task_id="t",
            vehicle_id=vehicle,
            command="SET_CHARGE_LIMIT",
            arguments={"limit": 45},
            deferrable=False,
            timeout=10,
            poll_interval=0.5,
        )
    else:
        op = VolterasFleetCommandOperator(
            task_id="t",
            vehicle_ids=[vehicle],
            command="SET_CHARGE_LIMIT",
            arguments={"limit": 45},
            deferrable=False,
            timeout=10,
            poll_interval=0.5,
        )
    events = Events()
    with pytest.raises(VolterasFatalCommandError) as info:
        op.execute(context(Store(), op, events))
    assert info.value.reason == "ARGUMENTS_CHANGED"
    message = str(info.value)
    assert "limit=50" in message and "limit=45" in message
    assert vehicle in message
    assert events.added == []  # no asset event for a command that did not do what was asked
    assert creates(sim, vehicle) == 1


# -- 7. a lost create answer, a lagging listing and a 409: one execution, never two ------------------------------


def _single_or_fleet(shape: str, vehicle: str) -> Any:
    def make() -> Any:
        if shape == "single":
            return ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=20, poll_interval=0.5)
        return VolterasFleetCommandOperator(
            task_id="t", vehicle_ids=[vehicle], command="CLIMATE_OFF", deferrable=False, timeout=20, poll_interval=0.5
        )

    return make


def _status(result: Any, shape: str) -> str:
    return str(result["status"] if shape == "single" else result[0]["status"])


@pytest.mark.parametrize("shape", ["single", "fleet"])
def test_a_409_after_an_applied_create_is_our_own_command(sim: Any, shape: str) -> None:
    """The create is applied but answered 500; the listing lags its writes by 3 s, so the in-call retry gets
    409 COMMAND_ALREADY_IN_PROGRESS: that pending command is ours. The record keeps the create in flight and
    the next try adopts it: one execution for one intent."""
    vehicle = f"car-lag409-{shape}"
    sim.state.configure(listing_lag_seconds=3)
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=8)
    sim.state.add_fault("status", method="POST", path=vehicle + CREATE, count=1, status=500, apply=True)
    store = Store()
    results = tries(_single_or_fleet(shape, vehicle), store, 5, pause=1.5)
    first = results[0]
    assert isinstance(first, VolterasRetryableCommandError)
    if shape == "single":
        assert first.reason == "CREATE_OUTCOME_UNKNOWN"
    assert _status(results[-1], shape) == "EXECUTED"
    assert creates(sim, vehicle) == 1  # the 409 was our own pending command: never sent twice
    assert len(sim.state.executions(vehicle)) == 1


@pytest.mark.parametrize("shape", ["single", "fleet"])
def test_a_lost_create_answer_is_never_sent_again_while_the_listing_lags(sim: Any, shape: str) -> None:
    """The create is applied but its answer lost; the listing shows it only after 5 s. No try sends it again:
    the first gives up looking with the outcome unknown, a later one adopts it."""
    vehicle = f"car-lag-lost-{shape}"
    sim.state.configure(listing_lag_seconds=5)
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.5)
    sim.state.add_fault("drop_after", method="POST", path=vehicle + CREATE, count=1)
    store = Store()
    results = tries(_single_or_fleet(shape, vehicle), store, 6, pause=1.5)
    assert isinstance(results[0], VolterasRetryableCommandError)
    assert _status(results[-1], shape) == "EXECUTED"
    assert create_posts(sim, vehicle) == 1
    assert len(sim.state.executions(vehicle)) == 1


# -- 8. an execution that existed before the create is never adopted ----------------------------------------------


@pytest.mark.parametrize("status", ["QUEUED", None], ids=["QUEUED", "null"])
def test_an_execution_with_an_unknown_status_from_before_is_never_adopted(
    sim: Any, monkeypatch: pytest.MonkeyPatch, status: str | None
) -> None:
    """Another sender's execution is listed with a status outside the enum (or null) when the task notes what
    exists, then turns EXECUTED; the task's POST is reset before the API handles it. It must not take that
    execution for its own."""
    from airflow_provider_volteras.hooks.volteras import VolterasHook

    vehicle = f"car-before-{status}"
    foreign = sim.state.add_execution(vehicle, "CLIMATE_OFF", status=status)
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.3)
    sim.state.add_fault("drop_before", method="POST", path=vehicle + CREATE, count=1, reset=True)
    name = "recent_execution_ids" if hasattr(VolterasHook, "recent_execution_ids") else "command_execution_ids"
    noted = getattr(VolterasHook, name)

    def noted_then_finished(self: Any, *args: Any, **kwargs: Any) -> Any:
        ids = noted(self, *args, **kwargs)
        sim.state._executions[foreign["id"]].final_status = "EXECUTED"  # the other sender's command ends meanwhile
        return ids

    monkeypatch.setattr(VolterasHook, name, noted_then_finished)
    store = Store()
    results = tries(single(vehicle, timeout=10), store, 3, pause=0.5)
    assert all(getattr(r, "execution_id", None) != foreign["id"] for r in results)
    for result in results:
        if isinstance(result, dict):
            assert result["id"] != foreign["id"], "reported another sender's execution as this task's"
    assert creates(sim, vehicle) <= 1


# -- 9. the cost of a command does not grow with the vehicle's history --------------------------------------------


def test_a_long_history_costs_nothing_per_command(sim: Any) -> None:
    vehicle = "car-history"
    sim.state.seed_history(vehicle, "CLIMATE_OFF", 1300, age_seconds=86400)
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.3)
    store = Store()
    [result] = tries(single(vehicle, timeout=10), store, 1)
    assert isinstance(result, dict) and result["status"] == "EXECUTED"
    assert create_posts(sim, vehicle) == 1
    assert listings(sim, vehicle) <= 1  # the executions of the last minutes only, not 52 pages of history


def test_a_404_for_a_recorded_id_is_confirmed_with_one_listing_request(sim: Any) -> None:
    vehicle = "car-history-404"
    sim.state.seed_history(vehicle, "CLIMATE_OFF", 1300, age_seconds=86400)
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=3)
    store = Store()
    first = ClimateOffOperator(task_id="t", vehicle_id=vehicle, wait_for_completion=False)
    created = first.execute(context(store, first))
    before = listings(sim, vehicle)
    sim.state.add_fault("status", method="GET", path=vehicle + READ, count=1, status=404, error="RESOURCE_NOT_FOUND")
    [result] = tries(single(vehicle, timeout=10), store, 1)
    assert isinstance(result, dict) and result["id"] == created["id"]
    assert listings(sim, vehicle) - before == 1
    assert creates(sim, vehicle) == 1


# -- 12. the same names in both wait modes; no "nothing was sent" after a send ----------------------------------


def test_a_deadline_without_any_status_read_has_one_name_in_both_wait_modes(sim: Any) -> None:
    from airflow_provider_volteras.hooks.volteras import VolterasHook
    from airflow_provider_volteras.lifecycle.outcomes import Judge
    from airflow_provider_volteras.lifecycle.watch import wait_in_worker

    vehicle = "car-unread"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=600)
    execution = VolterasHook().create_command_execution(vehicle, "CLIMATE_OFF")
    sim.state.add_fault("status", method="GET", path=vehicle + READ, count=None, status=500)
    executions = {vehicle: execution["id"]}
    judge = Judge(command="CLIMATE_OFF", arguments=None)
    worker = wait_in_worker(
        VolterasHook(), executions, command="CLIMATE_OFF", deadline=time.time() + 2, poll_interval=0.5, log=_Log()
    )[vehicle]
    trigger = FleetCommandTrigger(
        command="CLIMATE_OFF", executions=executions, deadline=time.time() + 2, poll_interval=0.5
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    [triggered] = asyncio.run(first())["outcomes"]
    reasons = {judge.of_wait(worker, 2)["reason"], judge.of_wait(triggered, 2)["reason"]}
    assert reasons == {"STATUS_UNKNOWN_AT_DEADLINE"}


def test_a_triggerer_without_the_connection_does_not_say_nothing_was_sent() -> None:
    trigger = FleetCommandTrigger(
        command="CLIMATE_OFF",
        executions={"car-noconn": "e-1"},
        deadline=time.time() + 5,
        volteras_conn_id="volteras_missing_here",
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    payload = asyncio.run(first())
    assert payload["status"] == "error"
    message = payload["error"]["message"]
    assert "nothing was sent" not in message
    assert "already sent" in message


# -- 13. one asset event per execution, across tries ----------------------------------------------------------


@pytest.mark.parametrize("shape", ["single", "fleet"])
def test_an_execution_gets_one_asset_event_across_tries(sim: Any, shape: str) -> None:
    vehicle = f"car-asset-{shape}"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.3)
    store, events = Store(), Events()

    def make() -> Any:
        if shape == "single":
            return ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10, poll_interval=0.5)
        return VolterasFleetCommandOperator(
            task_id="t", vehicle_ids=[vehicle], command="CLIMATE_OFF", deferrable=False, timeout=10, poll_interval=0.5
        )

    # Try 1 succeeds; the scheduler then runs the task again (Airflow's defer-exit race): try 2 re-attaches.
    first = make()
    first.execute(context(store, first, events))
    second = make()
    result = second.execute(context(store, second, events))
    status = result["status"] if shape == "single" else result[0]["status"]
    assert status == "EXECUTED"
    assert [uri for uri, _ in events.added] == [f"volteras://vehicles/{vehicle}/commands/CLIMATE_OFF"]
    assert creates(sim, vehicle) == 1


def test_the_fleet_records_an_asset_event_per_executed_vehicle(sim: Any) -> None:
    vehicles = ["car-fleet-asset-1", "car-fleet-asset-2", "sim-fail-OEM_OAUTH_TOKEN_EXPIRED-d0.2"]
    for vid in vehicles[:2]:
        sim.state.set_scenario(vid, outcome="EXECUTED", delay=0.2)
    op = VolterasFleetCommandOperator(
        task_id="t", vehicle_ids=vehicles, command="CLIMATE_OFF", deferrable=False, timeout=10, poll_interval=0.5
    )
    events = Events()
    with pytest.raises(VolterasCommandError) as info:
        op.execute(context(Store(), op, events))
    assert sorted(uri for uri, _ in events.added) == [
        f"volteras://vehicles/{vid}/commands/CLIMATE_OFF" for vid in vehicles[:2]
    ]
    # A fleet failure names the failed vehicle, never "N of M vehicles", in vehicle_id.
    assert info.value.vehicle_id == "sim-fail-OEM_OAUTH_TOKEN_EXPIRED-d0.2"


def test_the_single_record_keeps_its_key_and_shape(sim: Any) -> None:
    vehicle = "car-record"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.2)
    store = Store()
    [result] = tries(single(vehicle, timeout=10), store, 1)
    record = store.values[STATE_KEY]
    assert record["vehicle_id"] == vehicle and record["command"] == "CLIMATE_OFF"
    assert record["id"] == result["id"] and record["final"]["classification"] == "executed"
    assert record["asset"] == result["id"]


class _Log:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("shape", ["single", "fleet"])
def test_a_rate_limited_failure_carries_the_vehicles_rate_limit_window(sim: Any, shape: str) -> None:
    """The retry delay of a rate-limited FAILED honours the vehicle's rate-limit window, in fleets too."""
    from airflow_provider_volteras.hooks.volteras import VolterasHook

    vehicle = "sim-fail-OEM_RATE_LIMITED-d0.2"
    windows = [r["windowSizeSeconds"] for r in VolterasHook().get_rate_limits(vehicle)]
    if shape == "single":
        op: Any = ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10, poll_interval=0.5)
    else:
        op = VolterasFleetCommandOperator(
            task_id="t",
            vehicle_ids=[vehicle, "sim-ok-rate-window"],
            command="CLIMATE_OFF",
            deferrable=False,
            timeout=10,
            poll_interval=0.5,
        )
    with pytest.raises(VolterasRetryableCommandError) as info:
        op.execute(context(Store(), op))
    assert info.value.delay_kind == "rate_limited"
    assert windows and info.value.rate_limit_window_seconds == max(windows)


# -- a fleet whose vehicles end apart: those that end in the worker's first seconds keep their outcome ------


def test_a_vehicle_that_ends_before_the_fleet_defers_keeps_its_outcome(sim: Any, monkeypatch: Any) -> None:
    from airflow_provider_volteras._compat import TaskDeferred
    from airflow_provider_volteras.lifecycle.task import CommandTaskMixin

    monkeypatch.setattr(CommandTaskMixin, "worker_first_seconds", 1.5)  # as deployed: watched in the worker first
    quick, slow = "car-ends-quick", "car-ends-slow"
    sim.state.set_scenario(quick, outcome="EXECUTED", delay=0.1)
    sim.state.set_scenario(slow, outcome="EXECUTED", delay=4.0)
    store, events = Store(), Events()
    op = VolterasFleetCommandOperator(
        task_id="t", vehicle_ids=[quick, slow], command="CLIMATE_OFF", deferrable=True, timeout=60, poll_interval=0.5
    )
    with pytest.raises(TaskDeferred) as info:
        op.execute(context(store, op, events))
    deferred = info.value
    # Only the vehicle still running is handed to the trigger.
    assert set(deferred.trigger.executions) == {slow}

    async def fire() -> Any:
        async for e in deferred.trigger.run():
            return e.payload
        raise AssertionError("the trigger fired no event")

    event = asyncio.run(fire())
    resumed = VolterasFleetCommandOperator(
        task_id="t", vehicle_ids=[quick, slow], command="CLIMATE_OFF", deferrable=True, timeout=60, poll_interval=0.5
    )
    result = resumed.execute_complete(context(store, resumed, events), event=event, **(deferred.kwargs or {}))
    assert {r["vehicle_id"]: r["status"] for r in result} == {quick: "EXECUTED", slow: "EXECUTED"}
    assert sorted(uri for uri, _ in events.added) == [
        f"volteras://vehicles/{vid}/commands/CLIMATE_OFF" for vid in sorted([quick, slow])
    ]
    assert creates(sim, quick) == 1 and creates(sim, slow) == 1
