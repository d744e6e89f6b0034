"""No client secret or token anywhere a user, a log shipper or the metadata DB can see.

Four real DAG runs with ``dag.test()`` (success, a fatal failure, a retryable failure, an API error
with token refresh), a distinctive client secret, and every access/refresh token the simulator
issued; then every task log line (``dag.test`` writes task logs to stdout), captured stdout/stderr,
caplog, files under AIRFLOW_HOME, every row of every metadata table (XCom, rendered template fields,
triggers with decrypted kwargs, task instances...), exception messages and tracebacks, serialized
trigger kwargs and the ``repr`` of hook, settings, operators and triggers are searched.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_volteras._core.tokens import TOKEN_CACHE
from airflow_provider_volteras._core.wire import connection_test_request, token_request
from airflow_provider_volteras.exceptions import VolterasError
from airflow_provider_volteras.hooks._async import AsyncVolterasClient
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import ClimateOffOperator, VolterasCommandOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger

from ._support import SIM_CLIENT_ID, STATS, install_dag, run_trigger, task_states, use_connection

CANARY = f"S3cr3t-VOLTERAS-canary-{secrets.token_hex(8)}"


class Sweep:
    """Searches texts for the needles and counts the places searched."""

    def __init__(self, needles: Iterable[str]) -> None:
        self.needles = sorted({n for n in needles if n}, key=len, reverse=True)
        assert all(len(n) >= 16 for n in self.needles), "needles too short to be distinctive"
        self.places = 0
        self.leaks: list[str] = []
        self.kinds: set[str] = set()

    def text(self, where: str, value: Any) -> None:
        self.places += 1
        self.kinds.add(where.split(" ")[0] + " " + where.split(" ")[1] if " " in where else where)
        text = value if isinstance(value, str) else repr(value)
        for needle in self.needles:
            if needle in text:
                self.leaks.append(f"{where}: {needle[:12]}... in {text[max(0, text.find(needle) - 80) :][:200]!r}")

    def blob(self, where: str, data: bytes) -> None:
        self.places += 1
        for needle in self.needles:
            if needle.encode() in data:
                self.leaks.append(f"{where}: {needle[:12]}... (bytes)")

    def exception(self, where: str, err: BaseException) -> None:
        seen: set[int] = set()
        current: BaseException | None = err
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.text(f"{where} str", str(current))
            self.text(f"{where} repr", repr(current))
            self.text(f"{where} attrs", vars(current))
            current = current.__cause__ or current.__context__
        self.text(f"{where} traceback", "".join(traceback.format_exception(err)))


def _db_rows() -> Iterable[tuple[str, Any]]:
    """Every row of every metadata table, plus the decrypted trigger kwargs."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import MetaData, select

    with create_session() as session:
        meta = MetaData()
        meta.reflect(bind=session.get_bind())
        for table in meta.sorted_tables:
            for row in session.execute(select(table)):
                yield f"table {table.name}", tuple(row)
        for trigger in session.scalars(select(Trigger)):
            yield f"trigger {trigger.id} kwargs", trigger.kwargs
            if trigger.classpath.endswith("CommandExecutionTrigger"):
                rebuilt = CommandExecutionTrigger(**trigger.kwargs)
                yield f"trigger {trigger.id} serialize()", rebuilt.serialize()
                yield f"trigger {trigger.id} repr", repr(rebuilt)


@pytest.fixture
def canary(sim: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The simulator expects the canary secret; returns the list of every token answer it issues."""
    sim.state.configure(client_secret=CANARY, default_delay=0.8)
    use_connection(monkeypatch, sim, secret=CANARY)
    issued: list[dict[str, Any]] = []
    issue = sim.state.issue_token

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = issue(*args, **kwargs)
        issued.append(answer)
        return answer

    monkeypatch.setattr(sim.state, "issue_token", recording)
    return issued


@pytest.mark.slow
def test_no_secret_or_token_leaks(
    sim: Any,
    airflow_db: Path,
    canary: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

    serialized: list[Any] = []
    for cls in (CommandExecutionTrigger, FleetCommandTrigger):  # the sensor's and the command operators'

        def recording_serialize(self: Any, serialize: Any = cls.serialize) -> tuple[str, dict[str, Any]]:
            result = serialize(self)
            serialized.append((result, repr(self)))
            return result

        monkeypatch.setattr(cls, "serialize", recording_serialize)
    flow = install_dag("hardening_flow")

    # 1. success, through the deferrable operator, the sensor and two non-deferrable operators
    run = flow.dag.test(run_conf={"vehicle_id": "sim-ok-canary"})
    assert run.state == "success", task_states(run)
    assert sim.state.counters()["tokenRequests"] == 1
    # 2. a fatal failure: no retry
    run = flow.dag.test(run_conf={"vehicle_id": "sim-fail-OEM_INCORRECT_REGION-canary"})
    states = task_states(run)
    assert run.state == "failed" and states["send_and_wait"] == ("failed", 1), states
    # 3. a retryable failure, after every token expired: the refresh grant goes over the wire
    assert sim.state.expire_tokens() >= 1
    run = flow.dag.test(run_conf={"vehicle_id": "sim-fail-OEM_VEHICLE_OFFLINE-canary"})
    states = task_states(run)
    assert run.state == "failed" and states["send_and_wait"] == ("failed", 2), states
    # 4. an API error: the client lost vehicle:commands, the refreshed token is refused too
    sim.state.configure(grant_commands_scope=False)
    run = flow.dag.test(run_conf={"vehicle_id": "sim-ok-canary-scope"})
    states = task_states(run)
    assert run.state == "failed" and states["send_and_wait"] == ("failed", 1), states
    sim.state.configure(grant_commands_scope=True)
    assert sim.state.counters()["tokenRequestsByGrant"]["refresh_token"] >= 2
    assert serialized, "no task deferred: the trigger path was not exercised"

    # Exceptions raised straight from the hook, an operator and a trigger, with the same credentials.
    errors: list[tuple[str, BaseException]] = []
    hook = VolterasHook()
    for what, call in (
        ("hook not found", lambda: hook.create_command_execution("sim-missing-canary", "CLIMATE_OFF")),
        ("hook bad execution", lambda: hook.get_command_execution("sim-ok-canary", "no-such-execution")),
    ):
        with pytest.raises(VolterasError) as info:
            call()
        errors.append((what, info.value))
    sim.state.configure(grant_commands_scope=False)
    sim.state.expire_tokens()
    with pytest.raises(VolterasError) as info:
        hook.create_command_execution("sim-ok-canary-2", "CLIMATE_OFF")
    errors.append(("hook scope refused", info.value))
    sim.state.configure(grant_commands_scope=True)
    operator = ClimateOffOperator(task_id="canary", vehicle_id="sim-missing-canary", deferrable=False)
    failing_ti = _Ti()
    with pytest.raises(VolterasError) as info:
        operator.execute({"ti": failing_ti, "task_state_store": None})
    errors.append(("operator", info.value))
    execution = hook.create_command_execution("sim-ok-canary-3", "CLIMATE_OFF")
    trigger = CommandExecutionTrigger(
        vehicle_id="sim-ok-canary-3", command_execution_id=execution["id"], deadline=time.time() + 10, poll_interval=0.2
    )
    assert run_trigger(trigger)[0].payload["status"] == "executed"
    monkeypatch.setenv(  # a refused secret: the message must not quote it
        "AIRFLOW_CONN_VOLTERAS_DEFAULT",
        _wrong_secret_connection(sim.base_url),
    )
    TOKEN_CACHE.clear()
    events = run_trigger(
        CommandExecutionTrigger(
            vehicle_id="sim-ok-canary-3", command_execution_id=execution["id"], deadline=time.time() + 5
        )
    )
    assert events[0].payload["status"] == "error" and not events[0].payload["error"]["retryable"]
    with pytest.raises(VolterasError) as info:
        VolterasHook().get_access_token()
    errors.append(("hook wrong secret", info.value))

    # The needles: the secret (also as HTTP Basic and URL-encoded) and every token issued.
    tokens = [t[k] for t in canary for k in ("access_token", "refresh_token")]
    assert len(tokens) >= 8, "too few tokens were issued for the sweep to mean much"
    basic = base64.b64encode(f"{SIM_CLIENT_ID}:{CANARY}".encode()).decode()
    wrong = _WRONG_SECRET
    sweep = Sweep([CANARY, wrong, basic, quote(CANARY, safe=""), *tokens])
    sweep.text("positive control", f"xx{CANARY}xx")
    assert sweep.leaks and sweep.places == 1, "the sweep cannot find a planted secret"
    sweep.leaks.clear()

    out, err = capfd.readouterr()
    task_logs = out + "\n".join(r.getMessage() for r in caplog.records)
    for expected in ("[DAG TEST] running task", "VolterasRetryableCommandError", "Task failed with exception"):
        assert expected in task_logs, f"task logs not captured: {expected!r} missing"
    for line in out.splitlines():
        sweep.text("stdout line", line)
    for line in err.splitlines():
        sweep.text("stderr line", line)
    for record in caplog.records:
        sweep.text(f"caplog {record.name}", f"{record.getMessage()} {record.args!r} {record.exc_text or ''}")
    home = Path(os.environ["AIRFLOW_HOME"])
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    for path in sorted(home.rglob("*")):
        if path.is_file() and dags not in path.parents:
            sweep.blob(f"file {path.relative_to(home)}", path.read_bytes())
    for where, row in _db_rows():
        sweep.text(where, row)
    for result, shown in serialized:
        sweep.text("trigger.serialize() during the runs", result)
        sweep.text("repr(trigger) during the runs", shown)
    for event in events:
        sweep.text("trigger error event", event.payload)
    assert failing_ti.pushed, "the failing operator pushed no outcome"
    for key, value in failing_ti.pushed:
        sweep.text(f"xcom {key} of the failing operator", value)
    for where, error in errors:
        sweep.exception(where, error)
    for where, obj in (
        ("repr(hook)", hook),
        ("repr(hook.settings)", hook.settings),
        ("repr(operator)", operator),
        ("repr(VolterasCommandOperator)", VolterasCommandOperator(task_id="x", vehicle_id="v", command="CLIMATE_ON")),
        ("repr(sensor)", CommandExecutionSensor(task_id="s", vehicle_id="v", command_execution_id="e")),
        ("repr(trigger)", trigger),
        ("repr(token cache)", TOKEN_CACHE._tokens),
        ("repr(token request)", token_request(hook.settings, refresh_token=tokens[1])),
        ("repr(bearer request)", connection_test_request().with_token(tokens[0])),
        ("repr(async client)", AsyncVolterasClient(hook.settings, None, None)),  # type: ignore[arg-type]
    ):
        sweep.text(where, repr(obj))

    STATS["places_searched"] += sweep.places
    STATS["leaks"] += len(sweep.leaks)
    for kind in (
        "stdout line",
        "caplog airflow.sdk.definitions.dag",
        "table xcom",
        "table rendered_task_instance_fields",
        "table trigger",
        "table task_instance",
        "trigger.serialize() during",
    ):
        assert kind in sweep.kinds, f"{kind} was not searched"
    assert sweep.leaks == [], "\n".join(sweep.leaks)


_WRONG_SECRET = f"S3cr3t-VOLTERAS-canary-WRONG-{secrets.token_hex(8)}"


def _wrong_secret_connection(base_url: str) -> str:
    from ._support import connection_json

    return connection_json(base_url, _WRONG_SECRET)


class _Ti:
    """The failing operator's task instance: what it pushes (its outcome, for a mapped fleet's summary) is swept."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, Any]] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))
