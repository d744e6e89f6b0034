"""The operators and the sensor follow ``[operators] default_deferrable`` like Airflow's own operators."""

from __future__ import annotations

import pytest

from airflow_provider_volteras.operators.commands import ClimateOffOperator
from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor


def build(cls, **kwargs):
    if cls is CommandExecutionSensor:
        return cls(task_id="t", vehicle_id="car-1", command_execution_id="e-1", **kwargs)
    if cls is FleetClimateOffOperator:
        return cls(task_id="t", vehicle_ids=["car-1"], **kwargs)
    return cls(task_id="t", vehicle_id="car-1", **kwargs)


@pytest.mark.parametrize("cls", [ClimateOffOperator, CommandExecutionSensor, FleetClimateOffOperator])
@pytest.mark.parametrize("setting", ["True", "False"])
def test_the_default_follows_the_setting_and_an_explicit_value_wins(monkeypatch, cls, setting):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
    assert build(cls).deferrable is (setting == "True")
    assert build(cls, deferrable=True).deferrable is True
    assert build(cls, deferrable=False).deferrable is False
