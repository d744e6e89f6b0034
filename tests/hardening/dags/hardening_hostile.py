"""Template DAG for hostile templated values: every task takes one value from ``dag_run.conf``.

Copied into ``$AIRFLOW_HOME/dags`` by the test. Each task must fail at once (fatal, so the retry is
not used) with a clear message, before any request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_volteras.operators.commands import (
    SetChargeLimitOperator,
    SetTemperatureOperator,
    VolterasCommandOperator,
)
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

SIZES = {"ids": 10, "executions": 6, "temperatures": 6, "limits": 6, "commands": 6}
OK = "sim-ok-hostile"


def value(key: str, index: int) -> str:
    return "{{ dag_run.conf['%s'][%d] }}" % (key, index)  # noqa: UP031 - Jinja braces


with DAG(
    dag_id="hardening_hostile",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
) as dag:
    for i in range(SIZES["ids"]):
        VolterasCommandOperator(task_id=f"ids_{i}", vehicle_id=value("ids", i), command="CLIMATE_OFF")
    for i in range(SIZES["executions"]):
        CommandExecutionSensor(task_id=f"executions_{i}", vehicle_id=OK, command_execution_id=value("executions", i))
    for i in range(SIZES["temperatures"]):
        SetTemperatureOperator(
            task_id=f"temperatures_{i}",
            vehicle_id=OK,
            driver_temperature=value("temperatures", i),
            passenger_temperature=21,
        )
    for i in range(SIZES["limits"]):
        SetChargeLimitOperator(task_id=f"limits_{i}", vehicle_id=OK, limit=value("limits", i))
    for i in range(SIZES["commands"]):
        VolterasCommandOperator(task_id=f"commands_{i}", vehicle_id=OK, command=value("commands", i))
