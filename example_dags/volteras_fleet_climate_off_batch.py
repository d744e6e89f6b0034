"""Turn the climate off on a fleet of any size: one task per chunk of up to 500 vehicles.

Use this shape past a few hundred vehicles; ``volteras_fleet_climate_off`` (one mapped task per
vehicle) is simpler to read in the UI but stops at Airflow's ``max_map_length`` (1,024).

**How it scales.** ``fleet`` splits the ``vehicle_ids`` param into chunks of ``VOLTERAS_FLEET_CHUNK_SIZE``
(500 by default) and ``climate_off`` is mapped over the chunks: 5,000 vehicles are 10 mapped tasks, far
below Airflow's ``[core] max_map_length`` of 1,024 (one mapped task per vehicle fails past 1,024
vehicles before any command is sent). Each ``climate_off`` task is a ``FleetClimateOffOperator``: it
sends CLIMATE_OFF to its vehicles 8 at a time with one token, waits for all of them in ONE trigger,
and logs a table with each vehicle's execution, status, failedReason and whether a retry helps. Each
mapped task is labelled "vehicles 1–500 (first id … last id)" (a one-vehicle chunk shows the vehicle id).

**Where each task waits.** Each chunk task passes `deferrable=True`: after sending, it watches its
vehicles' commands in the worker for the first few seconds, then waits for the rest in ONE trigger in
the **triggerer**, up to its `timeout` of 10 minutes, holding no worker slot. (With `deferrable=False`,
or `[operators] default_deferrable`, which Airflow ships `False`, each chunk would hold a worker slot for
the whole wait.)

**Failures.** A chunk task fails when any of its vehicles did not end EXECUTED. Fatal reasons only
(consent expired, remote access disabled, ...): it fails at once, no retry. Any retryable reason: the
task retries after a delay that fits the reasons (``VolterasRetryPolicy``), and the retry sends the
command again ONLY to the vehicles that failed retryably; vehicles already EXECUTED, still pending or
failed fatally are not sent anything (the task state store remembers every execution).

**Why it does not run on a schedule by default.** A command is a physical action on cars. With a
schedule, unpausing the DAG (which the UI's Trigger button does for a paused DAG) makes the scheduler
create a run for the latest schedule slot *as well as* the manual run: one click sent the command to the
fleet twice. So this DAG only runs when triggered (``schedule=None``). To run it every evening, set
``VOLTERAS_FLEET_BATCH_SCHEDULE`` (e.g. ``0 20 * * *``) in the environment that parses DAGs; then unpause it
once, before the evening slot, and do not also trigger it by hand.

**Which vehicles.** ``fleet`` picks them when the run starts: the vehicles that carry the ``tag`` param
(``fleet=demo`` by default), listed from the Volteras API (``VolterasHook.select_vehicles``, at most
``MAX_VEHICLES``: more, or none, fails ``fleet`` before anything is sent), or the ``vehicle_ids`` a run
names with ``{"vehicle_ids": [...]}``. The chunks are built from that list, so a chunk's retry keeps to
its vehicles whatever the tag says later. ``airflow tasks test volteras_fleet_climate_off_batch fleet``
previews the selection without sending anything.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator, chunk_label_template, chunked

FLEET_TAG = "fleet=demo"  # the simulator's demo vehicles carry it: tag yours (POST /v1/tags), or replace it
#: The most vehicles one run may reach: a selection above it fails before anything is sent.
MAX_VEHICLES = 10_000
CHUNK_SIZE = int(os.environ.get("VOLTERAS_FLEET_CHUNK_SIZE", "500"))
# Opt-in schedule (see the doc above): no schedule unless the environment asks for one.
SCHEDULE = os.environ.get("VOLTERAS_FLEET_BATCH_SCHEDULE") or None

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
    dag_id="volteras_fleet_climate_off_batch",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    params={
        "tag": Param(
            FLEET_TAG,
            type="string",
            pattern="^[^=]+=.+$",
            title="Vehicle tag",
            description=(
                "Turn the climate off on the vehicles with this tag (key=value), as the Volteras API lists them "
                f"when the run starts (up to {MAX_VEHICLES:,}, sent in chunks of {CHUNK_SIZE}). Against the "
                "simulator: fleet=demo (sim-ok-demo-1 and sim-ok-demo-2, executed) or fleet=demo-mixed (also "
                "sim-fail-OEM_VEHICLE_OFFLINE-demo, which fails retryably, and sim-stuck-demo, which stays pending)."
            ),
        ),
        "vehicle_ids": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Vehicle ids (instead of the tag)",
            description=(
                "Leave empty to select by tag. Otherwise exactly these Volteras vehicle ids; against the "
                "simulator any id starting with sim-ok executes, sim-fail-<REASON> fails with that reason."
            ),
        ),
    },
    max_active_runs=1,
) as dag:

    @task
    def fleet(params: dict | None = None) -> list[list[str]]:
        """This run's vehicles, chosen now (the ``vehicle_ids`` a run names, else those tagged ``tag``), in
        chunks of CHUNK_SIZE."""
        chosen = params or {}
        source = {"vehicle_ids": chosen["vehicle_ids"]} if chosen.get("vehicle_ids") else {"tag": chosen["tag"]}
        return chunked(VolterasHook().select_vehicles(**source, max_vehicles=MAX_VEHICLES), CHUNK_SIZE)

    FleetClimateOffOperator.partial(
        task_id="climate_off",
        retries=3,
        retry_delay=timedelta(minutes=1),
        default_args={"retry_policy": _policy},  # Airflow 3.3; earlier releases ignore it
        timeout=timedelta(minutes=10),
        # Up to 10 minutes of waiting per chunk: in one trigger each, not in worker slots.
        deferrable=True,
        map_index_template=chunk_label_template(CHUNK_SIZE),
    ).expand(vehicle_ids=fleet())
