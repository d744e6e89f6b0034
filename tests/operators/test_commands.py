"""Command operators through ``dag.test()`` against the simulator: task states, tries and creates."""

from __future__ import annotations

import pytest

from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger
from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger
from tests.dag_runner import install_dags, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dags(airflow_db):
    return install_dags(airflow_db)


@pytest.fixture
def triggers(monkeypatch):
    """Records every trigger that really ran (fleet and single-execution), with its serialized kwargs."""
    seen: list[dict] = []
    for cls in (FleetCommandTrigger, CommandExecutionTrigger):
        original = cls.run

        def recording(original=original):
            async def recording_run(self):
                seen.append(self.serialize()[1])
                async for event in original(self):
                    yield event

            return recording_run

        monkeypatch.setattr(cls, "run", recording())
    return seen


def creates(sim, vehicle_id: str, command: str = "CLIMATE_OFF") -> int:
    return sim.state.counters()["creates"].get(vehicle_id, {}).get(command, 0)


MODES = ["vt_deferrable", "vt_sync"]


@pytest.mark.parametrize("dag_id", MODES)
def test_executed_command_succeeds_at_first_try(sim, dags, triggers, dag_id):
    result = run(getattr(dags, dag_id), {"vehicle_id": "sim-ok-1"})
    assert result.state == "success"
    assert result.task().try_number == 1
    assert creates(sim, "sim-ok-1") == 1
    [execution] = sim.state.executions("sim-ok-1")
    assert execution["status"] == "EXECUTED"
    # Deferrable mode really deferred (the trigger ran); sync mode never did.
    assert len(triggers) == (1 if dag_id == "vt_deferrable" else 0)
    if triggers:
        kwargs = triggers[0]
        # The single operator is a fleet of one: it waits in the fleet trigger, on its one execution.
        assert kwargs["executions"] == {"sim-ok-1": execution["id"]} and kwargs["command"] == "CLIMATE_OFF"
        flat = repr(kwargs)
        assert "volteras-sim-secret" not in flat and "Bearer" not in flat
        assert set(kwargs) == {"command", "executions", "deadline", "volteras_conn_id", "poll_interval", "hold_until"}


@pytest.mark.parametrize("dag_id", MODES)
@pytest.mark.parametrize(
    "vehicle_id",
    ["sim-fail-OEM_OAUTH_TOKEN_EXPIRED", "sim-fail-OEM_VEHICLE_REMOTE_ACCESS_DISABLED", "sim-fail-NOT_PERMITTED"],
)
def test_fatal_reason_fails_at_first_try_with_retries_left(sim, dags, dag_id, vehicle_id):
    result = run(getattr(dags, dag_id), {"vehicle_id": vehicle_id})
    assert result.state == "failed"
    assert result.task().state == "failed"
    assert result.task().try_number == 1  # retries=2 were not used
    assert creates(sim, vehicle_id) == 1


@pytest.mark.parametrize("dag_id", MODES)
def test_retryable_reason_retries_and_resends(sim, dags, dag_id):
    vid = "car-retry"
    sim.state.set_scenario(
        vid,
        outcome="EXECUTED",
        delay=0.2,
        sequence=[{"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE", "delaySeconds": 0.2}],
    )
    result = run(getattr(dags, dag_id), {"vehicle_id": vid})
    assert result.state == "success"
    assert result.task().try_number == 2
    assert creates(sim, vid) == 2  # one create per try
    assert [e["status"] for e in sim.state.executions(vid)] == ["FAILED", "EXECUTED"]


def test_retryable_reason_exhausts_retries(sim, dags):
    vid = "sim-fail-OEM_COMMAND_TIMEOUT-d0.2"
    result = run(dags.vt_deferrable, {"vehicle_id": vid})
    assert result.state == "failed"
    assert result.task().try_number == 3
    assert creates(sim, vid) == 3


@pytest.mark.parametrize("dag_id", MODES)
def test_unknown_plain_string_reason_is_retryable(sim, dags, dag_id):
    vid = "sim-fail-text-d0.2"
    result = run(getattr(dags, dag_id), {"vehicle_id": vid})
    assert result.state == "failed"
    assert result.task().try_number == 3
    assert creates(sim, vid) == 3


@pytest.mark.parametrize(
    ("conf", "expected_requests"),
    [
        ({"vehicle_id": "bad/id"}, 0),
        ({"vehicle_id": "car-1", "command": "NOT_A_COMMAND"}, 0),
        ({"vehicle_id": "car-1", "command": "WAKE_UP"}, 0),
        ({"vehicle_id": "car-1", "command": "SET_CHARGE_LIMIT", "arguments": {"limit": 101}}, 0),
    ],
)
def test_bad_input_fails_fatal_before_any_request(sim, dags, conf, expected_requests):
    result = run(dags.vt_deferrable, conf)
    assert result.state == "failed"
    assert result.task().try_number == 1
    assert sim.state.counters()["requests"] == expected_requests


@pytest.mark.parametrize("dag_id", MODES)
def test_unknown_vehicle_is_fatal(sim, dags, dag_id):
    result = run(getattr(dags, dag_id), {"vehicle_id": "sim-missing-1"})
    assert result.state == "failed"
    assert result.task().try_number == 1
    assert sim.state.counters()["createsTotal"] == 0


def test_server_errors_at_create_are_retried_by_the_task(sim, dags):
    # More 500s than the hook's own retries (3 in the test connection): the try fails, the task retries.
    sim.state.add_fault("status", method="POST", path="climate-off", status=500, count=4)
    result = run(dags.vt_deferrable, {"vehicle_id": "sim-ok-5"})
    assert result.state == "success"
    assert result.task().try_number == 2
    assert creates(sim, "sim-ok-5") == 1


def test_set_temperature_sends_typed_arguments(sim, dags):
    conf = {
        "vehicle_id": "car-t",
        "command": "SET_TEMPERATURE",
        "arguments": {"driverTemperature": 21.5, "passengerTemperature": 20},
    }
    result = run(dags.vt_deferrable, conf)
    assert result.state == "success"
    [execution] = sim.state.executions("car-t")
    assert execution["command"] == "SET_TEMPERATURE"
    assert execution["commandArguments"] == {"driverTemperature": 21.5, "passengerTemperature": 20.0}


def test_already_in_progress_adopts_the_pending_execution(sim, dags, triggers):
    vid = "car-busy"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=3)
    pending = VolterasHook().create_command_execution(vid, "CLIMATE_OFF")
    result = run(dags.vt_deferrable, {"vehicle_id": vid})
    assert result.state == "success"
    assert result.task().try_number == 1
    assert creates(sim, vid) == 1  # the task adopted, it did not send another
    assert triggers[0]["executions"] == {vid: pending["id"]}


def test_already_in_progress_fail(sim, dags):
    vid = "car-busy-fail"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=5)
    VolterasHook().create_command_execution(vid, "CLIMATE_OFF")
    result = run(dags.vt_in_progress_fail, {"vehicle_id": vid})
    assert result.state == "failed"
    assert result.task().try_number == 1
    assert creates(sim, vid) == 1


def test_already_in_progress_skip(sim, dags):
    vid = "car-busy-skip"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=5)
    VolterasHook().create_command_execution(vid, "CLIMATE_OFF")
    result = run(dags.vt_in_progress_skip, {"vehicle_id": vid})
    assert result.task().state == "skipped"
    assert creates(sim, vid) == 1


def test_rerun_after_crash_reattaches(sim, dags):
    vid = "car-crash"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=4)
    result = run(dags.vt_crash, {"vehicle_id": vid})
    assert result.state == "success"
    assert result.task().try_number == 2
    assert creates(sim, vid) == 1  # try 2 re-attached to the execution try 1 created


@pytest.mark.parametrize("dag_id", ["vt_deadline", "vt_deadline_sync"])
def test_deadline_reached_fails_retryable_and_retry_reattaches(sim, dags, dag_id):
    vid = "sim-stuck-1"
    result = run(getattr(dags, dag_id), {"vehicle_id": vid})
    assert result.state == "failed"
    assert result.task().try_number == 2  # the timeout was retryable: the retry ran
    assert creates(sim, vid) == 1  # and it re-attached to the still-pending execution


def test_per_task_overrides(sim, dags):
    fatal_by_override = run(dags.vt_overrides, {"vehicle_id": "sim-fail-OEM_VEHICLE_OFFLINE-d0.2"})
    assert fatal_by_override.state == "failed" and fatal_by_override.task().try_number == 1
    retryable_by_override = run(dags.vt_overrides, {"vehicle_id": "sim-fail-OEM_OAUTH_TOKEN_EXPIRED-d0.2"})
    assert retryable_by_override.state == "failed" and retryable_by_override.task().try_number == 3


def test_retry_policy_fails_fatal_and_retries_retryable(sim, dags):
    fatal = run(dags.vt_policy, {"vehicle_id": "sim-fail-OEM_DEVICE_NOT_FOUND-d0.2"})
    assert fatal.state == "failed" and fatal.task().try_number == 1
    vid = "car-policy"
    sim.state.set_scenario(
        vid,
        outcome="EXECUTED",
        delay=0.2,
        rate_limit_window_seconds=2,  # the policy waits at least the vehicle's window: keep the test short
        sequence=[{"outcome": "FAILED", "failedReason": "OEM_RATE_LIMITED", "delaySeconds": 0.2}],
    )
    retried = run(dags.vt_policy, {"vehicle_id": vid})
    assert retried.state == "success" and retried.task().try_number == 2
    assert sim.state.counters()["rateLimitRequests"] >= 1  # the window was read from /v1/rate-limits


def test_two_task_pattern_with_deferrable_sensor(sim, dags, triggers):
    sim.state.set_scenario("sim-ok-two", outcome="EXECUTED", delay=3)  # still pending when the sensor starts
    result = run(dags.vt_two_task, {"vehicle_id": "sim-ok-two"})
    assert result.state == "success"
    assert result.task("send").state == "success" and result.task("wait").state == "success"
    assert creates(sim, "sim-ok-two") == 1
    assert len(triggers) == 1


def test_two_task_pattern_sensor_fails_fatal(sim, dags):
    result = run(dags.vt_two_task, {"vehicle_id": "sim-fail-OEM_INCORRECT_REGION-d0.5"})
    assert result.task("send").state == "success"
    assert result.task("wait").state == "failed"
    assert result.task("wait").try_number == 1


def test_dynamic_task_mapping(sim, dags):
    result = run(dags.vt_mapped)
    states = {mi: result.task("send", mi).state for mi in range(3)}
    assert states == {0: "success", 1: "success", 2: "failed"}
    assert result.task("send", 2).try_number == 1
    assert creates(sim, "sim-ok-a") == creates(sim, "sim-ok-b") == creates(sim, "sim-fail-OEM_OAUTH_TOKEN_EXPIRED") == 1
