"""Answers the hook and the trigger's client must not believe or keep: bounded decoded size (a gzip bomb,
a huge body), transport errors that keep no token in their chain, and create answers (3xx, 405, 413)
that mean "not applied".

A small HTTP server on 127.0.0.1 answers tokens at once and each vehicle id in its own way.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import traceback
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_volteras._core import tokens
from airflow_provider_volteras._core.wire import MAX_ANSWER_BYTES
from airflow_provider_volteras.exceptions import (
    VolterasConfigurationError,
    VolterasTransportError,
    VolterasUnexpectedResponseError,
    VolterasValidationError,
)
from airflow_provider_volteras.hooks._async import AsyncVolterasClient
from airflow_provider_volteras.hooks.volteras import VolterasHook

TOKEN = "tok-Z9q8SECRETw7v6"
MiB = 1024 * 1024
#: Decoded size of the bomb and of the huge body: far above MAX_ANSWER_BYTES.
BIG = 96 * MiB
#: Peak traced memory allowed while one of them is refused (the cap plus buffers).
MEMORY_BOUND = 3 * MAX_ANSWER_BYTES
SPACES = b" " * MiB


def conn_json(host: str, client_id: str, secret: str, extra: dict[str, Any]) -> str:
    return json.dumps({"conn_type": "volteras", "login": client_id, "password": secret, "host": host, "extra": extra})


def execution(vehicle: str) -> bytes:
    return json.dumps({"id": "e-1", "vehicleId": vehicle, "command": "CLIMATE_OFF", "status": "EXECUTED"}).encode()


def _compressed(wbits: int) -> bytes:
    """``BIG`` bytes of JSON whitespace, then a valid execution: readable JSON, if read whole."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [packer.compress(SPACES) for _ in range(BIG // MiB)]
    parts += [packer.compress(execution("car-bomb")), packer.flush()]
    return b"".join(parts)


BOMBS = {"gzip": _compressed(16 + zlib.MAX_WBITS), "deflate": _compressed(zlib.MAX_WBITS)}


class _Api(BaseHTTPRequestHandler):
    """Tokens at once; reads and creates answered by vehicle id (the path's fourth segment)."""

    creates: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        headers.setdefault("content-type", "application/json")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "content_length" not in headers and "no_length" not in headers:
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client stopped reading, as it should

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/v1/oauth2/token"):
            body = json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}).encode()
            self._answer(200, body)
            return
        vehicle = self.path.split("/")[3]
        _Api.creates.append(vehicle)
        self._vehicle(vehicle)

    def do_GET(self) -> None:
        if len(self.path.split("?")[0].split("/")) == 5:  # a listing: nothing was created here before
            self._answer(200, json.dumps({"results": [], "nextPageToken": None}).encode())
            return
        self._vehicle(self.path.split("/")[3])

    def _vehicle(self, vehicle: str) -> None:
        kind = vehicle.removeprefix("car-")
        if kind in BOMBS:
            self._answer(200, BOMBS[kind], content_encoding=kind)
        elif kind == "huge":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            try:
                for _ in range(BIG // MiB):
                    self.wfile.write(SPACES)
                self.wfile.write(execution(vehicle))
            except OSError:
                pass
        elif kind == "huge-announced":
            self.send_response(200)
            self.send_header("content-length", str(BIG))
            self.end_headers()
        elif kind in ("small-gzip", "small-deflate", "small-rawdeflate"):
            plain = execution(vehicle)
            if kind == "small-gzip":
                self._answer(200, gzip.compress(plain), content_encoding="gzip")
            elif kind == "small-deflate":
                self._answer(200, zlib.compress(plain), content_encoding="deflate")
            else:
                raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
                self._answer(200, raw.compress(plain) + raw.flush(), content_encoding="deflate")
        elif kind == "brotli":
            self._answer(200, b"\x0b\x02\x80{}\x03", content_encoding="br")
        elif kind == "corrupt-gzip":
            self._answer(200, b"\x1f\x8b\x08\x00garbage-not-gzip", content_encoding="gzip")
        elif kind == "garbage":  # not HTTP at all: the client's parser fails after the request was sent
            self.wfile.write(b"HTTP/1.1 abc\r\nnonsense\r\n\r\n")
            self.close_connection = True
        elif kind == "302":
            self._answer(302, b"", location="https://www.volteras.com/")
        elif kind == "405":
            self._answer(405, b"<html>Method Not Allowed</html>", content_type="text/html")
        elif kind == "405-json":
            self._answer(405, b'{"detail": "Method Not Allowed"}')
        elif kind == "413":
            self._answer(413, b"<html>Request Entity Too Large</html>", content_type="text/html")
        else:
            self._answer(200, execution(vehicle))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    extra = {"max_retries": 0, "timeout": 30, "shared_cache": False}
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", conn_json(url, "client-id", "client-secret", extra))
    tokens.TOKEN_CACHE.clear()
    _Api.creates = []
    yield url
    tokens.TOKEN_CACHE.clear()
    server.shutdown()
    server.server_close()


def hook_read(vehicle: str) -> Any:
    return VolterasHook().get_command_execution(vehicle, "e-1")


def trigger_read(vehicle: str) -> Any:
    async def read() -> Any:
        async with AsyncVolterasClient.open("volteras_default") as client:
            return await client.get_command_execution(vehicle, "e-1")

    return asyncio.run(read())


TRANSPORTS: dict[str, Callable[[str], Any]] = {"hook": hook_read, "trigger": trigger_read}


def peak_while(call: Callable[[], Any]) -> tuple[Any, int]:
    """What ``call`` returned or raised, and the peak of traced memory meanwhile."""
    tracemalloc.start()
    try:
        try:
            outcome: Any = call()
        except Exception as err:  # noqa: BLE001 - returned for the test to check
            outcome = err
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- 1. the decoded size of every answer is bounded -----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("vehicle", ["car-gzip", "car-deflate", "car-huge"])
def test_an_answer_bigger_than_the_cap_is_refused_with_bounded_memory(api: str, transport: str, vehicle: str) -> None:
    outcome, peak = peak_while(lambda: TRANSPORTS[transport](vehicle))
    assert isinstance(outcome, VolterasUnexpectedResponseError), f"got {outcome!r}"
    assert outcome.status_code == 200
    assert peak < MEMORY_BOUND, f"reading a {BIG // MiB} MiB answer peaked at {peak / MiB:.0f} MiB"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_announced_huge_body_is_refused_before_it_is_read(api: str, transport: str) -> None:
    with pytest.raises(VolterasUnexpectedResponseError):
        TRANSPORTS[transport]("car-huge-announced")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("vehicle", ["car-small-gzip", "car-small-deflate", "car-small-rawdeflate", "car-plain"])
def test_compressed_answers_under_the_cap_are_read(api: str, transport: str, vehicle: str) -> None:
    assert TRANSPORTS[transport](vehicle)["vehicleId"] == vehicle


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("vehicle", ["car-brotli", "car-corrupt-gzip"])
def test_an_unknown_or_corrupt_coding_is_an_unreadable_answer(api: str, transport: str, vehicle: str) -> None:
    with pytest.raises(VolterasUnexpectedResponseError):
        TRANSPORTS[transport](vehicle)


def test_an_oversized_answer_to_a_create_counts_as_maybe_applied(api: str) -> None:
    with pytest.raises(VolterasUnexpectedResponseError) as caught:
        VolterasHook().create_command_execution("car-gzip", "CLIMATE_OFF", before=[])
    assert caught.value.create_applied, "an unreadable (oversized) create answer may have been applied"
    assert _Api.creates == ["car-gzip"]


# -- 6. a transport error keeps no token in its chain ----------------------------------------------------------


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_transport_error_holds_no_token_in_its_chain(api: str, transport: str) -> None:
    with pytest.raises(VolterasTransportError) as caught:
        TRANSPORTS[transport]("car-garbage")
    err = caught.value
    chain = _chain(err)
    for link in chain:
        assert not isinstance(link, VolterasTransportError) or (link.__cause__ is None and link.__context__ is None), (
            f"{type(link).__name__} keeps {link.__context__!r}"
        )
    text = "".join(traceback.format_exception(err)) + "".join(repr(link) for link in chain)
    assert TOKEN not in text


# -- 7. answers to a create that mean "not applied" ------------------------------------------------------------


@pytest.mark.parametrize(
    ("vehicle", "error"),
    [
        ("car-302", VolterasConfigurationError),
        ("car-405", VolterasConfigurationError),
        ("car-405-json", VolterasConfigurationError),
        ("car-413", VolterasValidationError),
    ],
)
def test_a_create_answered_by_a_redirect_405_or_413_was_not_applied(
    api: str, vehicle: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        VolterasHook().create_command_execution(vehicle, "CLIMATE_OFF", before=[])
    assert not getattr(caught.value, "create_applied", False)
    assert _Api.creates == [vehicle], "sent once, never again"
    text = str(caught.value)
    assert vehicle.removeprefix("car-")[:3] in text  # the status is named
    if error is VolterasConfigurationError:
        assert "host" in text  # says what to fix


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_status_read_answered_by_a_redirect_is_a_configuration_error(api: str, transport: str) -> None:
    with pytest.raises(VolterasConfigurationError, match=re.escape("https://www.volteras.com/")):
        TRANSPORTS[transport]("car-302")
