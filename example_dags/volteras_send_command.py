"""Send any command to one vehicle, chosen in the "Trigger DAG" form of the Airflow UI.

The form asks for a vehicle id, a command and, for the two commands that take them, arguments. One
task sends the command and waits until the car executed it: **green means EXECUTED**.

**Where it waits.** `send_command` follows `[operators] default_deferrable`, which Airflow ships
`False`: then it waits **in the worker**, holding a worker slot for the seconds most commands take (up
to its `timeout`, 10 minutes, for a car that does not answer). With `default_deferrable = True`, or
`deferrable=True` on the task, it watches the first few seconds in the worker and then waits in the
**triggerer**. The outcome is the same either way.

| command | arguments |
| --- | --- |
| `SET_TEMPERATURE` | `{"driverTemperature": 21, "passengerTemperature": 20.5}` (°C; the vehicle decides) |
| `SET_CHARGE_LIMIT` | `{"limit": 80}` (whole percent, 0 to 100) |
| every other command | `{}` |

The arguments' shape and ranges are checked when the run is triggered (a bad value is refused with a
message and no run is created); that they fit the chosen command is checked when the task starts,
before anything is sent.

**When the task fails**, its log starts with one line: the command, the vehicle, the `failedReason`
and whether Airflow retries. A retryable failure is retried by Airflow and sends the command again. After
a fatal one, fix the cause (the log says what to do), then **Clear the task**: a person's Clear after a
FAILED command sends exactly one new command (Airflow's own retries never do after a fatal failure). See
docs/recovery.md.

Simulator test ids: `sim-ok-demo-1` (executed), `sim-fail-OEM_VEHICLE_OFFLINE-demo` (fails,
retryable), `sim-fail-OEM_OAUTH_TOKEN_EXPIRED` (fails, fatal), `sim-stuck-demo` (stays pending).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_volteras.catalogue import CREATABLE_COMMANDS
from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.commands import VolterasCommandOperator

_CELSIUS = {"type": "number"}

#: The argument shapes the API accepts, checked by Airflow when the run is triggered.
ARGUMENT_SHAPES = [
    {"title": "No arguments (all other commands)", "type": "object", "maxProperties": 0},
    {
        "title": "SET_TEMPERATURE",
        "type": "object",
        "properties": {"driverTemperature": _CELSIUS, "passengerTemperature": _CELSIUS},
        "required": ["driverTemperature", "passengerTemperature"],
        "additionalProperties": False,
    },
    {
        "title": "SET_CHARGE_LIMIT",
        "type": "object",
        "properties": {"limit": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["limit"],
        "additionalProperties": False,
    },
    {"title": "No arguments (null)", "type": "null"},
]

with DAG(
    dag_id="volteras_send_command",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "vehicle_id": Param(
            "sim-ok-demo-1",
            type="string",
            minLength=1,
            maxLength=200,
            pattern=r"^[A-Za-z0-9._:~-]+$",
            title="Vehicle id",
            description=(
                "The Volteras vehicle id (letters, digits and . _ : ~ - only). Simulator test ids: "
                "sim-ok-demo-1 (executed), sim-fail-OEM_VEHICLE_OFFLINE-demo (fails, retryable), "
                "sim-fail-OEM_OAUTH_TOKEN_EXPIRED (fails, fatal), sim-stuck-demo (stays pending)."
            ),
        ),
        "command": Param(
            "CLIMATE_OFF",
            type="string",
            enum=[c.value for c in CREATABLE_COMMANDS],
            title="Command",
            description=(
                "What the car should do. A physical action: it is sent once, and a retry never sends a "
                "second copy of a command that may already have reached the car."
            ),
        ),
        "arguments": Param(
            {},
            type=["object", "null"],
            oneOf=ARGUMENT_SHAPES,
            title="Arguments",
            description=(
                'SET_TEMPERATURE: {"driverTemperature": 21, "passengerTemperature": 20.5} (°C; the vehicle decides). '
                'SET_CHARGE_LIMIT: {"limit": 80} (whole percent, 0 to 100). Every other command: {}.'
            ),
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
        doc_md=(
            "Sends the chosen command and waits until the API reports it EXECUTED (success) or FAILED "
            "(failure; the log's first line says why and whether Airflow retries). It waits in the worker, "
            "or in the triggerer when `[operators] default_deferrable` is True."
        ),
    )
