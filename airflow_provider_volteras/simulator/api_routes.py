"""The simulated Connect API: its real paths, payload checks and error shapes.

Error shapes follow the real API: API errors use the envelope
``{requestId, timestamp, error, message, data?}``; malformed command payloads (bad JSON,
missing fields, wrong types) answer FastAPI's own ``{"detail": [...]}`` 422, while
values a vehicle refuses and bad query parameters answer ``REQUEST_VALIDATION_ERROR`` (422).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from .constants import MAX_TAG_LENGTH
from .middleware import REQUEST_ID_KEY
from .state import (
    COMMAND_SLUGS,
    SimulatorError,
    SimulatorState,
)

_Model = TypeVar("_Model", bound=BaseModel)
_API_TAGS: list[str | Enum] = ["Connect API"]
_CONTROL_TAGS: list[str | Enum] = ["Simulator control"]
#: What every simulated vehicle accepts (the API documents no bounds): finite temperatures, 0-100 %.
TEMPERATURE_RANGE = (-math.inf, math.inf)
CHARGE_LIMIT_RANGE = (0, 100)
#: Vehicles whose id starts with ``sim-strict`` are a narrower model: 15-28 °C and a 50-100 % limit.
STRICT_PREFIX = "sim-strict"
STRICT_TEMPERATURE_RANGE = (15.0, 28.0)
STRICT_CHARGE_LIMIT_RANGE = (50, 100)


# --------------------------------------------------------------------------- payload models


class SetTemperaturePayload(BaseModel):
    driverTemperature: float
    passengerTemperature: float


class SetChargeLimitPayload(BaseModel):
    limit: int


_PAYLOADS: dict[str, type[BaseModel]] = {
    "SET_TEMPERATURE": SetTemperaturePayload,
    "SET_CHARGE_LIMIT": SetChargeLimitPayload,
}


class PublicTagEntityTypes(str, Enum):
    DEVICE = "DEVICE"


class PublicTagCreate(BaseModel):
    key: str = Field(max_length=MAX_TAG_LENGTH)
    value: str = Field(max_length=MAX_TAG_LENGTH)
    objectType: PublicTagEntityTypes
    objectId: str


# --------------------------------------------------------------------------- helpers


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _request_id(request: Request) -> str:
    value = request.scope.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else str(uuid.uuid4())


def _loc_error(kind: str, loc: list[str | int], msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _detail_422(errors: list[dict[str, Any]]) -> Response:
    """FastAPI's own validation error shape."""
    return JSONResponse({"detail": errors}, status_code=422)


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise SimulatorError(
            "REQUEST_VALIDATION_ERROR",
            f"{name} must be an integer",
            data={"detail": [_loc_error("int_parsing", ["query", name], "Input should be a valid integer", raw)]},
        ) from None


def _validate_range(name: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        shown = "a finite number" if math.isinf(low) and math.isinf(high) else f"between {low:g} and {high:g}"
        raise SimulatorError(
            "REQUEST_VALIDATION_ERROR",
            f"{name} must be {shown}",
            data={
                "field": name,
                "min": low if math.isfinite(low) else None,
                "max": high if math.isfinite(high) else None,
                "value": value if math.isfinite(value) else None,
            },
        )


def _parse_body(model: type[_Model], body: bytes) -> _Model | Response:
    """A JSON body validated by ``model``, or FastAPI's own 422 for a missing, malformed or invalid one."""
    if not body.strip():
        return _detail_422([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        raw = json.loads(body)
    except ValueError as exc:
        pos = getattr(exc, "pos", 0)
        error = _loc_error("json_invalid", ["body", pos], "JSON decode error", {})
        error["ctx"] = {"error": str(getattr(exc, "msg", exc))}
        return _detail_422([error])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {**{k: v for k, v in err.items() if k != "ctx"}, "loc": ["body", *err["loc"]]}
            for err in exc.errors(include_url=False)
        ]
        return _detail_422(json.loads(json.dumps(errors, default=str)))


def _required_query(request: Request, *names: str) -> list[str]:
    """The values of required query parameters; ``REQUEST_VALIDATION_ERROR`` naming every missing one."""
    missing = [name for name in names if not request.query_params.get(name)]
    if missing:
        raise SimulatorError(
            "REQUEST_VALIDATION_ERROR",
            f"missing query parameter(s): {', '.join(missing)}",
            data={"detail": [_loc_error("missing", ["query", name], "Field required", None) for name in missing]},
        )
    return [request.query_params[name] for name in names]


def _parse_payload(
    command: str, body: bytes, vehicle_id: str = "", *, clamped_limit: bool = False
) -> dict[str, Any] | Response | None:
    """Validate a command body: the arguments, a FastAPI-style 422, or None (no payload).

    ``clamped_limit``: the platform clamps charge limits (any integer is accepted).
    """
    model = _PAYLOADS.get(command)
    if model is None:
        return None
    parsed = _parse_body(model, body)
    if isinstance(parsed, Response):
        return parsed
    arguments = parsed.model_dump()
    strict = vehicle_id.startswith(STRICT_PREFIX)
    if isinstance(parsed, SetTemperaturePayload):
        for name in ("driverTemperature", "passengerTemperature"):
            _validate_range(name, arguments[name], *(STRICT_TEMPERATURE_RANGE if strict else TEMPERATURE_RANGE))
    elif isinstance(parsed, SetChargeLimitPayload) and not clamped_limit:
        _validate_range("limit", arguments["limit"], *(STRICT_CHARGE_LIMIT_RANGE if strict else CHARGE_LIMIT_RANGE))
    return arguments


def _client_credentials(request: Request, form: dict[str, list[str]]) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None, None
        return user, password
    return _first(form, "client_id"), _first(form, "client_secret")


def add_api_routes(api: FastAPI, state: SimulatorState) -> None:
    """Add the Connect API routes (authenticated, as the real API) to ``api``."""

    @api.get("/v1/vehicles/{vehicle_id}/command-executions/{vehicle_command_execution_id:path}", tags=_API_TAGS)
    async def get_command_execution(request: Request, vehicle_id: str, vehicle_command_execution_id: str) -> Response:
        state.authenticate(request.headers.get("authorization"))
        return _json(state.get_execution(vehicle_id, vehicle_command_execution_id))

    def command_endpoint(command: str) -> Callable[[Request, str], Awaitable[Response]]:
        async def endpoint(request: Request, vehicle_id: str) -> Response:
            state.authenticate(request.headers.get("authorization"), commands=True)
            state.get_vehicle(vehicle_id)
            clamped = state.config.clamp_charge_limit is not None
            arguments = _parse_payload(command, await request.body(), vehicle_id, clamped_limit=clamped)
            if isinstance(arguments, Response):
                return arguments
            return _json(state.create_command(vehicle_id, command, arguments))

        endpoint.__name__ = f"action_{command.lower()}"
        return endpoint

    for slug, command in COMMAND_SLUGS.items():
        api.add_api_route(
            f"/v1/vehicles/{{vehicle_id}}/command-execution:{slug}",
            command_endpoint(command),
            methods=["POST"],
            tags=_API_TAGS,
            summary=f"Create a {command} command execution",
        )

    @api.get("/v1/vehicles/{vehicle_id}/command-executions", tags=_API_TAGS)
    async def list_command_executions(request: Request, vehicle_id: str) -> Response:
        state.authenticate(request.headers.get("authorization"))
        page = state.list_executions(
            vehicle_id,
            max_page_size=_query_int(request, "maxPageSize"),
            page_token=request.query_params.get("pageToken") or None,
            filter_json=request.query_params.get("filter"),
        )
        return _json(page)

    @api.post("/v1/oauth2/token", tags=_API_TAGS)
    async def oauth2_token(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        grant_type = _first(form, "grant_type")
        client_id = client_secret = None
        if grant_type == "client_credentials":
            client_id, client_secret = _client_credentials(request, form)
            if (
                client_id is not None
                and client_secret is not None
                and (client_id != state.config.client_id or client_secret != state.config.client_secret)
            ):
                # RFC 6749 asks clients to form-encode Basic credentials; accept both.
                client_id, client_secret = unquote(client_id), unquote(client_secret)
        token = state.issue_token(
            grant_type,
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=_first(form, "refresh_token"),
        )
        return _json(token, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @api.post("/v1/oauth2/test-token", tags=_API_TAGS)
    async def oauth2_test_token(request: Request) -> Response:
        return _json(state.test_token(request.headers.get("authorization")))

    @api.get("/v1/vehicles", tags=_API_TAGS)
    async def list_vehicles(request: Request) -> Response:
        state.authenticate(request.headers.get("authorization"))
        page = state.list_vehicles(
            max_page_size=_query_int(request, "maxPageSize"),
            page_token=request.query_params.get("pageToken") or None,
            filter_json=request.query_params.get("filter"),
            tag_key=request.query_params.get("tagKey"),
            tag_value=request.query_params.get("tagValue"),
        )
        return _json(page)

    @api.get("/v1/vehicles/{vehicle_id}", tags=_API_TAGS)
    async def get_vehicle(request: Request, vehicle_id: str) -> Response:
        state.authenticate(request.headers.get("authorization"))
        return _json(state.get_vehicle(vehicle_id))

    @api.get("/v1/rate-limits", tags=_API_TAGS)
    async def get_rate_limits(request: Request) -> Response:
        state.authenticate(request.headers.get("authorization"))
        object_id, domain = _required_query(request, "objectId", "domain")
        return _json(state.rate_limits(object_id, domain))

    @api.post("/v1/tags", tags=_API_TAGS)
    async def add_tag_to_entity(request: Request) -> Response:
        state.authenticate(request.headers.get("authorization"))
        parsed = _parse_body(PublicTagCreate, await request.body())
        if isinstance(parsed, Response):
            return parsed
        state.add_tag(parsed.objectType.value, parsed.objectId, parsed.key, parsed.value)
        return _json(None)

    @api.delete("/v1/tags", tags=_API_TAGS)
    async def remove_tag_from_entity(request: Request) -> Response:
        state.authenticate(request.headers.get("authorization"))
        key, value, entity_type, entity_id = _required_query(request, "key", "value", "entityType", "entityId")
        state.remove_tag(entity_type, entity_id, key, value)
        return _json(None)

    @api.get("/v1/tags/{entity_type}/{entity_id}", tags=_API_TAGS)
    async def get_tags(request: Request, entity_type: str, entity_id: str) -> Response:
        state.authenticate(request.headers.get("authorization"))
        return _json(state.tags(entity_type, entity_id))
