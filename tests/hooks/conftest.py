"""Fixtures for the VolterasHook tests: connections to the real simulator, log capture, a closed port.

Everything here talks to the embedded simulator over HTTP on 127.0.0.1 (the root ``sim`` fixture).
Nothing of the hook is mocked; only the connection environment variable is set per test.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from airflow_provider_volteras.hooks.volteras import VolterasHook

#: Extras that keep retries fast; tests override any of them.
FAST_EXTRAS: dict[str, Any] = {"max_retries": 3, "retry_max_wait": 0.2, "timeout": 5, "shared_cache": False}


def conn_json(host: str, client_id: str, secret: str, extra: dict[str, Any]) -> str:
    return json.dumps({"conn_type": "volteras", "login": client_id, "password": secret, "host": host, "extra": extra})


@pytest.fixture
def connect(sim, monkeypatch) -> Callable[..., VolterasHook]:
    """``connect(conn_id=..., host=..., secret=..., **extras)`` -> a new VolterasHook on that connection.

    Defaults: the simulator's URL, its client id and current secret, and ``FAST_EXTRAS``.
    """

    def _connect(
        conn_id: str = "volteras_default", *, host: str | None = None, secret: str | None = None, **extra: Any
    ) -> VolterasHook:
        config = sim.state.config
        conn = conn_json(
            host if host is not None else sim.base_url,
            config.client_id,
            secret if secret is not None else config.client_secret,
            {**FAST_EXTRAS, **extra},
        )
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn)
        return VolterasHook(volteras_conn_id=conn_id)

    return _connect


@pytest.fixture
def hook_logs() -> Iterator[list[dict[str, Any]]]:
    """Structlog events (the hook's ``self.log``) emitted during the test, as dicts with ``event``."""
    with structlog.testing.capture_logs() as events:
        yield events


def warnings_of(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["event"]) for e in events if e.get("log_level") == "warning"]


@pytest.fixture
def closed_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (bound once, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def log_entries(sim, *, kind: str | None = None, method: str | None = None, path: str | None = None) -> list[dict]:
    """The simulator's request log, filtered by operation kind, method and a substring of the path."""
    return [
        e
        for e in sim.state.request_log()
        if (kind is None or e["kind"] == kind)
        and (method is None or e["method"] == method)
        and (path is None or path in e["path"])
    ]
