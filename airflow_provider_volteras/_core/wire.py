"""Requests and raw answers, transport-neutral: what to send for each API call, and the generator drivers."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote, urlencode

from airflow_provider_volteras._core.basics import validate_id, validate_issued_id
from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras.catalogue import VehicleCommand, build_payload, get_command_spec
from airflow_provider_volteras.exceptions import (
    VolterasInvalidInputError,
    VolterasTransportError,
    VolterasUnexpectedResponseError,
)

T = TypeVar("T")


def _seg(value: str) -> str:
    """One encoded path segment: every reserved character escaped, so an id can never change the path."""
    return quote(value, safe="")


AuthKind = Literal["bearer", "basic", "none"]


@dataclass(frozen=True)
class ApiRequest:
    """A transport-neutral request. ``path`` is already encoded; the transports send exactly what
    :meth:`url`, :meth:`headers` and :meth:`body` give."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json_body: Any = None
    form: Mapping[str, str] | None = field(default=None, repr=False)
    auth: AuthKind = "bearer"
    token: str | None = field(default=None, repr=False)
    creates_command: bool = False

    def with_token(self, token: str) -> ApiRequest:
        return replace(self, token=token)

    def url(self, settings: ClientSettings) -> str:
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{settings.base_url}{self.path}{query}"

    def body(self) -> bytes | None:
        if self.form is not None:
            return urlencode(self.form).encode()
        if self.json_body is not None:
            return json.dumps(self.json_body, separators=(",", ":")).encode()
        return None

    def headers(self, settings: ClientSettings) -> dict[str, str]:
        headers = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING, "User-Agent": USER_AGENT}
        if self.form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif self.json_body is not None:
            headers["Content-Type"] = "application/json"
        if self.auth == "bearer":
            if not self.token:
                raise RuntimeError("bearer request without a token")
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.auth == "basic":
            pair = f"{settings.client_id}:{settings.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def describe(self) -> str:
        return f"{self.method} {self.path}"


def _user_agent() -> str:
    from airflow_provider_volteras import __version__

    return f"airflow-provider-volteras/{__version__}"


USER_AGENT = _user_agent()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip() or "no content type"


def token_request(settings: ClientSettings, refresh_token: str | None = None) -> ApiRequest:
    if refresh_token:
        return ApiRequest(
            "POST",
            "/v1/oauth2/token",
            form={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth="basic",
        )
    return ApiRequest("POST", "/v1/oauth2/token", form={"grant_type": "client_credentials"}, auth="basic")


def connection_test_request() -> ApiRequest:
    return ApiRequest("POST", "/v1/oauth2/test-token")


def create_command_request(
    vehicle_id: str, command: str | VehicleCommand, arguments: Mapping[str, Any] | None
) -> ApiRequest:
    spec = get_command_spec(command)
    payload = build_payload(spec.command, arguments)
    path = f"/v1/vehicles/{_seg(validate_id(vehicle_id))}/{spec.path_action}"
    return ApiRequest("POST", path, json_body=payload if payload is not None else None, creates_command=True)


def get_execution_request(vehicle_id: str, execution_id: str) -> ApiRequest:
    v = _seg(validate_id(vehicle_id))
    e = _seg(validate_issued_id(execution_id))
    return ApiRequest("GET", f"/v1/vehicles/{v}/command-executions/{e}")


MAX_PAGE_SIZE = 100


def list_executions_request(
    vehicle_id: str,
    *,
    filter: Any = None,  # noqa: A002 - the API's name
    max_page_size: int | None = None,
    page_token: str | None = None,
) -> ApiRequest:
    text = None if filter is None else filter if isinstance(filter, str) else json.dumps(filter, separators=(",", ":"))
    params = page_params(text, max_page_size, page_token)
    return ApiRequest("GET", f"/v1/vehicles/{_seg(validate_id(vehicle_id))}/command-executions", params=params or None)


def page_params(filter_text: str | None, max_page_size: int | None, page_token: str | None) -> dict[str, str]:
    """The query of one page of a paginated listing: ``filter`` (JSON text), ``maxPageSize``, ``pageToken``."""
    params: dict[str, str] = {}
    if filter_text is not None:
        params["filter"] = filter_text
    if max_page_size is not None:
        if (
            isinstance(max_page_size, bool)
            or not isinstance(max_page_size, int)
            or not 1 <= max_page_size <= MAX_PAGE_SIZE
        ):
            raise VolterasInvalidInputError(f"max_page_size must be a whole number from 1 to {MAX_PAGE_SIZE}.")
        params["maxPageSize"] = str(max_page_size)
    if page_token:
        params["pageToken"] = page_token
    return params


#: Pages one listing may read: with ``MAX_PAGE_SIZE`` results each, 5,000 executions.
MAX_LISTING_PAGES = 50


class Pager:
    """Bookkeeping of one paginated listing: refuses a repeated page token and too many pages."""

    def __init__(self, max_pages: int = MAX_LISTING_PAGES) -> None:
        self.max_pages = max_pages
        self.pages = 0
        self.seen: set[str] = set()

    def next_token(self, token: str | None, request: ApiRequest) -> str | None:
        """The token of the next page to read (``None`` at the end), after one more page was read."""
        from airflow_provider_volteras.exceptions import VolterasUnexpectedResponseError

        self.pages += 1
        if not token:
            return None
        if token in self.seen:
            raise VolterasUnexpectedResponseError(
                f"the listing repeated page token {token[:40]!r} after {self.pages} page(s); stopped reading it",
                method=request.method,
                path=request.path,
            )
        if self.pages >= self.max_pages:
            raise VolterasUnexpectedResponseError(
                f"the listing still had more pages after {self.pages} pages; stopped reading it",
                method=request.method,
                path=request.path,
            )
        self.seen.add(token)
        return token


#: How far back, in seconds, the executions a create may be confused with are listed: the platform ends
#: any command pending for 5 minutes, and clocks may differ by a few minutes.
RECENT_WINDOW = 15 * 60.0


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def command_filter(
    command: str | VehicleCommand, status: str | None = None, *, since: float | None = None
) -> list[dict[str, str]]:
    """The listing filter (the API's documented ``{field, operator, value}`` terms, ANDed) for one command,
    and optionally one status and executions created at or after ``since`` (epoch seconds). Callers still
    check each result themselves."""
    terms = [{"field": "command", "operator": "==", "value": get_command_spec(command, creatable=False).command.value}]
    if status is not None:
        terms.append({"field": "status", "operator": "==", "value": status})
    if since is not None:
        terms.append({"field": "createdAt", "operator": ">=", "value": _iso(since)})
    return terms


def id_filter(execution_id: str, command: str | VehicleCommand | None = None) -> list[dict[str, str]]:
    """The listing filter for one execution id (and command): one page, whatever the vehicle's history."""
    terms = [{"field": "id", "operator": "==", "value": execution_id}]
    if command is not None:
        terms.append(
            {"field": "command", "operator": "==", "value": get_command_spec(command, creatable=False).command.value}
        )
    return terms


def rate_limits_request(vehicle_id: str) -> ApiRequest:
    return ApiRequest("GET", "/v1/rate-limits", params={"objectId": validate_id(vehicle_id), "domain": "VEHICLE"})


def transport_error(
    request: ApiRequest, err: BaseException, *, timed_out: bool, never_sent: bool
) -> VolterasTransportError:
    """The error for a request that got no HTTP answer, from either transport.

    ``never_sent`` only when the request certainly did not reach the server (no connection could be
    opened): for a create, anything else may have been applied.
    """
    text = str(err) or type(err).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    kind = "timed out" if timed_out else "failed"
    return VolterasTransportError(
        f"{request.describe()} {kind}: {type(err).__name__}: {text}", maybe_sent=not never_sent
    )


# ---------------------------------------------------------------------------------------------
# The two drivers: run a protocol generator, answering what it yields with the transport's step
# ---------------------------------------------------------------------------------------------


def drive(gen: Generator[Any, Any, T], step: Callable[[Any], Any]) -> T:
    """Run a protocol generator to its end, answering each thing it yields with ``step(thing)``.

    When ``step`` raises, the error is thrown into the generator at its ``yield``: a flow may handle
    it (e.g. fall back from a failed refresh grant) or let it propagate.
    """
    answer: Any = None
    error: Exception | None = None
    while True:
        try:
            request = gen.send(answer) if error is None else gen.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        try:
            answer, error = step(request), None
        except Exception as err:  # noqa: BLE001 - handed to the generator, which decides
            answer, error = None, err


async def adrive(gen: Generator[Any, Any, T], step: Callable[[Any], Awaitable[Any]]) -> T:
    """Run a protocol generator to its end, answering each thing it yields with ``await step(thing)``
    (errors are thrown into the generator, as in :func:`drive`)."""
    answer: Any = None
    error: Exception | None = None
    while True:
        try:
            request = gen.send(answer) if error is None else gen.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        try:
            answer, error = await step(request), None
        except Exception as err:  # noqa: BLE001 - handed to the generator, which decides
            answer, error = None, err


# ---------------------------------------------------------------------------------------------
# Reading an answer's body: decoded here (not by the HTTP library), with a bound on its decoded size
# ---------------------------------------------------------------------------------------------

#: The most bytes any answer may have once decoded. A status read is under a kilobyte and a page of
#: ``MAX_PAGE_SIZE`` executions some tens of kilobytes: a bigger answer, or a small compressed one that
#: inflates past this ("gzip bomb"), is refused as it arrives, never held in memory whole.
MAX_ANSWER_BYTES = 8 * 1024 * 1024

#: The content codings both transports ask for (``Accept-Encoding``) and decode with :class:`AnswerReader`.
ACCEPT_ENCODING = "gzip, deflate"

#: Raw bytes a transport reads from the connection at a time.
READ_CHUNK = 64 * 1024


class AnswerReader:
    """Collects one answer's body as its raw (still content-coded) bytes arrive, decoding ``gzip`` or
    ``deflate`` chunk by chunk with a bounded output, and raises ``VolterasUnexpectedResponseError`` as
    soon as more than ``limit`` decoded bytes arrived (or the coding is unknown or corrupt).

    Both transports feed it (``requests`` with ``decode_content=False``, ``aiohttp`` with
    ``auto_decompress=False``), so the bound is the same whatever reads the socket. The error is the
    one of an unreadable answer: for a create it means "maybe applied", never "not sent".
    """

    def __init__(
        self, request: ApiRequest, status: int, headers: Mapping[str, str], limit: int = MAX_ANSWER_BYTES
    ) -> None:
        """``headers``: the answer's headers, names in lower case."""
        self.request, self.status, self.headers, self.limit = request, status, headers, limit
        self.body = bytearray()
        coding = headers.get("content-encoding", "").strip().lower()
        self.coding = coding
        self._inflater: Any = None
        self._raw_deflate_tried = False
        if coding in ("", "identity"):
            length = headers.get("content-length", "").strip()
            if length.isdigit() and int(length) > limit:
                raise self._too_big(f"it announces {int(length)} bytes")
        elif coding in ("gzip", "x-gzip", "deflate"):
            self._inflater = self._new_inflater()
        else:
            raise self._unreadable(f"its Content-Encoding {coding[:40]!r} is not one this client asked for")

    def _new_inflater(self, *, raw_deflate: bool = False) -> Any:
        if self.coding == "deflate":
            return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> None:
        """Take the next raw bytes of the body."""
        if self._inflater is None:
            self._take(chunk)
            return
        data = chunk
        while data:
            inflater = self._inflater
            try:
                out = inflater.decompress(data, self.limit + 1 - len(self.body))
            except zlib.error:
                out = None
            if out is None:
                # Some servers send "deflate" without its zlib header: read it as raw deflate, once.
                if self.coding == "deflate" and not self.body and not self._raw_deflate_tried:
                    self._raw_deflate_tried = True
                    self._inflater = self._new_inflater(raw_deflate=True)
                    continue
                raise self._unreadable(f"its {self.coding} body cannot be decoded")
            self._take(out)
            if inflater.unconsumed_tail:
                data = inflater.unconsumed_tail
            elif inflater.eof and inflater.unused_data and self.coding != "deflate":
                data = inflater.unused_data  # another gzip member follows
                self._inflater = self._new_inflater()
            else:
                data = b""

    def finish(self) -> bytes:
        """The whole decoded body, once the transport has read the last raw bytes."""
        if self._inflater is not None:
            try:
                self._take(self._inflater.flush())
            except zlib.error:
                raise self._unreadable(f"its {self.coding} body cannot be decoded") from None
        return bytes(self.body)

    def _take(self, data: bytes) -> None:
        if len(self.body) + len(data) > self.limit:
            raise self._too_big("more arrived")
        self.body += data

    def _too_big(self, why: str) -> VolterasUnexpectedResponseError:
        return self._unreadable(
            f"the answer (HTTP {self.status}) is bigger than the {self.limit} bytes an answer may have once "
            f"decoded ({why}); stopped reading it"
        )

    def _unreadable(self, what: str) -> VolterasUnexpectedResponseError:
        if not what.startswith("the answer"):
            what = f"the answer (HTTP {self.status}) cannot be read: {what}"
        return VolterasUnexpectedResponseError(
            what,
            method=self.request.method,
            path=self.request.path,
            status_code=self.status,
            request_id=self.headers.get("x-request-id"),
        )
