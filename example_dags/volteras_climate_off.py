"""Turn the climate off on one vehicle: send the command, then wait for it in the triggerer.

The two-task pattern: ``ClimateOffOperator(wait_for_completion=False)`` returns the created execution
at once, and the deferrable ``CommandExecutionSensor`` waits for ``EXECUTED`` without holding a worker
slot. Trigger it from the UI and type a vehicle id in the form (``sim-ok`` and the other magic ids of
the embedded simulator show each outcome).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.commands import ClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

with DAG(
    dag_id="volteras_climate_off",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    params={
        "vehicle_id": Param("sim-ok", type="string", minLength=1, maxLength=200, title="Vehicle id"),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_policy": VolterasRetryPolicy()},
) as dag:
    send = ClimateOffOperator(
        task_id="climate_off",
        vehicle_id="{{ params.vehicle_id }}",
        wait_for_completion=False,
    )
    wait = CommandExecutionSensor(
        task_id="wait_for_climate_off",
        vehicle_id="{{ params.vehicle_id }}",
        command_execution_id=send.output["id"],
        poke_interval=10,
        timeout=600,
    )
    send >> wait
