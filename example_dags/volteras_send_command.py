"""Send any command to one vehicle, chosen in the "Trigger DAG" form of the Airflow UI.

The form asks for a vehicle id, a command and, for the commands that take them, arguments
(``{"driverTemperature": 21, "passengerTemperature": 21}`` for SET_TEMPERATURE,
``{"limit": 80}`` for SET_CHARGE_LIMIT). One deferrable task sends the command and waits for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_volteras.catalogue import CREATABLE_COMMANDS
from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.commands import VolterasCommandOperator

with DAG(
    dag_id="volteras_send_command",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "vehicle_id": Param("sim-ok", type="string", minLength=1, maxLength=200, title="Vehicle id"),
        "command": Param("CLIMATE_OFF", type="string", enum=[c.value for c in CREATABLE_COMMANDS], title="Command"),
        "arguments": Param(
            None,
            type=["object", "null"],
            title="Arguments",
            description="Only for SET_TEMPERATURE and SET_CHARGE_LIMIT.",
        ),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_policy": VolterasRetryPolicy()},
) as dag:
    VolterasCommandOperator(
        task_id="send_command",
        vehicle_id="{{ params.vehicle_id }}",
        command="{{ params.command }}",
        arguments="{{ params.arguments }}",
        timeout=600,
    )
