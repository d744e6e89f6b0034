"""The API server's receiver: only a fresh, correctly signed command.updated, seen once, is kept and announced."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient

from airflow_provider_volteras.webhooks import receiver as receiver_mod
from airflow_provider_volteras.webhooks.bus import CHANNEL, seen_key, status_key

SECRET = "whsec_" + base64.b64encode(b"volteras-receiver-test-secret-01").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-s-secret-0123456789").decode()


def sign(secret: str, msg_id: str, body: bytes, when: float | None = None) -> dict[str, str]:
    from svix.webhooks import Webhook

    stamp = datetime.fromtimestamp(time.time() if when is None else when, tz=UTC)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(stamp.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, stamp, body.decode()),
        "content-type": "application/json",
    }


def event(execution_id: str = "exec-1", status: str = "EXECUTED") -> bytes:
    data = {"id": execution_id, "vehicleId": "veh-1", "command": "CLIMATE_OFF", "status": status}
    return json.dumps({"type": "command.updated", "timestamp": "2026-01-01T00:00:00Z", "data": data}).encode()


@pytest.fixture
def hooked(monkeypatch, redis_conn):
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_HOOKED",
        json.dumps(
            {
                "conn_type": "volteras",
                "login": "cid",
                "password": "client-secret",
                "host": "http://127.0.0.1:9",
                "extra": {"webhook_signing_secret": SECRET, "webhook_redis_conn_id": redis_conn},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_PLAIN",
        json.dumps({"conn_type": "volteras", "login": "cid", "password": "s", "host": "http://127.0.0.1:9"}),
    )
    return "volteras_hooked"


@pytest.fixture
def client(hooked):
    with TestClient(receiver_mod.create_app()) as test_client:
        yield test_client


@pytest.fixture
def store(redis_server):
    r = redis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    yield r
    r.close()


def post(client: TestClient, body: bytes, headers: dict[str, str], conn_id: str = "volteras_hooked"):
    return client.post(f"/webhooks/{conn_id}", content=body, headers=headers)


def test_a_valid_webhook_is_kept_announced_and_acknowledged(client, store):
    listener = store.pubsub()
    listener.subscribe(CHANNEL)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    body = event("exec-ok", "EXECUTED")
    answer = post(client, body, sign(SECRET, "msg_ok", body))
    assert answer.status_code == 202, answer.text
    assert json.loads(store.get(status_key("volteras_hooked", "exec-ok")))["status"] == "EXECUTED"
    assert 0 < store.ttl(status_key("volteras_hooked", "exec-ok")) <= 3600
    assert float(store.get(seen_key("volteras_hooked"))) == pytest.approx(time.time(), abs=60)
    message = listener.get_message(timeout=5)
    assert json.loads(message["data"]) == {"conn": "volteras_hooked", "id": "exec-ok", "status": "EXECUTED"}
    listener.close()


def test_forged_unsigned_stale_replayed_and_oversized_are_refused_and_never_stored(client, store, caplog):
    body = event("exec-bad", "EXECUTED")
    cases = {
        "forged": (post(client, body, sign(OTHER, "msg_f", body)), 401),
        "unsigned": (post(client, body, {"content-type": "application/json"}), 401),
        "stale": (post(client, body, sign(SECRET, "msg_s", body, when=time.time() - 400)), 400),
        "early": (post(client, body, sign(SECRET, "msg_e", body, when=time.time() + 400)), 400),
        "garbled signature": (post(client, body, {**sign(SECRET, "msg_g", body), "svix-signature": "v1,@@"}), 401),
        "tampered body": (post(client, event("exec-bad", "FAILED"), sign(SECRET, "msg_t", body)), 401),
        "oversized": (post(client, b"x" * (receiver_mod.MAX_BODY + 1), sign(SECRET, "msg_o", b"x")), 413),
        "webhooks off": (post(client, body, sign(SECRET, "msg_p", body), conn_id="volteras_plain"), 404),
        "no such connection": (post(client, body, sign(SECRET, "msg_n", body), conn_id="nope"), 404),
    }
    for what, (answer, expected) in cases.items():
        assert answer.status_code == expected, (what, answer.status_code, answer.text)
        assert answer.json()["error"], what
    assert store.get(status_key("volteras_hooked", "exec-bad")) is None
    assert store.get(seen_key("volteras_hooked")) is None
    # Replayed: the first delivery is accepted, the same svix-id again is refused.
    assert post(client, body, sign(SECRET, "msg_r", body)).status_code == 202
    again = post(client, body, sign(SECRET, "msg_r", body))
    assert again.status_code == 409 and "replayed" in again.json()["error"]
    # The payload is never logged (its ids and status are not in any log line).
    assert "exec-bad" not in caplog.text and "veh-1" not in caplog.text


def test_signed_but_not_about_an_execution(client, store):
    other = json.dumps({"type": "vehicle.updated", "data": {"id": "veh-1"}}).encode()
    assert post(client, other, sign(SECRET, "msg_v", other)).status_code == 204
    broken = json.dumps({"type": "command.updated", "data": {"status": "EXECUTED"}}).encode()
    assert post(client, broken, sign(SECRET, "msg_b", broken)).status_code == 422
    assert store.keys("volteras:volteras_hooked:execution:*") == []


def test_redis_down_answers_503_so_svix_delivers_again(client, redis_server):
    redis_server.stop()
    body = event("exec-down")
    answer = post(client, body, sign(SECRET, "msg_d", body))
    assert answer.status_code == 503


def test_the_plugin_mounts_the_receiver_lazily():
    import sys

    from airflow_provider_volteras.plugins.connection_test import VolterasPlugin

    (mounted,) = [a for a in VolterasPlugin.fastapi_apps if a["url_prefix"] == receiver_mod.URL_PREFIX]
    assert isinstance(mounted["app"], receiver_mod.LazyReceiver)
    assert mounted["app"]._app is None or "fastapi" in sys.modules
