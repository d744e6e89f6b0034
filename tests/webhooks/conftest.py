from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.webhooks._redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
        import shutil

        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def redis_conn(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow ``redis`` connection to the test's Redis, as an environment variable."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_BUS",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port, "extra": {"db": 0}}),
    )
    assert os.environ["AIRFLOW_CONN_VOLTERAS_BUS"]
    return "volteras_bus"
