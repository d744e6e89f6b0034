"""Turning raw answers into data or typed errors: the error code first, the HTTP status second."""

from __future__ import annotations

import json
import math
import time
from typing import Any, cast

from airflow_provider_volteras._core.basics import (
    EXECUTION_STATUSES,
)
from airflow_provider_volteras._core.wire import ApiRequest, RawResponse
from airflow_provider_volteras.exceptions import (
    VolterasApiError,
    VolterasAuthenticationError,
    VolterasCommandInProgressError,
    VolterasNotFoundError,
    VolterasNotTheApiError,
    VolterasPermissionError,
    VolterasRateLimitError,
    VolterasServerError,
    VolterasUnexpectedResponseError,
    VolterasValidationError,
)

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
    if status == 405:
        # The API's own 405 is NOT_PERMITTED (mapped by its code first); a bare one is told apart in
        # :func:`not_the_api`. Either way a refusal: nothing was applied.
        return VolterasPermissionError
    if status == 413:
        return VolterasValidationError  # the request was too large: refused, not applied
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
    not_api = not_the_api(resp, request)
    if not_api is not None:
        return not_api
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
        if resp.status == 413:
            message = f"the request is too large for the API (HTTP 413); it was refused, not applied ({message})"
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


def _has_error_code(resp: RawResponse) -> bool:
    try:
        body = _decode_json(resp)
    except _NotJson:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def not_the_api(resp: RawResponse, request: ApiRequest) -> VolterasNotTheApiError | None:
    """The error for an answer that shows the base URL does not lead to the API, or ``None``.

    A 3xx (redirects are never followed: they would carry the request, and its credentials, elsewhere)
    and a 405 without the API's error envelope mean the connection's host is not the API's base URL.
    The request was not applied: these are never "maybe applied", and retrying cannot help.
    """
    if 300 <= resp.status < 400:
        location = resp.headers.get("location", "")
        to = f" to {location[:200]!r}" if location else ""
        return VolterasNotTheApiError(
            f"the server answered HTTP {resp.status} (a redirect{to}), which is not "
            "followed; nothing was applied. Set the connection's host to the API base URL itself "
            "(https://api.volteras.com, or https://api.sandbox.volteras.com for the sandbox), with https:// "
            "and without a path.",
            status_code=resp.status,
            method=request.method,
            path=request.path,
        )
    if resp.status == 405 and not _has_error_code(resp):
        return VolterasNotTheApiError(
            "the server answered HTTP 405 (method not allowed) without the API's error "
            "envelope: the connection's host does not lead to the Volteras API; nothing was applied. Set the "
            "connection's host to the API base URL (https://api.volteras.com, or "
            "https://api.sandbox.volteras.com for the sandbox).",
            status_code=resp.status,
            method=request.method,
            path=request.path,
        )
    return None


def parse_json_answer(resp: RawResponse, request: ApiRequest) -> Any:
    """JSON of a 2xx answer, or the typed error for anything else (``VolterasConfigurationError`` for an
    answer that shows the base URL is wrong, see :func:`not_the_api`)."""
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
    resp: RawResponse,
    request: ApiRequest,
    *,
    vehicle_id: str,
    execution_id: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """A ``VehicleCommandExecution`` of the expected vehicle (and id and command), with a known status."""
    body = parse_json_answer(resp, request)
    return check_execution(body, request, resp, vehicle_id=vehicle_id, execution_id=execution_id, command=command)


def execution_problem(
    body: Any, *, vehicle_id: str, execution_id: str | None = None, command: str | None = None
) -> str | None:
    """Why ``body`` is not a readable execution about what was asked (vehicle, id, command); ``None`` if it is."""
    if not isinstance(body, dict):
        return f"expected a command execution object, got {type(body).__name__}"
    status = body.get("status")
    if not isinstance(status, str) or status not in EXECUTION_STATUSES:  # a list or dict is not even hashable
        return f"command execution has unknown status {str(status)[:40]!r}"
    if not isinstance(body.get("id"), str) or not body["id"]:
        return "command execution has no id"
    if execution_id is not None and body["id"] != execution_id:
        return f"asked for execution {execution_id} but got {body['id'][:60]!r}"
    if body.get("vehicleId") != vehicle_id:
        return f"execution {body['id']} belongs to vehicle {str(body.get('vehicleId'))[:60]!r}, not {vehicle_id}"
    if not isinstance(body.get("command"), str):
        return "command execution has no command"
    if command is not None and body["command"] != command:
        return f"execution {body['id']} is a {body['command'][:40]!r} command, not {command}"
    reason = body.get("failedReason")
    if reason is not None and not isinstance(reason, str):
        return "command execution has a failedReason that is not text"
    return None


def check_execution(
    body: Any,
    request: ApiRequest,
    resp: RawResponse,
    *,
    vehicle_id: str,
    execution_id: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    problem = execution_problem(body, vehicle_id=vehicle_id, execution_id=execution_id, command=command)
    if problem is not None:
        raise _unexpected(request, resp, problem)
    return cast(dict[str, Any], body)


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
