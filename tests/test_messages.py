"""Failure messages as a person reads them: a short first line, then details, then steps that work."""

from __future__ import annotations

import pytest

from airflow_provider_volteras.exceptions import (
    VolterasFatalCommandError,
    VolterasInvalidInputError,
    VolterasServerError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.failures import (
    API_TEXT_LIMIT,
    already_final,
    api_failure,
    command_failure,
    pending_at_deadline,
    safe_text,
    sender_task_id,
    state_store_steps,
    unexpected_outcome,
)


def failed(reason: str, **kwargs):
    return command_failure(
        {"id": "exec-1", "status": "FAILED", "failedReason": reason},
        vehicle_id="sim-ok-1",
        command="CLIMATE_OFF",
        **kwargs,
    )


def test_first_line_is_short_and_says_everything_needed():
    retryable = str(failed("OEM_VEHICLE_OFFLINE")).splitlines()
    assert retryable[0] == (
        "CLIMATE_OFF on vehicle sim-ok-1 FAILED: OEM_VEHICLE_OFFLINE (retryable: Airflow will retry the task)"
    )
    fatal = str(failed("OEM_OAUTH_TOKEN_EXPIRED")).splitlines()
    assert fatal[0] == (
        "CLIMATE_OFF on vehicle sim-ok-1 FAILED: OEM_OAUTH_TOKEN_EXPIRED (fatal: Airflow will NOT retry the task)"
    )
    assert all(len(line) <= 120 for line in (retryable[0], fatal[0]))
    assert "  Execution: exec-1" in fatal and any(line.startswith("  What to do: Ask the owner") for line in fatal)


def test_operator_fatal_steps_say_a_clear_sends_again():
    text = str(failed("OEM_OAUTH_TOKEN_EXPIRED"))
    assert "To send the command again once the cause is fixed: Clear this task in the Airflow UI." in text
    assert "sends one new command for a command that FAILED" in text
    # No state-store chores: the Clear alone does it.
    assert "Storage" not in text and "state-store" not in text


def test_sensor_failed_steps_point_at_the_sending_task_and_do_not_retry():
    for reason, when in (("OEM_OAUTH_TOKEN_EXPIRED", " once the cause is fixed"), ("OEM_VEHICLE_OFFLINE", "")):
        error = failed(reason, task_kind="sensor", sent_by="climate_off")
        text = str(error)
        # A FAILED execution never changes: the sensor fails at once, whatever the reason.
        assert isinstance(error, VolterasFatalCommandError) and error.reason == reason
        assert text.splitlines()[0] == (
            f"CLIMATE_OFF on vehicle sim-ok-1 FAILED: {reason} (Airflow will NOT retry this sensor: it would read "
            "the same FAILED execution)"
        )
        assert "This sensor only watches the command; it was sent by task 'climate_off'." in text
        assert "Clearing this sensor alone only reads the same FAILED execution again" in text
        assert f"To send the command again{when}: Clear task 'climate_off' with Downstream selected" in text
        assert "Storage" not in text
    unknown_sender = str(failed("OEM_VEHICLE_OFFLINE", task_kind="sensor"))
    assert "the upstream task that sent it" in unknown_sender


def test_the_state_store_steps_of_a_mapped_task_name_its_map_index():
    from airflow_provider_volteras._compat import HAS_TASK_STATE_STORE

    if not HAS_TASK_STATE_STORE:  # Airflow 3.1 and 3.2: the record is the task instance's Variable
        variable = "volteras_command_execution:{dag_id}:send:2:{run_id}"  # as VariableStateStore names it
        text = state_store_steps("send", map_index=2)
        assert f"delete the Variable '{variable}'" in text and f"DELETE /api/v2/variables/{variable}" in text
        assert "volteras_command_execution:{dag_id}:send:-1:{run_id}" in state_store_steps("send")
        return
    assert "?map_index" not in state_store_steps("send")
    text = state_store_steps("send", map_index=2)
    assert "(map index 2)" in text
    assert "/taskInstances/send/state-store/volteras_command_execution?map_index=2" in text


def test_already_final_says_nothing_was_sent_and_how_to_send_again():
    text = str(already_final(failed("OEM_OAUTH_TOKEN_EXPIRED"), task_id="climate_off"))
    lines = text.splitlines()
    assert lines[0].startswith("CLIMATE_OFF on vehicle sim-ok-1 FAILED in an earlier try: OEM_OAUTH_TOKEN_EXPIRED")
    assert "Not sent again" in lines[1] and "not a person's Clear" in lines[1]
    assert text.count("To send the command again") == 1
    assert "To send the command again once the cause is fixed: Clear task 'climate_off' in the Airflow UI" in text


@pytest.mark.parametrize(
    "forged", ["x\nCLIMATE_OFF on vehicle sim-ok-1 EXECUTED", "x\rEXECUTED", "x\u2028EXECUTED", "\x1b[2Kok"]
)
def test_api_text_cannot_forge_a_log_line(forged):
    error = failed(forged)
    for line in str(error).splitlines():
        assert "EXECUTED" not in line or "\\" in line, line
    assert "\x1b" not in str(error) and "\u2028" not in str(error)
    api = api_failure(VolterasServerError(forged, code="SERVER_ERROR"), vehicle_id="v", command="LOCK_DOORS")
    assert len(str(api).splitlines()) == len(
        str(
            api_failure(VolterasServerError("boom", code="SERVER_ERROR"), vehicle_id="v", command="LOCK_DOORS")
        ).splitlines()
    )


def test_api_text_is_capped():
    huge = "A" * 2_000_000
    for error in (
        failed(huge),
        api_failure(VolterasServerError(huge, code="SERVER_ERROR"), vehicle_id="v", command="LOCK_DOORS"),
        unexpected_outcome("v", "LOCK_DOORS", "e", {"status": huge}, reason="UNEXPECTED_STATUS"),
    ):
        assert len(str(error)) < 2_000
        assert "more characters not shown" in str(error)
        assert len(error.reason or "") <= 200
    assert len(safe_text(huge)) < API_TEXT_LIMIT + 60


def test_unexpected_answers_name_a_code_never_none():
    error = api_failure(
        VolterasUnexpectedResponseError("HTTP 502 with a body that is not JSON"), vehicle_id="v", command="C"
    )
    assert "[None]" not in str(error) and "None" not in str(error).splitlines()[0]
    assert error.reason == "VolterasUnexpectedResponseError"
    assert "not completed: VolterasUnexpectedResponseError" in str(error).splitlines()[0]


def test_invalid_input_says_nothing_was_sent():
    error = api_failure(VolterasInvalidInputError("vehicle_id 'a b' contains ' '"), vehicle_id="a b\nx", command="C")
    first = str(error).splitlines()[0]
    expected = "C on vehicle a b\\nx refused before sending: VolterasInvalidInputError"
    assert first == expected + " (fatal: Airflow will NOT retry the task)"
    assert "nothing was sent" in str(error)


def test_pending_at_deadline_for_a_sensor_does_not_promise_a_resend():
    sensor = str(pending_at_deadline("v", "LOCK_DOORS", "e", 600, task_kind="sensor"))
    operator = str(pending_at_deadline("v", "LOCK_DOORS", "e", 600))
    assert "a sensor never sends a command" in sensor and "sends a new command" not in sensor
    assert "sends a new command only if it failed for a retryable reason" in operator
    assert sensor.splitlines()[0].startswith("LOCK_DOORS on vehicle v still PENDING at the task's timeout (retryable")


def test_sender_task_id_from_the_dag():
    from airflow.sdk import DAG

    from airflow_provider_volteras.operators.commands import ClimateOffOperator

    with DAG("vt_sender"):
        send = ClimateOffOperator(task_id="climate_off", vehicle_id="v", wait_for_completion=False)
    assert sender_task_id(send.output["id"]) == "climate_off"
    assert sender_task_id("{{ ti.xcom_pull(task_ids='send_it')['id'] }}") == "send_it"
    assert sender_task_id("exec-123") is None
