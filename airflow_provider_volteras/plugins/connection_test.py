"""An Airflow plugin that makes the Connections list's **Test** icon work for Volteras connections.

Airflow 3.3's UI tests a listed connection by posting it to ``POST /api/v2/connections/test`` with
``"port": Number(connection.port)``: a connection without a port (every Volteras connection: the port
field is hidden, the API base URL is the host) is posted with ``"port": 0``. The API server reuses the
stored secret only when the posted host and port are the stored ones, and 0 is not the stored empty port,
so it answers 400 "The host or port to test differs from the stored connection" for the right secret as
for a wrong one.

The middleware below, added to the API server by this plugin (the ``airflow.plugins`` entry point, so it
is loaded whether or not providers are discovered lazily), removes ``"port": 0`` from that one request
when the connection type is ``volteras``. A Volteras connection has no port, so nothing is lost; any
other port, host, connection type, path or method passes untouched, and the API server's own check still
refuses a test of another host with the stored secret.

Pure ASGI (no Starlette import here): importing this module costs nothing in the other components.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from airflow_provider_volteras._compat import AirflowPlugin
from airflow_provider_volteras.webhooks.receiver import URL_PREFIX, LazyReceiver

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEST_PATH = "/api/v2/connections/test"
CONN_TYPE = "volteras"
MAX_BODY = 256 * 1024  # a connection-test body is a few hundred bytes; larger ones pass untouched


def without_ui_port(body: bytes) -> bytes | None:
    """The body without the UI's placeholder ``"port": 0`` for a Volteras connection; None to leave it.

    Any body this cannot read (not JSON, not UTF-8, nested too deep, bigger than ``MAX_BODY``) is left
    as it is: the API server answers it as it would without this plugin.
    """
    if len(body) > MAX_BODY:
        return None
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("conn_type") != CONN_TYPE:
            return None
        # The UI's placeholder only: 0 (or null), not False, which also equals 0.
        if "port" not in data or isinstance(data["port"], bool) or data["port"] not in (0, None):
            return None
        del data["port"]
        return json.dumps(data).encode()
    except (ValueError, TypeError, RecursionError, MemoryError):  # ValueError covers UnicodeDecodeError
        return None


def is_test_path(scope: Scope) -> bool:
    """``POST /api/v2/connections/test`` exactly, as the API server routes it: under its root path (``[api]
    base_url``'s path, which FastAPI puts in ``scope["root_path"]``) or with that prefix already removed."""
    path = scope.get("path", "")
    if path == TEST_PATH:
        return True
    root = str(scope.get("root_path") or "").rstrip("/")
    return bool(root) and path == root + TEST_PATH


class ConnectionTestPortMiddleware:
    """Drops ``"port": 0`` from the UI's test of a Volteras connection (see the module's doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not is_test_path(scope):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []  # what was taken from ``receive``, given back unchanged unless rewritten
        size = 0
        complete = False
        while size <= MAX_BODY:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see that
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        if complete and size <= MAX_BODY:  # a body bigger than MAX_BODY passes untouched, in one piece or many
            changed = without_ui_port(b"".join(bytes(m.get("body", b"")) for m in read))
            if changed is not None:
                read = [{"type": "http.request", "body": changed, "more_body": False}]
                headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                scope = {**scope, "headers": [*headers, (b"content-length", str(len(changed)).encode())]}

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)


class VolterasPlugin(AirflowPlugin):
    """Registered through the ``airflow.plugins`` entry point of this package."""

    name = "volteras"
    fastapi_root_middlewares = [
        {
            "middleware": ConnectionTestPortMiddleware,
            "args": [],
            "kwargs": {},
            "name": "Volteras: the Connections list's Test icon (no port 0 for a Volteras connection)",
        }
    ]
    # The command.updated webhook receiver (docs/webhooks.md), built on its first request.
    fastapi_apps = [
        {
            "app": LazyReceiver(),
            "url_prefix": URL_PREFIX,
            "name": "Volteras: command.updated webhook receiver",
        }
    ]
