"""Vehicles, tags and vehicle selections: requests, typed answers and checks, free of I/O.

``GET /v1/vehicles`` lists the organization's vehicles (cursor pages, the JSON listing filter, and
``tagKey``/``tagValue``); ``GET /v1/tags/DEVICE/{vehicle_id}`` reads one vehicle's tags. A
:class:`VehicleSelection` names the vehicles of a fleet task in one of three ways (ids, a tag, a
filter); both transports resolve it with these pieces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, TypeVar, cast

from airflow_provider_volteras._core.answers import _unexpected, parse_json_answer, parse_page
from airflow_provider_volteras._core.basics import validate_id
from airflow_provider_volteras._core.wire import (
    MAX_LISTING_PAGES,
    MAX_PAGE_SIZE,
    ApiRequest,
    Pager,
    RawResponse,
    _seg,
    page_params,
)
from airflow_provider_volteras.exceptions import VolterasInvalidInputError

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Typed answers (the OpenAPI document's ``Vehicle``, ``VehicleMetaData`` and ``Tag``)
# ---------------------------------------------------------------------------------------------


class VehicleMetadata(TypedDict):
    lastSeenAt: str | None
    consentId: str | None
    accountId: str | None
    registrationDate: NotRequired[str | None]


class Vehicle(TypedDict):
    """One vehicle of ``GET /v1/vehicles`` (camelCase keys, as the API sends them)."""

    id: str
    make: str
    vin: str
    metadata: VehicleMetadata
    model: NotRequired[str | None]
    trim: NotRequired[str | None]
    modelYear: NotRequired[str | None]
    registrationPlate: NotRequired[str | None]
    isRegNoValidated: NotRequired[bool | None]
    regNoValidatedAt: NotRequired[str | None]
    isListening: NotRequired[bool]
    listeningLastUpdated: NotRequired[str | None]
    connectionStatus: NotRequired[str | None]
    connectionErrorCode: NotRequired[str | None]
    connectionErrorMessage: NotRequired[str | None]
    actionCategory: NotRequired[str | None]


class Tag(TypedDict):
    """A key-value tag on a vehicle (``Tag`` in the OpenAPI document)."""

    key: str
    value: str


#: The entity type of a vehicle in the tags endpoints (``PublicTagEntityTypes``).
TAG_ENTITY_DEVICE = "DEVICE"
#: Longest tag key or value the API takes.
MAX_TAG_LENGTH = 150

# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def filter_text(value: Any, what: str = "filter") -> str:
    """The API's JSON listing filter as compact JSON text: a ``{field, operator, value}`` term, a list of
    filters, an ``{"and"|"or"|"not": [...]}`` function, or the JSON text of one. The API checks the rest."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError as err:
            raise VolterasInvalidInputError(f"{what} is not valid JSON: {err}") from None
    else:
        parsed = value
    if not isinstance(parsed, (dict, list)) or not parsed:
        raise VolterasInvalidInputError(
            f"{what} must be a non-empty JSON listing filter (a {{field, operator, value}} term, a list of them, or "
            f'{{"and"|"or"|"not": [...]}}), got {str(value)[:80]!r}'
        )
    try:
        return json.dumps(parsed, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise VolterasInvalidInputError(f"{what} cannot be sent as JSON: {err}") from None


def parse_tag(value: Any, what: str = "tag") -> Tag:
    """A tag from ``"key=value"``, ``{"key": ..., "value": ...}`` or ``(key, value)``; both parts non-empty."""
    if isinstance(value, str):
        key, sep, val = value.partition("=")
        if not sep:
            raise VolterasInvalidInputError(f'{what} {value[:80]!r} must be written "key=value", e.g. "fleet=north".')
    elif isinstance(value, Mapping) and set(value) == {"key", "value"}:
        key, val = value["key"], value["value"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        key, val = value
    else:
        raise VolterasInvalidInputError(
            f'{what} must be "key=value", {{"key": ..., "value": ...}} or (key, value), got {str(value)[:80]!r}'
        )
    for part, text in (("key", key), ("value", val)):
        if not isinstance(text, str) or not text.strip():
            raise VolterasInvalidInputError(f"{what}'s {part} must be non-empty text, got {str(text)[:80]!r}.")
        if len(text) > MAX_TAG_LENGTH:
            raise VolterasInvalidInputError(f"{what}'s {part} is {len(text)} characters long; at most 150 allowed.")
    return {"key": key, "value": val}


def list_vehicles_request(
    *,
    filter: Any = None,  # noqa: A002 - the API's name
    tag: Any = None,
    max_page_size: int | None = None,
    page_token: str | None = None,
) -> ApiRequest:
    """``GET /v1/vehicles``: optionally only the vehicles with ``tag`` and/or matching ``filter``."""
    params = page_params(None if filter is None else filter_text(filter), max_page_size, page_token)
    if tag is not None:
        checked = parse_tag(tag)
        params["tagKey"], params["tagValue"] = checked["key"], checked["value"]
    return ApiRequest("GET", "/v1/vehicles", params=params or None)


def vehicle_tags_request(vehicle_id: str) -> ApiRequest:
    """``GET /v1/tags/DEVICE/{vehicle_id}``: the vehicle's tags."""
    return ApiRequest("GET", f"/v1/tags/{TAG_ENTITY_DEVICE}/{_seg(validate_id(vehicle_id))}")


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VehiclePage:
    results: list[Vehicle]
    next_token: str | None
    total: int | None
    """The API's ``totalResults`` (``None`` when absent or not a count)."""


def parse_vehicle_page(resp: RawResponse, request: ApiRequest) -> VehiclePage:
    """One page of vehicles; every vehicle must have an id a command could be sent to."""
    results, token = parse_page(resp, request)
    for item in results:
        try:
            validate_id(item.get("id"))
        except VolterasInvalidInputError as err:
            raise _unexpected(request, resp, f"the vehicle listing has a vehicle without a usable id ({err})") from None
    total = parse_json_answer(resp, request).get("totalResults")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None
    return VehiclePage(cast(list[Vehicle], results), token, total)


def parse_tags(resp: RawResponse, request: ApiRequest) -> list[Tag]:
    """The ``tags`` of a ``TagsList`` answer, each a ``{key, value}`` of text."""
    body = parse_json_answer(resp, request)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list) or not all(
        isinstance(t, dict) and isinstance(t.get("key"), str) and isinstance(t.get("value"), str) for t in tags
    ):
        raise _unexpected(request, resp, "expected a TagsList: {'tags': [{'key': ..., 'value': ...}, ...]}")
    return [{"key": t["key"], "value": t["value"]} for t in tags]


def read_pages(
    first: ApiRequest,
    fetch: Callable[[ApiRequest], tuple[list[T], str | None]],
    follow: Callable[[str], ApiRequest],
    max_pages: int = MAX_LISTING_PAGES,
) -> Iterator[T]:
    """Every item of a cursor-paginated listing, read lazily: ``fetch`` reads one page (through the
    transport), ``follow`` builds the request of the page a token names. A repeated token or more than
    ``max_pages`` pages end it with ``VolterasUnexpectedResponseError`` (see :class:`Pager`)."""
    pager = Pager(max_pages)
    request: ApiRequest | None = first
    while request is not None:
        results, token = fetch(request)
        yield from results
        token = pager.next_token(token, request)
        request = follow(token) if token else None


# ---------------------------------------------------------------------------------------------
# Selections
# ---------------------------------------------------------------------------------------------

#: The most vehicles a selection resolved from the API (a tag or a filter) may hold unless ``max_vehicles``
#: says otherwise: a typo in a filter must not reach the whole organization.
DEFAULT_MAX_SELECTED = 1000

SelectionKind = Literal["vehicle_ids", "tag", "filter"]


@dataclass(frozen=True)
class VehicleSelection:
    """Which vehicles a fleet task acts on: ``vehicle_ids`` (given), ``tag`` or ``filter`` (listed from
    ``GET /v1/vehicles`` when the task runs). ``value`` is the checked ids, the :class:`Tag`, or the
    filter's compact JSON text."""

    kind: SelectionKind
    value: Any

    @classmethod
    def of(cls, *, vehicle_ids: Any = None, tag: Any = None, vehicle_filter: Any = None) -> VehicleSelection:
        """Exactly one of the three, checked (``VolterasInvalidInputError`` otherwise)."""
        sources = {"vehicle_ids": vehicle_ids, "tag": tag, "vehicle_filter": vehicle_filter}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise VolterasInvalidInputError(
                "a vehicle selection takes exactly one of vehicle_ids, tag and vehicle_filter; "
                + (f"got {' and '.join(given)}." if given else "got none.")
            )
        if vehicle_ids is not None:
            return cls("vehicle_ids", vehicle_id_list(vehicle_ids))
        if tag is not None:
            return cls("tag", parse_tag(tag))
        return cls("filter", filter_text(vehicle_filter, "vehicle_filter"))

    @property
    def listed(self) -> bool:
        """Whether the vehicles come from the API's listing (a tag or a filter) rather than given ids."""
        return self.kind != "vehicle_ids"

    def describe(self) -> str:
        if self.kind == "tag":
            return f"tag {self.value['key']}={self.value['value']}"
        if self.kind == "filter":
            text = str(self.value)
            return f"filter {text[:200]}{'...' if len(text) > 200 else ''}"
        return "the given vehicle_ids"

    def source(self) -> Any:
        """What a task records of where its vehicles came from (JSON), to tell the same selection later."""
        if self.kind == "tag":
            return {"tag": dict(self.value)}
        if self.kind == "filter":
            return {"filter": self.value}
        return "vehicle_ids"

    def cap(self, max_vehicles: int | None) -> int | None:
        """The most vehicles this selection may hold: ``max_vehicles``, or when it is ``None``
        ``DEFAULT_MAX_SELECTED`` for a tag or filter and no cap for given ids."""
        if max_vehicles is not None:
            return check_max_vehicles(max_vehicles)
        return DEFAULT_MAX_SELECTED if self.listed else None

    def request(self, max_page_size: int = MAX_PAGE_SIZE, page_token: str | None = None) -> ApiRequest:
        """The listing request of a tag or filter selection."""
        if self.kind == "tag":
            return list_vehicles_request(tag=self.value, max_page_size=max_page_size, page_token=page_token)
        if self.kind == "filter":
            return list_vehicles_request(filter=self.value, max_page_size=max_page_size, page_token=page_token)
        raise ValueError("a selection of given vehicle ids is not listed")


def vehicle_id_list(value: Any, what: str = "vehicle_ids") -> list[str]:
    """Every vehicle id checked (all bad ones named at once), duplicates dropped, order kept."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise VolterasInvalidInputError(
            f"{what} must be a list of vehicle ids, got {type(value).__name__} {str(value)[:80]!r}"
        )
    bad: list[str] = []
    ids: list[str] = []
    for item in value:
        try:
            ids.append(validate_id(item))
        except VolterasInvalidInputError:
            bad.append(repr(item)[:60])
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise VolterasInvalidInputError(
            f"{len(bad)} of {len(value)} vehicle id(s) are not valid ({shown}): ids are ASCII letters, digits "
            "and _ . : ~ - only. Nothing was sent to any vehicle."
        )
    return list(dict.fromkeys(ids))


def check_max_vehicles(value: Any) -> int | None:
    """``max_vehicles``: ``None`` (no cap) or a positive whole number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_vehicles must be a positive whole number (or None), got {value!r}")
    return value


def selection_problem(
    selection: VehicleSelection, count: int, max_vehicles: int | None, *, at_least: bool = False
) -> str | None:
    """Why ``count`` vehicles (``at_least`` that many: the listing was not read to its end) cannot be this
    selection's fleet: none, or more than ``max_vehicles``."""
    if count == 0:
        where = (
            "the vehicle listing has no vehicle with this tag"
            if selection.kind == "tag"
            else "no listed vehicle matches this filter"
            if selection.kind == "filter"
            else "the list is empty"
        )
        return f"the selection ({selection.describe()}) has no vehicles: {where}"
    if max_vehicles is not None and count > max_vehicles:
        shown = f"at least {count}" if at_least else f"{count}"
        return (
            f"the selection ({selection.describe()}) has {shown} vehicles, above max_vehicles={max_vehicles}; "
            "narrow the selection, or raise max_vehicles if that many is intended"
        )
    return None


def check_selected(
    selection: VehicleSelection, count: int, max_vehicles: int | None, *, at_least: bool = False
) -> None:
    """Raise ``VolterasInvalidInputError`` when ``count`` vehicles cannot be this selection's fleet
    (see :func:`selection_problem`)."""
    problem = selection_problem(selection, count, max_vehicles, at_least=at_least)
    if problem is not None:
        raise VolterasInvalidInputError(problem + ". Nothing was sent.")


def describe_selected(selection: VehicleSelection, ids: Sequence[str], limit: int = 50) -> str:
    """One line naming a resolved selection: where it came from, how many, and the first ``limit`` ids."""
    shown = ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
    return f"{len(ids)} vehicle(s) selected by {selection.describe()}: {shown}"
