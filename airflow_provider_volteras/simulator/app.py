"""The simulator's ASGI app: the Connect API routes (:mod:`.api_routes`) and the ``/_simulator``
controls (:mod:`.control_routes`) on one FastAPI app, with the real API's error envelope for every
error, wrapped by the fault-injecting middleware (:mod:`.middleware`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api_routes import _json, _request_id, add_api_routes
from .control_routes import add_control_routes
from .middleware import SimulatorApp
from .state import (
    MAGIC_VEHICLE_IDS,
    SimulatorError,
    SimulatorState,
    error_envelope,
)

__all__ = ["create_app"]


# --------------------------------------------------------------------------- the app


def create_app(state: SimulatorState | None = None) -> SimulatorApp:
    """Build the simulator ASGI app around ``state`` (a new default state if omitted).

    The result must be served by uvicorn directly (see :mod:`.middleware` for why).
    """
    state = state if state is not None else SimulatorState()
    api = FastAPI(
        title="Volteras Connect simulator",
        description="Local stand-in for Volteras Connect.\n\n" + MAGIC_VEHICLE_IDS,
        docs_url="/_simulator/docs",
        redoc_url=None,
        openapi_url="/_simulator/openapi.json",
    )

    async def on_simulator_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimulatorError)
        state.note_error(exc.code)
        body = error_envelope(_request_id(request), exc.code, exc.message, exc.data)
        return _json(body, exc.status, exc.headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            code, message = "RESOURCE_NOT_FOUND", f"no route for {request.url.path}"
        elif exc.status_code == 405:
            code, message = "NOT_PERMITTED", f"method {request.method} not allowed here"
        else:
            code, message = "REQUEST_VALIDATION_ERROR", str(exc.detail)
        state.note_error(code)
        return _json(error_envelope(_request_id(request), code, message), exc.status_code, dict(exc.headers or {}))

    async def on_value_error(request: Request, exc: Exception) -> Response:
        return _json({"detail": str(exc)}, 422)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        state.note_error("SERVER_ERROR")
        return _json(error_envelope(_request_id(request), "SERVER_ERROR", "internal simulator error"), 500)

    api.add_exception_handler(SimulatorError, on_simulator_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(ValueError, on_value_error)
    api.add_exception_handler(Exception, on_unexpected)

    add_api_routes(api, state)
    add_control_routes(api, state)
    return SimulatorApp(api, state)
