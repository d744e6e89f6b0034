"""DAGs for the Clear-or-retry tests (``tests/lifecycle/test_clear.py``), run with ``dag.test()``.

Calling ``dag.test()`` again with the same logical date is a Clear of every task instance of that run
(``clear_dags`` then the same run, the same task state store): what a person does in the UI.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_volteras.operators.commands import ClimateOffOperator
from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

START = datetime(2026, 1, 1)
VEHICLE = "{{ dag_run.conf['vehicle_id'] }}"
#: Vehicles of the mapped and the batch fleet DAGs (the tests give them scenarios).
FLEET = ["car-clear-fleet-ok", "car-clear-fleet-consent"]


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False)


class CrashBetweenCreateAndRecord(ClimateOffOperator):
    """Dies like a killed worker right after the API applied the create, before the execution id is
    recorded (only "create in flight" is), on the first try only."""

    def execute(self, context: Any) -> Any:
        if context["ti"].try_number == 1:
            create = self.hook.create_command_execution

            def create_then_die(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop("on_issued", None)
                create(*args, **kwargs)
                raise RuntimeError("simulated worker crash between the create and the record of its id")

            self.hook.create_command_execution = create_then_die  # type: ignore[method-assign]
        return super().execute(context)


class CrashAfterConclusion(ClimateOffOperator):
    """Dies after the outcome was recorded but before the task reported it, on the first try only: the
    next try is one of Airflow's own retries, not a Clear."""

    def conclude(self, context: Any, *args: Any, **kwargs: Any) -> Any:
        outcomes = super().conclude(context, *args, **kwargs)
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after the outcome was recorded")
        return outcomes


with _dag("vt_clear_single") as vt_clear_single:
    ClimateOffOperator(task_id="send", vehicle_id=VEHICLE, poll_interval=1, timeout=30, retries=0)

with _dag("vt_clear_two_task") as vt_clear_two_task:
    _send = ClimateOffOperator(task_id="send", vehicle_id=VEHICLE, wait_for_completion=False, retries=0)
    _wait = CommandExecutionSensor(
        task_id="wait",
        vehicle_id=VEHICLE,
        command_execution_id=_send.output["id"],
        poke_interval=1,
        timeout=30,
        # Retries a sensor would use on a FAILED execution if it retried what cannot change.
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    _send >> _wait

with _dag("vt_clear_mapped") as vt_clear_mapped:
    ClimateOffOperator.partial(task_id="send", poll_interval=1, timeout=30, retries=0).expand(vehicle_id=FLEET)

with _dag("vt_clear_batch") as vt_clear_batch:
    FleetClimateOffOperator(task_id="send", vehicle_ids=FLEET, poll_interval=1, timeout=30, retries=0)

with _dag("vt_clear_crash_in_flight") as vt_clear_crash_in_flight:
    CrashBetweenCreateAndRecord(
        task_id="send",
        vehicle_id=VEHICLE,
        poll_interval=1,
        timeout=30,
        retries=1,  # one automatic retry
        retry_delay=timedelta(seconds=1),
    )

with _dag("vt_clear_crash_in_flight_no_retry") as vt_clear_crash_in_flight_no_retry:
    CrashBetweenCreateAndRecord(task_id="send", vehicle_id=VEHICLE, poll_interval=1, timeout=30, retries=0)

with _dag("vt_clear_crash_after_conclusion") as vt_clear_crash_after_conclusion:
    CrashAfterConclusion(
        task_id="send", vehicle_id=VEHICLE, poll_interval=1, timeout=30, retries=1, retry_delay=timedelta(seconds=1)
    )
