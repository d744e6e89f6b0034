"""Unit tests of the pure state machine, with a hand-driven clock (no HTTP, no sleeping)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from airflow_provider_volteras.simulator import MAGIC_VEHICLE_IDS, SimulatorError, SimulatorState
from airflow_provider_volteras.simulator.state import (
    COMMAND_SLUGS,
    FAILED_REASONS,
    VEHICLE_COMMANDS,
    parse_magic_vehicle_id,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> SimulatorState:
    return SimulatorState(default_delay=1.0, command_timeout=300.0, clock=clock)


@pytest.mark.parametrize(
    ("vehicle_id", "missing", "outcome", "reason", "delay"),
    [
        ("sim-ok", False, "EXECUTED", None, None),
        ("sim-ok-d30", False, "EXECUTED", None, 30.0),
        ("truck-17", False, "EXECUTED", None, None),
        ("sim-fail-OEM_VEHICLE_OFFLINE", False, "FAILED", "OEM_VEHICLE_OFFLINE", None),
        ("sim-fail-OEM_TIMEOUT-d2.5", False, "FAILED", "OEM_TIMEOUT", 2.5),
        ("sim-fail-OEM_VEHICLE_OFFLINE-car2-d1", False, "FAILED", "OEM_VEHICLE_OFFLINE", 1.0),
        ("sim-fail-text", False, "FAILED", "Vehicle did not respond", None),
        ("sim-fail-text-d0", False, "FAILED", "Vehicle did not respond", 0.0),
        ("sim-fail", False, "FAILED", "OEM_COMMAND_FAILED", None),
        ("sim-stuck-4", False, "PENDING", None, None),
        ("sim-missing", True, "EXECUTED", None, None),
        ("sim-missing-d3", True, "EXECUTED", None, None),
        ("", True, "EXECUTED", None, None),
        ("has space", True, "EXECUTED", None, None),
        ("x" * 129, True, "EXECUTED", None, None),
    ],
)
def test_magic_vehicle_ids(
    vehicle_id: str, missing: bool, outcome: str, reason: str | None, delay: float | None
) -> None:
    magic = parse_magic_vehicle_id(vehicle_id)
    assert (magic.missing, magic.outcome, magic.failed_reason, magic.delay) == (missing, outcome, reason, delay)


def test_magic_id_help_mentions_every_prefix() -> None:
    for prefix in ("sim-ok", "sim-fail-<REASON>", "sim-fail-text", "sim-stuck", "sim-missing", "-d<seconds>"):
        assert prefix in MAGIC_VEHICLE_IDS


def test_constants_are_consistent() -> None:
    assert len(COMMAND_SLUGS) == 13 and set(COMMAND_SLUGS.values()) <= set(VEHICLE_COMMANDS)
    assert len(FAILED_REASONS) == len(set(FAILED_REASONS)) == 36


def test_status_is_computed_lazily_from_the_clock(state: SimulatorState, clock: Clock) -> None:
    created = state.create_command("sim-ok-d2", "CLIMATE_ON")
    assert created["status"] == "PENDING"
    clock.advance(1.999)
    assert state.get_execution("sim-ok-d2", created["id"])["status"] == "PENDING"
    clock.advance(0.001)
    done = state.get_execution("sim-ok-d2", created["id"])
    assert done["status"] == "EXECUTED"
    assert done["executedAt"] == "2023-11-14T22:13:22.000000Z"
    times = state.mark_times(created["id"])
    assert times["terminalAt"] == times["createdAt"] + 2 == times["firstServedTerminalAt"]


def test_delays_at_or_beyond_the_timeout_fail_with_the_platform_timeout(state: SimulatorState, clock: Clock) -> None:
    state.configure(command_timeout=10)
    late = state.create_command("sim-ok-d10", "LOCK_DOORS")
    stuck = state.create_command("sim-stuck", "LOCK_DOORS")
    quick = state.create_command("sim-fail-OEM_UNAVAILABLE-d9.5", "LOCK_DOORS")
    clock.advance(9.9)
    assert state.get_execution("sim-ok-d10", late["id"])["status"] == "PENDING"
    assert state.get_execution("sim-fail-OEM_UNAVAILABLE-d9.5", quick["id"])["failedReason"] == "OEM_UNAVAILABLE"
    clock.advance(0.1)
    for vehicle, execution in (("sim-ok-d10", late), ("sim-stuck", stuck)):
        polled = state.get_execution(vehicle, execution["id"])
        assert (polled["status"], polled["failedReason"], polled["timeout"]) == ("FAILED", "OEM_COMMAND_TIMEOUT", 10)


def test_pending_conflict_lasts_until_the_command_finishes(state: SimulatorState, clock: Clock) -> None:
    first = state.create_command("car", "STOP_CHARGING")
    with pytest.raises(SimulatorError) as conflict:
        state.create_command("car", "STOP_CHARGING")
    assert (conflict.value.code, conflict.value.status) == ("COMMAND_ALREADY_IN_PROGRESS", 409)
    assert conflict.value.data == {"commandExecutionId": first["id"]}
    clock.advance(1.0)
    assert state.create_command("car", "STOP_CHARGING")["id"] != first["id"]


def test_sequence_steps_are_consumed_per_create(state: SimulatorState, clock: Clock) -> None:
    state.set_scenario(
        "car",
        delay=0,
        sequence=[
            {"outcome": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"},
            {"outcome": "PENDING"},
            {"outcome": "EXECUTED", "delaySeconds": 5},
        ],
    )
    first = state.create_command("car", "CLIMATE_ON")
    second = state.create_command("car", "CLIMATE_OFF")
    third = state.create_command("car", "LOCK_DOORS")
    fourth = state.create_command("car", "UNLOCK_DOORS")
    clock.advance(4)
    assert [state.get_execution("car", e["id"])["status"] for e in (first, second, third, fourth)] == [
        "FAILED",
        "PENDING",
        "PENDING",
        "EXECUTED",
    ]
    assert state.scenario("car")["sequence"] == []


def test_scenario_fields_fall_back_to_the_magic_id(state: SimulatorState) -> None:
    assert state.set_scenario("sim-fail-OEM_TIMEOUT-d4", delay=1)["failedReason"] == "OEM_TIMEOUT"
    assert state.set_scenario("sim-fail-OEM_TIMEOUT-d4", outcome="EXECUTED")["failedReason"] is None
    assert state.set_scenario("sim-ok", outcome="FAILED")["failedReason"] == "OEM_COMMAND_FAILED"
    assert state.scenario("sim-fail-OEM_TIMEOUT-d4")["delaySeconds"] == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"outcome": "DONE"}, {"delay": -1}, {"sequence": [{"outcome": "MAYBE"}]}, {"rate_limit_window_seconds": 0}],
)
def test_invalid_scenarios_are_refused(state: SimulatorState, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        state.set_scenario("car", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"token_ttl": 0}, {"command_timeout": -1}, {"default_delay": -0.1}, {"client_id": ""}]
)
def test_invalid_settings_are_refused(state: SimulatorState, kwargs: dict[str, object]) -> None:
    before = state.config
    with pytest.raises(ValueError):
        state.configure(**kwargs)  # type: ignore[arg-type]
    assert state.config == before


@pytest.mark.parametrize(
    "kwargs", [{"kind": "teleport"}, {"kind": "status", "count": 0}, {"kind": "status", "status": 200}]
)
def test_invalid_faults_are_refused(state: SimulatorState, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        state.add_fault(**kwargs)  # type: ignore[arg-type]


def test_tokens_expire_by_the_clock(state: SimulatorState, clock: Clock) -> None:
    token = state.issue_token(
        "client_credentials", client_id="volteras-sim-client", client_secret="volteras-sim-secret"
    )
    header = f"Bearer {token['access_token']}"
    clock.advance(3599.9)
    assert state.authenticate(header) == "volteras-sim-client"
    clock.advance(0.1)
    with pytest.raises(SimulatorError, match="expired"):
        state.authenticate(header)
    renewed = state.issue_token("refresh_token", refresh_token=token["refresh_token"])
    assert state.authenticate(f"Bearer {renewed['access_token']}") == "volteras-sim-client"


def test_counter_snapshots_are_independent_copies(state: SimulatorState) -> None:
    state.create_command("car", "CLIMATE_ON")
    snapshot = state.counters()
    snapshot["creates"]["car"]["CLIMATE_ON"] = 99
    assert state.counters()["creates"] == {"car": {"CLIMATE_ON": 1}}


def test_creates_are_atomic_across_threads(state: SimulatorState) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def create(command: str) -> None:
        barrier.wait()
        try:
            state.create_command("car", command)
            outcomes.append("created")
        except SimulatorError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=create, args=(cmd,)) for cmd in ["CLIMATE_ON"] * 8 + ["LOCK_DOORS"] * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("created") == 2 and outcomes.count("COMMAND_ALREADY_IN_PROGRESS") == 14
    assert state.counters()["creates"] == {"car": {"CLIMATE_ON": 1, "LOCK_DOORS": 1}}


def test_request_log_is_bounded(clock: Clock) -> None:
    state = SimulatorState(request_log_size=3, clock=clock)
    for i in range(5):
        state.begin_request("GET", f"/v1/vehicles/{i}", "vehicle", None, str(i))
    assert [e["requestId"] for e in state.request_log()] == ["2", "3", "4"]
    assert state.counters()["requests"] == 5


def test_importing_the_package_does_not_import_fastapi_or_uvicorn() -> None:
    code = (
        "import sys, airflow_provider_volteras.simulator as s\n"
        "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules, 'eager import'\n"
        "s.SimulatorState().create_command('car', 'CLIMATE_ON')\n"
        "assert s.SimulatorServer.__name__ == 'SimulatorServer' and 'uvicorn' in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
