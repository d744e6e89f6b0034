"""Runs each time the climate of the demo vehicle was turned off: scheduled on a Volteras asset.

Every command task that succeeds records an asset event on
`volteras://vehicles/<vehicle_id>/commands/<COMMAND>` (through the asset alias
`volteras-command-executed` in its outlets), with the execution id and `executedAt` in the event's
extra. This DAG is scheduled on the asset of CLIMATE_OFF on `sim-ok-demo-1`: trigger
`volteras_climate_off` with that vehicle id and this DAG runs once the command is EXECUTED.

**Where it waits.** Nowhere: the scheduler starts a run when the asset event is recorded, and `report`
only reads the event; it sends nothing.

To run after any vehicle's command instead, schedule on the alias:
`schedule=[executed_alias()]` (from `airflow_provider_volteras.assets`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_volteras.assets import command_asset

VEHICLE_ID = "sim-ok-demo-1"  # the simulator's demo vehicle: replace with yours

with DAG(
    dag_id="volteras_after_climate_off",
    schedule=[command_asset(VEHICLE_ID, "CLIMATE_OFF")],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def report(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Log and return what was executed (the extra of each triggering asset event)."""
        executed = []
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                print(f"{asset.uri}: execution {event.extra.get('execution_id')} at {event.extra.get('executedAt')}")
                executed.append(dict(event.extra))
        return executed

    report()
