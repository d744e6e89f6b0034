"""Listing filters and cursor pagination, as the real API does them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .constants import (
    DEFAULT_PAGE_SIZE,
    EXECUTION_STATUSES,
    MAX_PAGE_SIZE,
    VEHICLE_COMMANDS,
    SimulatorError,
    T,
    _validation,
)


@dataclass(frozen=True)
class _Term:
    field: str
    op: str
    value: Any

    def matches(self, actual: Any) -> bool:
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        return actual in self.value


_EXECUTION_FILTER_FIELDS: dict[str, tuple[str, ...] | None] = {
    "status": EXECUTION_STATUSES,
    "command": VEHICLE_COMMANDS,
    "id": None,
    "failedReason": None,
}
_VEHICLE_FILTER_FIELDS: dict[str, tuple[str, ...] | None] = {
    "id": None,
    "vin": None,
    "make": None,
    "model": None,
    "connectionStatus": None,
}


def _parse_filter(raw: str | None, fields: Mapping[str, tuple[str, ...] | None]) -> tuple[tuple[_Term, ...], str]:
    """Parse a listing filter into AND-ed terms and a canonical key (``""`` for none)."""
    if raw is None or not raw.strip():
        return (), ""
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise _validation(f"filter is not valid JSON: {exc}") from None
    if isinstance(parsed, dict) and set(parsed) == {"and"}:
        items = parsed["and"]
    elif isinstance(parsed, list):
        items = parsed
    else:
        items = [parsed]
    if not isinstance(items, list):
        raise _validation('"and" must hold a list of filter terms')
    terms: list[_Term] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"field", "operator", "value"}:
            raise _validation('each filter term must be {"field": ..., "operator": ..., "value": ...}')
        name, op, value = item["field"], item["operator"], item["value"]
        if name not in fields:
            raise _validation(f"unsupported filter field {name!r}", supportedFields=sorted(fields))
        if op not in ("eq", "ne", "in"):
            raise _validation(f"unsupported filter operator {op!r}", supportedOperators=["eq", "ne", "in"])
        values = value if op == "in" else [value]
        if op == "in" and not isinstance(value, list):
            raise _validation('operator "in" needs a list value')
        allowed = fields[name]
        for single in values:
            if single is not None and not isinstance(single, str):
                raise _validation(f"filter value for {name!r} must be a string")
            if allowed is not None and single not in allowed:
                raise _validation(f"invalid {name} value {single!r}", allowedValues=list(allowed))
        terms.append(_Term(name, op, tuple(value) if op == "in" else value))
    key = json.dumps([[t.field, t.op, list(t.value) if t.op == "in" else t.value] for t in terms])
    return tuple(terms), key


# --------------------------------------------------------------------------- the state


def paginate(
    items: Sequence[T],
    scope: str,
    filter_key: str,
    max_page_size: int | None,
    page_token: str | None,
    match: Callable[[T], bool],
    *,
    newest_first: bool,
    generation: int,
) -> tuple[list[T], str | None, int]:
    """One page of ``items`` (those that ``match``), the next page token and the total matched.

    Page tokens carry the state generation, the query scope and a fingerprint of the filter,
    so a reset, another query or a changed filter is refused as the real API does.
    """
    size = DEFAULT_PAGE_SIZE if max_page_size is None else max_page_size
    if size < 1:
        raise _validation("maxPageSize must be >= 1", field="maxPageSize")
    if size > MAX_PAGE_SIZE:
        raise SimulatorError(
            "PAGE_SIZE_TOO_LARGE", f"maxPageSize must be <= {MAX_PAGE_SIZE}", data={"maxPageSize": MAX_PAGE_SIZE}
        )
    fingerprint = hashlib.sha256(filter_key.encode()).hexdigest()[:16]
    step = -1 if newest_first else 1
    if page_token:
        start = decode_page_token(page_token, scope, fingerprint, generation)
    else:
        start = len(items) - 1 if newest_first else 0
    total = sum(1 for item in items if match(item))
    page: list[T] = []
    index = start
    while 0 <= index < len(items) and len(page) < size:
        if match(items[index]):
            page.append(items[index])
        index += step
    while 0 <= index < len(items) and not match(items[index]):
        index += step
    next_token = None
    if 0 <= index < len(items):
        raw = json.dumps({"g": generation, "s": scope, "f": fingerprint, "c": index}, separators=(",", ":"))
        next_token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    return page, next_token, total


def decode_page_token(token: str, scope: str, fingerprint: str, generation: int) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        token_generation, token_scope, token_filter, cursor = data["g"], data["s"], data["f"], data["c"]
        if not isinstance(cursor, int) or not isinstance(token_generation, int):
            raise TypeError("bad cursor")
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise _validation("invalid pageToken", field="pageToken") from None
    if token_generation != generation:
        raise SimulatorError("QUERY_PAGE_TOKEN_EXPIRED", "the page token has expired; start a new query")
    if token_scope != scope:
        raise _validation("pageToken belongs to another query", field="pageToken")
    if token_filter != fingerprint:
        raise SimulatorError("PAGINATED_QUERY_FILTER_CHANGED", "the filter changed between pages; start a new query")
    return cursor
