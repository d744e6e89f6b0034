"""Per-task failedReason overrides are checked when the DAG is parsed (issue 10, item 13)."""

from __future__ import annotations

import pytest

from airflow_provider_volteras.failures import command_failure
from airflow_provider_volteras.operators.commands import ClimateOffOperator, PlainReason
from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor


def test_one_string_is_one_reason_not_its_characters():
    op = ClimateOffOperator(task_id="t", vehicle_id="car-1", fatal_reasons="OEM_VEHICLE_OFFLINE")
    assert op.fatal_reasons == ("OEM_VEHICLE_OFFLINE",)
    failure = command_failure(
        {"id": "e", "status": "FAILED", "failedReason": "OEM_VEHICLE_OFFLINE"},
        vehicle_id="car-1",
        command="CLIMATE_OFF",
        fatal_reasons=op.fatal_reasons,
    )
    assert failure.retryable is False


@pytest.mark.parametrize("cls", [ClimateOffOperator, CommandExecutionSensor, FleetClimateOffOperator])
@pytest.mark.parametrize("name", ["fatal_reasons", "retryable_reasons"])
def test_a_typo_is_refused_when_the_dag_is_parsed(cls, name):
    kwargs: dict = {"vehicle_id": "car-1"}
    if cls is CommandExecutionSensor:
        kwargs["command_execution_id"] = "e-1"
    if cls is FleetClimateOffOperator:
        kwargs = {"vehicle_ids": ["car-1"]}
    with pytest.raises(ValueError, match=r"OEM_VEHICLE_OFLINE.*not a documented failedReason"):
        cls(task_id="t", **kwargs, **{name: ["OEM_VEHICLE_OFLINE"]})


def test_plain_text_reasons_are_allowed_when_marked():
    op = ClimateOffOperator(
        task_id="t", vehicle_id="car-1", retryable_reasons=[PlainReason("Vehicle is in valet mode")]
    )
    failure = command_failure(
        {"id": "e", "status": "FAILED", "failedReason": "Vehicle is in valet mode"},
        vehicle_id="car-1",
        command="CLIMATE_OFF",
        retryable_reasons=op.retryable_reasons,
    )
    assert failure.retryable is True
    with pytest.raises(ValueError):
        ClimateOffOperator(task_id="t2", vehicle_id="car-1", retryable_reasons=["Vehicle is in valet mode"])
