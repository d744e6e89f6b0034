"""The single-vehicle operator is a fleet of one: the same vehicle case gives the same outcome in every shape.

Each case is run through three shapes, each on its own vehicle id (the simulator is shared):

* ``single``: ``VolterasCommandOperator(vehicle_id=v)``;
* ``fleet1``: ``VolterasFleetCommandOperator(vehicle_ids=[v])``;
* ``fleet3``: ``VolterasFleetCommandOperator(vehicle_ids=[ok_a, v, ok_b])``, two healthy ``sim-ok-*`` vehicles
  around the case's vehicle (faults are scoped to the case's vehicle by their path regex).

Every shape runs "tries" of one task instance, as Airflow retries would: ``execute`` with the same in-memory
task state store until it succeeds, fails fatally, or ``Case.max_tries`` tries ran. For the case's vehicle,
every try must give the same classification, status, reason, origin, kind of execution id (ours, another
client's, none), and task failure (none, retryable or fatal, with its reason) in all shapes, and so must the
simulator's count of creates and of create POST attempts, after the first try and after the last. For a
fleet the failure is its summary error, whose class and reason must be the single operator's when only the
case's vehicle failed. The healthy vehicles of ``fleet3`` must execute once and never be sent again.

Exceptions: in ``clamped`` the simulator's clamp is global and a fleet sends one set of arguments, so the
companions are clamped too (``clamp-reported`` clamps the case's vehicle alone, through a scoped fault). A
case marked ``xfail(strict=True, raises=SentTwice)`` is a product bug that is the same in every shape: the
shapes must still agree, only the count of creates is wrong.

The operators are driven without a scheduler: ``deferrable=False`` (the in-worker wait), short timeouts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasFatalCommandError,
    VolterasRetryableCommandError,
)
from airflow_provider_volteras.lifecycle.records import FLEET_STATE_KEY, STATE_KEY
from airflow_provider_volteras.operators.commands import VolterasCommandOperator
from airflow_provider_volteras.operators.fleet import VolterasFleetCommandOperator

SHAPES = ("single", "fleet1", "fleet3")
DELAY = 0.2
POLL_INTERVAL = 0.2
TIMEOUT = 5.0


class Store:
    """The task_state_store accessor, in memory; values go through JSON like the real store's."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def record(self, key: str) -> Any:
        return self.get(key)


class Ti:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


# -- the cases ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Try:
    """One try as seen for the case's vehicle (what must be the same in every shape)."""

    classification: str
    status: str
    reason: str | None
    origin: str | None
    execution: str | None  # None, "ours" (created for this task) or "foreign" (another client's)
    failure: str | None  # None, "retryable" or "fatal": the task's failure class
    failure_reason: str | None


@dataclass(frozen=True)
class Case:
    name: str
    #: Vehicle id prefix (the simulator's magic ids: sim-ok, sim-fail-REASON, sim-fail-text, sim-stuck).
    base: str = "sim-ok"
    #: Seconds the case vehicle's commands stay PENDING (the -d suffix of its id).
    delay: float = DELAY
    command: str = "CLIMATE_OFF"
    arguments: dict[str, Any] | None = None
    #: ``arrange(sim, vehicle_id)``: scenarios, faults (scoped to the vehicle) and foreign executions.
    arrange: Callable[[Any, str], Any] | None = None
    #: Simulator settings (global: they apply to the companion vehicles of ``fleet3`` too).
    config: dict[str, Any] = field(default_factory=dict)
    timeout: float = TIMEOUT
    max_tries: int = 3
    #: Seconds between two tries (Airflow's retry delay).
    pause: float = 0.0
    #: Expected per try, and the simulator's creates / create POST attempts after the first try and in all.
    tries: tuple[Try, ...] = ()
    creates: int = 1
    create_attempts: int = 1
    total_creates: int | None = None
    total_create_attempts: int | None = None
    #: The companions' classification in ``fleet3`` (a global setting such as the clamp hits them too).
    companions: str = "executed"
    #: ``arrange`` adds faults: each shape must meet at least one (else the case tests nothing).
    faulted: bool = False
    #: A known product bug that is the same in every shape: the case fails (strictly) with ``SentTwice``.
    sent_twice: str | None = None

    def vehicle_id(self, shape: str) -> str:
        return f"{self.base}-{self.name}-{shape}-d{self.delay:g}"


def done(origin: str | None = "sent", execution: str | None = "ours") -> Try:
    return Try("executed", "EXECUTED", None, origin, execution, None, None)


def retryable(status: str, reason: str, origin: str | None = "sent", execution: str | None = "ours") -> Try:
    return Try("retryable", status, reason, origin, execution, "retryable", reason)


def fatal(status: str, reason: str, origin: str | None = "sent", execution: str | None = "ours") -> Try:
    return Try("fatal", status, reason, origin, execution, "fatal", reason)


def create_path(vehicle: str) -> str:
    return rf"^/v1/vehicles/{re.escape(vehicle)}/command-execution:"


def status_path(vehicle: str) -> str:
    return rf"^/v1/vehicles/{re.escape(vehicle)}/command-executions/[^/]+$"


def _sequence(sim: Any, vehicle: str) -> None:
    sim.state.set_scenario(
        vehicle,
        sequence=[
            {"outcome": "FAILED", "failed_reason": "OEM_VEHICLE_OFFLINE", "delay": DELAY},
            {"outcome": "EXECUTED", "delay": DELAY},
        ],
    )


def _lost_create_answer(sim: Any, vehicle: str) -> None:
    sim.state.add_fault("drop_after", method="POST", path=create_path(vehicle), count=1)


def _create_500(sim: Any, vehicle: str) -> None:
    sim.state.add_fault("status", method="POST", path=create_path(vehicle), count=1, status=500)


def _create_500_applied(sim: Any, vehicle: str) -> None:
    sim.state.add_fault("status", method="POST", path=create_path(vehicle), count=1, status=500, apply=True)


def _foreign(limit: int) -> Callable[[Any, str], Any]:
    def arrange(sim: Any, vehicle: str) -> Any:
        return sim.state.add_execution(
            vehicle, "SET_CHARGE_LIMIT", status="PENDING", arguments={"limit": limit}, delay=1.0
        )

    return arrange


def _reported_clamp(sim: Any, vehicle: str) -> None:
    # Every answer about this vehicle's executions reports the limit clamped to 50 (the companions are untouched).
    sim.state.add_fault(
        "extra_fields",
        path=rf"^/v1/vehicles/{re.escape(vehicle)}/",
        count=None,
        fields={"commandArguments": {"limit": 50}},
    )


def _history_and_lost_answer(sim: Any, vehicle: str) -> None:
    sim.state.seed_history(vehicle, "CLIMATE_OFF", 500, age_seconds=3600)
    sim.state.seed_history(vehicle, "CLIMATE_OFF", 5, status="FAILED", age_seconds=30)
    _lost_create_answer(sim, vehicle)


def _status_404s(sim: Any, vehicle: str) -> None:
    sim.state.add_fault(
        "status", method="GET", path=status_path(vehicle), count=3, status=404, error="RESOURCE_NOT_FOUND"
    )


def _status_429(sim: Any, vehicle: str) -> None:
    sim.state.add_fault("rate_limit", method="GET", path=status_path(vehicle), count=1, retry_after=1)


CHARGE_90 = {"command": "SET_CHARGE_LIMIT", "arguments": {"limit": 90}}
CHARGE_45 = {"command": "SET_CHARGE_LIMIT", "arguments": {"limit": 45}}

CASES: tuple[Case, ...] = (
    Case("executed", tries=(done(),)),
    Case(
        "fatal-reason",
        base="sim-fail-OEM_OAUTH_TOKEN_EXPIRED",
        tries=(fatal("FAILED", "OEM_OAUTH_TOKEN_EXPIRED"),),
    ),
    Case(
        "retryable-then-executed",
        arrange=_sequence,
        tries=(retryable("FAILED", "OEM_VEHICLE_OFFLINE"), done()),
        total_creates=2,
        total_create_attempts=2,
    ),
    Case(
        "plain-text-reason",
        base="sim-fail-text",
        tries=(retryable("FAILED", "Vehicle did not respond"),) * 3,
        total_creates=3,
        total_create_attempts=3,
    ),
    Case("lost-create-answer", arrange=_lost_create_answer, faulted=True, tries=(done(),)),
    Case(
        "lost-create-answer-long-history",
        arrange=_history_and_lost_answer,
        faulted=True,
        tries=(done(),),
    ),
    Case(
        # The create's answer is lost while the command is still PENDING, and the listing does not show it
        # yet: it is never POSTed again; the hook keeps looking at the listing and adopts it there.
        "lost-create-answer-listing-lag",
        delay=1.5,
        arrange=_lost_create_answer,
        faulted=True,
        config={"listing_lag_seconds": 1.0},
        pause=1.2,
        # The hook keeps looking at the listing for a few seconds after a lost answer: adopted in try 1.
        tries=(done(),),
        create_attempts=1,
    ),
    Case(
        # The same, but the command has already ended by the time the listing shows it (no 409 could tell):
        # the lost create is never sent again; the hook keeps looking at the listing for a few seconds
        # and adopts it there.
        "lost-create-answer-listing-lag-fast",
        delay=0,
        arrange=_lost_create_answer,
        faulted=True,
        config={"listing_lag_seconds": 1.0},
        tries=(done(),),
        create_attempts=1,
    ),
    Case("create-500", arrange=_create_500, faulted=True, tries=(done(),), create_attempts=2),
    Case("create-500-applied", arrange=_create_500_applied, faulted=True, tries=(done(),)),
    Case(
        "foreign-same-arguments",
        arrange=_foreign(90),
        **CHARGE_90,
        tries=(done(execution="foreign"),),
        creates=0,
    ),
    Case(
        "foreign-other-arguments",
        arrange=_foreign(55),
        **CHARGE_90,
        pause=1.3,  # the foreign command (1 s) has ended when the retry runs
        tries=(retryable("NOT_SENT", "COMMAND_ALREADY_IN_PROGRESS", execution=None), done()),
        creates=0,
        total_creates=1,
        total_create_attempts=2,
    ),
    Case(
        "clamped",
        config={"clamp_charge_limit": (50, 100)},
        **CHARGE_45,
        tries=(fatal("EXECUTED", "ARGUMENTS_CHANGED"),),
        companions="fatal",  # the clamp is global and the fleet sends 45 to every vehicle
    ),
    Case(
        "clamp-reported",
        arrange=_reported_clamp,
        faulted=True,
        **CHARGE_45,
        tries=(fatal("EXECUTED", "ARGUMENTS_CHANGED"),),
    ),
    Case(
        "pending-at-deadline",
        delay=3.0,
        timeout=1.0,
        pause=2.5,  # the command has EXECUTED when the retry re-attaches
        tries=(retryable("PENDING", "PENDING_AT_DEADLINE"), done(origin="earlier try")),
        total_creates=1,
        total_create_attempts=1,
    ),
    Case("status-404-lag", arrange=_status_404s, faulted=True, tries=(done(),)),
    Case("status-429-retry-after", arrange=_status_429, faulted=True, tries=(done(),)),
)


# -- running a shape ------------------------------------------------------------------------------------------


def operator(shape: str, case: Case, vehicles: list[str]) -> VolterasCommandOperator | VolterasFleetCommandOperator:
    common: dict[str, Any] = {
        "task_id": "t",
        "command": case.command,
        "arguments": case.arguments,
        "deferrable": False,
        "poll_interval": POLL_INTERVAL,
        "timeout": case.timeout,
    }
    if shape == "single":
        return VolterasCommandOperator(vehicle_id=vehicles[0], **common)
    return VolterasFleetCommandOperator(vehicle_ids=vehicles, **common)


def creates(sim: Any, vehicle: str) -> int:
    return sum(sim.state.counters()["creates"].get(vehicle, {}).values())


def create_attempts(sim: Any, vehicle: str) -> int:
    return int(sim.state.counters()["createAttemptsByVehicle"].get(vehicle, 0))


def failure_class(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, VolterasFatalCommandError):
        return "fatal"
    if isinstance(error, VolterasRetryableCommandError):
        return "retryable"
    raise AssertionError(f"not a command failure: {type(error).__name__}: {error}")


@dataclass
class Run:
    tries: list[Try]
    creates_first: int
    attempts_first: int
    creates_total: int
    attempts_total: int
    companions: list[list[str]]  # per try, the companions' classifications (fleet3)
    companion_creates: list[int]
    faults_applied: int
    #: Another client's execution id was written to the task state store at some try.
    foreign_recorded: bool

    def key(self) -> dict[str, Any]:
        return {
            "tries": self.tries,
            "creates after try 1": self.creates_first,
            "create attempts after try 1": self.attempts_first,
            "creates in all": self.creates_total,
            "create attempts in all": self.attempts_total,
            "another client's execution recorded": self.foreign_recorded,
        }


def one_try(sim: Any, shape: str, case: Case, vehicle: str, vehicles: list[str], store: Store, foreign: set[str]):
    ti = Ti()
    result: Any = None
    error: VolterasCommandError | None = None
    try:
        result = operator(shape, case, vehicles).execute({"task_state_store": store, "ti": ti})
    except VolterasCommandError as err:
        error = err
    if shape == "single":
        # The vehicle's outcome as the task recorded it (the returned execution or the raised error agree with it).
        outcome = store.record(STATE_KEY)["final"]
        if error is None:
            assert result["status"] == "EXECUTED" and result["id"] == outcome["execution_id"]
            assert result["vehicleId"] == vehicle
        else:
            assert error.vehicle_id == vehicle
            assert (error.reason, error.execution_id) == (outcome["reason"], outcome["execution_id"])
        others: list[str] = []
    else:
        outcomes = result if error is None else ti.xcom["outcomes"]
        assert [o["vehicle_id"] for o in outcomes] == vehicles
        [outcome] = [o for o in outcomes if o["vehicle_id"] == vehicle]
        recorded = store.record(FLEET_STATE_KEY)["vehicles"][vehicle]["final"]
        assert {k: recorded[k] for k in outcome} == outcome  # XCom and the state store agree
        others = [o["classification"] for o in outcomes if o["vehicle_id"] != vehicle]
        if error is not None and all(c == "executed" for c in others):
            assert error.vehicle_id == vehicle  # the summary names the failed vehicle
    eid = outcome["execution_id"]
    ours = {e["id"] for e in sim.state.executions(vehicle)} - foreign
    assert eid is None or eid in ours | foreign, f"execution {eid} is no execution of {vehicle}"
    return (
        Try(
            classification=outcome["classification"],
            status=outcome["status"],
            reason=outcome["reason"],
            origin=outcome.get("origin"),
            execution=None if eid is None else "foreign" if eid in foreign else "ours",
            failure=failure_class(error),
            failure_reason=None if error is None else error.reason,
        ),
        others,
    )


def recorded_ids(store: Store, vehicle: str) -> set[str]:
    """The execution ids the task state store holds as the vehicle's (its messages may name others)."""
    single = store.record(STATE_KEY)
    fleet = store.record(FLEET_STATE_KEY)
    entries = [single] if single and single.get("vehicle_id") == vehicle else []
    entries += [fleet["vehicles"][vehicle]] if fleet and vehicle in fleet.get("vehicles", {}) else []
    ids = {e.get("id") for e in entries} | {(e.get("final") or {}).get("execution_id") for e in entries}
    return {i for i in ids if isinstance(i, str)}


def run_shape(sim: Any, shape: str, case: Case) -> Run:
    vehicle = case.vehicle_id(shape)
    companions = [f"sim-ok-1-{case.name}-d{DELAY:g}", f"sim-ok-2-{case.name}-d{DELAY:g}"] if shape == "fleet3" else []
    vehicles = [companions[0], vehicle, companions[1]] if companions else [vehicle]
    foreign: set[str] = set()
    if case.arrange is not None:
        made = case.arrange(sim, vehicle)
        if isinstance(made, dict) and "id" in made:
            foreign.add(made["id"])
    faults_before = sim.state.counters().get("faultsApplied", 0)
    store = Store()
    tries: list[Try] = []
    others: list[list[str]] = []
    first: tuple[int, int] = (0, 0)
    foreign_recorded = False
    for number in range(case.max_tries):
        if number:
            time.sleep(case.pause)
        attempt, companion_outcomes = one_try(sim, shape, case, vehicle, vehicles, store, foreign)
        tries.append(attempt)
        others.append(companion_outcomes)
        foreign_recorded = foreign_recorded or bool(recorded_ids(store, vehicle) & foreign)
        if number == 0:
            first = (creates(sim, vehicle), create_attempts(sim, vehicle))
        if attempt.failure != "retryable":
            break
    return Run(
        tries=tries,
        creates_first=first[0],
        attempts_first=first[1],
        creates_total=creates(sim, vehicle),
        attempts_total=create_attempts(sim, vehicle),
        companions=others,
        companion_creates=[creates(sim, c) for c in companions],
        faults_applied=sim.state.counters().get("faultsApplied", 0) - faults_before,
        foreign_recorded=foreign_recorded,
    )


# -- the test -------------------------------------------------------------------------------------------------


class SentTwice(AssertionError):
    """More commands were created at the simulator than the case allows (the same in every shape)."""


def _params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, raises=SentTwice, reason=case.sent_twice)] if case.sent_twice else [],
        )
        for case in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_single_and_fleet_shapes_give_the_same_vehicle_outcome(sim: Any, case: Case) -> None:
    if case.config:
        sim.state.configure(**case.config)
    runs = {shape: run_shape(sim, shape, case) for shape in SHAPES}

    # 1. The same outcome, try by try, and the same traffic at the simulator, in every shape.
    single = runs["single"].key()
    for shape in ("fleet1", "fleet3"):
        assert runs[shape].key() == single, f"{case.name}: {shape} differs from the single operator"

    # 2. What the case stands for.
    assert runs["single"].tries == list(case.tries)
    # Another client's execution is ours only when adopted (same command and arguments, pending).
    assert runs["single"].foreign_recorded == any(t.execution == "foreign" for t in case.tries)
    total = case.creates if case.total_creates is None else case.total_creates
    if runs["single"].creates_total > total:
        raise SentTwice(f"{case.name}: {runs['single'].creates_total} creates in every shape, expected {total}")
    assert (runs["single"].creates_first, runs["single"].attempts_first) == (case.creates, case.create_attempts)
    total_attempts = case.create_attempts if case.total_create_attempts is None else case.total_create_attempts
    assert (runs["single"].creates_total, runs["single"].attempts_total) == (total, total_attempts)

    for shape, run in runs.items():
        assert (run.faults_applied > 0) == case.faulted, f"{shape}: {run.faults_applied} fault(s) applied"

    # 3. The healthy vehicles of the fleet of three: executed once, never sent again on a retry.
    fleet3 = runs["fleet3"]
    assert fleet3.companions[0] == [case.companions] * 2
    if case.companions == "executed":
        assert all(others == ["executed", "executed"] for others in fleet3.companions)
        assert fleet3.companion_creates == [1, 1]
    assert runs["fleet1"].companions == [[]] * len(runs["fleet1"].tries)
