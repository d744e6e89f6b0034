"""Bad input is refused before any request reaches the API; unsafe base URLs are refused too."""

from __future__ import annotations

import math

import pytest

from airflow_provider_volteras.catalogue import CATALOGUE, CREATABLE_COMMANDS
from airflow_provider_volteras.exceptions import VolterasConfigurationError, VolterasInvalidInputError

BAD_IDS = {
    "empty": "",
    "space": " ",
    "leading-space": " sim-ok",
    "inner-space": "sim ok",
    "slash": "a/b",
    "only-slash": "/",
    "dotdot": "..",
    "inner-dotdot": "a..b",
    "traversal": "../x",
    "question": "a?b",
    "hash": "a#b",
    "percent-2F": "a%2Fb",
    "nul": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "del": "\x7f",
    "fullwidth-slash": "sim／ok",
    "fullwidth-a": "ａbc",
    "accented": "véhicule",
    "201-chars": "a" * 201,
    "10000-chars": "a" * 10_000,
    "none": None,
    "int": 123,
    "float": 1.5,
    "bytes": b"sim-ok",
    "list": ["sim-ok"],
    "bool": True,
}


def assert_nothing_sent(sim) -> None:
    assert sim.state.counters()["requests"] == 0


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_ids_are_refused_before_any_request(sim, connect, bad):
    hook = connect()
    calls = {
        "get vehicle": lambda: hook.get_command_execution(bad, "exec-1"),
        "create": lambda: hook.create_command_execution(bad, "CLIMATE_OFF"),
        "list": lambda: hook.list_command_executions(bad),
        "rate limits": lambda: hook.get_rate_limits(bad),
    }
    for name, call in calls.items():
        with pytest.raises(VolterasInvalidInputError) as info:
            call()
        assert len(str(info.value)) < 300, name  # a 10,000-char id is not echoed back whole
    assert_nothing_sent(sim)


@pytest.mark.parametrize("bad", ["", " ", "a b", "tab\tid", "new\nline", ".", "..", "x" * 501, 42, None])
def test_execution_ids_that_the_api_cannot_have_issued_are_refused_before_any_request(sim, connect, bad):
    with pytest.raises(VolterasInvalidInputError):
        connect().get_command_execution("sim-ok-1", bad)
    assert_nothing_sent(sim)


@pytest.mark.parametrize("issued", ["Zm9v+YmFy/cQ==", "a/b", "a?b#c", "50%", "../x", "é-id"])
def test_ids_the_api_issued_are_sent_as_one_encoded_path_segment(issued):
    """Issued ids are not held to the rules of typed ids (issue 10): they are percent-encoded instead."""
    from urllib.parse import unquote

    from airflow_provider_volteras._core.wire import get_execution_request

    path = get_execution_request("sim-ok-1", issued).path
    prefix = "/v1/vehicles/sim-ok-1/command-executions/"
    assert path.startswith(prefix)
    segment = path[len(prefix) :]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == issued


def test_longest_allowed_and_all_allowed_characters_pass(sim, connect):
    hook = connect()
    assert hook.get_rate_limits("sim-ok_1.2~x")[0]["objectId"] == "sim-ok_1.2~x"
    with pytest.raises(VolterasInvalidInputError):
        hook.get_rate_limits("a" * 201)
    hook.get_rate_limits("a" * 100)  # within the simulator's own id limit; 200 is the provider's
    assert sim.state.counters()["rateLimitRequests"] == 2


@pytest.mark.parametrize("command", ["FLY", "CLIMATE-OFF", "climate off", "", None, 42, "CLIMATE_OFF\x00"])
def test_unknown_commands_are_refused(sim, connect, command):
    with pytest.raises(VolterasInvalidInputError) as info:
        connect().create_command_execution("sim-ok-1", command)
    assert "CLIMATE_OFF" in str(info.value)  # the message lists what can be sent
    assert_nothing_sent(sim)


NOT_CREATABLE = [c.value for c, spec in CATALOGUE.items() if not spec.creatable]


@pytest.mark.parametrize("command", NOT_CREATABLE)
def test_non_creatable_commands_are_refused_with_a_clear_message(sim, connect, command):
    with pytest.raises(VolterasInvalidInputError) as info:
        connect().create_command_execution("sim-ok-1", command)
    message = str(info.value)
    assert command in message and "no endpoint to create it" in message
    assert "CLIMATE_OFF" in message
    assert_nothing_sent(sim)


def test_commands_are_case_insensitive(sim, connect):
    execution = connect().create_command_execution("sim-ok-case", " climate_off ")
    assert execution["command"] == "CLIMATE_OFF"


TEMP_OK = {"driverTemperature": 21.5, "passengerTemperature": 20}
BAD_PAYLOADS = {
    "temp-none": ("SET_TEMPERATURE", None, "needs"),
    "temp-empty": ("SET_TEMPERATURE", {}, "needs"),
    "temp-missing-passenger": ("SET_TEMPERATURE", {"driverTemperature": 20}, "'passengerTemperature'"),
    "temp-nan": ("SET_TEMPERATURE", {**TEMP_OK, "driverTemperature": math.nan}, "nan"),
    "temp-inf": ("SET_TEMPERATURE", {**TEMP_OK, "driverTemperature": math.inf}, "inf"),
    "temp-bool": ("SET_TEMPERATURE", {**TEMP_OK, "driverTemperature": True}, "bool"),
    "temp-string": ("SET_TEMPERATURE", {**TEMP_OK, "driverTemperature": "21"}, "str"),
    "temp-extra": ("SET_TEMPERATURE", {**TEMP_OK, "fan": 3}, "'fan'"),
    "limit-negative": ("SET_CHARGE_LIMIT", {"limit": -1}, "out of range"),
    "limit-101": ("SET_CHARGE_LIMIT", {"limit": 101}, "out of range"),
    "limit-80.5": ("SET_CHARGE_LIMIT", {"limit": 80.5}, "whole number"),
    "limit-string": ("SET_CHARGE_LIMIT", {"limit": "80"}, "str"),
    "limit-bool": ("SET_CHARGE_LIMIT", {"limit": True}, "bool"),
    "limit-missing": ("SET_CHARGE_LIMIT", {}, "'limit'"),
    "limit-snake-case": ("SET_CHARGE_LIMIT", {"charge_limit": 80}, "'charge_limit'"),
    "climate-off-extra": ("CLIMATE_OFF", {"temperature": 20}, "takes no arguments"),
    "args-list": ("SET_CHARGE_LIMIT", [1], "mapping"),
    "args-string": ("SET_CHARGE_LIMIT", "limit=80", "mapping"),
    "args-int": ("CLIMATE_OFF", 5, "mapping"),
    "args-mixed-keys": ("CLIMATE_OFF", {1: 0, "x": 0}, "does not take"),
}


@pytest.mark.parametrize(("command", "arguments", "needle"), list(BAD_PAYLOADS.values()), ids=list(BAD_PAYLOADS))
def test_bad_payloads_are_refused_before_any_request(sim, connect, command, arguments, needle):
    with pytest.raises(VolterasInvalidInputError) as info:
        connect().create_command_execution("sim-ok-1", command, arguments)
    assert command in str(info.value) and needle in str(info.value)
    assert_nothing_sent(sim)


@pytest.mark.parametrize(
    ("command", "arguments", "sent"),
    [
        ("SET_TEMPERATURE", {"driverTemperature": 15, "passengerTemperature": 28}, None),
        ("SET_TEMPERATURE", TEMP_OK, None),
        ("SET_CHARGE_LIMIT", {"limit": 50}, None),
        ("SET_CHARGE_LIMIT", {"limit": 100}, None),
        ("SET_CHARGE_LIMIT", {"limit": 80.0}, {"limit": 80}),
        ("CLIMATE_OFF", None, None),
        ("CLIMATE_OFF", {}, None),
    ],
)
def test_valid_payloads_reach_the_api(sim, connect, command, arguments, sent):
    execution = connect().create_command_execution("sim-ok-payload", command, arguments)
    expected = sent if sent is not None else (arguments or None)
    assert execution["commandArguments"] == expected
    assert sim.state.executions("sim-ok-payload")[0]["commandArguments"] == expected


def test_every_creatable_command_can_be_sent(sim, connect):
    hook = connect()
    args = {"SET_TEMPERATURE": TEMP_OK, "SET_CHARGE_LIMIT": {"limit": 80}}
    for command in CREATABLE_COMMANDS:
        assert hook.create_command_execution("sim-ok-all", command, args.get(command.value))["command"] == command.value
    assert sim.state.counters()["creates"]["sim-ok-all"] == {c.value: 1 for c in CREATABLE_COMMANDS}


@pytest.mark.parametrize("max_page_size", [0, 101, -1, True, "2", 2.0])
def test_bad_page_size_is_refused_at_call_time(sim, connect, max_page_size):
    with pytest.raises(VolterasInvalidInputError):
        connect().list_command_executions("sim-ok-1", max_page_size=max_page_size)
    assert_nothing_sent(sim)


# -- base URL, through the connection -------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "needle"),
    [
        ("http://api.example.com", "allow_insecure_http"),
        ("http://10.1.2.3:8080", "allow_insecure_http"),
        ("https://client:hunter2-pass@api.example.com", "must not contain credentials"),
        ("https://api.example.com/v1", "without a path"),
        ("https://api.example.com/?x=1", "without a path"),
        ("ftp://api.example.com", "must look like"),
        ("https://api.example.com:99999", "not a valid URL"),
    ],
)
def test_unsafe_base_urls_are_refused(sim, connect, host, needle):
    hook = connect("volteras_url", host=host)
    with pytest.raises(VolterasConfigurationError) as info:
        hook.get_rate_limits("sim-ok-1")
    assert needle in str(info.value)
    assert "hunter2-pass" not in str(info.value)
    assert_nothing_sent(sim)


def test_insecure_http_allowed_only_with_the_extra(sim, connect):
    hook = connect("volteras_url", host="http://api.example.com", allow_insecure_http=True)
    assert hook.settings.base_url == "http://api.example.com"
    hook = connect("volteras_url2", host="http://api.example.com", allow_insecure_http="false")
    with pytest.raises(VolterasConfigurationError):
        hook.settings  # noqa: B018 - reading it validates the connection


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("api.sandbox.volteras.com", "https://api.sandbox.volteras.com"),
        ("https://api.volteras.com/", "https://api.volteras.com"),
        ("", "https://api.volteras.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_base_url_normalisation(sim, connect, host, base_url):
    assert connect("volteras_url", host=host).settings.base_url == base_url


def test_loopback_http_is_allowed(sim, connect):
    hook = connect("volteras_loop", host=f"http://127.0.0.1:{sim.port}")
    assert hook.get_rate_limits("sim-ok-1")[0]["objectId"] == "sim-ok-1"


@pytest.mark.parametrize(
    "extra",
    [{"max_retries": -1}, {"timeout": 0}, {"timeout": "fast"}, {"verify_ssl": "maybe"}, {"unknown_option": 1}],
    ids=["negative-retries", "zero-timeout", "text-timeout", "bad-bool", "unknown-extra"],
)
def test_bad_extras_are_refused(sim, connect, extra):
    with pytest.raises(VolterasConfigurationError) as info:
        connect("volteras_extra", **extra).get_rate_limits("sim-ok-1")
    assert next(iter(extra)) in str(info.value)
    assert_nothing_sent(sim)
