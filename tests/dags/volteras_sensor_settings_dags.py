"""DAGs for the sensor's Airflow settings (``mode``, ``soft_fail``, ``never_fail``), run with ``dag.test()``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

FROM_CONF: dict[str, Any] = {
    "vehicle_id": "{{ dag_run.conf['vehicle_id'] }}",
    "command_execution_id": "{{ dag_run.conf['execution_id'] }}",
    "poke_interval": 1,
}


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)


# mode="reschedule": deferrable is not given, so [operators] default_deferrable (True in the tests) does not apply.
with _dag("vs_reschedule") as vs_reschedule:
    CommandExecutionSensor(task_id="wait", mode="reschedule", timeout=60, retries=0, **FROM_CONF)

with _dag("vs_reschedule_timeout") as vs_reschedule_timeout:
    CommandExecutionSensor(task_id="wait", mode="reschedule", timeout=3, retries=0, **FROM_CONF)

# soft_fail in every way of waiting: in the triggerer, in the worker, and rescheduled.
SOFT_FAIL: dict[str, dict[str, Any]] = {
    "vs_soft_fail_deferrable": {"deferrable": True},
    "vs_soft_fail_worker": {"deferrable": False},
    "vs_soft_fail_reschedule": {"mode": "reschedule"},
}
soft_fail_dags: dict[str, DAG] = {}
for _dag_id, _how in SOFT_FAIL.items():
    with _dag(_dag_id) as _d:
        CommandExecutionSensor(
            task_id="wait", soft_fail=True, timeout=3, retries=1, retry_delay=timedelta(seconds=1), **_how, **FROM_CONF
        )
    soft_fail_dags[_dag_id] = _d

with _dag("vs_never_fail") as vs_never_fail:
    CommandExecutionSensor(
        task_id="wait",
        never_fail=True,
        deferrable=False,
        timeout=30,
        retries=1,
        retry_delay=timedelta(seconds=1),
        **FROM_CONF,
    )
