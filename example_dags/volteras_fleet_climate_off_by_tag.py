"""Turn the climate off on the vehicles that carry a tag: one task, its vehicles chosen when it runs.

``FleetClimateOffOperator(tag=...)`` lists the vehicles with the ``tag`` param from the Volteras API
(``GET /v1/vehicles?tagKey=fleet&tagValue=demo``) when the task first runs, logs them, and records them
in the task state store before it sends anything. Every later try of the task acts on exactly those
vehicles and never lists again: a vehicle tagged meanwhile is not sent anything, and one untagged
meanwhile still gets its retry. No vehicle, or more than ``MAX_VEHICLES``, fails the task before any
command is sent (no retry). A retry sends again only to the vehicles whose command failed retryably.

**Preview.** Trigger with ``preview`` ticked: the task logs the vehicles it would send to, returns their
ids, and sends and records nothing.

**Where the task waits.** It passes `deferrable=True`: after sending, it watches its vehicles' commands
in the worker for the first few seconds, then waits for the rest in ONE trigger in the **triggerer**, up
to its `timeout` of 10 minutes, holding no worker slot.

**Why it does not run on a schedule by default.** A command is a physical action on cars. With a
schedule, unpausing the DAG (which the UI's Trigger button does for a paused DAG) makes the scheduler
create a run for the latest schedule slot *as well as* the manual run: one click sent the command to the
fleet twice. So this DAG only runs when triggered (``schedule=None``). To run it every evening, set
``VOLTERAS_FLEET_TAG_SCHEDULE`` (e.g. ``0 20 * * *``) in the environment that parses DAGs; then unpause it
once, before the evening slot, and do not also trigger it by hand.

**Size.** One task sends to every vehicle, 8 at a time through one token, and waits for all of them in
one trigger: a few hundred vehicles. For thousands, select them upstream and map chunks
(``volteras_fleet_climate_off_batch``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.fleet import FleetClimateOffOperator

FLEET_TAG = "fleet=demo"  # the simulator's demo vehicles carry it: tag yours (POST /v1/tags), or replace it
#: The most vehicles one run may reach: a selection above it fails before anything is sent.
MAX_VEHICLES = 500
# Opt-in schedule (see the doc above): no schedule unless the environment asks for one.
SCHEDULE = os.environ.get("VOLTERAS_FLEET_TAG_SCHEDULE") or None

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
    dag_id="volteras_fleet_climate_off_by_tag",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    # ``preview`` renders as a boolean, not as the text "False".
    render_template_as_native_obj=True,
    params={
        "tag": Param(
            FLEET_TAG,
            type="string",
            pattern="^[^=]+=.+$",
            title="Vehicle tag",
            description=(
                "Turn the climate off on the vehicles with this tag (key=value), as the Volteras API lists them "
                f"when the task first runs (at most {MAX_VEHICLES}). Against the simulator: fleet=demo "
                "(sim-ok-demo-1 and sim-ok-demo-2, both execute) or fleet=demo-mixed (the four demo vehicles: "
                "one fails retryably, one stays pending)."
            ),
        ),
        "preview": Param(
            False,
            type="boolean",
            title="Preview only",
            description="Log the vehicles the tag selects and send nothing (the task returns their ids).",
        ),
    },
    max_active_runs=1,
) as dag:
    FleetClimateOffOperator(
        task_id="climate_off",
        tag="{{ params.tag }}",
        max_vehicles=MAX_VEHICLES,
        preview="{{ params.preview }}",
        retries=3,
        retry_delay=timedelta(minutes=1),
        default_args={"retry_policy": _policy},  # Airflow 3.3; earlier releases ignore it
        timeout=timedelta(minutes=10),
        deferrable=True,
    )
