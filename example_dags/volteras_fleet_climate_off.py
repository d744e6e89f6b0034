"""Turn the climate off on every vehicle of the fleet: one mapped task per vehicle.

Each vehicle's task sends CLIMATE_OFF and waits for it in the triggerer; the Airflow UI labels each
mapped task with its vehicle id. Fatal failures (consent expired, remote access disabled, ...) fail
that vehicle's task at once; transient ones retry after a delay that fits the reason
(``VolterasRetryPolicy``), and a retry never sends a second command while the first is pending or
after it EXECUTED.

**Which vehicles.** The ``fleet`` task picks them when the run starts: the vehicles that carry the
``tag`` param (``fleet=demo`` by default) in the Volteras API, listed from ``GET /v1/vehicles``
(``VolterasHook.select_vehicles``); the mapped tasks are built from its list, so every retry of a
vehicle's task keeps to that vehicle whatever the tag says later. A run can name vehicles itself with
``{"vehicle_ids": [...]}`` instead. An empty selection, or more than 1,024 vehicles, fails ``fleet``
before anything is sent. ``fleet`` sends nothing, so ``airflow tasks test volteras_fleet_climate_off
fleet`` previews the selection.

**Why it does not run on a schedule by default.** A command is a physical action on cars. With a
schedule, unpausing the DAG (which the UI's Trigger button does for a paused DAG) makes the scheduler
create a run for the latest schedule slot *as well as* the manual run: one click sent the command to
the fleet twice. So this DAG only runs when triggered (``schedule=None``). To run it every evening, set
``VOLTERAS_FLEET_SCHEDULE`` (e.g. ``0 20 * * *``) in the environment that parses DAGs; then unpause it
once, before the evening slot, and do not also trigger it by hand.

**Where each task waits.** Each vehicle's task passes `deferrable=True`: it watches its command in the
worker for the first few seconds (where most commands end), then waits in the **triggerer**, up to its
`timeout` of 10 minutes, holding no worker slot. Waiting in the worker instead (`[operators]
default_deferrable`, which Airflow ships `False`) would hold up to 1,024 worker slots for up to ten
minutes each.

**The fleet's outcome at a glance.** ``fleet_outcome`` runs once every vehicle's task has ended (their
retries included) and logs what a fleet operator logs: one table of every vehicle's outcome, counts by
outcome and by failed reason, and the vehicles to act on. It fails (no retry) when any vehicle did not end
EXECUTED, so the run is red then too; it reads what each vehicle's task recorded and sends nothing.

**Size.** One mapped task per vehicle stops at Airflow's ``[core] max_map_length`` (1,024) and costs two
worker launches per vehicle; for larger fleets use ``volteras_fleet_climate_off_batch`` (one task per
chunk of 500 vehicles, one trigger per chunk).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.lifecycle.summary import report_mapped_fleet
from airflow_provider_volteras.operators.commands import ClimateOffOperator

FLEET_TAG = "fleet=demo"  # the simulator's demo vehicles carry it: tag yours (POST /v1/tags), or replace it
# Opt-in schedule (see the doc above): no schedule unless the environment asks for one.
SCHEDULE = os.environ.get("VOLTERAS_FLEET_SCHEDULE") or None

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
                "when the run starts; one task each, at most 1,024 (use volteras_fleet_climate_off_batch for "
                "more). Against the simulator: fleet=demo (sim-ok-demo-1 and sim-ok-demo-2, both execute) or "
                "fleet=demo-mixed (the four demo vehicles: one fails retryably, one stays pending)."
            ),
        ),
        "vehicle_ids": Param(
            [],
            type="array",
            items={"type": "string"},
            maxItems=1024,
            title="Vehicle ids (instead of the tag)",
            description=(
                "Leave empty to select by tag. Otherwise exactly these Volteras vehicle ids, one task each. "
                "Against the simulator any id starting with sim-ok executes, sim-fail-OEM_VEHICLE_OFFLINE fails "
                "retryably and sim-fail-OEM_OAUTH_TOKEN_EXPIRED fails fatally."
            ),
        ),
    },
    max_active_runs=1,
) as dag:

    @task
    def fleet(params: dict | None = None) -> list[str]:
        """This run's vehicles, chosen now: the ``vehicle_ids`` a run names, else those tagged ``tag``."""
        chosen = params or {}
        source = {"vehicle_ids": chosen["vehicle_ids"]} if chosen.get("vehicle_ids") else {"tag": chosen["tag"]}
        return VolterasHook().select_vehicles(**source, max_vehicles=1024)

    climate_off = ClimateOffOperator.partial(
        task_id="climate_off",
        retries=3,
        retry_delay=timedelta(minutes=1),
        default_args={"retry_policy": _policy},  # Airflow 3.3; earlier releases ignore it
        timeout=timedelta(minutes=10),
        # Up to 1,024 tasks waiting up to 10 minutes each: in the triggerer, not in worker slots.
        deferrable=True,
        # The UI shows each mapped task by its vehicle, not by 0, 1, 2.
        map_index_template="{{ task.vehicle_id }}",
    ).expand(vehicle_id=fleet())

    @task(trigger_rule="all_done", retries=0)
    def fleet_outcome() -> list[dict]:
        """Every vehicle's outcome, counts by outcome and failed reason, the vehicles to act on (sends nothing)."""
        context = get_current_context()
        return report_mapped_fleet(
            context,
            task_id="climate_off",
            vehicles=context["ti"].xcom_pull(task_ids="fleet"),
            command="CLIMATE_OFF",
            log=logging.getLogger("airflow.task"),
        )

    climate_off >> fleet_outcome()
