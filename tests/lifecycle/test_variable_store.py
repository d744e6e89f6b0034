"""The record store before Airflow 3.3 (an Airflow Variable per task instance), on every release.

Airflow 3.3 gives a task ``task_state_store``; 3.1 and 3.2 do not, and there the provider keeps the
record in a Variable (``_compat.VariableStateStore``). These tests run on each release: on 3.3 they turn
the task state store off, so the Variable path is proven through the same execution API there too.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

import airflow_provider_volteras._compat as compat
from airflow_provider_volteras._compat import VariableStateStore
from airflow_provider_volteras.lifecycle.records import STATE_KEY, Records
from tests.dag_runner import install_dags, run
from tests.lifecycle.test_promise import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dags(airflow_db):
    return install_dags(airflow_db)


@pytest.fixture
def variable_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider keeps its record in a Variable, as on Airflow 3.1 and 3.2 (there, a task's context has
    no ``task_state_store`` and nothing changes; on 3.3 the context is shown without it)."""
    import airflow_provider_volteras.lifecycle.task as task_module

    def without_task_state_store(context: Any, logger: Any = None) -> Any:
        return compat.task_state_store({k: v for k, v in context.items() if k != "task_state_store"}, logger)

    monkeypatch.setattr(compat, "HAS_TASK_STATE_STORE", False)
    monkeypatch.setattr(task_module, "task_state_store", without_task_state_store)
    compat._noted.discard("variable_store")


def creates(sim: Any, vehicle_id: str) -> int:
    return sim.state.counters()["creates"].get(vehicle_id, {}).get("CLIMATE_OFF", 0)


def stored_variables(prefix: str) -> dict[str, Any]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Variable).where(Variable.key.startswith(prefix))).all()
        return {row.key: json.loads(row.val) for row in rows}


def stored_task_state(dag_id: str) -> list[Any]:
    """Rows of Airflow 3.3's task state store for ``dag_id`` (none before 3.3: there is no such table)."""
    if not compat.AIRFLOW_VERSION >= (3, 3):
        return []
    from airflow.models.task_state_store import TaskStateStoreModel  # type: ignore[import-not-found]
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(TaskStateStoreModel).where(TaskStateStoreModel.dag_id == dag_id)).all())


def test_a_retried_try_reattaches_through_the_variable_record(sim, dags, variable_store, capfd):
    """Try 1 sends and dies; try 2 reads the Variable try 1 wrote and re-attaches: one create in all."""
    vid = "car-variable-crash"
    sim.state.set_scenario(vid, outcome="EXECUTED", delay=4)  # still pending when try 2 starts
    result = run(dags.vt_crash, {"vehicle_id": vid})
    assert (result.state, result.task().state, result.task().try_number) == ("success", "success", 2)
    assert creates(sim, vid) == 1
    assert "simulated worker crash after create" in capfd.readouterr().out
    [(key, stored)] = stored_variables(f"{STATE_KEY}:vt_crash:send:-1:").items()
    assert key.endswith(stored["run_id"]) and stored["task_id"] == "send" and stored["map_index"] == -1
    record = stored["value"]
    assert record["vehicle_id"] == vid and record["final"]["status"] == "EXECUTED"
    assert [row.key for row in stored_task_state("vt_crash")] == []  # the Variable carried it, nothing else


def test_the_variable_store_is_announced_once_per_process(comms: FakeComms) -> None:
    compat._noted.discard("variable_store")
    log = Log()
    VariableStateStore("d", "r", "t", -1, logger=log)
    VariableStateStore("d", "r2", "t", -1, logger=log)
    assert len(log.lines) == 1, log.lines
    assert "has no task state store" in log.lines[0] and "docs/airflow-versions.md" in log.lines[0]
    assert f"{STATE_KEY}:d:t:-1:r" in log.lines[0]  # names the Variable, so a person can find it


def test_each_task_instance_has_its_own_variable() -> None:
    one = VariableStateStore("a.b", "manual__2026-01-01T00:00:00+00:00", "c", -1)
    other = VariableStateStore("a", "manual__2026-01-01T00:00:00+00:00", "b.c", -1)
    mapped = VariableStateStore("a.b", "manual__2026-01-01T00:00:00+00:00", "c", 3)
    keys = {s.variable_key(STATE_KEY) for s in (one, other, mapped)}
    assert len(keys) == 3
    assert one.variable_key(STATE_KEY) == f"{STATE_KEY}:a.b:c:-1:manual__2026-01-01T00:00:00+00:00"
    long_run = VariableStateStore("d" * 200, "r" * 250, "t" * 200, 0)
    odd_run = VariableStateStore("d", "run with spaces/and?marks", "t", 0)
    for store in (long_run, odd_run):
        key = store.variable_key(STATE_KEY)
        assert len(key) <= 250 and compat._PLAIN.fullmatch(key), key
    assert long_run.variable_key(STATE_KEY) != VariableStateStore("d" * 200, "r" * 249, "t" * 200, 0).variable_key(
        STATE_KEY
    )


class FakeComms:
    """The supervisor channel as the store sees it; answers from ``variables``, refuses what ``refuse`` names."""

    def __init__(self, refuse: str = "") -> None:
        self.variables: dict[str, str] = {}
        self.refuse = refuse
        self.active = 0
        self.overlaps = 0
        self.sent: list[str] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, VariableResult

        self.active += 1
        self.overlaps += self.active > 1
        try:
            time.sleep(0.01)
            self.sent.append(msg.type)
            if msg.type == self.refuse:
                return ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 500})
            if msg.type == "PutVariable":
                self.variables[msg.key] = msg.value
                return None
            if msg.type == "DeleteVariable":
                self.variables.pop(msg.key, None)
                return None
            if msg.type == "GetVariable":
                if msg.key not in self.variables:
                    return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": msg.key})
                return VariableResult(key=msg.key, value=self.variables[msg.key])
            return None
        finally:
            self.active -= 1


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> FakeComms:
    from airflow.sdk.execution_time import task_runner

    fake = FakeComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = info


def records(store: Any, log: Log | None = None) -> Records:
    return Records(
        store,
        log or Log(),
        key=STATE_KEY,
        command="CLIMATE_OFF",
        arguments=None,
        single=True,
        label="car-1",
    )


def test_a_record_written_by_one_try_is_read_by_the_next(comms: FakeComms) -> None:
    first = records(VariableStateStore("d", "r", "t", -1))
    first.load()
    first.update({"car-1": {"id": "exec-1"}})
    second = records(VariableStateStore("d", "r", "t", -1))
    second.load()
    assert second.entry("car-1") == {"id": "exec-1"}
    other_run = records(VariableStateStore("d", "r2", "t", -1))
    other_run.load()
    assert other_run.entry("car-1") is None
    second.update({"car-1": None})  # "nothing was sent": the record is deleted
    assert comms.variables == {}


def test_a_write_the_api_server_refused_raises(comms: FakeComms) -> None:
    """Airflow's Variable.set logs a failed write and returns: this store raises, so no create follows it."""
    comms.refuse = "PutVariable"
    rec = records(VariableStateStore("d", "r", "t", -1))
    rec.load()
    with pytest.raises(RuntimeError, match="could not store Variable"):
        rec.update({"car-1": {"in_flight": {"since": 1}}})


def test_an_unreadable_record_stops_the_try_before_anything_is_sent(comms: FakeComms) -> None:
    from airflow_provider_volteras.exceptions import VolterasRetryableCommandError

    store = VariableStateStore("d", "r", "t", -1)
    comms.variables[store.variable_key(STATE_KEY)] = json.dumps({"value": {"id": "x"}})  # not this task's
    with pytest.raises(VolterasRetryableCommandError, match="could not be read"):
        records(store).load()
    comms.refuse = "GetVariable"
    with pytest.raises(VolterasRetryableCommandError, match="Nothing was sent"):
        records(VariableStateStore("d", "r2", "t", -1)).load()


def test_a_fleets_threads_take_turns_on_a_channel_without_a_lock(comms: FakeComms) -> None:
    """Airflow 3.1's supervisor channel has no lock; the store serializes every request on it."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetVariable

    store = VariableStateStore("d", "r", "t", -1)
    channel = task_runner.SUPERVISOR_COMMS
    assert channel is not comms and channel._inner is comms  # wrapped, since FakeComms has no _thread_lock
    VariableStateStore("d", "r", "t", -1)
    assert task_runner.SUPERVISOR_COMMS is channel  # wrapped once

    def hammer() -> None:
        for _ in range(5):
            store.set(STATE_KEY, {"vehicle_id": "car-1"})
            channel.send(GetVariable(key="other"))  # e.g. a hook masking a secret in another thread

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(comms.sent) == 40 and comms.overlaps == 0


MemoryStore = Store  # Airflow 3.3's task state store as a command task uses it


def test_a_try_after_an_upgrade_to_3_3_finds_what_a_try_on_3_1_recorded(comms: FakeComms) -> None:
    """A task retried (or resumed from a deferral) across an upgrade of Airflow re-attaches to what the try on
    3.1 or 3.2 sent: the Variable is read when the task state store has nothing, then moves into the store."""
    before = records(VariableStateStore("d", "r", "t", -1))
    before.load()
    before.update({"car-1": {"id": "exec-1"}})
    [variable] = comms.variables

    state = MemoryStore()
    log = Log()
    after = records(compat.CarriedOverStore(state, VariableStateStore("d", "r", "t", -1, announce=False), log), log)
    after.load()
    assert after.entry("car-1") == {"id": "exec-1"}
    assert any(variable in line and "Airflow 3.1 or 3.2" in line for line in log.lines), log.lines
    after.update({"car-1": {"id": "exec-1", "final": {"status": "EXECUTED"}}})
    assert state.values[STATE_KEY]["final"] == {"status": "EXECUTED"}
    assert comms.variables == {}  # moved: a later try reads the task state store only

    fresh = MemoryStore()
    untouched = records(compat.CarriedOverStore(fresh, VariableStateStore("d", "r2", "t", -1, announce=False), log))
    untouched.load()
    assert untouched.entry("car-1") is None
    untouched.update({"car-1": {"in_flight": {"since": 1}}})
    assert comms.variables == {} and STATE_KEY in fresh.values  # nothing written to a Variable on 3.3


def test_on_3_3_a_running_task_keeps_its_record_in_the_task_state_store(comms: FakeComms) -> None:
    class Ti:
        dag_id, run_id, task_id, map_index = "d", "r", "t", -1

    state = MemoryStore()
    store = compat.task_state_store({"task_state_store": state, "ti": Ti()})
    if compat.HAS_TASK_STATE_STORE:
        assert isinstance(store, compat.CarriedOverStore) and store.store is state
    else:  # a context that brings a store (as a test's does) is used as it is
        assert store is state
        assert isinstance(compat.task_state_store({"ti": Ti()}), VariableStateStore)
    assert compat.task_state_store({"task_state_store": state, "ti": object()}) is state  # execute() by hand
