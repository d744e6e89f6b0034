"""DAGs the operator and sensor tests run with ``dag.test()`` (copied into the test DAGS_FOLDER)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.commands import ClimateOffOperator, VolterasCommandOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

START = datetime(2026, 1, 1)
FAST_RETRY = {"retries": 2, "retry_delay": timedelta(seconds=1)}
CONF_OPERATOR = {
    "vehicle_id": "{{ dag_run.conf['vehicle_id'] }}",
    "command": "{{ dag_run.conf.get('command', 'CLIMATE_OFF') }}",
    "arguments": "{{ dag_run.conf.get('arguments') }}",
    "poll_interval": 1,
}


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True)


with _dag("vt_deferrable") as vt_deferrable:
    VolterasCommandOperator(task_id="send", timeout=30, **CONF_OPERATOR, **FAST_RETRY)

with _dag("vt_sync") as vt_sync:
    VolterasCommandOperator(task_id="send", deferrable=False, timeout=30, **CONF_OPERATOR, **FAST_RETRY)

with _dag("vt_deadline") as vt_deadline:
    VolterasCommandOperator(task_id="send", timeout=2, retries=1, retry_delay=timedelta(seconds=1), **CONF_OPERATOR)

with _dag("vt_deadline_sync") as vt_deadline_sync:
    VolterasCommandOperator(
        task_id="send", deferrable=False, timeout=2, retries=1, retry_delay=timedelta(seconds=1), **CONF_OPERATOR
    )

with _dag("vt_in_progress_fail") as vt_in_progress_fail:
    VolterasCommandOperator(task_id="send", if_in_progress="fail", timeout=30, **CONF_OPERATOR, **FAST_RETRY)

with _dag("vt_in_progress_skip") as vt_in_progress_skip:
    VolterasCommandOperator(task_id="send", if_in_progress="skip", timeout=30, **CONF_OPERATOR, **FAST_RETRY)

with _dag("vt_overrides") as vt_overrides:
    VolterasCommandOperator(
        task_id="send",
        timeout=30,
        retryable_reasons=["OEM_OAUTH_TOKEN_EXPIRED"],
        fatal_reasons=["OEM_VEHICLE_OFFLINE"],
        **CONF_OPERATOR,
        **FAST_RETRY,
    )

with _dag("vt_policy") as vt_policy:
    VolterasCommandOperator(
        task_id="send",
        timeout=30,
        # Given through default_args, which Airflow 3.1 and 3.2 ignore (no retry_policy before 3.3).
        default_args={
            "retry_policy": VolterasRetryPolicy(
                transient=timedelta(seconds=1),
                vehicle_busy=timedelta(seconds=1),
                vehicle_offline=timedelta(seconds=2),
                rate_limited=timedelta(seconds=1),
            )
        },
        **CONF_OPERATOR,
        **FAST_RETRY,
    )


class CrashAfterCreate(ClimateOffOperator):
    """Dies like a killed worker after the command was sent, on the first try only."""

    def on_prepared(self, context: Any, pending: dict[str, str]) -> None:
        super().on_prepared(context, pending)
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after create")


with _dag("vt_crash") as vt_crash:
    CrashAfterCreate(task_id="send", vehicle_id="{{ dag_run.conf['vehicle_id'] }}", poll_interval=1, **FAST_RETRY)

with _dag("vt_two_task") as vt_two_task:
    send = ClimateOffOperator(task_id="send", vehicle_id="{{ dag_run.conf['vehicle_id'] }}", wait_for_completion=False)
    wait = CommandExecutionSensor(
        task_id="wait",
        vehicle_id="{{ dag_run.conf['vehicle_id'] }}",
        command_execution_id=send.output["id"],
        poke_interval=1,
        timeout=30,
        retries=0,
    )
    send >> wait

with _dag("vt_mapped") as vt_mapped:
    ClimateOffOperator.partial(task_id="send", poll_interval=1, **FAST_RETRY).expand(
        vehicle_id=["sim-ok-a", "sim-ok-b", "sim-fail-OEM_OAUTH_TOKEN_EXPIRED"]
    )

with _dag("vt_sensor_sync") as vt_sensor_sync:
    CommandExecutionSensor(
        task_id="wait",
        vehicle_id="{{ dag_run.conf['vehicle_id'] }}",
        command_execution_id="{{ dag_run.conf['execution_id'] }}",
        deferrable=False,
        poke_interval=1,
        timeout=30,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )

with _dag("vt_sensor") as vt_sensor:
    CommandExecutionSensor(
        task_id="wait",
        vehicle_id="{{ dag_run.conf['vehicle_id'] }}",
        command_execution_id="{{ dag_run.conf['execution_id'] }}",
        poke_interval=1,
        timeout=30,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
