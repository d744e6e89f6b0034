"""Hostile input is refused with a clear message before any request.

Ids with path, query and fragment characters, percent-escapes, whitespace, control characters,
unicode look-alikes, empty and 10,000-character strings; out-of-range, NaN, infinite, textual and
boolean temperatures and limits; unknown commands; unsafe base URLs and connection extras. Each goes
through the hook, the operators (constructor, and ``execute`` for templated values, directly with a
minimal context and through ``dag.test()``), the sensor and the trigger. The simulator's request
counter must stay 0, and a guard fails the test if ``requests`` or ``httpx`` sends anything at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_volteras.exceptions import (
    VolterasConfigurationError,
    VolterasError,
    VolterasFatalCommandError,
    VolterasInvalidInputError,
)
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import (
    SetChargeLimitOperator,
    SetTemperatureOperator,
    VolterasCommandOperator,
)
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor
from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger

from ._support import STATS, install_dag, run_trigger, task_states, use_connection, use_raw_connection

OK = "sim-ok-hostile"

HOSTILE_IDS: dict[str, Any] = {
    "slash": "car/1",
    "leading-slash": "/car",
    "single-dot": ".",
    "dot-dot": "..",
    "traversal": "../../v1/oauth2/token",
    "dots-inside": "car..1",
    "pct-2F": "car%2F1",
    "pct-dots": "%2e%2e",
    "query": "car?filter=x",
    "fragment": "car#x",
    "space": "car 1",
    "leading-space": " car",
    "trailing-newline": "car\n",
    "crlf-header-injection": "car\r\nX-Injected: 1",
    "tab": "car\t1",
    "nul": "car\x00",
    "escape-sequence": "car\x1b[2J",
    "del": "car\x7f",
    "backslash": "car\\1",
    "semicolon": "car;1",
    "at": "car@evil",
    "ampersand": "car&x=1",
    "plus": "car+1",
    "quote": "car'1",
    "html": "<script>",
    "cyrillic-a": "c\u0430r-1",
    "fullwidth": "\uff43\uff41\uff52",
    "zero-width-space": "car\u200b1",
    "division-slash": "car\u22151",
    "fraction-slash": "car\u20441",
    "rtl-override": "car\u202e1",
    "bom": "\ufeffcar",
    "nbsp": "car\u00a01",
    "ligature": "\ufb01at",
    "dotted-capital-i": "\u0130d",
    "empty": "",
    "long-201": "x" * 201,
    "long-10000": "x" * 10_000,
    "none": None,
    "int": 5,
    "bool": True,
    "list": ["car"],
    "dict": {"id": "car"},
    "bytes": b"car",
}
STRING_IDS = {k: v for k, v in HOSTILE_IDS.items() if isinstance(v, str)}

BAD_TEMPERATURES: list[Any] = [
    math.nan, math.inf, -math.inf, 10**400, -(10**400), True, False, None, "abc", "", "nan",
    "inf", "-inf", "1e400", "21,5", "21 °C", [21], {"c": 21}, Decimal("21"), complex(21, 0),
]  # fmt: skip
BAD_LIMITS: list[Any] = [
    101, -1, -80, 75.5, 1e300, math.nan, math.inf, 10**400, True, None, "75.5", "-1", "101", "abc", "",
    "0x50", "true", "nan", "1" + "0" * 400, [80], Decimal("80"),
]  # fmt: skip
BAD_ARGUMENTS: list[tuple[str, Any]] = [
    ("SET_CHARGE_LIMIT", [1]),
    ("SET_CHARGE_LIMIT", "limit=80"),
    ("SET_CHARGE_LIMIT", 80),
    ("SET_CHARGE_LIMIT", {}),
    ("SET_CHARGE_LIMIT", {"limit": 80, "force": True}),
    ("SET_CHARGE_LIMIT", {"Limit": 80}),
    ("SET_TEMPERATURE", {"driverTemperature": 21}),
    ("SET_TEMPERATURE", {"driverTemperature": 21, "passengerTemperature": 21, 1: 2}),
    ("CLIMATE_OFF", {"limit": 80}),
]
UNKNOWN_COMMANDS: list[Any] = [
    "FOO", "", " ", "climate-off", "CLIMATE OFF", "CLIMATE_OFF;DROP", "CLIMATE_OFF\x00", "CLIMATE\nOFF",
    "command-execution:climate-off", "WAKE_UP", "HONK_HORN", "WINDOW_HEATING_ON",
    "cl\u0131mate_off",  # dotless i: 'clımate_off'.upper() == 'CLIMATE_OFF'
    "climate_o\ufb00",  # ligature ff
    "\u017ftop_charging",  # long s: upper() is 'S'
    "\uff23LIMATE_OFF", "x" * 10_000, None, 5, True, ["CLIMATE_OFF"],
]  # fmt: skip
BAD_BASE_URLS: list[str] = [
    "http://api.volteras.com",
    "http://api.example.com:8080",
    "http://10.0.0.5",
    "http://0.0.0.0",
    "http://localhost.evil.com",
    "http://127.0.0.1.nip.io",
    "https://user:pass@api.volteras.com",
    "https://volteras-sim-client:S3cr3t@api.volteras.com",
    "https://:secret@api.volteras.com",
    "https://api.volteras.com@evil.example",
    "https://api.volteras.com/v1",
    "https://api.volteras.com/v1/vehicles/",
    "https://api.volteras.com/%2e%2e/",
    "https://api.volteras.com?x=1",
    "https://api.volteras.com#frag",
    "api.volteras.com/v1",
    "ftp://api.volteras.com",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//api.volteras.com",
    "https://",
    "https://api.volteras.com:99999",
    "https://[::1",
]
BAD_EXTRAS: list[dict[str, Any]] = [
    {"timeout": math.nan},
    {"timeout": math.inf},
    {"timeout": 0},
    {"timeout": -1},
    {"timeout": 10**400},
    {"timeout": True},
    {"timeout": "abc"},
    {"max_retries": 21},
    {"retry_total_seconds": -5},
    {"verify_ssl": "maybe"},
    {"allow_insecure_http": 2},
    {"no_such_extra": 1},
]


class _Ti:
    """The smallest ``ti`` an operator's ``execute`` needs."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _context() -> dict[str, Any]:
    return {"ti": _Ti(), "task_state_store": None}


@pytest.fixture
def guarded(sim: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The simulator, plus a guard that fails on any HTTP request from ``requests`` or ``httpx``."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a request was sent: {args[1:3]!r}")

    async def aforbidden(*args: Any, **kwargs: Any) -> Any:
        forbidden(*args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", forbidden)
    monkeypatch.setattr(httpx.AsyncClient, "request", aforbidden)
    monkeypatch.setattr(httpx.AsyncClient, "send", aforbidden)
    yield sim
    assert sim.state.counters()["requests"] == 0


def _expect_refusal(call: Callable[[], Any], *types: type[BaseException], words: tuple[str, ...] = ()) -> str:
    """Run ``call``; it must raise one of ``types`` (all documented) with a message holding ``words``."""
    STATS["hostile_inputs"] += 1
    try:
        result = call()
    except BaseException as err:  # noqa: BLE001 - anything else is the bug this reports
        assert isinstance(err, types), f"{type(err).__module__}.{type(err).__name__}: {err}"
        message = str(err)
        assert len(message) < 2_000, "the message should stay readable"
        for word in words:
            assert word in message, f"{word!r} not in {message!r}"
        return message
    raise AssertionError(f"accepted: returned {result!r}")


def _check_all(values: list[tuple[str, Any]], check: Callable[[Any], Any]) -> None:
    problems = []
    for name, value in values:
        try:
            check(value)
        except AssertionError as err:
            problems.append(f"{name}: {err}")
    assert not problems, "\n".join(problems)


def _refused_by_operator(make: Callable[[], Any], *, words: tuple[str, ...] = ()) -> None:
    """Refused when the operator is built (static value) or, at the latest, by ``execute``."""
    STATS["hostile_inputs"] += 1
    try:
        operator = make()
    except VolterasInvalidInputError as err:
        for word in words:
            assert word in str(err), f"{word!r} not in {err}"
        return
    _expect_refusal(lambda: operator.execute(_context()), VolterasFatalCommandError, words=(*words, "Fix the task's"))
    STATS["hostile_inputs"] -= 1


# --------------------------------------------------------------------------------------------- ids

ID_SURFACES: dict[str, Callable[[VolterasHook, Any], Any]] = {
    "hook.get_command_execution(vehicle)": lambda h, v: h.get_command_execution(v, "e1"),
    "hook.get_command_execution(execution)": lambda h, v: h.get_command_execution(OK, v),
    "hook.create_command_execution": lambda h, v: h.create_command_execution(v, "CLIMATE_OFF"),
    "hook.list_command_executions": lambda h, v: h.list_command_executions(v),
    "hook.get_rate_limits": lambda h, v: h.get_rate_limits(v),
    "hook.find_pending_execution": lambda h, v: h.find_pending_execution(v, "CLIMATE_OFF"),
    "hook.wait_for_command_execution(vehicle)": lambda h, v: h.wait_for_command_execution(
        v, "e1", deadline=time.time() + 5, poll_interval=0.01
    ),
    "hook.wait_for_command_execution(execution)": lambda h, v: h.wait_for_command_execution(
        OK, v, deadline=time.time() + 5, poll_interval=0.01
    ),
    "trigger(vehicle)": lambda h, v: CommandExecutionTrigger(vehicle_id=v, command_execution_id="e1", deadline=1e10),
    "trigger(execution)": lambda h, v: CommandExecutionTrigger(vehicle_id=OK, command_execution_id=v, deadline=1e10),
}


def _could_be_issued(value: Any) -> bool:
    from airflow_provider_volteras._core.intent import issued_id

    return issued_id(value) is not None


#: Execution ids are issued by the API, not typed by people: they are percent-encoded, not validated
#: like vehicle ids. Only what an API cannot have issued (empty, whitespace, control characters, dots
#: only, too long, not text) is refused before any request.
HOSTILE_EXECUTION_IDS = {name: value for name, value in HOSTILE_IDS.items() if not _could_be_issued(value)}
ENCODED_EXECUTION_IDS = {name: value for name, value in HOSTILE_IDS.items() if _could_be_issued(value)}


@pytest.mark.parametrize("surface", list(ID_SURFACES))
def test_hostile_ids_hook_and_trigger(guarded: Any, surface: str) -> None:
    hook = VolterasHook()
    what = "command_execution_id" if "execution)" in surface else "vehicle_id"
    _check_all(
        list((HOSTILE_EXECUTION_IDS if what == "command_execution_id" else HOSTILE_IDS).items()),
        lambda v: _expect_refusal(lambda: ID_SURFACES[surface](hook, v), VolterasInvalidInputError, words=(what,)),
    )


def test_hostile_ids_operator_constructor(guarded: Any) -> None:
    """Static ids: refused when the DAG is parsed (non-string ids at the latest by ``execute``)."""
    _check_all(
        list(HOSTILE_IDS.items()),
        lambda v: _refused_by_operator(
            lambda: VolterasCommandOperator(task_id="t", vehicle_id=v, command="CLIMATE_OFF"), words=("vehicle_id",)
        ),
    )


def test_hostile_ids_operator_execute(guarded: Any) -> None:
    """Templated ids: the operator is built from a template, ``execute`` sees the rendered value."""

    def check(value: Any) -> None:
        operator = VolterasCommandOperator(task_id="t", vehicle_id="{{ params.v }}", command="CLIMATE_OFF")
        operator.vehicle_id = value  # what rendering would produce
        _expect_refusal(
            lambda: operator.execute(_context()), VolterasFatalCommandError, words=("vehicle_id", "NOT retry")
        )

    _check_all(list(HOSTILE_IDS.items()), check)


def test_hostile_looking_issued_ids_stay_one_encoded_path_segment() -> None:
    from urllib.parse import unquote

    from airflow_provider_volteras._core.wire import get_execution_request

    assert ENCODED_EXECUTION_IDS, "the table should hold ids that are sent encoded"
    prefix = f"/v1/vehicles/{OK}/command-executions/"
    for value in ENCODED_EXECUTION_IDS.values():
        path = get_execution_request(OK, value).path
        segment = path[len(prefix) :]
        assert path.startswith(prefix) and not any(c in segment for c in "/?#"), path
        assert unquote(segment) == value


@pytest.mark.parametrize("field", ["vehicle_id", "command_execution_id"])
def test_hostile_ids_sensor(guarded: Any, field: str) -> None:
    def check(value: Any) -> None:
        ids = {"vehicle_id": OK, "command_execution_id": "e1", field: value}
        sensor = CommandExecutionSensor(task_id="s", **ids)
        _expect_refusal(lambda: sensor.execute(_context()), VolterasFatalCommandError, words=(field, "NOT retry"))
        _expect_refusal(lambda: sensor.poke(_context()), VolterasFatalCommandError, words=(field,))

    _check_all(list((HOSTILE_EXECUTION_IDS if field == "command_execution_id" else HOSTILE_IDS).items()), check)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("poll_interval=0", {"poll_interval": 0}),
        ("poll_interval=-1", {"poll_interval": -1}),
        ("poll_interval=nan", {"poll_interval": math.nan}),
        ("poll_interval=inf", {"poll_interval": math.inf}),
        ("poll_interval='abc'", {"poll_interval": "abc"}),
        ("poll_interval=None", {"poll_interval": None}),
        ("poll_interval=True", {"poll_interval": True}),
        ("deadline=None", {"deadline": None}),
        ("deadline=nan", {"deadline": math.nan}),
        ("deadline=inf", {"deadline": math.inf}),
        ("deadline=1e20", {"deadline": 1e20}),
        ("deadline=True", {"deadline": True}),
        ("deadline='garbage'", {"deadline": "garbage"}),
        ("deadline=naive", {"deadline": "2030-01-01T00:00:00"}),
        ("deadline=[]", {"deadline": []}),
    ],
)
def test_hostile_trigger_settings(guarded: Any, name: str, kwargs: dict[str, Any]) -> None:
    """A zero or negative poll interval would poll the API in a tight loop; odd deadlines must not crash."""
    arguments = {"vehicle_id": OK, "command_execution_id": "e1", "deadline": time.time() + 60, **kwargs}
    word = next(iter(kwargs))
    _expect_refusal(lambda: CommandExecutionTrigger(**arguments), VolterasInvalidInputError, words=(word,))


# ----------------------------------------------------------------------------- temperatures, limits


def test_hostile_temperatures(guarded: Any) -> None:
    hook = VolterasHook()

    def check(value: Any) -> None:
        _refused_by_operator(
            lambda: SetTemperatureOperator(
                task_id="t", vehicle_id=OK, driver_temperature=21, passenger_temperature=value
            ),
            words=("passengerTemperature",),
        )
        arguments = {"driverTemperature": value, "passengerTemperature": 21}
        _refused_by_operator(
            lambda: VolterasCommandOperator(task_id="t", vehicle_id=OK, command="SET_TEMPERATURE", arguments=arguments),
            words=("driverTemperature",),
        )
        _expect_refusal(
            lambda: hook.create_command_execution(OK, "SET_TEMPERATURE", arguments),
            VolterasInvalidInputError,
            words=("driverTemperature", "finite number"),
        )
        templated = SetTemperatureOperator(
            task_id="t", vehicle_id=OK, driver_temperature="{{ x }}", passenger_temperature=21
        )
        templated.driver_temperature = value if not isinstance(value, (int, float)) else str(value)
        _expect_refusal(lambda: templated.execute(_context()), VolterasFatalCommandError, words=("driverTemperature",))

    _check_all([(repr(v)[:40], v) for v in BAD_TEMPERATURES], check)


def test_hostile_limits(guarded: Any) -> None:
    hook = VolterasHook()

    def check(value: Any) -> None:
        _refused_by_operator(lambda: SetChargeLimitOperator(task_id="t", vehicle_id=OK, limit=value), words=("limit",))
        _expect_refusal(
            lambda: hook.create_command_execution(OK, "SET_CHARGE_LIMIT", {"limit": value}),
            VolterasInvalidInputError,
            words=("'limit'", "0 to 100"),
        )
        templated = SetChargeLimitOperator(task_id="t", vehicle_id=OK, limit="{{ x }}")
        templated.limit = value if not isinstance(value, (int, float)) else str(value)
        _expect_refusal(lambda: templated.execute(_context()), VolterasFatalCommandError, words=("limit",))

    _check_all([(repr(v)[:40], v) for v in BAD_LIMITS], check)


def test_hostile_arguments(guarded: Any) -> None:
    hook = VolterasHook()

    def check(case: tuple[str, Any]) -> None:
        command, arguments = case
        _refused_by_operator(
            lambda: VolterasCommandOperator(task_id="t", vehicle_id=OK, command=command, arguments=arguments),
            words=(command,),
        )
        _expect_refusal(
            lambda: hook.create_command_execution(OK, command, arguments), VolterasInvalidInputError, words=(command,)
        )

    _check_all([(repr(c)[:60], c) for c in BAD_ARGUMENTS], check)


# ------------------------------------------------------------------------------------------ commands


def test_unknown_commands(guarded: Any) -> None:
    hook = VolterasHook()

    def check(command: Any) -> None:
        _refused_by_operator(
            lambda: VolterasCommandOperator(task_id="t", vehicle_id=OK, command=command), words=("ommand",)
        )
        templated = VolterasCommandOperator(task_id="t", vehicle_id=OK, command="{{ params.command }}")
        templated.command = command
        _expect_refusal(lambda: templated.execute(_context()), VolterasFatalCommandError, words=("ommand",))
        _expect_refusal(
            lambda: hook.create_command_execution(OK, command), VolterasInvalidInputError, words=("ommand",)
        )

    _check_all([(repr(c)[:40], c) for c in UNKNOWN_COMMANDS], check)


# --------------------------------------------------------------------------------- base URL, extras


def _connection_surfaces() -> dict[str, Callable[[], Any]]:
    def operator() -> Any:
        op = VolterasCommandOperator(task_id="t", vehicle_id=OK, command="CLIMATE_OFF")
        _expect_refusal(lambda: op.execute(_context()), VolterasFatalCommandError, words=("NOT retry", "connection"))
        STATS["hostile_inputs"] -= 1

    def sensor() -> Any:
        op = CommandExecutionSensor(task_id="s", vehicle_id=OK, command_execution_id="e1")
        _expect_refusal(lambda: op.execute(_context()), VolterasFatalCommandError, words=("NOT retry",))
        STATS["hostile_inputs"] -= 1

    def trigger() -> Any:
        (event,) = run_trigger(CommandExecutionTrigger(vehicle_id=OK, command_execution_id="e1", deadline=1e10))
        payload = event.payload
        assert payload["status"] == "error" and payload["error"]["retryable"] is False, payload
        assert payload["error"]["reason"] == "VolterasConfigurationError"

    def test_connection() -> Any:
        ok, message = VolterasHook().test_connection()
        assert not ok and "Volteras connection failed" in message, message

    return {
        "hook.get_command_execution": lambda: _expect_refusal(
            lambda: VolterasHook().get_command_execution(OK, "e1"), VolterasConfigurationError
        ),
        "hook.create_command_execution": lambda: _expect_refusal(
            lambda: VolterasHook().create_command_execution(OK, "CLIMATE_OFF"), VolterasConfigurationError
        ),
        "hook.get_access_token": lambda: _expect_refusal(
            lambda: VolterasHook().get_access_token(), VolterasConfigurationError
        ),
        "hook.test_connection": test_connection,
        "operator.execute": operator,
        "sensor.execute": sensor,
        "trigger.run": trigger,
    }


@pytest.mark.parametrize("url", BAD_BASE_URLS)
def test_hostile_base_urls(guarded: Any, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    use_raw_connection(monkeypatch, host=url, extra={"timeout": 1})
    message = _expect_refusal(lambda: VolterasHook().settings, VolterasConfigurationError)
    assert "base URL" in message or "Refusing plain http://" in message, message
    assert "pass@" not in message and "S3cr3t" not in message and ":secret" not in message
    _check_all(list(_connection_surfaces().items()), lambda surface: surface())


@pytest.mark.parametrize("extra", BAD_EXTRAS, ids=lambda e: repr(e)[:40])
def test_hostile_connection_extras(guarded: Any, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]) -> None:
    use_connection(monkeypatch, guarded, **extra)
    _expect_refusal(lambda: VolterasHook().settings, VolterasConfigurationError, words=(next(iter(extra)),))
    _check_all(list(_connection_surfaces().items()), lambda surface: surface())


@pytest.mark.parametrize(
    "fields",
    [{"login": ""}, {"password": ""}, {"login": " "}, {"host": "api.example.com", "schema": "http"}],
    ids=["no-client-id", "no-secret", "blank-client-id", "http-schema-field"],
)
def test_hostile_connection_fields(guarded: Any, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any]) -> None:
    use_raw_connection(monkeypatch, **{"host": guarded.base_url, **fields})
    _expect_refusal(lambda: VolterasHook().settings, VolterasConfigurationError)
    _check_all(list(_connection_surfaces().items()), lambda surface: surface())


# ------------------------------------------------------------------------------------------ dag.test


@pytest.mark.slow
def test_hostile_templated_values_in_dag_runs(
    sim: Any, airflow_db: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Rendered by Airflow from ``dag_run.conf``: every task fails at once (fatal, no retry), no request."""
    module = install_dag("hardening_hostile")
    ids = [v for v in STRING_IDS.values() if v and "\x00" not in v]
    conf: dict[str, list[str]] = {
        "ids": [*ids[:4], "", ".", "c\u0430r", "car\r\nX: 1", "x" * 10_000, "car%2F1"],
        # Execution ids come from the API (through XCom): only what it cannot have issued is refused.
        "executions": ["", "e 1", ".", "..", "e\tf", "x" * 10_000],
        "temperatures": ["nan", "inf", "1e400", "abc", "-inf", "True"],
        "limits": ["75.5", "101", "nan", "1" + "0" * 400, "0x50", ""],
        "commands": ["FOO", "WAKE_UP", "cl\u0131mate_off", "climate-off", "", "CLIMATE_OFF;DROP"],
    }
    for key, size in module.SIZES.items():
        assert len(conf[key]) == size, key
    run = module.dag.test(run_conf=conf)
    states = task_states(run)
    assert run.state == "failed"
    assert len(states) == sum(module.SIZES.values())
    not_refused = {task: state for task, state in states.items() if state != ("failed", 1)}
    assert not not_refused, f"not failed at once (fatal): {not_refused}"
    assert sim.state.counters()["requests"] == 0
    out, _ = capfd.readouterr()
    logs = out + "\n".join(r.getMessage() for r in caplog.records)
    refusals = logs.count(": VolterasInvalidInputError (fatal: Airflow will NOT retry the task)")
    assert refusals >= len(states), f"only {refusals} clear refusals logged for {len(states)} tasks"
    STATS["hostile_inputs"] += len(states)


def test_documented_exceptions_only() -> None:
    """The refusals above are all ``VolterasError`` (and ``ValueError`` for invalid input)."""
    assert issubclass(VolterasInvalidInputError, (VolterasError, ValueError))
    assert issubclass(VolterasConfigurationError, VolterasError)
