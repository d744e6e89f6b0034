"""Benchmark 3 DAGs: one 30 s command (``sim-ok-d30``), deferrable versus ``deferrable=False``.

Run by ``benchmarks/bench_slots.py`` with ``dag.test()``; the vehicle can be overridden with
``run_conf={"vehicle_id": ...}`` (the quick smoke run uses a shorter command). ``..._warmup`` is run
first so that the one-time start of ``dag.test()``'s in-process execution API is not counted.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airflow_provider_volteras.operators.commands import VolterasCommandOperator

PARAMS = {"vehicle_id": Param("sim-ok-d30", type="string")}

with DAG(
    dag_id="volteras_bench_slots_deferrable",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=PARAMS,
    tags=["volteras", "benchmark"],
) as deferrable_dag:
    VolterasCommandOperator(
        task_id="send", vehicle_id="{{ params.vehicle_id }}", command="CLIMATE_OFF", deferrable=True, timeout=300
    )

with DAG(
    dag_id="volteras_bench_slots_sync",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=PARAMS,
    tags=["volteras", "benchmark"],
) as sync_dag:
    VolterasCommandOperator(
        task_id="send", vehicle_id="{{ params.vehicle_id }}", command="CLIMATE_OFF", deferrable=False, timeout=300
    )

with DAG(
    dag_id="volteras_bench_slots_warmup",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "benchmark"],
) as warmup_dag:

    @task
    def warm_up() -> None:
        """Nothing: starts dag.test()'s in-process execution API before the measured runs."""

    warm_up()
