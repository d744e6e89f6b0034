"""The failure taxonomy: every documented failedReason is classified, messages say what users need."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_volteras._compat import HAS_RETRY_POLICY, AirflowFailException
from airflow_provider_volteras.exceptions import (
    VolterasAuthenticationError,
    VolterasFatalCommandError,
    VolterasNotFoundError,
    VolterasRateLimitError,
    VolterasRetryableCommandError,
    VolterasServerError,
    VolterasValidationError,
)
from airflow_provider_volteras.failures import (
    FAILED_REASONS,
    DelayKind,
    VolterasRetryPolicy,
    api_failure,
    classify_reason,
    command_failure,
)

OPENAPI = Path(__file__).resolve().parent / "data" / "volteras" / "openapi.json"
DOCUMENTED = json.loads(OPENAPI.read_text())["components"]["schemas"]["VehicleCommandExecution"]["properties"][
    "failedReason"
]["enum"]

# Named in the product's requirements: these need a person.
MUST_BE_FATAL = {
    "OEM_INCORRECT_REGION",
    "OEM_USER_ACCOUNT_LOCKED",
    "OEM_OAUTH_TOKEN_EXPIRED",
    "OEM_VEHICLE_REMOTE_ACCESS_DISABLED",
    "OEM_VEHICLE_LOCATION_SHARING_DISABLED",
    "OEM_AUTH_DRIVER_IS_NOT_PRIMARY_USER",
    "OEM_DEVICE_NOT_FOUND",
    "OEM_VEHICLE_NOT_IN_AUTHORIZED_LOCATION",
    "OEM_VEHICLE_CHARGING_REFUSED_PLAY_PROTECTION",
    "AUTHENTICATION_ERROR",
    "NOT_PERMITTED",
}
# ... and these are transient.
MUST_BE_RETRYABLE = {
    "OEM_TIMEOUT",
    "OEM_NETWORK_ERROR",
    "OEM_UNAVAILABLE",
    "OEM_RATE_LIMITED",
    "OEM_VEHICLE_OFFLINE",
    "OEM_COMMAND_REFUSED_VEHICLE_AWAKE_IN_STAND_STILL_AND_ACTIVE_STATE",
    "SERVER_ERROR",
    "INTERNAL_RATE_LIMITED",
}


def test_the_table_covers_exactly_the_documented_reasons():
    assert len(DOCUMENTED) == 36
    assert set(FAILED_REASONS) == set(DOCUMENTED)


@pytest.mark.parametrize("reason", DOCUMENTED)
def test_every_reason_is_classified_with_a_meaning(reason):
    info = FAILED_REASONS[reason]
    assert info.meaning and info.action
    if reason in MUST_BE_FATAL:
        assert not info.retryable
    if reason in MUST_BE_RETRYABLE:
        assert info.retryable
    assert (info.delay_kind is not None) == info.retryable
    error = command_failure(
        {"id": "exec-7", "status": "FAILED", "failedReason": reason}, vehicle_id="car-7", command="CLIMATE_OFF"
    )
    text = str(error)
    for part in ("car-7", "CLIMATE_OFF", "exec-7", reason, info.meaning):
        assert part in text
    assert ("will retry" in text) == info.retryable and ("will NOT retry" in text) == (not info.retryable)
    assert isinstance(error, AirflowFailException) == (not info.retryable)


def test_plain_string_reason_is_retryable_and_says_so():
    error = command_failure(
        {"id": "e", "failedReason": "Vehicle did not respond"}, vehicle_id="v", command="LOCK_DOORS"
    )
    assert isinstance(error, VolterasRetryableCommandError)
    assert "not a documented reason" in str(error)
    assert classify_reason(None).retryable and classify_reason("").reason == "(no reason given)"


def test_per_task_overrides_win():
    assert classify_reason("OEM_VEHICLE_OFFLINE", fatal_reasons=["OEM_VEHICLE_OFFLINE"]).retryable is False
    assert classify_reason("OEM_OAUTH_TOKEN_EXPIRED", retryable_reasons=["OEM_OAUTH_TOKEN_EXPIRED"]).retryable
    assert classify_reason("X", retryable_reasons=["X"], fatal_reasons=["X"]).retryable is False


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (VolterasValidationError("bad", code="REQUEST_VALIDATION_ERROR"), False),
        (VolterasNotFoundError("nope", code="RESOURCE_NOT_FOUND"), False),
        (VolterasAuthenticationError("no", code="AUTHENTICATION_ERROR"), False),
        (VolterasServerError("boom", code="SERVER_ERROR"), True),
        (VolterasRateLimitError("slow down", code="INTERNAL_RATE_LIMITED"), True),
    ],
)
def test_api_errors_at_create_time(error, retryable):
    failure = api_failure(error, vehicle_id="car-1", command="CLIMATE_OFF")
    assert failure.retryable is retryable
    assert "car-1" in str(failure) and "CLIMATE_OFF" in str(failure)


def test_retry_policy_delays_fit_the_reason(caplog):
    """Airflow 3.3 asks the policy for each retry's delay; before 3.3 nothing asks it, and it says so once."""
    import airflow_provider_volteras._compat as compat

    compat._noted.discard("retry_policy")
    policy = VolterasRetryPolicy()
    assert VolterasRetryPolicy.deserialize(policy.serialize()).delays == policy.delays
    assert DelayKind.RATE_LIMITED in policy.delays
    noted = [r.getMessage() for r in caplog.records if "retry_policy" in r.getMessage()]
    if not HAS_RETRY_POLICY:  # Airflow 3.1 and 3.2: documented in docs/airflow-versions.md
        assert len(noted) == 1 and "VolterasRetryPolicy has no effect" in noted[0]
        assert "retry_delay" in noted[0] and "docs/airflow-versions.md" in noted[0]
        VolterasRetryPolicy()
        assert len([r for r in caplog.records if "retry_policy" in r.getMessage()]) == 1  # once per process
        return
    assert noted == []
    from airflow.sdk.definitions.retry_policy import RetryAction

    def decide(reason: str, window: int | None = None):
        err = command_failure({"id": "e", "failedReason": reason}, vehicle_id="v", command="CLIMATE_OFF")
        err.rate_limit_window_seconds = window
        return policy.evaluate(err, try_number=1, max_tries=3)

    offline, blip = decide("OEM_VEHICLE_OFFLINE"), decide("OEM_NETWORK_ERROR")
    assert offline.action == blip.action == RetryAction.RETRY
    assert offline.retry_delay > blip.retry_delay
    assert decide("OEM_RATE_LIMITED", window=3600).retry_delay == timedelta(seconds=3600)
    assert decide("OEM_RATE_LIMITED").retry_delay == timedelta(minutes=5)
    assert decide("OEM_OAUTH_TOKEN_EXPIRED").action == RetryAction.FAIL
    assert policy.evaluate(ValueError("x"), 1, 3).action == RetryAction.DEFAULT


def test_fatal_error_is_an_airflow_fail_exception():
    assert issubclass(VolterasFatalCommandError, AirflowFailException)
    assert not issubclass(VolterasRetryableCommandError, AirflowFailException)
