"""A request to any endpoint of the API (``VolterasHook.request``): checked, and told whether it may be resent."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from airflow_provider_volteras._core.answers import parse_json_answer
from airflow_provider_volteras._core.wire import ApiRequest, RawResponse
from airflow_provider_volteras.exceptions import (
    VolterasInvalidInputError,
    VolterasRateLimitError,
    VolterasTransportError,
)

#: Methods whose repetition has the effect of one request (RFC 9110): retried on transient failures.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
METHODS = IDEMPOTENT_METHODS | {"POST", "PATCH"}
#: A path below the base URL: RFC 3986 path characters only (no query, fragment, space or control character).
_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_PATH_LENGTH = 2000


def custom_request(
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
) -> ApiRequest:
    """The request ``method path`` (a path below the connection's base URL, e.g. ``/v1/tags``), with query
    ``params`` and a JSON body. Refused (``VolterasInvalidInputError``) before anything is sent: another host
    or scheme, a path that is not plain RFC 3986 (a query belongs in ``params``), ``.``/``..`` segments, and
    command creates, which only the command operators and ``create_command_execution`` send (they never
    send a command twice)."""
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise VolterasInvalidInputError(f"method must be one of {', '.join(sorted(METHODS))}, got {method!r}")
    method = method.upper()
    if not isinstance(path, str) or not _PATH.fullmatch(path) or path.startswith("//") or _ESCAPE.search(path):
        raise VolterasInvalidInputError(
            f"path must be an API path below the connection's base URL, like '/v1/tags' (RFC 3986 characters, "
            f"percent-encoded ids, the query in params=), got {str(path)[:120]!r}"
        )
    if len(path) > MAX_PATH_LENGTH:
        raise VolterasInvalidInputError(f"path is {len(path)} characters long; at most {MAX_PATH_LENGTH} allowed.")
    segments = unquote(path).split("/")
    if any(segment in (".", "..") for segment in segments):
        raise VolterasInvalidInputError(f"path {path[:120]!r} has a '.' or '..' segment.")
    if method == "POST" and any(segment.startswith("command-execution:") for segment in segments):
        raise VolterasInvalidInputError(
            "commands are not sent through request(): use the command operators or "
            "VolterasHook.create_command_execution, which never send a command twice."
        )
    query: dict[str, str] = {}
    for name, value in (params or {}).items():
        if not isinstance(name, str) or not name:
            raise VolterasInvalidInputError(f"query parameter names must be non-empty text, got {name!r}")
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            query[name] = str(value)
        elif value is not None:
            raise VolterasInvalidInputError(
                f"query parameter {name!r} must be text, a number or a boolean, got {type(value).__name__}"
            )
    if json_body is not None:
        try:
            json.dumps(json_body, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise VolterasInvalidInputError(f"the JSON body cannot be sent: {err}") from None
    return ApiRequest(method, path, params=query or None, json_body=json_body)


def resend_safe(error: BaseException) -> bool:
    """Whether a failed attempt of a request that is not idempotent was certainly not applied, so that
    sending it again cannot apply it twice: no connection was made, or the API refused it for its rate."""
    if isinstance(error, VolterasTransportError):
        return not error.maybe_sent
    return isinstance(error, VolterasRateLimitError)


def parse_any_answer(resp: RawResponse, request: ApiRequest) -> Any:
    """The JSON of a 2xx answer (``None`` when it has no body), or the typed error of any other answer."""
    if 200 <= resp.status < 300 and not resp.body.strip():
        return None
    return parse_json_answer(resp, request)
