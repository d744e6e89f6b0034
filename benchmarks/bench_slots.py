"""Benchmark 3, child process: worker-slot seconds of a 30 s command, deferrable versus not.

``python -m benchmarks.bench_slots --vehicle sim-ok-d30 --out FILE`` (needs a migrated AIRFLOW_HOME,
DAGS_FOLDER = benchmarks/dags and ``AIRFLOW_CONN_VOLTERAS_DEFAULT``).

Runs ``volteras_bench_slots_deferrable`` then ``volteras_bench_slots_sync`` with ``dag.test()``.
``dag.test()`` runs each stretch of a task in the ``running`` state with
``supervisor.run_task_in_process`` (the worker part: first try until it defers, then again to resume
in ``execute_complete``) and a deferral with ``_run_inline_trigger`` (the triggerer part). Both are
wrapped here to time them: slot seconds = the summed duration of the ``run_task_in_process`` calls.
As a cross-check from the metadata DB: the task instance's ``end_date - start_date`` minus the timed
deferral windows. A warm-up DAG runs first: the first task run of a ``dag.test()`` process starts an
in-process execution API server (~10 s here), a cost of the test harness and not of a worker slot.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import DAGS_DIR

DAG_FILE = DAGS_DIR / "volteras_bench_slots.py"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicle", default="sim-ok-d30")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import airflow.sdk.definitions.dag as dag_module
    import airflow.sdk.execution_time.supervisor as supervisor

    spans: list[tuple[str, float, float]] = []

    def timed(kind: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            start = time.time()
            try:
                return fn(*a, **kw)
            finally:
                spans.append((kind, start, time.time()))

        return wrapper

    # ``_run_task`` imports run_task_in_process from the module at call time, so patching the module works.
    supervisor.run_task_in_process = timed("running", supervisor.run_task_in_process)
    dag_module._run_inline_trigger = timed("deferred", dag_module._run_inline_trigger)

    spec = importlib.util.spec_from_file_location("volteras_bench_slots", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    t0 = time.time()
    module.warmup_dag.test()
    results: dict[str, Any] = {"warmup_seconds": time.time() - t0}
    for mode, dag in (("deferrable", module.deferrable_dag), ("sync", module.sync_dag)):
        spans.clear()
        t0 = time.time()
        dr = dag.test(run_conf={"vehicle_id": args.vehicle})
        wall = time.time() - t0
        tis = dr.get_task_instances()
        ti = next(t for t in tis if t.task_id == "send")
        running = [(s, e) for k, s, e in spans if k == "running"]
        deferred = [(s, e) for k, s, e in spans if k == "deferred"]
        deferred_seconds = sum(e - s for s, e in deferred)
        db_total = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
        results[mode] = {
            "dag_id": dag.dag_id,
            "dag_run_state": str(dr.state),
            "ti_state": str(ti.state),
            "try_number": ti.try_number,
            "slot_seconds": sum(e - s for s, e in running),
            "running_stretches": [round(e - s, 3) for s, e in running],
            "deferred_seconds": deferred_seconds,
            "db_start_to_end_seconds": db_total,
            "db_slot_seconds": db_total - deferred_seconds if db_total is not None else None,
            "dag_test_wall_seconds": wall,
        }
    args.out.write_text(json.dumps(results))
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def run_benchmark(ctx: Any, vehicle: str) -> dict[str, Any]:
    from benchmarks._common import read_json, run_child

    out = ctx.workdir / "b3.json"
    proc = run_child("bench_slots", ["--vehicle", vehicle, "--out", str(out)], ctx.env, ctx.workdir / "b3.log", 400)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"benchmark 3 child exited with {proc.returncode}; see {ctx.workdir / 'b3.log'}")
    return {"vehicle": vehicle, **read_json(out)}


if __name__ == "__main__":
    sys.exit(main())
