"""Every evening, turn the climate off on every vehicle of the fleet: one mapped task per vehicle.

Each vehicle's task sends CLIMATE_OFF and waits for it in the triggerer. Fatal failures (consent
expired, remote access disabled, ...) fail that vehicle's task at once; transient ones retry after a
delay that fits the reason (``VolterasRetryPolicy``). The fleet comes from the ``vehicle_ids``
param, so a manual run can target other vehicles with ``{"vehicle_ids": [...]}``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.commands import ClimateOffOperator

FLEET = ["sim-ok-demo-1", "sim-ok-demo-2", "sim-ok-3"]  # the simulator's demo vehicles: replace with yours

# Retry delays in seconds per kind of failure; the demo and the end-to-end tests shorten them.
_RETRY_SECONDS = float(os.environ.get("VOLTERAS_EXAMPLE_RETRY_SECONDS", "0")) or None
_policy = (
    VolterasRetryPolicy(
        transient=timedelta(seconds=_RETRY_SECONDS),
        vehicle_busy=timedelta(seconds=_RETRY_SECONDS),
        vehicle_offline=timedelta(seconds=_RETRY_SECONDS),
        rate_limited=timedelta(seconds=_RETRY_SECONDS),
    )
    if _RETRY_SECONDS
    else VolterasRetryPolicy()
)

with DAG(
    dag_id="volteras_fleet_climate_off",
    schedule="0 20 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    params={"vehicle_ids": Param(FLEET, type="array", items={"type": "string"}, title="Vehicle ids")},
    max_active_runs=1,
) as dag:

    @task
    def fleet(params: dict | None = None) -> list[str]:
        """The vehicles of this run (the param, or ``dag_run.conf`` when triggered with one)."""
        return list((params or {})["vehicle_ids"])

    ClimateOffOperator.partial(
        task_id="climate_off",
        retries=3,
        retry_delay=timedelta(minutes=1),
        retry_policy=_policy,
        timeout=timedelta(minutes=10),
    ).expand(vehicle_id=fleet())
