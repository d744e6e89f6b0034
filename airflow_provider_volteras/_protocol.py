"""The Volteras protocol core, free of I/O.

Everything both transports need lives here once: connection settings and their validation, id
validation, building requests, turning answers into data or typed errors, token bookkeeping (a
process-wide cache shared by hooks and triggers), the retry schedule and the adaptive poll schedule.
The synchronous hook (``requests``) and the async client used by triggers (``httpx``) only move bytes
and drive the small generators defined here.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import tenacity

# Heavy standard-library and tenacity imports happen where they are used: DAG files import this
# module (through the operators), and parsing must stay cheap.
from airflow_provider_volteras._basics import (  # noqa: F401 - re-exported for the transports
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    EXECUTION_STATUSES,
    FIRST_POLL_DELAY,
    MAX_ID_LENGTH,
    POLL_GROWTH,
    STATUS_EXECUTED,
    STATUS_FAILED,
    STATUS_PENDING,
    TERMINAL_STATUSES,
    is_terminal,
    validate_id,
)
from airflow_provider_volteras.commands import VehicleCommand, build_payload, get_command_spec
from airflow_provider_volteras.exceptions import (
    TRANSIENT_ERRORS,
    VolterasApiError,
    VolterasAuthenticationError,
    VolterasCommandInProgressError,
    VolterasConfigurationError,
    VolterasInvalidInputError,
    VolterasNotFoundError,
    VolterasPermissionError,
    VolterasRateLimitError,
    VolterasServerError,
    VolterasUnexpectedResponseError,
    VolterasValidationError,
)

PRODUCTION_URL = "https://api.volteras.com"

# ---------------------------------------------------------------------------------------------
# Connection settings
# ---------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise VolterasConfigurationError(f"Connection extra '{name}' must be true or false, got {value!r}.")


def _as_number(name: str, value: Any, *, minimum: float, maximum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise VolterasConfigurationError(f"Connection extra '{name}' must be a number, got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or not minimum <= number <= maximum:
        raise VolterasConfigurationError(
            f"Connection extra '{name}' must be a number from {minimum:g} to {maximum:g}, got {value!r}."
        )
    return number


#: Connection extras: name -> (default, minimum, maximum, description). Numbers only.
NUMERIC_EXTRAS: dict[str, tuple[float, float, float, str]] = {
    "timeout": (30.0, 0.1, 600.0, "Seconds to wait for each HTTP answer (read timeout)."),
    "connect_timeout": (10.0, 0.1, 120.0, "Seconds to wait for a TCP/TLS connection."),
    "max_retries": (5, 0, 20, "Retries of one request on connection errors, timeouts, 5xx and 429."),
    "retry_max_wait": (60.0, 0.0, 3600.0, "Longest backoff between two retries, in seconds (Retry-After wins)."),
    "retry_total_seconds": (300.0, 1.0, 7200.0, "Give up retrying one request after this many seconds in all."),
    "token_refresh_lead": (60.0, 0.0, 3600.0, "Renew the access token this many seconds before it expires."),
}
BOOLEAN_EXTRAS: dict[str, tuple[bool, str]] = {
    "allow_insecure_http": (False, "Allow a plain http:// base URL to a non-loopback host (never for production)."),
    "verify_ssl": (True, "Verify the server's TLS certificate (use ca_bundle for a private CA instead of false)."),
}
_FORM_PREFIX = "extra__volteras__"
STRING_EXTRAS: dict[str, str] = {
    "ca_bundle": "Path to a CA bundle file used to verify TLS (for a TLS-inspecting proxy).",
}


@dataclass(frozen=True)
class ClientSettings:
    """What a client needs to talk to one Volteras organization. Built from an Airflow connection."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    retry_max_wait: float = 60.0
    retry_total_seconds: float = 300.0
    token_refresh_lead: float = 60.0
    verify: bool | str = True
    conn_id: str = "volteras_default"

    @classmethod
    def from_connection(cls, conn: Any) -> ClientSettings:
        """Build settings from an Airflow ``Connection`` (login, password, host, extras)."""
        conn_id = getattr(conn, "conn_id", None) or "volteras_default"
        client_id = (conn.login or "").strip()
        client_secret = conn.password or ""
        if not client_id or not client_secret:
            raise VolterasConfigurationError(
                f"Connection '{conn_id}' needs the client id as login and the client secret as password."
            )
        try:
            extra = conn.extra_dejson or {}
        except Exception:  # noqa: BLE001 - extra that is not JSON
            raise VolterasConfigurationError(f"Connection '{conn_id}': extra is not valid JSON.") from None
        # The connection form may store its fields as ``extra__volteras__<name>``; empty ones mean "unset".
        extra = {
            (k[len(_FORM_PREFIX) :] if k.startswith(_FORM_PREFIX) else k): v
            for k, v in extra.items()
            if v is not None and v != ""
        }
        known = set(NUMERIC_EXTRAS) | set(BOOLEAN_EXTRAS) | set(STRING_EXTRAS)
        unknown = sorted(set(extra) - known)
        if unknown:
            raise VolterasConfigurationError(
                f"Connection '{conn_id}': unknown extra field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}."
            )
        numbers = {
            name: _as_number(name, extra.get(name, default), minimum=lo, maximum=hi)
            for name, (default, lo, hi, _) in NUMERIC_EXTRAS.items()
        }
        flags = {name: _as_bool(name, extra.get(name, default)) for name, (default, _) in BOOLEAN_EXTRAS.items()}
        verify: bool | str = flags["verify_ssl"]
        if extra.get("ca_bundle"):
            verify = str(extra["ca_bundle"])
        base_url = validate_base_url(_host_to_url(conn), allow_insecure_http=flags["allow_insecure_http"])
        return cls(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            timeout=numbers["timeout"],
            connect_timeout=numbers["connect_timeout"],
            max_retries=int(numbers["max_retries"]),
            retry_max_wait=numbers["retry_max_wait"],
            retry_total_seconds=numbers["retry_total_seconds"],
            token_refresh_lead=numbers["token_refresh_lead"],
            verify=verify,
            conn_id=conn_id,
        )

    @property
    def cache_key(self) -> str:
        """Identifies the credentials without holding them: tokens are shared per key."""
        import hashlib

        digest = hashlib.sha256(f"{self.base_url}\0{self.client_id}\0{self.client_secret}".encode()).hexdigest()
        return digest[:32]

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret,)


def missing_connection_message(conn_id: str) -> str:
    return (
        f"The Airflow connection '{conn_id}' is not defined. Create it with conn type 'volteras' (login = client "
        f"id, password = client secret), e.g. the env var AIRFLOW_CONN_{conn_id.upper()}."
    )


def _host_to_url(conn: Any) -> str:
    host = (conn.host or "").strip()
    if not host:
        return PRODUCTION_URL
    if "://" not in host:
        scheme = (getattr(conn, "schema", None) or "https").strip() or "https"
        host = f"{scheme}://{host}"
    if getattr(conn, "port", None) and urlsplit(host).port is None:
        host = f"{host.rstrip('/')}:{conn.port}"
    return host


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Return the normalised base URL, refusing anything unsafe or ambiguous."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise VolterasConfigurationError(f"The API base URL is not a valid URL ({err}).") from None
    if parts.username or parts.password or "@" in parts.netloc:
        raise VolterasConfigurationError(
            "The API base URL must not contain credentials; put the client id in login and the secret in password."
        )
    hostname = parts.hostname or ""
    if not hostname.isascii() or any(c.isspace() or not c.isprintable() for c in hostname):
        raise VolterasConfigurationError(
            f"The API base URL's host {hostname[:60]!r} must be plain ASCII without spaces (use the punycode form)."
        )
    if parts.scheme not in ("https", "http") or not hostname:
        raise VolterasConfigurationError(
            f"The API base URL must look like {PRODUCTION_URL}, got scheme {parts.scheme!r} and host {hostname!r}."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise VolterasConfigurationError(
            "The API base URL must be scheme and host only (e.g. https://api.volteras.com), without a path, "
            "query or fragment."
        )
    if parts.scheme == "http" and not (_is_loopback(hostname) or allow_insecure_http):
        raise VolterasConfigurationError(
            f"Refusing plain http:// to {hostname}: credentials would travel unencrypted. Use https://, or set "
            "the extra allow_insecure_http=true for a host you control (loopback hosts are always allowed)."
        )
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


# ---------------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------------

def _seg(value: str) -> str:
    return quote(value, safe="")


# ---------------------------------------------------------------------------------------------
# Requests and answers
# ---------------------------------------------------------------------------------------------

AuthKind = Literal["bearer", "basic", "none"]


@dataclass(frozen=True)
class ApiRequest:
    """A transport-neutral request. ``path`` is already encoded."""

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

    def headers(self, settings: ClientSettings) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.auth == "bearer":
            if not self.token:
                raise RuntimeError("bearer request without a token")
            headers["Authorization"] = f"Bearer {self.token}"
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


def test_token_request() -> ApiRequest:
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
    e = _seg(validate_id(execution_id, "command_execution_id"))
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


ADOPTION_PAGE_SIZE = 20


def command_filter(command: str | VehicleCommand, status: str | None = None) -> list[dict[str, str]]:
    """The listing filter for one command (and status). Callers still check each result themselves."""
    terms = [{"field": "command", "operator": "eq", "value": get_command_spec(command, creatable=False).command.value}]
    if status is not None:
        terms.append({"field": "status", "operator": "eq", "value": status})
    return terms


def rate_limits_request(vehicle_id: str) -> ApiRequest:
    return ApiRequest("GET", "/v1/rate-limits", params={"objectId": validate_id(vehicle_id), "domain": "VEHICLE"})


# ---------------------------------------------------------------------------------------------
# Parsing answers and errors
# ---------------------------------------------------------------------------------------------

_CODE_TO_ERROR: dict[str, type[VolterasApiError]] = {
    "AUTHENTICATION_ERROR": VolterasAuthenticationError,
    "NOT_PERMITTED": VolterasPermissionError,
    "RESOURCE_NOT_FOUND": VolterasNotFoundError,
    "REQUEST_VALIDATION_ERROR": VolterasValidationError,
    "PAGE_SIZE_TOO_LARGE": VolterasValidationError,
    "PAGINATED_QUERY_FILTER_CHANGED": VolterasValidationError,
    "QUERY_PAGE_TOKEN_EXPIRED": VolterasValidationError,
    "DEVICE_LIMIT_REACHED": VolterasPermissionError,
    "COMMAND_ALREADY_IN_PROGRESS": VolterasCommandInProgressError,
    "SERVER_ERROR": VolterasServerError,
    "INTERNAL_RATE_LIMITED": VolterasRateLimitError,
}


def _status_to_error(status: int) -> type[VolterasApiError]:
    if status == 401:
        return VolterasAuthenticationError
    if status == 403:
        return VolterasPermissionError
    if status == 404:
        return VolterasNotFoundError
    if status in (400, 422):
        return VolterasValidationError
    if status == 409:
        return VolterasCommandInProgressError
    if status == 429:
        return VolterasRateLimitError
    if status >= 500:
        return VolterasServerError
    return VolterasApiError


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` as delta-seconds or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _decode_json(resp: RawResponse) -> Any:
    try:
        return json.loads(resp.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _NotJson from None


class _NotJson(Exception):
    pass


def error_from_response(resp: RawResponse, request: ApiRequest) -> VolterasApiError:
    """The typed error for a non-2xx answer. Decides by the envelope's ``error`` code first, status second."""
    header_request_id = resp.headers.get("x-request-id")
    where = {"method": request.method, "path": request.path, "status_code": resp.status}
    retry_after = retry_after_seconds(resp.headers.get("retry-after"))
    try:
        body = _decode_json(resp)
    except _NotJson:
        cls = VolterasServerError if resp.status >= 500 else _status_to_error(resp.status)
        if cls is VolterasApiError:
            cls = VolterasUnexpectedResponseError
        message = f"HTTP {resp.status} with a body that is not JSON ({resp.content_type}, {len(resp.body)} bytes)"
        return _make(cls, message, retry_after, request_id=header_request_id, **where)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        message = str(body["message"]) if isinstance(body.get("message"), str) else code
        cls = _CODE_TO_ERROR.get(code) or _status_to_error(resp.status)
        request_id = body.get("requestId") if isinstance(body.get("requestId"), str) else header_request_id
        return _make(cls, message, retry_after, code=code, request_id=request_id, data=body.get("data"), **where)
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        problems = []
        for item in body["detail"][:5]:
            if isinstance(item, dict):
                loc = (
                    ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    if isinstance(item.get("loc"), list)
                    else ""
                )
                problems.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        message = "request validation failed: " + ("; ".join(problems) or "no details")
        cls = _status_to_error(resp.status) if resp.status != 422 else VolterasValidationError
        return _make(
            cls,
            message,
            retry_after,
            code="REQUEST_VALIDATION_ERROR",
            request_id=header_request_id,
            data=body["detail"],
            **where,
        )
    cls = _status_to_error(resp.status)
    if cls is VolterasApiError:
        cls = VolterasUnexpectedResponseError
    return _make(
        cls, f"HTTP {resp.status} with an unrecognised error body", retry_after, request_id=header_request_id, **where
    )


def _make(cls: type[VolterasApiError], message: str, retry_after: float | None, **kwargs: Any) -> VolterasApiError:
    if issubclass(cls, VolterasRateLimitError):
        return cls(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def _unexpected(request: ApiRequest, resp: RawResponse, what: str) -> VolterasUnexpectedResponseError:
    return VolterasUnexpectedResponseError(
        what,
        method=request.method,
        path=request.path,
        status_code=resp.status,
        request_id=resp.headers.get("x-request-id"),
    )


def parse_json_answer(resp: RawResponse, request: ApiRequest) -> Any:
    """JSON of a 2xx answer, or the typed error for anything else."""
    if not 200 <= resp.status < 300:
        raise error_from_response(resp, request)
    try:
        return _decode_json(resp)
    except _NotJson:
        raise _unexpected(
            request,
            resp,
            f"answered HTTP {resp.status} with a body that is not JSON ({resp.content_type}, {len(resp.body)} bytes)",
        ) from None


def parse_execution(
    resp: RawResponse, request: ApiRequest, *, vehicle_id: str, execution_id: str | None = None
) -> dict[str, Any]:
    """A ``VehicleCommandExecution`` of the expected vehicle (and id), with a known status."""
    body = parse_json_answer(resp, request)
    return check_execution(body, request, resp, vehicle_id=vehicle_id, execution_id=execution_id)


def check_execution(
    body: Any, request: ApiRequest, resp: RawResponse, *, vehicle_id: str, execution_id: str | None = None
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _unexpected(request, resp, f"expected a command execution object, got {type(body).__name__}")
    status = body.get("status")
    if not isinstance(status, str) or status not in EXECUTION_STATUSES:  # a list or dict is not even hashable
        raise _unexpected(request, resp, f"command execution has unknown status {str(status)[:40]!r}")
    if not isinstance(body.get("id"), str) or not body["id"]:
        raise _unexpected(request, resp, "command execution has no id")
    if execution_id is not None and body["id"] != execution_id:
        raise _unexpected(request, resp, f"asked for execution {execution_id} but got {body['id'][:60]!r}")
    if body.get("vehicleId") != vehicle_id:
        raise _unexpected(
            request,
            resp,
            f"execution {body['id']} belongs to vehicle {str(body.get('vehicleId'))[:60]!r}, not {vehicle_id}",
        )
    if not isinstance(body.get("command"), str):
        raise _unexpected(request, resp, "command execution has no command")
    reason = body.get("failedReason")
    if reason is not None and not isinstance(reason, str):
        raise _unexpected(request, resp, "command execution has a failedReason that is not text")
    return body


def parse_page(resp: RawResponse, request: ApiRequest) -> tuple[list[dict[str, Any]], str | None]:
    body = parse_json_answer(resp, request)
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise _unexpected(request, resp, "expected a page with a 'results' list")
    results = body["results"]
    if not all(isinstance(r, dict) for r in results):
        raise _unexpected(request, resp, "a page's results must be objects")
    token = body.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise _unexpected(request, resp, "nextPageToken must be text or null")
    return results, token or None


def parse_rate_limits(resp: RawResponse, request: ApiRequest) -> list[dict[str, Any]]:
    body = parse_json_answer(resp, request)
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise _unexpected(request, resp, "expected a list of rate limits")
    return body


def parse_api_access(resp: RawResponse, request: ApiRequest) -> dict[str, Any]:
    body = parse_json_answer(resp, request)
    if not isinstance(body, dict) or not isinstance(body.get("organizationId"), str):
        raise _unexpected(request, resp, "expected clientId and organizationId")
    return body


def is_auth_rejection(resp: RawResponse) -> bool:
    return resp.status == 401


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


@dataclass
class _Token:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float


class TokenCache:
    """Access tokens per credentials (see ``ClientSettings.cache_key``), shared by every client in the process.

    Only dictionary operations happen under its lock, so async code may use it too. Renewal itself is
    serialised by the transports (a thread lock or an asyncio lock per key), so concurrent callers
    make one token request.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self.clock = clock

    def valid(self, settings: ClientSettings) -> str | None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
        if tok and self.clock() < tok.expires_at - settings.token_refresh_lead:
            return tok.access_token
        return None

    def refresh_token(self, settings: ClientSettings) -> str | None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
        return tok.refresh_token if tok else None

    def store(self, settings: ClientSettings, access: str, refresh: str | None, expires_in: float) -> None:
        with self._lock:
            self._tokens[settings.cache_key] = _Token(access, refresh, self.clock() + expires_in)

    def invalidate(self, settings: ClientSettings, access_token: str | None = None) -> None:
        """Forget the access token (only if it is still ``access_token``), keeping the refresh token."""
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
            if tok and (access_token is None or tok.access_token == access_token):
                tok.expires_at = -math.inf

    def drop_refresh(self, settings: ClientSettings) -> None:
        with self._lock:
            tok = self._tokens.get(settings.cache_key)
            if tok:
                tok.refresh_token = None

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKEN_CACHE = TokenCache()


def parse_token(resp: RawResponse, request: ApiRequest) -> tuple[str, str | None, float]:
    body = parse_json_answer(resp, request)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise _unexpected(request, resp, "the token answer has no access_token")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in.bit_length() > 1000:
        expires_in = math.inf  # beyond any float: math.isfinite() would raise OverflowError; refused below
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, (int, float))
        or not math.isfinite(expires_in)
        or expires_in <= 0
    ):
        raise _unexpected(request, resp, "the token answer has no positive expires_in")
    refresh = body.get("refresh_token")
    return body["access_token"], refresh if isinstance(refresh, str) and refresh else None, float(expires_in)


def _auth_error(err: VolterasApiError, message: str) -> VolterasAuthenticationError:
    """An authentication error that says what to check, keeping the API's code, status and requestId."""
    return VolterasAuthenticationError(
        message,
        code=err.code,
        status_code=err.status_code,
        request_id=err.request_id,
        method=err.method,
        path=err.path,
    )


RENEW_TOKEN = object()
"""Yielded by :func:`call_flow` when it needs a fresh access token from the transport."""

Step = Any  # ApiRequest or RENEW_TOKEN


def renew_flow(
    settings: ClientSettings, cache: TokenCache
) -> Generator[ApiRequest, RawResponse, tuple[str, str | None]]:
    """Get a new access token: the refresh grant when a refresh token is held, else client credentials.

    Returns ``(access_token, refresh_token)`` and stores them in ``cache``. A refused refresh token
    falls back to client credentials once.
    """
    refresh = cache.refresh_token(settings)
    request = token_request(settings, refresh)
    resp = yield request
    if refresh and 400 <= resp.status < 500:
        cache.drop_refresh(settings)
        request = token_request(settings)
        resp = yield request
    try:
        access, new_refresh, expires_in = parse_token(resp, request)
    except VolterasAuthenticationError as err:
        raise _auth_error(
            err, f"the client id or secret of connection '{settings.conn_id}' was refused ({err.api_message})"
        ) from None
    cache.store(settings, access, new_refresh or refresh, expires_in)
    return access, new_refresh


def call_flow(settings: ClientSettings, cache: TokenCache, request: ApiRequest) -> Generator[Step, Any, RawResponse]:
    """Send ``request`` with a bearer token; on a 401 renew the token once and resend.

    Yields ``RENEW_TOKEN`` (the transport answers with an access token) or an ``ApiRequest`` (the
    transport answers with its ``RawResponse``). Returns the final ``RawResponse``; a second 401
    raises ``VolterasAuthenticationError``.
    """
    token = cache.valid(settings)
    if token is None:
        token = yield RENEW_TOKEN
    resp: RawResponse = yield request.with_token(token)
    if not is_auth_rejection(resp):
        return resp
    cache.invalidate(settings, token)
    token = yield RENEW_TOKEN
    resp = yield request.with_token(token)
    if is_auth_rejection(resp):
        err = error_from_response(resp, request)
        raise _auth_error(
            err,
            f"the API refused a freshly issued token ({err.api_message}); check that the client of connection "
            f"'{settings.conn_id}' has the scope this endpoint needs (vehicle:commands for commands)",
        )
    return resp


# ---------------------------------------------------------------------------------------------
# Retries (tenacity), the same policy for both transports
# ---------------------------------------------------------------------------------------------


class _BackoffOrRetryAfter:
    """Exponential backoff with jitter; a ``Retry-After`` from the server wins when it is longer."""

    def __init__(self, settings: ClientSettings) -> None:
        import tenacity

        self.backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=settings.retry_max_wait, jitter=0.5)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = self.backoff(retry_state)
        outcome = retry_state.outcome
        err = outcome.exception() if outcome is not None else None
        if isinstance(err, VolterasRateLimitError) and err.retry_after is not None:
            wait = max(wait, err.retry_after)
        return float(wait)


def retry_kwargs(
    settings: ClientSettings, log: logging.Logger | Any, *, retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``: bounded attempts and total time."""
    import tenacity

    def before_sleep(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Volteras request failed (%s); retry %d of %d in %.1f s",
            err,
            state.attempt_number,
            settings.max_retries,
            wait,
        )

    return {
        "retry": tenacity.retry_if_exception_type(retry_on),
        "stop": tenacity.stop_after_attempt(settings.max_retries + 1)
        | tenacity.stop_after_delay(settings.retry_total_seconds)
        | tenacity.stop_before_delay(settings.retry_total_seconds),
        "wait": _BackoffOrRetryAfter(settings),
        "before_sleep": before_sleep,
        "reraise": True,
    }


# ---------------------------------------------------------------------------------------------
# Waiting for a command: the adaptive poll schedule
# ---------------------------------------------------------------------------------------------

def poll_delays(poll_interval: float = DEFAULT_POLL_INTERVAL, first: float = FIRST_POLL_DELAY) -> Iterator[float]:
    """Seconds to sleep before each poll: fast at first, growing by half each time up to ``poll_interval``."""
    delay = min(first, poll_interval)
    while True:
        yield delay
        delay = min(delay * POLL_GROWTH, poll_interval)


@dataclass
class WaitPlan:
    """When to poll next, bounded by an absolute deadline (epoch seconds, UTC)."""

    deadline: float
    poll_interval: float = DEFAULT_POLL_INTERVAL
    jitter: float = 0.0
    """Shorten each pause by up to this fraction at random, so many waits started together spread out."""
    _delays: Iterator[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._delays = poll_delays(self.poll_interval)

    def poll_now(self) -> None:
        """Make the first poll immediate (a wait that resumes, e.g. after a triggerer restart)."""
        self._delays = itertools.chain([0.0], self._delays)

    def next_sleep(self, now: float | None = None) -> float | None:
        """Seconds to sleep before the next poll; ``None`` once the deadline has passed."""
        now = time.time() if now is None else now
        remaining = self.deadline - now
        if remaining <= 0:
            return None
        pause = next(self._delays)
        if self.jitter:
            pause *= 1.0 - random.random() * self.jitter
        return min(pause, remaining)

    def backoff(self, failures: int) -> float:
        """Extra pause after ``failures`` polls in a row could not get an answer."""
        return min(self.poll_interval, 2.0 ** min(failures, 6))




#: Poll failures that do not end a wait: the next poll may well get an answer.
RECOVERABLE_POLL_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, VolterasUnexpectedResponseError)


def watch_flow(plan: WaitPlan, log: logging.Logger | Any, what: str) -> Generator[float, Any, dict[str, Any] | None]:
    """Wait for an execution to end. Yields seconds to pause; expects the next poll's execution or error.

    Returns the terminal execution, or ``None`` when the deadline passes first. Recoverable poll
    errors (transient or unreadable answers) add a growing backoff and the wait goes on; others
    (authentication, not found) are raised.
    """
    failures = 0
    while True:
        pause = plan.next_sleep()
        if pause is None:
            return None
        if failures:
            pause = min(pause + plan.backoff(failures), max(0.0, plan.deadline - time.time()))
        outcome = yield pause
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, RECOVERABLE_POLL_ERRORS):
                raise outcome
            failures += 1
            log.warning("Polling %s failed (%s); %d failure(s) in a row, polling on", what, outcome, failures)
            continue
        failures = 0
        if is_terminal(outcome):
            return outcome
