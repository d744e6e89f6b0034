"""Requests and raw answers, transport-neutral: what to send for each API call, and the generator drivers."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote, urlencode

from airflow_provider_volteras._core.basics import validate_id, validate_issued_id
from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras.catalogue import VehicleCommand, build_payload, get_command_spec
from airflow_provider_volteras.exceptions import VolterasInvalidInputError, VolterasTransportError

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
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
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
    params: dict[str, str] = {}
    if filter is not None:
        params["filter"] = filter if isinstance(filter, str) else json.dumps(filter, separators=(",", ":"))
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
    return ApiRequest("GET", f"/v1/vehicles/{_seg(validate_id(vehicle_id))}/command-executions", params=params or None)


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


def command_filter(command: str | VehicleCommand, status: str | None = None) -> list[dict[str, str]]:
    """The listing filter for one command (and status). Callers still check each result themselves."""
    terms = [{"field": "command", "operator": "eq", "value": get_command_spec(command, creatable=False).command.value}]
    if status is not None:
        terms.append({"field": "status", "operator": "eq", "value": status})
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
