"""Template DAG for the hardening tests: copied into ``$AIRFLOW_HOME/dags`` by a fixture.

Every value comes from ``dag_run.conf`` so one file serves the success, failure and hostile runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_volteras.operators.commands import (
    ClimateOnOperator,
    SetChargeLimitOperator,
    SetTemperatureOperator,
    VolterasCommandOperator,
)
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

VEHICLE = "{{ dag_run.conf['vehicle_id'] }}"

with DAG(
    dag_id="hardening_flow",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
) as dag:
    # Deferrable send-and-wait: exercises the trigger (its kwargs land in the trigger table).
    send_and_wait = VolterasCommandOperator(
        task_id="send_and_wait",
        vehicle_id=VEHICLE,
        command="{{ dag_run.conf.get('command', 'CLIMATE_OFF') }}",
        poll_interval=0.5,
        timeout=30,
    )
    # Two-task pattern: fire, then a deferrable sensor on the pushed execution id.
    fire = ClimateOnOperator(task_id="fire", vehicle_id=VEHICLE, wait_for_completion=False)
    wait = CommandExecutionSensor(
        task_id="wait",
        vehicle_id=VEHICLE,
        command_execution_id="{{ dag_run.conf.get('execution_id') or ti.xcom_pull(task_ids='fire', key='id') }}",
        poke_interval=0.5,
        timeout=30,
    )
    fire >> wait
    temperature = SetTemperatureOperator(
        task_id="set_temperature",
        vehicle_id=VEHICLE,
        driver_temperature="{{ dag_run.conf.get('temperature', 21) }}",
        passenger_temperature="{{ dag_run.conf.get('temperature', 21) }}",
        deferrable=False,
        poll_interval=0.5,
        timeout=30,
    )
    limit = SetChargeLimitOperator(
        task_id="set_charge_limit",
        vehicle_id=VEHICLE,
        limit="{{ dag_run.conf.get('limit', 80) }}",
        deferrable=False,
        poll_interval=0.5,
        timeout=30,
    )
