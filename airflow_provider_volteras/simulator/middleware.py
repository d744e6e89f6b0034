"""Outermost ASGI layer of the simulator: request ids, accounting and fault injection.

Connection drops need the raw transport, which ASGI does not expose. uvicorn's ``send``
callable is a bound method of its per-request ``RequestResponseCycle`` (both the httptools
and the h11 protocol), which holds ``transport``; this layer must therefore be the app
uvicorn calls directly (no wrapping middleware that replaces ``send``). Aborting that
transport closes the TCP connection without a byte of response, which HTTP clients report
as "remote end closed connection" / "server disconnected" (or a reset with ``reset=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import math
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .state import Fault, SimulatorError, SimulatorState, error_envelope

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Scope key carrying the request id (also sent as ``X-Request-Id``).
REQUEST_ID_KEY = "volteras.request_id"
CONTROL_PREFIX = "/_simulator"
_VEHICLES = "/v1/vehicles/"

_HTML_PAGE = (
    "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def classify(method: str, path: str) -> tuple[str, str | None]:
    """Name the API operation of a request (for counters) and its execution id, if any."""
    if path.startswith(_VEHICLES):
        parts = path[len(_VEHICLES) :].split("/")
        if len(parts) == 3 and parts[1] == "command-executions" and method == "GET" and parts[0] and parts[2]:
            return "poll", parts[2]
        if len(parts) == 2:
            if parts[1] == "command-executions" and method == "GET":
                return "list", None
            if parts[1].startswith("command-execution:") and method == "POST":
                return "create", None
        if len(parts) == 1 and method == "GET":
            return "vehicle", None
        return "other", None
    if path == "/v1/oauth2/token" and method == "POST":
        return "token", None
    if path == "/v1/oauth2/test-token" and method == "POST":
        return "test_token", None
    if path == "/v1/rate-limits" and method == "GET":
        return "rate_limit", None
    if path == "/v1/vehicles" and method == "GET":
        return "vehicle", None
    return "other", None


class DropUnsupportedError(RuntimeError):
    """Raised when a drop fault runs under a server whose transport cannot be reached."""


def abort_connection(send: Send, *, reset: bool = False) -> None:
    """Close the client connection behind uvicorn's ``send`` without any response."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise DropUnsupportedError("connection drops need the simulator's uvicorn server")
    if reset:
        with contextlib.suppress(Exception):
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Tell uvicorn the peer is gone so it does not try to send its own 500.
    if cycle is not None and hasattr(cycle, "disconnected"):
        cycle.disconnected = True


async def _run_buffered(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run the app to completion, capturing its response instead of sending it."""
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, capture)
    return status, headers, b"".join(chunks)


async def _send_response(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _json_headers(extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), *(extra or [])]


def _is_execution(value: Any) -> bool:
    return isinstance(value, dict) and "command" in value and "vehicleId" in value


def _rewrite(fault: Fault, body: bytes) -> bytes:
    """Apply a response-body fault to an app answer."""
    if fault.kind == "malformed_json":
        return body[: max(1, len(body) // 2)] if len(body) > 1 else b"{"
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if fault.kind == "wrong_shape":
        if fault.shape == "list":
            data = [data]
        elif fault.shape == "empty_object":
            data = {}
        else:
            targets = data.get("results", [data]) if isinstance(data, dict) else []
            for item in targets:
                if isinstance(item, dict):
                    item.pop("status", None)
        return json.dumps(data).encode()
    items = data.get("results", [data]) if isinstance(data, dict) else []
    for item in items:
        if not _is_execution(item):
            continue
        if fault.kind == "unknown_status":
            item["status"] = fault.status_value
        elif fault.kind == "extra_fields":
            item.update(
                fault.fields
                if fault.fields is not None
                else {"priority": "NORMAL", "oemRequestId": "sim-oem-request", "metadata": {"source": "simulator"}}
            )
        elif fault.kind == "null_executed_at":
            item.update({"status": "EXECUTED", "executedAt": None, "failedReason": None})
    return json.dumps(data).encode()


class SimulatorApp:
    """The ASGI app served by uvicorn: wraps the FastAPI routes with request ids,
    counters, the request log and fault injection."""

    def __init__(self, api: ASGIApp, state: SimulatorState) -> None:
        self.api = api
        self.state = state
        #: Set while the server shuts down: requests cancelled then end quietly.
        self.closing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._handle(scope, receive, send)
        except asyncio.CancelledError:
            if not self.closing:
                raise

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope[REQUEST_ID_KEY] = request_id
        rid = request_id.encode()
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self.api(scope, receive, self._tracking_send(send, rid, None))
            return
        method: str = scope["method"]
        kind, execution_id = classify(method, path)
        entry, fault = self.state.begin_request(method, path, kind, execution_id, request_id)
        out = self._tracking_send(send, rid, entry)
        if fault is None:
            if kind == "poll" and execution_id is not None:
                await self._poll(scope, path, execution_id, out, request_id)
            else:
                await self.api(scope, receive, out)
        else:
            await self._apply_fault(fault, scope, receive, send, out, entry, request_id)

    async def _poll(self, scope: Scope, path: str, execution_id: str, out: Send, request_id: str) -> None:
        """Fast path for ``GET .../command-executions/{id}``, the request pollers hammer.

        Same answers as the FastAPI route, without its per-request dependency solving.
        """
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        vehicle_id = path[len(_VEHICLES) :].split("/", 1)[0]
        extra: list[tuple[bytes, bytes]] = []
        try:
            self.state.authenticate(authorization)
            status, data = 200, self.state.get_execution(vehicle_id, execution_id)
        except SimulatorError as exc:
            self.state.note_error(exc.code)
            status, data = exc.status, error_envelope(request_id, exc.code, exc.message, exc.data)
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        body = json.dumps(data, separators=(",", ":")).encode()
        await _send_response(out, status, _json_headers(extra), body)

    @staticmethod
    def _tracking_send(send: Send, rid: bytes, entry: dict[str, Any] | None) -> Send:
        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                if entry is not None:
                    entry["status"] = message["status"]
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        return tracked

    async def _apply_fault(
        self,
        fault: Fault,
        scope: Scope,
        receive: Receive,
        send: Send,
        out: Send,
        entry: dict[str, Any],
        request_id: str,
    ) -> None:
        kind = fault.kind
        if kind == "slow":
            if fault.apply:
                answer = await _run_buffered(self.api, scope, receive)
                await asyncio.sleep(fault.delay)
                await _send_response(out, *answer)
            else:
                await asyncio.sleep(fault.delay)
                await self.api(scope, receive, out)
            return
        if kind == "drop_before":
            abort_connection(send, reset=fault.reset)
            return
        if kind == "drop_after":
            status, _, _ = await _run_buffered(self.api, scope, receive)
            entry["appliedStatus"] = status
            abort_connection(send, reset=fault.reset)
            return
        if kind in ("status", "rate_limit", "unauthorized"):
            if fault.apply:
                status, _, _ = await _run_buffered(self.api, scope, receive)
                entry["appliedStatus"] = status
            await self._send_fault_answer(fault, out, request_id)
            return
        status, headers, body = await _run_buffered(self.api, scope, receive)
        await _send_response(out, status, headers, _rewrite(fault, body))

    async def _send_fault_answer(self, fault: Fault, out: Send, request_id: str) -> None:
        status = {"rate_limit": 429, "unauthorized": 401}.get(fault.kind, fault.status)
        code = fault.error_code()
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        extra: list[tuple[bytes, bytes]] = []
        if fault.kind == "rate_limit" and fault.retry_after is not None:
            seconds = math.ceil(fault.retry_after)
            if fault.retry_after_date:
                value = email.utils.formatdate(math.ceil(time.time()) + seconds, usegmt=True)
            else:
                value = str(seconds)
            extra.append((b"retry-after", value.encode()))
        if code == "AUTHENTICATION_ERROR":
            extra.append((b"www-authenticate", b"Bearer"))
        if fault.html:
            page = _HTML_PAGE.format(code=status, phrase=phrase).encode()
            await _send_response(out, status, [(b"content-type", b"text/html; charset=utf-8"), *extra], page)
            return
        self.state.note_error(code)
        message = fault.message or f"simulated {phrase.lower()} ({fault.kind} fault)"
        body = json.dumps(error_envelope(request_id, code, message)).encode()
        await _send_response(out, status, _json_headers(extra), body)
