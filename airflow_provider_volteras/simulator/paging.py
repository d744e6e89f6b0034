"""Cursor pagination, as the real API does it (filters: :mod:`.filters`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence

from .constants import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    SimulatorError,
    T,
    _validation,
)


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
    anchor: Callable[[T], str] | None = None,
) -> tuple[list[T], str | None, int]:
    """One page of ``items`` (those that ``match``), the next page token and the total matched.

    Page tokens carry the state generation, the query scope and a fingerprint of the filter,
    so a reset, another query or a changed filter is refused as the real API does. With
    ``anchor`` (a stable key of an item) a token also names the item it resumes at, so items
    inserted anywhere in ``items`` meanwhile (older history) do not shift the cursor.
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
        start, key = decode_page_token(page_token, scope, fingerprint, generation)
        if anchor is not None and key is not None and not (0 <= start < len(items) and anchor(items[start]) == key):
            start = next((i for i, item in enumerate(items) if anchor(item) == key), -1)
            if start < 0:
                raise SimulatorError("QUERY_PAGE_TOKEN_EXPIRED", "the page token has expired; start a new query")
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
        data: dict[str, object] = {"g": generation, "s": scope, "f": fingerprint, "c": index}
        if anchor is not None:
            data["a"] = anchor(items[index])
        raw = json.dumps(data, separators=(",", ":"))
        next_token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    return page, next_token, total


def decode_page_token(token: str, scope: str, fingerprint: str, generation: int) -> tuple[int, str | None]:
    """The cursor (an index into the items) and the anchor key of a page token, if it has one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        token_generation, token_scope, token_filter, cursor = data["g"], data["s"], data["f"], data["c"]
        key = data.get("a")
        if not isinstance(cursor, int) or not isinstance(token_generation, int) or not isinstance(key, str | None):
            raise TypeError("bad cursor")
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise _validation("invalid pageToken", field="pageToken") from None
    if token_generation != generation:
        raise SimulatorError("QUERY_PAGE_TOKEN_EXPIRED", "the page token has expired; start a new query")
    if token_scope != scope:
        raise _validation("pageToken belongs to another query", field="pageToken")
    if token_filter != fingerprint:
        raise SimulatorError("PAGINATED_QUERY_FILTER_CHANGED", "the filter changed between pages; start a new query")
    return cursor, key
