"""Turn the climate off on one vehicle: **send** the command, then **wait** for it in the triggerer.

Trigger it from the UI and type a vehicle id in the form. Against the embedded simulator:
`sim-ok-demo-1` is executed, `sim-fail-OEM_VEHICLE_OFFLINE-demo` fails (retryable),
`sim-fail-OEM_OAUTH_TOKEN_EXPIRED` fails (fatal), `sim-stuck-demo` stays pending.

**Two tasks, one outcome.** `climate_off` only *sends* the command (`wait_for_completion=False`): it is
green as soon as the API accepted it, **even if the car later refuses it**. `wait_for_climate_off`
tells you whether the car executed it: **the run's outcome is the sensor's state.**

**When the command FAILED**, `wait_for_climate_off` fails at once, whatever the reason: its retries
could only read the same FAILED execution, so it does not use them. Its log starts with one line: the
command, the vehicle and the `failedReason`; then what the reason means and what to do.

**To send the command again** (for a fatal reason such as expired owner consent, once the cause is
fixed): **Clear `climate_off` with "Downstream" selected**. A person's Clear after a FAILED command
sends exactly one new command; the sensor then waits for that one.
Clearing only `wait_for_climate_off` never sends anything. See docs/recovery.md (Clear or retry).

**Where each task waits.** `climate_off` runs in a worker only for the seconds the request takes; it
waits for nothing. `wait_for_climate_off` passes `deferrable=True`: it watches the command in the worker
for its first few seconds (where most commands end), then waits in the **triggerer**, up to its
`timeout` (10 minutes), holding no worker slot. Without `deferrable=True` it would follow `[operators]
default_deferrable`, which Airflow ships `False`, and hold a worker slot for the whole wait.

To have one task that sends, waits and retries by itself, use the operator's default
`wait_for_completion=True` (see the `volteras_send_command` example).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_volteras.failures import VolterasRetryPolicy
from airflow_provider_volteras.operators.commands import ClimateOffOperator
from airflow_provider_volteras.sensors.command_execution import CommandExecutionSensor

with DAG(
    dag_id="volteras_climate_off",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    params={
        "vehicle_id": Param(
            "sim-ok-demo-1",
            type="string",
            minLength=1,
            maxLength=200,
            pattern=r"^[A-Za-z0-9._:~-]+$",
            title="Vehicle id",
            description=(
                "The Volteras vehicle id to turn the climate off on (letters, digits and . _ : ~ - only). "
                "Simulator test ids: sim-ok-demo-1 (executed), sim-fail-OEM_VEHICLE_OFFLINE-demo (fails, "
                "retryable), sim-fail-OEM_OAUTH_TOKEN_EXPIRED (fails, fatal), sim-stuck-demo (stays pending)."
            ),
        ),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_policy": VolterasRetryPolicy()},
) as dag:
    send = ClimateOffOperator(
        task_id="climate_off",
        vehicle_id="{{ params.vehicle_id }}",
        wait_for_completion=False,
        doc_md=(
            "**Sends** CLIMATE_OFF and succeeds as soon as the API accepted it (its XCom `id` is the "
            "execution). Green here does NOT mean the car executed it: see `wait_for_climate_off`.\n\n"
            "To send the command again after it FAILED: Clear this task with **Downstream**. A person's Clear "
            "sends one new command (Airflow's own retries never do after a fatal failure)."
        ),
    )
    wait = CommandExecutionSensor(
        task_id="wait_for_climate_off",
        vehicle_id="{{ params.vehicle_id }}",
        command_execution_id=send.output["id"],
        poke_interval=10,
        timeout=600,
        # Up to 10 minutes of waiting: in the triggerer, not in a worker slot.
        deferrable=True,
        doc_md=(
            "**Waits** in the triggerer (`deferrable=True`) until the command sent by `climate_off` is EXECUTED "
            "(success) or FAILED (failure). This task's state is the outcome of the command.\n\n"
            "It never sends anything, and it does not retry a FAILED execution (a retry would read the same one). "
            "To send the command again, Clear **`climate_off`** with Downstream."
        ),
    )
    send >> wait
