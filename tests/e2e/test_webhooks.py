"""End to end with webhooks: a real Airflow deployment (LocalExecutor) whose API server receives the
simulator's Svix-signed ``command.updated`` webhooks, a private Redis as the bus, and the example DAGs.

Done when (issue 20): the wait completes within 1 s of the simulator's webhook with one status read;
forged and stale webhooks are refused with 4xx by the deployed receiver.

The faults (one deployment for the module; several vehicles per DAG run, each with a fault of its own):
lost, duplicated, reordered, forged, stale and late webhooks, validly signed claims the API does not confirm
(PENDING or FAILED), Redis stopped and restarted mid-wait, the triggerer killed mid-wait. Each vehicle's
command stays PENDING until the test ends it (``finish_execution``), so the order of events is the test's.
Asserted: one create per vehicle, each task's state and try, the status reads made after each end (the
one read that decided), the receiver's answers, and the log lines that say which mode a wait is in.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_volteras.simulator.webhooks import WebhookFaults, WebhookSender, new_signing_secret
from tests.webhooks._redis import RedisServer

from ._deployment import Deployment
from ._support import (
    FLEET,
    bus_connections_per_triggerer,
    create_attempts,
    creates,
    deferrals_settled,
    executions,
    mapped_task_log,
    mapped_tis,
    polls,
    prepare_fleet,
    set_scenario,
    state_mismatches,
    unpause,
    wait_until,
)
from .conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, _running
from .test_e2e import task_log

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SEND = "volteras_send_command"
SECRET = new_signing_secret()
#: Seconds between two safety reads while webhooks flow: a lost webhook costs at most this, and the test
#: ends its first commands (one with a webhook 6 s late) well within every wait's first period.
SAFETY_POLL = 60


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
                "webhook_safety_poll": SAFETY_POLL,
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


# --------------------------------------------------------------------------- faults, several vehicles per run

#: Long enough for the test to end each command itself; under the simulator's 5-minute platform timeout.
PENDING_S = 240.0
CONN = "volteras_default"
FATAL = "OEM_OAUTH_TOKEN_EXPIRED"
WEBHOOK_MODE = f"Waiting on command.updated webhooks (connection {CONN}): safety poll every {SAFETY_POLL} s"


def stored_status(bus: RedisServer, execution_id: str) -> str | None:
    """The status the receiver kept on the bus for an execution (``None``: nothing accepted about it)."""
    import redis

    from airflow_provider_volteras.webhooks.bus import claimed_status, status_key

    client = redis.Redis(host="127.0.0.1", port=bus.port)
    try:
        return claimed_status(client.get(status_key(CONN, execution_id)))
    finally:
        client.close()


def answered(sender: WebhookSender, execution_id: str, count: int = 1) -> list[Any]:
    """The deliveries about an execution (sent and answered, or lost), once there are ``count``."""

    def made() -> list[Any]:
        return [d for d in sender.deliveries(execution_id) if d.kind != "superseded"]

    wait_until(f"{count} webhook(s) about {execution_id}", lambda: len(made()) >= count, timeout=60, interval=0.1)
    return made()


def start_fleet(airflow: Deployment, sim: Any, vehicles: list[str]) -> tuple[str, dict[str, str]]:
    """Trigger the fleet example for ``vehicles`` (each PENDING until the test ends it) and wait until every
    mapped task is deferred and its trigger held by a triggerer. Returns the run id and the execution ids."""
    for vid in vehicles:
        set_scenario(sim, vid, outcome="EXECUTED", delay=PENDING_S)
    prepare_fleet(airflow)
    run_id = airflow.trigger(FLEET, {"vehicle_ids": vehicles})

    def all_held() -> bool:
        tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
        return len(tis) == len(vehicles) and deferrals_settled(tis.values())

    wait_until("every mapped task deferred, held by a triggerer, settled", all_held, timeout=300, interval=1.0)
    return run_id, {vid: executions(sim, vid)[0]["id"] for vid in vehicles}


def by_vehicle(airflow: Deployment, run_id: str) -> dict[str, dict[str, Any]]:
    """The fleet run's mapped task instances by vehicle id (the UI's map index label)."""
    return {str(ti["rendered_map_index"]): ti for ti in mapped_tis(airflow, FLEET, run_id, "climate_off").values()}


def outcomes(
    airflow: Deployment,
    sim: Any,
    run: dict[str, Any],
    vehicles: dict[str, str],
    ids: dict[str, str],
    at_end: dict[str, int],
    record: dict[str, Any],
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, int]], dict[str, int]]:
    """After a fleet run (``vehicles``: kind -> vehicle id): its task instances by vehicle, (state, try) and
    the status reads made after each end by kind; the same and the creates go into ``record``."""
    run_id = str(run["dag_run_id"])
    tis = by_vehicle(airflow, run_id)
    states = {kind: (tis[vid]["state"], tis[vid]["try_number"]) for kind, vid in vehicles.items()}
    reads = polls(sim, ids.values())
    after_end = {kind: reads[ids[vehicles[kind]]] - n for kind, n in at_end.items()}
    record.update(
        run_state=run["state"],
        state_mismatches=state_mismatches(airflow, FLEET, run_id),
        states=states,
        creates=creates(sim, vehicles.values()),
        reads_total={kind: reads[ids[vid]] for kind, vid in vehicles.items()},
        reads_after_end=after_end,
    )
    return tis, states, after_end


def task_log_of(airflow: Deployment, run_id: str, ti: dict[str, Any]) -> list[str]:
    """The log of a fleet run's mapped task instance, at the try it ended in."""
    return mapped_task_log(airflow, FLEET, run_id, "climate_off", ti["map_index"], ti["try_number"])


def not_deferred(airflow: Deployment, run_id: str, vehicles: list[str]) -> Callable[[], bool]:
    """True once the triggers of ``vehicles`` have fired (their tasks left ``deferred``)."""

    def check() -> bool:
        tis = by_vehicle(airflow, run_id)
        return all(tis[v]["state"] not in ("deferred", None) for v in vehicles)

    return check


def test_lost_duplicated_reordered_forged_stale_and_late_webhooks_cost_latency_never_correctness(
    webhook_airflow: Deployment, simulator: Any, bus: RedisServer, record: dict[str, Any]
) -> None:
    airflow, sim = webhook_airflow, simulator
    v = {
        kind: f"whf-{kind}"
        for kind in (
            "ok",
            "duplicated",
            "late",
            "reordered",
            "forged",
            "stale",
            "claim-pending",
            "claim-failed",
            "lost",
            "after-lost",
        )
    }
    faults = {
        v["duplicated"]: WebhookFaults(duplicate=1.0),
        v["late"]: WebhookFaults(delay=6.0),
        v["claim-failed"]: WebhookFaults(loss=1.0),
        v["lost"]: WebhookFaults(loss=1.0),
    }
    url = f"{airflow.api_url}/volteras/webhooks/{CONN}"
    with WebhookSender(sim.state, url, SECRET, by_vehicle=faults) as sender:
        sender.send_now("whf-warm-up", "EXECUTED")  # webhooks flow before the run
        assert answered(sender, "whf-warm-up")[0].status == 202
        run_id, ids = start_fleet(airflow, sim, list(v.values()))

        # The ends, one vehicle at a time; the reads each wait makes after its command ended are counted.
        at_end: dict[str, int] = {}

        def finish(kind: str, outcome: str = "EXECUTED", reason: str | None = None) -> str:
            execution_id = ids[v[kind]]
            at_end[kind] = polls(sim, [execution_id])[execution_id]
            sim.state.finish_execution(execution_id, outcome, reason)
            return execution_id

        # First (well within every wait's first safety period): a plain end, a duplicated and a late webhook.
        for kind in ("ok", "duplicated", "late"):
            finish(kind)

        # Claims while the command is PENDING: forged and stale ones are refused and nothing is kept; a
        # validly signed one is accepted, wakes its wait, and the API's PENDING is what the wait believes.
        sender.send_now(ids[v["forged"]], "EXECUTED", kind="forged", vehicle_id=v["forged"])
        sender.send_now(ids[v["stale"]], "EXECUTED", kind="stale", vehicle_id=v["stale"])
        claim_reads = polls(sim, [ids[v["claim-pending"]]])[ids[v["claim-pending"]]]
        sender.send_now(ids[v["claim-pending"]], "EXECUTED", vehicle_id=v["claim-pending"])
        claims = {kind: answered(sender, ids[v[kind]])[0].status for kind in ("forged", "stale", "claim-pending")}
        assert claims == {"forged": 401, "stale": 400, "claim-pending": 202}, claims
        assert stored_status(bus, ids[v["forged"]]) is None and stored_status(bus, ids[v["stale"]]) is None
        wait_until(
            "the claim's wait read the execution",
            lambda: polls(sim, [ids[v["claim-pending"]]])[ids[v["claim-pending"]]] > claim_reads,
            timeout=30,
            interval=0.2,
        )
        for kind in ("forged", "stale"):
            finish(kind)
        finish("reordered")
        assert answered(sender, ids[v["reordered"]])[0].status == 202
        # An earlier status delivered after the end (reordered): accepted, and the kept status stays terminal.
        sender.send_now(ids[v["reordered"]], "PENDING", vehicle_id=v["reordered"])
        assert answered(sender, ids[v["reordered"]], 2)[1].status == 202
        assert stored_status(bus, ids[v["reordered"]]) == "EXECUTED"
        finish("claim-pending", "FAILED", FATAL)
        # FAILED, its own webhook lost, and a validly signed claim that it EXECUTED.
        finish("claim-failed", "FAILED", FATAL)
        assert [d.kind for d in answered(sender, ids[v["claim-failed"]])] == ["lost"]
        sender.send_now(ids[v["claim-failed"]], "EXECUTED", vehicle_id=v["claim-failed"])
        assert answered(sender, ids[v["claim-failed"]], 2)[1].status == 202
        done_first = [v[k] for k in at_end]
        wait_until("the triggers of the ended commands fired", not_deferred(airflow, run_id, done_first), 180, 1.0)

        # A lost webhook: its wait finds the end at its next safety read, and says webhooks do not flow; the
        # wait still pending then polls on the normal schedule until a webhook is accepted again.
        finish("lost")
        wait_until("the lost webhook's trigger fired", not_deferred(airflow, run_id, [v["lost"]]), 120, 1.0)
        finish("after-lost")
        run = airflow.wait_run(FLEET, run_id, timeout=240, interval=1.0)
        late = next(d for d in sender.deliveries(ids[v["late"]]) if d.kind == "ok")
        duplicated = sorted((d.kind, d.status) for d in answered(sender, ids[v["duplicated"]], 2))

    tis, states, after_end = outcomes(airflow, sim, run, v, ids, at_end, record)
    record.update(
        late_webhook_after_end_s=round(late.sent_at - sim.state.mark_times(ids[v["late"]])["terminalAt"], 1),
        late_end_read_after_its_webhook=sim.state.mark_times(ids[v["late"]])["firstServedTerminalAt"] >= late.sent_at,
    )
    logs = {kind: task_log_of(airflow, run_id, tis[vid]) for kind, vid in v.items()}
    # The late webhook (6 s after the end) is what ended that wait: nothing read the end before it came.
    assert record["late_end_read_after_its_webhook"], record
    # Nothing sent twice, whatever the webhooks did.
    assert creates(sim, v.values()) == dict.fromkeys(v.values(), 1) == create_attempts(sim, v.values()), record
    # No task succeeded on a webhook alone: the two claims the API did not confirm failed with the API's FAILED.
    expected = {kind: ("success", 1) for kind in v} | {"claim-pending": ("failed", 1), "claim-failed": ("failed", 1)}
    assert states == expected, record
    assert run["state"] == "failed", record
    # One read after each end decided (the one its webhook woke; for the lost one, its safety read).
    for kind in ("ok", "duplicated", "late", "reordered", "forged", "stale", "claim-failed", "lost"):
        assert after_end[kind] == 1, (kind, record)
    assert duplicated == [("duplicate", 409), ("ok", 202)], duplicated
    # The log says which mode each wait is in.
    assert any(WEBHOOK_MODE in line for line in logs["ok"]), logs["ok"]
    assert any("a webhook said EXECUTED but the API says PENDING" in line for line in logs["claim-pending"]), logs[
        "claim-pending"
    ]
    assert any(
        "Polling on the normal schedule: no command.updated webhook seen lately, or one was missed" in line
        for line in logs["after-lost"]
    ), logs["after-lost"]


def test_redis_stopped_and_restarted_and_the_triggerer_killed_mid_wait(
    webhook_airflow: Deployment, simulator: Any, bus: RedisServer, record: dict[str, Any]
) -> None:
    airflow, sim = webhook_airflow, simulator
    v = {kind: f"whr-{kind}" for kind in ("redis-down", "redis-back", "triggerer-down")}
    url = f"{airflow.api_url}/volteras/webhooks/{CONN}"
    at_end: dict[str, int] = {}
    with WebhookSender(sim.state, url, SECRET) as sender:
        sender.send_now("whr-warm-up", "EXECUTED")
        assert answered(sender, "whr-warm-up")[0].status == 202
        run_id, ids = start_fleet(airflow, sim, list(v.values()))

        def finish(kind: str) -> int | None:
            execution_id = ids[v[kind]]
            at_end[kind] = polls(sim, [execution_id])[execution_id]
            sim.state.finish_execution(execution_id, "EXECUTED")
            return answered(sender, execution_id)[0].status

        # The triggerer's waits share one bus connection.
        wait_until(
            "the triggerer's one bus connection",
            lambda: bus_connections_per_triggerer(airflow, bus.port) == {"triggerer": 1},
            timeout=30,
        )
        connections_while_waiting = bus_connections_per_triggerer(airflow, bus.port)

        # Redis stops: the receiver answers 503 (Svix would deliver again later) and every wait polls on the
        # normal schedule, so the end whose webhook could not be kept is still found.
        before = polls(sim, ids.values())
        bus.stop()
        wait_until(
            "every wait polling on the normal schedule while Redis is down",
            lambda: all(n >= before[e] + 2 for e, n in polls(sim, ids.values()).items()),
            timeout=90,
        )
        assert finish("redis-down") == 503
        wait_until("the polled end's trigger fired", not_deferred(airflow, run_id, [v["redis-down"]]), 90, 1.0)

        # Redis is back (empty): the bus reconnects by itself and the waits return to webhook mode.
        bus.start()
        wait_until(
            "the triggerer's bus reconnected",
            lambda: bus_connections_per_triggerer(airflow, bus.port) == {"triggerer": 1},
            timeout=90,
        )
        assert finish("redis-back") == 202
        wait_until("the woken trigger fired", not_deferred(airflow, run_id, [v["redis-back"]]), 90, 1.0)

        # The triggerer is killed; the end's webhook comes meanwhile and is kept under the execution's key. The
        # restarted triggerer's wait subscribes, reads that key, and reads the execution once.
        airflow.kill_component("triggerer", signal.SIGKILL)
        assert finish("triggerer-down") == 202
        assert stored_status(bus, ids[v["triggerer-down"]]) == "EXECUTED"
        reads_while_dead = polls(sim, [ids[v["triggerer-down"]]])
        airflow.start_component("triggerer")
        run = airflow.wait_run(FLEET, run_id, timeout=240, interval=1.0)

    tis, states, after_end = outcomes(airflow, sim, run, v, ids, at_end, record)
    record.update(bus_connections_while_waiting=connections_while_waiting)
    logs = {kind: task_log_of(airflow, run_id, tis[vid]) for kind, vid in v.items()}
    # The bus logs in the context of the trigger that opened it (one of this run's, or the triggerer's own log).
    comp = airflow.components["triggerer"]
    seen = "".join(path.read_text(errors="replace") for path in {comp.base_log, comp.log_path} if path.exists())
    seen += "\n".join(line for log in logs.values() for line in log)
    record.update(
        bus_outage_logged=f"Volteras webhook bus: Redis 127.0.0.1:{bus.port} unreachable" in seen,
        bus_reconnect_logged="Volteras webhook bus: reconnected to Redis" in seen,
    )
    assert run["state"] == "success", record
    assert states == dict.fromkeys(v, ("success", 1)), record
    assert creates(sim, v.values()) == dict.fromkeys(v.values(), 1) == create_attempts(sim, v.values()), record
    assert connections_while_waiting == {"triggerer": 1}, record
    assert after_end["redis-down"] >= 1, record  # found by polling
    # Woken by its webhook after the reconnection; and after the restart, by the key kept while no triggerer ran.
    assert after_end["redis-back"] == 1 and after_end["triggerer-down"] == 1, record
    assert reads_while_dead == {ids[v["triggerer-down"]]: at_end["triggerer-down"]}, record
    back = logs["redis-back"]
    assert any(
        f"Polling on the normal schedule: the webhook bus is not connected (connection {CONN})" in line for line in back
    ), back
    assert sum(WEBHOOK_MODE in line for line in back) >= 2, back  # before the outage, and after the reconnection
    assert any(WEBHOOK_MODE in line for line in logs["triggerer-down"]), logs["triggerer-down"]
