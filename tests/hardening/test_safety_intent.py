"""Never report success for what was not asked, never send twice (issue 10, items 1 to 5).

Each test drives the real operator, hook or trigger against the simulator, with the simulator's
faults standing in for a hostile-but-plausible API, and counts what the API received.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_volteras._compat import AirflowTaskTimeout
from airflow_provider_volteras._core.intent import STATE_KEY
from airflow_provider_volteras.exceptions import (
    VolterasFatalCommandError,
    VolterasRetryableCommandError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import (
    ClimateOffOperator,
    SetChargeLimitOperator,
    SetTemperatureOperator,
    VolterasCommandOperator,
)
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger

CREATE_PATH = r"/command-execution:"
GET_PATH = r"/command-executions/[^/]+$"


class Store:
    """The task_state_store accessor, in memory; ``fail_on`` makes chosen writes raise."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.fail_on = fail_on or set()
        self.writes: list[dict[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        kind = "in_flight" if "in_flight" in value else "created"
        if kind in self.fail_on:
            raise RuntimeError(f"state store unavailable ({kind})")
        self.writes.append(value)
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class Ti:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(op: VolterasCommandOperator, store: Store) -> dict[str, Any]:
    return op.execute({"task_state_store": store, "ti": Ti()})


def tries(op_factory: Any, store: Store, count: int) -> list[Any]:
    """Run ``count`` tries of one task instance (same store), like Airflow retries; each try's outcome."""
    outcomes: list[Any] = []
    for _ in range(count):
        try:
            outcomes.append(run(op_factory(), store))
            break
        except VolterasRetryableCommandError as err:
            outcomes.append(err)
    return outcomes


def posts(sim: Any, vehicle_id: str) -> int:
    """POSTs of a command that reached the simulator's app (applied or refused), for this vehicle."""
    return sum(
        1
        for entry in sim.state.request_log()
        if entry["method"] == "POST" and f"/vehicles/{vehicle_id}/command-execution:" in entry["path"]
    )


def executions(sim: Any, vehicle_id: str) -> list[dict[str, Any]]:
    return sim.state.executions(vehicle_id)


async def first_event(trigger: CommandExecutionTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


# -- 1. adoption and re-attach only for the same arguments ----------------------------------------


def test_in_progress_wait_does_not_adopt_a_pending_command_with_other_arguments(sim: Any) -> None:
    vehicle = "car-args-1"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.5)
    blocking = sim.state.create_command(vehicle, "SET_CHARGE_LIMIT", {"limit": 55})
    op = SetChargeLimitOperator(task_id="t", vehicle_id=vehicle, limit=90, deferrable=False, timeout=10)
    with pytest.raises(VolterasRetryableCommandError) as info:
        run(op, Store())
    message = str(info.value)
    assert blocking["id"] in message and "limit=55" in message and "limit=90" in message
    assert info.value.reason == "COMMAND_ALREADY_IN_PROGRESS"
    assert [e["id"] for e in executions(sim, vehicle)] == [blocking["id"]]  # nothing else was created


def test_in_progress_wait_adopts_a_pending_command_with_the_same_arguments(sim: Any) -> None:
    vehicle = "car-args-2"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.5)
    blocking = sim.state.create_command(vehicle, "SET_CHARGE_LIMIT", {"limit": 90})
    op = SetChargeLimitOperator(task_id="t", vehicle_id=vehicle, limit=90, deferrable=False, timeout=10)
    store = Store()
    result = run(op, store)
    assert result["id"] == blocking["id"] and result["status"] == "EXECUTED"
    assert store.values[STATE_KEY]["id"] == blocking["id"]  # a retry would re-attach to it
    assert len(executions(sim, vehicle)) == 1


def test_a_retry_with_new_arguments_does_not_reattach_to_the_earlier_command(sim: Any) -> None:
    vehicle = "car-args-3"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=2.0)
    store = Store()

    def operator(degrees: float, wait: bool) -> SetTemperatureOperator:
        return SetTemperatureOperator(
            task_id="t",
            vehicle_id=vehicle,
            driver_temperature=degrees,
            passenger_temperature=degrees,
            deferrable=False,
            wait_for_completion=wait,
            timeout=10,
        )

    first = run(operator(18, wait=False), store)  # try 1 sends 18 °C, then its worker dies
    with pytest.raises(VolterasRetryableCommandError) as info:
        run(operator(26, wait=True), store)  # try 2 renders 26 °C
    assert first["id"] in str(info.value) and "driverTemperature=18" in str(info.value)
    assert len(executions(sim, vehicle)) == 1
    assert executions(sim, vehicle)[0]["commandArguments"] == {"driverTemperature": 18, "passengerTemperature": 18}


# -- 2. an unreadable create answer keeps the execution id: re-attach, never send again --------------


MUTATIONS = [
    {"kind": "extra_fields", "fields": {"vehicleId": "CAR-UNREAD"}},
    {"kind": "extra_fields", "fields": {"status": None}},
    {"kind": "unknown_status", "status_value": "QUEUED"},
    {"kind": "extra_fields", "fields": {"command": "CLIMATE_ON"}},
]
MUTATION_IDS = ["vehicle-id-case", "status-null", "status-unknown", "command-mismatch"]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=MUTATION_IDS)
def test_an_unreadable_create_answer_is_followed_by_its_id_not_sent_again(sim: Any, mutation: dict) -> None:
    vehicle = "car-unread"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.5)
    mutation = dict(mutation)
    kind = mutation.pop("kind")
    sim.state.add_fault(kind, method="POST", path=CREATE_PATH, count=None, **mutation)
    store = Store()
    outcomes = tries(
        lambda: ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store, 3
    )
    assert posts(sim, vehicle) == 1
    [execution] = executions(sim, vehicle)
    assert store.values[STATE_KEY]["id"] == execution["id"]
    # The status read of the issued id is readable, so the task reports the real outcome at once.
    assert len(outcomes) == 1 and outcomes[0]["id"] == execution["id"] and outcomes[0]["status"] == "EXECUTED"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=MUTATION_IDS)
def test_when_no_answer_about_the_execution_is_readable_every_retry_reattaches(sim: Any, mutation: dict) -> None:
    """Every answer about the vehicle's executions (create, reads, listing) is unreadable: three tries
    send the command once, and none reports success."""
    vehicle = "car-unread-all"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.2)
    mutation = dict(mutation)
    kind = mutation.pop("kind")
    sim.state.add_fault(kind, path=rf"/vehicles/{vehicle}/", count=None, **mutation)
    store = Store()
    outcomes = tries(
        lambda: ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=2, poll_interval=1),
        store,
        3,
    )
    assert len(outcomes) == 3 and all(isinstance(o, VolterasRetryableCommandError) for o in outcomes)
    assert posts(sim, vehicle) == 1, "an unreadable answer to a create that was applied must never be sent again"
    [execution] = executions(sim, vehicle)
    assert store.values[STATE_KEY]["id"] == execution["id"]


def test_a_2xx_create_answer_without_a_readable_id_is_adopted_from_the_listing(sim: Any) -> None:
    vehicle = "car-unread-json"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.5)
    sim.state.add_fault("malformed_json", method="POST", path=CREATE_PATH, count=None)
    store = Store()
    outcomes = tries(
        lambda: ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store, 3
    )
    [execution] = executions(sim, vehicle)
    assert posts(sim, vehicle) == 1
    assert outcomes[-1]["id"] == execution["id"] and outcomes[-1]["status"] == "EXECUTED"


# -- 3. a 404 for an id the API issued is a lag, not a wrong id ---------------------------------------


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "trigger"])
def test_read_after_write_404s_do_not_fail_the_task(sim: Any, deferrable: bool) -> None:
    vehicle = "car-lag"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.0)
    sim.state.add_fault("status", method="GET", path=GET_PATH, count=3, status=404, error="RESOURCE_NOT_FOUND")
    op = ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=20, poll_interval=1)
    store = Store()
    execution = run(op, store)
    assert execution["status"] == "EXECUTED"
    assert posts(sim, vehicle) == 1
    if deferrable:  # the same lag, met by the trigger
        sim.state.add_fault("status", method="GET", path=GET_PATH, count=3, status=404, error="RESOURCE_NOT_FOUND")
        payload = asyncio.run(
            first_event(
                CommandExecutionTrigger(
                    vehicle_id=vehicle,
                    command_execution_id=execution["id"],
                    deadline=time.time() + 20,
                    poll_interval=1,
                    command="CLIMATE_OFF",
                )
            )
        )
        assert payload["status"] == "executed" and payload["execution"]["id"] == execution["id"]


def test_a_404_while_reattaching_is_confirmed_through_the_listing(sim: Any) -> None:
    vehicle = "car-lag-resume"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.5)
    store = Store()
    first = run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, wait_for_completion=False), store)
    sim.state.add_fault("status", method="GET", path=GET_PATH, count=1, status=404, error="RESOURCE_NOT_FOUND")
    second = run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=20), store)
    assert second["id"] == first["id"] and second["status"] == "EXECUTED"
    assert posts(sim, vehicle) == 1


# -- 4. an answer about another command (or id) is never a success ------------------------------------


def test_the_hook_refuses_an_execution_of_another_command(sim: Any) -> None:
    other = sim.state.create_command("car-cmd", "CLIMATE_ON")
    with pytest.raises(VolterasUnexpectedResponseError, match="CLIMATE_ON"):
        VolterasHook().get_command_execution("car-cmd", other["id"], command="CLIMATE_OFF")


def test_the_trigger_never_reports_an_execution_of_another_command(sim: Any) -> None:
    sim.state.set_scenario("car-cmd-t", outcome="EXECUTED", delay=0)
    other = sim.state.create_command("car-cmd-t", "CLIMATE_ON")
    payload = asyncio.run(
        first_event(
            CommandExecutionTrigger(
                vehicle_id="car-cmd-t",
                command_execution_id=other["id"],
                deadline=time.time() + 2.5,
                poll_interval=1,
                command="CLIMATE_OFF",
            )
        )
    )
    assert payload["status"] == "timeout" and payload["execution"] is None


@pytest.mark.parametrize(
    "change",
    [{"command": "CLIMATE_ON"}, {"execution_id": "someone-elses"}, {"vehicle_id": "car-other"}],
    ids=["command", "id", "vehicle"],
)
def test_execute_complete_refuses_an_event_about_something_else(change: dict) -> None:
    wait = {
        "vehicle_id": "car-ev",
        "execution_id": "e-1",
        "status": "EXECUTED",
        "command": "CLIMATE_OFF",
        "has_arguments": False,
        "status_read": True,
    }
    op = ClimateOffOperator(task_id="t", vehicle_id="car-ev")
    kwargs: dict[str, Any] = {"settled": {}, "pending": {"car-ev": "e-1"}, "reattached": []}
    good = {"status": "done", "command": "CLIMATE_OFF", "outcomes": [wait]}
    assert op.execute_complete({}, good, **kwargs)["id"] == "e-1"
    with pytest.raises(VolterasRetryableCommandError) as info:
        op.execute_complete({}, {**good, "outcomes": [{**wait, **change}]}, **kwargs)
    assert info.value.reason == "UNEXPECTED_ANSWER"


def test_execute_complete_refuses_an_event_for_another_task() -> None:
    wait = {"vehicle_id": "car-ev", "execution_id": "e-1", "status": "EXECUTED", "command": "CLIMATE_OFF"}
    event = {"status": "done", "command": "CLIMATE_OFF", "outcomes": [wait]}
    op = ClimateOffOperator(task_id="t", vehicle_id="car-other")
    with pytest.raises(VolterasRetryableCommandError, match="has no outcome for execution"):
        op.execute_complete({}, event, settled={}, pending={"car-other": "e-2"}, reattached=[])


def test_a_wait_on_answers_about_another_command_never_succeeds(sim: Any) -> None:
    vehicle = "car-cmd-w"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.2)
    sim.state.add_fault("extra_fields", method="GET", path=GET_PATH, count=None, fields={"command": "CLIMATE_ON"})
    op = ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=2, poll_interval=1)
    with pytest.raises(VolterasRetryableCommandError):
        run(op, Store())


# -- 5. the window between create and the state-store write -------------------------------------------


def test_a_try_killed_between_the_post_and_its_answer_is_adopted_by_the_next_try(
    sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    vehicle = "car-window"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.0)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise AirflowTaskTimeout("execution_timeout while reading the create's answer")

    store = Store()
    with monkeypatch.context() as patch:
        patch.setattr(VolterasHook, "_created", killed)
        with pytest.raises(AirflowTaskTimeout):
            run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store)
    assert "in_flight" in store.values[STATE_KEY]
    result = run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store)
    [execution] = executions(sim, vehicle)
    assert result["id"] == execution["id"] and result["status"] == "EXECUTED"
    assert posts(sim, vehicle) == 1
    assert store.values[STATE_KEY]["id"] == execution["id"]


def test_a_slow_create_answer_cut_by_the_timeout_is_adopted_not_sent_again(sim: Any, monkeypatch: Any) -> None:
    """The server applies the create 3 s after the POST; the client gives up reading after 1 s. It never
    POSTs again: it watches the listing for a few seconds and adopts the execution there."""
    vehicle = "car-slow-create"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.5)
    sim.state.add_fault("slow", method="POST", path=CREATE_PATH, count=None, delay=3, apply=True)
    store = Store()
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        __import__("tests.conftest", fromlist=["connection_json"]).connection_json(
            sim.base_url, timeout=1, max_retries=0
        ),
    )
    results = tries(lambda: ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store, 3)
    [execution] = executions(sim, vehicle)
    assert isinstance(results[-1], dict) and results[-1]["id"] == execution["id"]
    assert posts(sim, vehicle) == 1


def test_a_state_store_that_cannot_record_the_create_stops_it_before_sending(sim: Any) -> None:
    vehicle = "car-store-down"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=0.2)
    broken = Store(fail_on={"in_flight"})
    with pytest.raises(VolterasRetryableCommandError, match="NOT sent") as info:
        run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), broken)
    assert info.value.reason == "STATE_STORE_ERROR"
    assert posts(sim, vehicle) == 0
    broken.fail_on.clear()  # the store is back: the retry sends once
    assert run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), broken)
    assert posts(sim, vehicle) == 1


def test_a_failed_write_of_the_issued_id_still_lets_a_retry_adopt(sim: Any, capsys: Any) -> None:
    vehicle = "car-store-flaky"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.0)
    store = Store(fail_on={"created"})
    first = run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, wait_for_completion=False), store)
    assert "Could not record the execution id" in capsys.readouterr().out
    store.fail_on.clear()
    second = run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store)
    assert second["id"] == first["id"] and posts(sim, vehicle) == 1


def test_a_fatal_answer_from_an_earlier_try_is_not_resent_even_when_only_in_flight(sim: Any) -> None:
    """A try that recorded only "in flight" and whose command then FAILED fatally: the retry adopts it
    and reports the fatal outcome, never sending again."""
    vehicle = "car-inflight-fatal"
    sim.state.set_scenario(vehicle, outcome="FAILED", failed_reason="OEM_OAUTH_TOKEN_EXPIRED", delay=0)
    store = Store(fail_on={"created"})
    run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, wait_for_completion=False), store)
    store.fail_on.clear()
    with pytest.raises(VolterasFatalCommandError, match="already got this final answer"):
        run(ClimateOffOperator(task_id="t", vehicle_id=vehicle, deferrable=False, timeout=10), store)
    assert posts(sim, vehicle) == 1


def test_the_sensor_waits_through_a_read_after_write_404(sim: Any) -> None:
    """The two-task pattern: the sensor's first read of the id the operator pushed may come too early."""
    from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

    vehicle = "car-lag-sensor"
    sim.state.set_scenario(vehicle, outcome="EXECUTED", delay=1.0)
    created = run(ClimateOffOperator(task_id="send", vehicle_id=vehicle, wait_for_completion=False), Store())
    sim.state.add_fault("status", method="GET", path=GET_PATH, count=2, status=404, error="RESOURCE_NOT_FOUND")
    sensor = CommandExecutionSensor(
        task_id="wait", vehicle_id=vehicle, command_execution_id=created["id"], deferrable=False, timeout=20
    )
    result = sensor.execute({"task_state_store": Store(), "ti": Ti()})
    assert result["id"] == created["id"] and result["status"] == "EXECUTED"
    assert posts(sim, vehicle) == 1
