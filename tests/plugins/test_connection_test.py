"""The API-server plugin that lets the Connections list's Test icon test a Volteras connection.

The middleware is driven as the API server drives it (ASGI scope, receive, send) in front of a stand-in
app that records what reached it. The real endpoint with the real UI body is exercised in
``tests/e2e/test_e2e.py::test_connection_test_endpoint`` and in the browser tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_volteras.plugins.connection_test import (
    ConnectionTestPortMiddleware,
    VolterasPlugin,
    without_ui_port,
)

# What Airflow 3.3.2's Connections list posts for a stored Volteras connection (TestConnectionButton).
UI_BODY = {
    "conn_type": "volteras",
    "connection_id": "volteras_fleet",
    "description": "",
    "extra": '{"timeout": 30}',
    "host": "https://api.volteras.com",
    "login": "my-client",
    "password": "***",
    "port": 0,
    "schema": "",
}


class Recorder:
    """A stand-in for the API server's app: keeps the scope and the body it was given."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] | None = None
        self.body = b""
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = dict(scope)
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request":
                break
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(
    body: bytes,
    *,
    path: str = "/api/v2/connections/test",
    method: str = "POST",
    chunk: int | None = None,
    root_path: str = "",
) -> Recorder:
    app = Recorder()
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]
    given = list(messages)

    async def receive() -> dict[str, Any]:
        return given.pop(0) if given else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await ConnectionTestPortMiddleware(app)(scope, receive, send)
    assert sent[0]["status"] == 200  # the response always reaches the client
    return app


def header(app: Recorder, name: bytes) -> list[bytes]:
    assert app.scope is not None
    return [v for k, v in app.scope["headers"] if k.lower() == name]


async def test_the_ui_body_of_a_volteras_connection_reaches_the_api_without_port_0() -> None:
    app = await call(json.dumps(UI_BODY).encode())
    received = json.loads(app.body)
    assert "port" not in received
    assert received == {k: v for k, v in UI_BODY.items() if k != "port"}  # everything else untouched
    assert header(app, b"content-length") == [str(len(app.body)).encode()]


async def test_a_body_sent_in_pieces_is_read_whole() -> None:
    app = await call(json.dumps(UI_BODY).encode(), chunk=7)
    assert "port" not in json.loads(app.body)


async def test_under_a_base_path_too() -> None:
    # Airflow's API server sets the scope's root_path from [api] base_url before root middlewares run.
    app = await call(json.dumps(UI_BODY).encode(), path="/airflow/api/v2/connections/test", root_path="/airflow")
    assert "port" not in json.loads(app.body)


@pytest.mark.parametrize(
    "change",
    [
        {"port": 443},  # a real port: the API server's own check decides
        {"port": True},
        {"port": "0"},
        {"conn_type": "http"},  # another type's port means something
        {"conn_type": None},
    ],
    ids=["port-443", "port-true", "port-string", "other-type", "no-type"],
)
async def test_anything_else_passes_byte_for_byte(change: dict[str, Any]) -> None:
    body = json.dumps({**UI_BODY, **change}).encode()
    app = await call(body)
    assert app.body == body
    assert header(app, b"content-length") == [str(len(body)).encode()]


@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/v2/connections/test", "GET"), ("/api/v2/connections", "POST"), ("/api/v2/connections/test2", "POST")],
)
async def test_other_requests_are_not_touched(path: str, method: str) -> None:
    body = json.dumps(UI_BODY).encode()
    app = await call(body, path=path, method=method)
    assert app.body == body


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"conn_type": "volteras", "port": 0'])
async def test_unreadable_bodies_pass_unchanged(body: bytes) -> None:
    app = await call(body)
    assert app.body == body


async def test_a_huge_body_passes_unchanged_and_whole() -> None:
    body = json.dumps({**UI_BODY, "description": "x" * 600_000}).encode()
    app = await call(body, chunk=65_536)
    assert app.body == body


async def test_a_client_that_goes_away_is_seen_by_the_app() -> None:
    app = Recorder()
    messages = [{"type": "http.request", "body": b'{"conn_type": ', "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/api/v2/connections/test", "headers": []}
    await ConnectionTestPortMiddleware(app)(scope, receive, send)
    assert [m["type"] for m in app.messages] == ["http.request", "http.disconnect"]


def test_only_the_placeholder_port_is_dropped() -> None:
    assert without_ui_port(json.dumps({"conn_type": "volteras", "port": None}).encode()) == b'{"conn_type": "volteras"}'
    assert without_ui_port(json.dumps({"conn_type": "volteras"}).encode()) is None


def test_the_plugin_adds_the_middleware_to_the_api_server() -> None:
    """Airflow's plugins manager finds the plugin through the package's entry point and hands the
    middleware to the API server (``airflow.api_fastapi.app.init_plugins``)."""
    from airflow import plugins_manager

    plugins_manager.get_fastapi_plugins.cache_clear()
    _apps, middlewares = plugins_manager.get_fastapi_plugins()
    assert [m["middleware"] for m in middlewares if m["middleware"] is ConnectionTestPortMiddleware]
    assert VolterasPlugin.name == "volteras"
