"""The connection-test middleware passes what it cannot (or must not) read through untouched, before
authentication: a hostile body never turns the API server's answer into a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_volteras.plugins.connection_test import MAX_BODY, ConnectionTestPortMiddleware
from tests.plugins.test_connection_test import UI_BODY, Recorder

UI = json.dumps(UI_BODY).encode()


async def call(body: bytes, *, path: str = "/api/v2/connections/test", root_path: str | None = None) -> Recorder:
    """The middleware in front of a recorder, the body in one message; the recorder answers 200."""
    app = Recorder()
    given = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return given.pop(0) if given else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    if root_path is not None:
        scope["root_path"] = root_path
    await ConnectionTestPortMiddleware(app)(scope, receive, send)  # raises if the middleware fails
    assert sent[0]["status"] == 200
    return app


@pytest.mark.parametrize("depth", [2_000, 100_000])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
async def test_deeply_nested_json_passes_unchanged(depth: int, opener: bytes) -> None:
    inner = b'{"conn_type": "volteras", "port": 0, "x": ' + opener * depth
    for body in (opener * depth, inner):
        app = await call(body)
        assert app.body == body


async def test_a_body_that_is_not_utf8_passes_unchanged() -> None:
    body = b'{"conn_type": "volteras", "port": 0, "host": "\xff\xfe"}'
    assert (await call(body)).body == body


async def test_a_single_message_bigger_than_max_body_passes_unchanged() -> None:
    body = json.dumps({**UI_BODY, "description": "x" * (MAX_BODY + 1)}).encode()
    app = await call(body)
    assert app.body == body, "MAX_BODY applies to a body sent in one message too"


@pytest.mark.parametrize(
    "path",
    [
        "/evil/api/v2/connections/test",
        "/api/v2/connections/x/api/v2/connections/test",
        "//api/v2/connections/test",
        "/api/v2/connections/test/",
    ],
)
async def test_only_the_exact_path_is_rewritten(path: str) -> None:
    assert (await call(UI, path=path)).body == UI


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/api/v2/connections/test", None),
        ("/api/v2/connections/test", ""),
        ("/airflow/api/v2/connections/test", "/airflow"),  # [api] base_url = https://host/airflow
        ("/airflow/api/v2/connections/test", "/airflow/"),
        ("/api/v2/connections/test", "/airflow"),  # a proxy that removed the prefix
    ],
)
async def test_the_test_path_under_the_api_root(path: str, root_path: str | None) -> None:
    assert "port" not in json.loads((await call(UI, path=path, root_path=root_path)).body)


async def test_another_prefix_than_the_api_root_is_not_rewritten() -> None:
    assert (await call(UI, path="/other/api/v2/connections/test", root_path="/airflow")).body == UI
