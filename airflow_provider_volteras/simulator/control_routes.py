"""The ``/_simulator`` control routes: scenarios, faults, counters, settings. No authentication:
never expose the simulator beyond loopback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from .api_routes import _CONTROL_TAGS, _json
from .state import (
    FAULT_KINDS,
    WRONG_SHAPES,
    SimulatorState,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioStepIn(_Strict):
    outcome: Literal["EXECUTED", "FAILED", "PENDING"] = "EXECUTED"
    failedReason: str | None = None
    delaySeconds: float | None = Field(default=None, ge=0)


class RateLimitIn(_Strict):
    maxRequests: int | None = Field(default=None, ge=0)
    windowSizeSeconds: int | None = Field(default=None, ge=1)
    remainingRequests: int | None = Field(default=None, ge=0)


class ScenarioIn(_Strict):
    outcome: Literal["EXECUTED", "FAILED", "PENDING"] | None = None
    failedReason: str | None = None
    delaySeconds: float | None = Field(default=None, ge=0)
    sequence: list[ScenarioStepIn] | None = None
    rateLimit: RateLimitIn | None = None


class ClampIn(_Strict):
    min: int
    max: int


class ConfigIn(_Strict):
    clientId: str | None = None
    clientSecret: str | None = None
    organizationId: str | None = None
    tokenTtlSeconds: float | None = Field(default=None, gt=0)
    commandTimeoutSeconds: float | None = Field(default=None, gt=0)
    defaultDelaySeconds: float | None = Field(default=None, ge=0)
    grantCommandsScope: bool | None = None
    listingLagSeconds: float | None = Field(default=None, ge=0)
    #: ``null`` removes the clamp; left out, it stays as is.
    clampChargeLimit: ClampIn | None = None
    omitCreateArguments: bool | None = None


class FaultIn(_Strict):
    kind: Literal[FAULT_KINDS]  # type: ignore[valid-type]
    method: str | None = None
    path: str | None = None
    count: int | None = Field(default=1, ge=1)
    status: int = Field(default=500, ge=400, le=599)
    error: str | None = None
    message: str | None = None
    html: bool = False
    retryAfter: float | None = Field(default=1.0, ge=0)
    retryAfterDate: bool = False
    delaySeconds: float = Field(default=0.0, ge=0)
    apply: bool = False
    reset: bool = False
    shape: Literal[WRONG_SHAPES] = "missing_status"  # type: ignore[valid-type]
    statusValue: str = "CANCELLED"
    fields: dict[str, Any] | None = None


class HistoryIn(_Strict):
    command: str
    count: int = Field(ge=1, le=100_000)
    status: str | None = "EXECUTED"
    ageSeconds: float = Field(default=86_400.0, ge=0)
    arguments: dict[str, Any] | None = None
    failedReason: str | None = None


class ForeignExecutionIn(_Strict):
    command: str
    status: str | None = "PENDING"
    arguments: dict[str, Any] | None = None
    createdAt: datetime | None = None
    failedReason: str | None = None
    delaySeconds: float | None = Field(default=None, ge=0)
    outcome: Literal["EXECUTED", "FAILED", "PENDING"] = "EXECUTED"
    holdsSlot: bool | None = None


class FinishIn(_Strict):
    outcome: Literal["EXECUTED", "FAILED"] = "EXECUTED"
    failedReason: str | None = None


def add_control_routes(api: FastAPI, state: SimulatorState) -> None:
    """Add the ``/_simulator`` control routes to ``api``."""

    @api.get("/_simulator/health", tags=_CONTROL_TAGS)
    async def health() -> Response:
        return _json({"status": "ok"})

    @api.post("/_simulator/reset", tags=_CONTROL_TAGS)
    async def reset(keepConfig: bool = False, keepTokens: bool = False) -> Response:
        state.reset(keep_config=keepConfig, keep_tokens=keepTokens)
        return _json({"reset": True})

    @api.get("/_simulator/config", tags=_CONTROL_TAGS)
    async def get_config() -> Response:
        return _json(state.config.to_dict())

    @api.put("/_simulator/config", tags=_CONTROL_TAGS)
    async def put_config(body: ConfigIn) -> Response:
        extra: dict[str, Any] = {}
        if "clampChargeLimit" in body.model_fields_set:
            clamp = body.clampChargeLimit
            extra["clamp_charge_limit"] = None if clamp is None else (clamp.min, clamp.max)
        config = state.configure(
            client_id=body.clientId,
            client_secret=body.clientSecret,
            organization_id=body.organizationId,
            token_ttl=body.tokenTtlSeconds,
            command_timeout=body.commandTimeoutSeconds,
            default_delay=body.defaultDelaySeconds,
            grant_commands_scope=body.grantCommandsScope,
            listing_lag_seconds=body.listingLagSeconds,
            omit_create_arguments=body.omitCreateArguments,
            **extra,
        )
        return _json(config.to_dict())

    @api.get("/_simulator/vehicles/{vehicle_id}/scenario", tags=_CONTROL_TAGS)
    async def get_scenario(vehicle_id: str) -> Response:
        return _json(state.scenario(vehicle_id))

    @api.put("/_simulator/vehicles/{vehicle_id}/scenario", tags=_CONTROL_TAGS)
    async def put_scenario(vehicle_id: str, body: ScenarioIn) -> Response:
        limits = body.rateLimit or RateLimitIn()
        return _json(
            state.set_scenario(
                vehicle_id,
                outcome=body.outcome,
                failed_reason=body.failedReason,
                delay=body.delaySeconds,
                sequence=[step.model_dump() for step in body.sequence or []],
                rate_limit_max=limits.maxRequests,
                rate_limit_window_seconds=limits.windowSizeSeconds,
                rate_limit_remaining=limits.remainingRequests,
            )
        )

    @api.delete("/_simulator/vehicles/{vehicle_id}/scenario", tags=_CONTROL_TAGS)
    async def delete_scenario(vehicle_id: str) -> Response:
        state.clear_scenario(vehicle_id)
        return _json(state.scenario(vehicle_id))

    @api.post("/_simulator/vehicles/{vehicle_id}/history", tags=_CONTROL_TAGS)
    async def seed_history(vehicle_id: str, body: HistoryIn) -> Response:
        return _json(
            state.seed_history(
                vehicle_id,
                body.command,
                body.count,
                status=body.status,
                age_seconds=body.ageSeconds,
                arguments=body.arguments,
                failed_reason=body.failedReason,
            )
        )

    @api.post("/_simulator/vehicles/{vehicle_id}/executions", tags=_CONTROL_TAGS)
    async def add_foreign_execution(vehicle_id: str, body: ForeignExecutionIn) -> Response:
        created = body.createdAt
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return _json(
            state.add_execution(
                vehicle_id,
                body.command,
                status=body.status,
                arguments=body.arguments,
                created_at=created.timestamp() if created is not None else None,
                failed_reason=body.failedReason,
                delay=body.delaySeconds,
                outcome=body.outcome,
                holds_slot=body.holdsSlot,
            )
        )

    @api.get("/_simulator/counters", tags=_CONTROL_TAGS)
    async def get_counters() -> Response:
        return _json(state.counters())

    @api.get("/_simulator/requests", tags=_CONTROL_TAGS)
    async def get_request_log(limit: int = 1000, vehicleId: str | None = None, kind: str | None = None) -> Response:
        log = state.request_log(vehicle_id=vehicleId, kind=kind)
        return _json(log[-limit:] if limit > 0 else [])

    @api.get("/_simulator/executions", tags=_CONTROL_TAGS)
    async def get_executions(vehicleId: str | None = None) -> Response:
        executions = state.executions(vehicleId)
        return _json([{**e, "times": state.mark_times(e["id"])} for e in executions])

    @api.post("/_simulator/executions/{execution_id}/finish", tags=_CONTROL_TAGS)
    async def finish_execution(execution_id: str, body: FinishIn | None = None) -> Response:
        body = body or FinishIn()
        return _json(state.finish_execution(execution_id, body.outcome, body.failedReason))

    @api.get("/_simulator/faults", tags=_CONTROL_TAGS)
    async def list_faults() -> Response:
        return _json(state.faults())

    @api.post("/_simulator/faults", tags=_CONTROL_TAGS)
    async def add_fault(body: FaultIn) -> Response:
        fault = state.add_fault(
            body.kind,
            method=body.method,
            path=body.path,
            count=body.count,
            status=body.status,
            error=body.error,
            message=body.message,
            html=body.html,
            retry_after=body.retryAfter,
            retry_after_date=body.retryAfterDate,
            delay=body.delaySeconds,
            apply=body.apply,
            reset=body.reset,
            shape=body.shape,
            status_value=body.statusValue,
            fields=body.fields,
        )
        return _json(fault.to_dict())

    @api.delete("/_simulator/faults", tags=_CONTROL_TAGS)
    async def delete_faults(faultId: str | None = None) -> Response:
        return _json({"removed": state.clear_faults(faultId)})

    @api.post("/_simulator/tokens/expire", tags=_CONTROL_TAGS)
    async def expire_tokens() -> Response:
        return _json({"expired": state.expire_tokens()})
