"""End to end with webhooks: a real Airflow deployment (LocalExecutor) whose API server receives the
simulator's Svix-signed ``command.updated`` webhooks, a private Redis as the bus, and ``send_command``
waiting for CLIMATE_OFF in the worker.

Done when (issue 20): the wait completes within 1 s of the simulator's webhook with one status read;
forged and stale webhooks are refused with 4xx by the deployed receiver.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_volteras.simulator.webhooks import WebhookSender, new_signing_secret
from tests.webhooks._redis import RedisServer

from ._deployment import Deployment
from ._support import executions, polls, unpause, wait_until
from .conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, _running
from .test_e2e import task_log

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SEND = "volteras_send_command"
SECRET = new_signing_secret()


@pytest.fixture(scope="module")
def bus() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhook_airflow(simulator: Any, bus: RedisServer) -> Iterator[Deployment]:
    redis_conn = {"conn_type": "redis", "host": "127.0.0.1", "port": bus.port, "extra": {"db": 0}}
    yield from _running(
        Deployment(
            sim_base_url=simulator.base_url,
            sim_client_id=SIM_CLIENT_ID,
            sim_client_secret=SIM_CLIENT_SECRET,
            connection_extra={
                "webhook_signing_secret": SECRET,
                "webhook_redis_conn_id": "volteras_bus",
                "webhook_safety_poll": 60,
            },
            extra_env={"AIRFLOW_CONN_VOLTERAS_BUS": json.dumps(redis_conn)},
        )
    )


@pytest.fixture
def sender(simulator: Any, webhook_airflow: Deployment) -> Iterator[WebhookSender]:
    url = f"{webhook_airflow.api_url}/volteras/webhooks/volteras_default"
    with WebhookSender(simulator.state, url, SECRET) as sending:
        yield sending


def test_climate_off_completes_within_a_second_of_its_webhook_with_one_status_read(
    webhook_airflow: Deployment, simulator: Any, sender: WebhookSender, record: dict[str, Any]
) -> None:
    # Webhooks were flowing before this command (a deployment that has just been set up has seen none yet).
    sender.send_now("earlier-execution", "EXECUTED")
    wait_until("the warm-up webhook answered", lambda: sender.deliveries(), timeout=60, interval=0.2)
    assert sender.deliveries()[0].status == 202, sender.deliveries()
    # Forged and stale deliveries to the deployed receiver.
    sender.send_now("forged-execution", "EXECUTED", kind="forged")
    sender.send_now("stale-execution", "EXECUTED", kind="stale")
    wait_until("forged and stale answered", lambda: len(sender.deliveries()) >= 3, timeout=60, interval=0.2)
    answers = {d.kind: d.status for d in sender.deliveries()}
    assert answers == {"ok": 202, "forged": 401, "stale": 400}, answers

    vid = "sim-stuck-webhook-1"  # pending until the test ends it: the wait is surely listening by then
    unpause(webhook_airflow, SEND)
    run_id = webhook_airflow.trigger(SEND, {"vehicle_id": vid, "command": "CLIMATE_OFF", "arguments": None})
    made = wait_until("the command was created", lambda: executions(simulator, vid), timeout=180, interval=0.1)
    execution_id = made[0]["id"]
    time.sleep(3.0)  # the in-worker wait has subscribed (and, webhooks flowing, reads nothing meanwhile)
    reads_before = polls(simulator, [execution_id])[execution_id]
    simulator.state.finish_execution(execution_id, "EXECUTED")  # the car executed it: the webhook goes out
    run = webhook_airflow.wait_run(SEND, run_id, timeout=180)
    delivery = wait_until("the webhook answered", lambda: sender.deliveries(execution_id), timeout=30)[0]
    marks = simulator.state.mark_times(execution_id)
    detected_after = marks["firstServedTerminalAt"] - delivery.sent_at
    log = task_log(webhook_airflow, SEND, run_id, "send_command", 1)
    record.update(
        run_state=run["state"],
        reads_before_webhook=reads_before,
        reads=polls(simulator, [execution_id]),
        webhook_status=delivery.status,
        detected_after_webhook_s=round(detected_after, 3),
    )
    assert run["state"] == "success", record
    assert delivery.status == 202, record
    assert polls(simulator, [execution_id]) == {execution_id: 1}, record  # one status read in all
    assert reads_before == 0, record
    assert 0 <= detected_after <= 1.0, record
    assert any("Waiting on command.updated webhooks (connection volteras_default)" in line for line in log), log
