"""Fleet benchmark: one command to a big fleet, batch operator in chunks versus one mapped task per vehicle.

    .venv/bin/python -m benchmarks.bench_fleet                      # 5,000 vehicles batch, 40 per-vehicle
    .venv/bin/python -m benchmarks.bench_fleet --n 500 --baseline-n 10 --chunk 100   # quick

Both DAGs run with ``dag.test()`` in one child process each, against the simulator in its own process;
every command stays PENDING ~2 s (magic ids ``...-d2``). For each mode it reports, per vehicle: API
requests (with tokens, listings, creates and status reads apart), worker task launches, and worker-slot
seconds (the summed duration of ``supervisor.run_task_in_process``, i.e. the time a task held a worker;
trigger time is not counted). The per-vehicle mode is measured on a smaller fleet (``--baseline-n``)
and reported per vehicle: ``dag.test()`` runs mapped tasks one after the other, so 5,000 of them would
take hours here (and 5,000 could not be mapped at all: ``max_map_length`` is 1,024).

Caveat on tokens: ``dag.test()`` runs every task in one process, whose token cache then serves them
all. On a real deployment each task launch is a new process with a cold cache, so the per-vehicle
mode needs about one token request per worker launch; the launches column gives that figure.

Nothing is asserted; the numbers are printed side by side (and written as JSON with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

DAG_FILE = textwrap.dedent(
    '''
    from datetime import datetime

    from airflow.sdk import DAG, task

    from airflow_provider_volteras.operators.commands import ClimateOffOperator
    from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator, chunk_label_template, chunked

    def _dag(dag_id):
        return DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)

    with _dag("bench_fleet_batch") as batch_dag:

        @task
        def chunks(dag_run=None):
            return chunked(dag_run.conf["vehicle_ids"], int(dag_run.conf["chunk"]))

        FleetClimateOffOperator.partial(
            task_id="climate_off", poll_interval=15, timeout=600, map_index_template=chunk_label_template(500)
        ).expand(vehicle_ids=chunks())

    with _dag("bench_fleet_per_vehicle") as per_vehicle_dag:

        @task
        def vehicles(dag_run=None):
            return list(dag_run.conf["vehicle_ids"])

        ClimateOffOperator.partial(task_id="climate_off", poll_interval=15, timeout=600).expand(
            vehicle_id=vehicles()
        )

    with _dag("bench_fleet_warmup") as warmup_dag:

        @task
        def warm_up():
            """Starts dag.test()'s in-process execution API before the measured runs."""

        warm_up()
    '''
)


def child(args: argparse.Namespace) -> int:
    """Run one mode with dag.test() and write its measurements."""
    import importlib.util

    import airflow.sdk.execution_time.supervisor as supervisor
    import httpx

    spans: list[float] = []
    original = supervisor.run_task_in_process

    def timed(*a: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            spans.append(time.perf_counter() - start)

    supervisor.run_task_in_process = timed
    spec = importlib.util.spec_from_file_location("bench_fleet_dags", args.dag_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.warmup_dag.test()
    spans.clear()
    sim = httpx.Client(base_url=args.sim, timeout=60)
    before = sim.get("/_simulator/counters").json()
    dag = module.batch_dag if args.mode == "batch" else module.per_vehicle_dag
    vehicles = [f"sim-ok-{args.mode}-{i}-d2" for i in range(args.n)]
    t0 = time.perf_counter()
    dr = dag.test(run_conf={"vehicle_ids": vehicles, "chunk": args.chunk})
    wall = time.perf_counter() - t0
    after = sim.get("/_simulator/counters").json()
    tis = [ti for ti in dr.get_task_instances() if ti.task_id == "climate_off"]
    delta = {k: after[k] - before[k] for k in ("requests", "tokenRequests", "lists", "createsTotal", "polls")}
    result = {
        "mode": args.mode,
        "vehicles": args.n,
        "chunk": args.chunk if args.mode == "batch" else 1,
        "dag_run_state": str(dr.state),
        "mapped_tasks": len(tis),
        "task_states": sorted({str(ti.state) for ti in tis}),
        "worker_launches": len(spans),
        "worker_slot_seconds": sum(spans),
        "wall_seconds": wall,
        **delta,
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000, help="vehicles for the batch operator")
    parser.add_argument("--baseline-n", type=int, default=40, help="vehicles for one mapped task per vehicle")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["batch", "per_vehicle"], help=argparse.SUPPRESS)
    parser.add_argument("--sim", help=argparse.SUPPRESS)
    parser.add_argument("--dag-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from benchmarks._common import ROOT, Simulator, child_env, prepare_airflow_home

    work = Path(tempfile.mkdtemp(prefix="volteras-bench-fleet-"))
    home = work / "airflow_home"
    prepare_airflow_home(home)
    dags = work / "dags"
    dags.mkdir()
    dag_file = dags / "bench_fleet_dags.py"
    dag_file.write_text(DAG_FILE)
    sim = Simulator(work, child_env(home, None))
    try:
        env = child_env(home, sim.base_url)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
        env["AIRFLOW__CORE__MAX_MAP_LENGTH"] = "1024"
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=300,
        )
        results = {}
        for mode, n in (("batch", args.n), ("per_vehicle", args.baseline_n)):
            out = work / f"{mode}.json"
            print(f"[bench_fleet] {mode}: {n} vehicles ...", file=sys.stderr, flush=True)
            with open(work / f"{mode}.log", "wb") as log:
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.bench_fleet",
                        "--child",
                        "--mode",
                        mode,
                        "--n",
                        str(n),
                        "--chunk",
                        str(args.chunk),
                        "--sim",
                        sim.base_url,
                        "--dag-file",
                        str(dag_file),
                        "--out",
                        str(out),
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=7200,
                    check=False,
                )
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"{mode} child exited with {proc.returncode}; see {work / f'{mode}.log'}")
            results[mode] = json.loads(out.read_text())
    finally:
        sim.stop()
    print(report(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(f"(logs in {work})", file=sys.stderr)
    return 0


def report(results: dict[str, dict[str, Any]]) -> str:
    b, p = results["batch"], results["per_vehicle"]
    rows = [
        ("API requests", "requests"),
        ("  token requests", "tokenRequests"),
        ("  listings", "lists"),
        ("  creates", "createsTotal"),
        ("  status reads", "polls"),
        ("worker task launches", "worker_launches"),
        ("worker-slot seconds", "worker_slot_seconds"),
    ]
    lines = [
        f"batch: {b['vehicles']:,} vehicles in {b['mapped_tasks']} chunk task(s) of {b['chunk']}, "
        f"run {b['dag_run_state']}, "
        f"{b['wall_seconds']:.0f} s; per vehicle: {p['vehicles']:,} mapped task(s), run {p['dag_run_state']}, "
        f"{p['wall_seconds']:.0f} s",
        "",
        f"| per vehicle | batch (N={b['vehicles']:,}) | one task per vehicle (N={p['vehicles']:,}) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for label, key in rows:
        x, y = b[key] / b["vehicles"], p[key] / p["vehicles"]
        lines.append(f"| {label} | {x:.4f} | {y:.4f} | {x / y:.3f} |" if y else f"| {label} | {x:.4f} | {y:.4f} | — |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
