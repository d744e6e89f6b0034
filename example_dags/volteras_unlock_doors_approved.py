"""Unlock a vehicle's doors only after a person approved it in Airflow.

Unlocking a car is sensitive, so a person decides first: `approve_unlock` is Airflow's
human-in-the-loop `ApprovalOperator`. Trigger the DAG, then open **Required Actions** in the UI (or the
`approve_unlock` task instance) and choose **Approve** or **Reject**.

* **Approve**: `unlock_doors` sends UNLOCK_DOORS and succeeds only when the car executed it.
* **Reject**: `unlock_doors` is skipped; nothing is sent.
* **No answer within an hour**: the default answer, Reject, is taken; nothing is sent.

**Where each task waits.** `approve_unlock` waits for the person in the **triggerer** (Airflow's
approval operator always defers), holding no worker slot for that hour. `unlock_doors` follows
`[operators] default_deferrable`, which Airflow ships `False`: it waits **in the worker** for the
seconds an unlock takes (up to its timeout for a car that does not answer), or in the triggerer when
that setting is True.

Simulator test ids: `sim-ok-demo-1` (executed), `sim-fail-OEM_OAUTH_TOKEN_EXPIRED` (fails, fatal).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param

from airflow_provider_volteras.operators.commands import UnlockDoorsOperator

with DAG(
    dag_id="volteras_unlock_doors_approved",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    params={
        "vehicle_id": Param(
            "sim-ok-demo-1",
            type="string",
            minLength=1,
            maxLength=200,
            pattern=r"^[A-Za-z0-9._:~-]+$",
            title="Vehicle id",
            description=(
                "The vehicle whose doors to unlock once approved (letters, digits and . _ : ~ - only). "
                "Simulator test ids: sim-ok-demo-1 (executed), sim-fail-OEM_OAUTH_TOKEN_EXPIRED (fails, fatal)."
            ),
        ),
        "reason": Param(
            "",
            type="string",
            maxLength=500,
            title="Why unlock?",
            description="Shown to the person who approves.",
        ),
    },
) as dag:
    approve = ApprovalOperator(
        task_id="approve_unlock",
        subject="Unlock the doors of vehicle {{ params.vehicle_id }}?",
        body=(
            "**{{ dag_run.triggering_user_name or 'Someone' }}** asks to unlock the doors of vehicle "
            "`{{ params.vehicle_id }}`.\n\nReason: {{ params.reason or '(none given)' }}\n\n"
            "Approve sends UNLOCK_DOORS to the car. Reject (or no answer within an hour) sends nothing."
        ),
        defaults="Reject",
        response_timeout=timedelta(hours=1),
    )
    unlock = UnlockDoorsOperator(
        task_id="unlock_doors",
        vehicle_id="{{ params.vehicle_id }}",
        retries=2,
        retry_delay=timedelta(seconds=30),
        doc_md="Runs only after `approve_unlock` was approved; sends UNLOCK_DOORS and waits until EXECUTED.",
    )
    approve >> unlock
