"""What the simulator stores: tokens, command executions and vehicles."""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .behaviour import MagicBehaviour
from .constants import _MODELS, _VIN_CHARS, iso_utc


@dataclass(slots=True)
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(slots=True)
class _Execution:
    """One command execution: ``PENDING`` until ``finish_at``, then ``final_status``.

    ``final_status`` may be any string or ``None`` for executions added through the control
    API (another client's, or seeded history); such fixed ones have ``finish_at <= created_at``.
    """

    id: str
    vehicle_id: str
    command: str
    arguments: dict[str, Any] | None
    created_at: float
    timeout: float
    finish_at: float
    final_status: str | None
    final_reason: str | None
    index: int
    first_served_terminal_at: float | None = None
    finished_manually: bool = False

    def status_at(self, now: float) -> str | None:
        return "PENDING" if now < self.finish_at else self.final_status

    def executed_at(self, now: float) -> float | None:
        return self.finish_at if now >= self.finish_at and self.final_status == "EXECUTED" else None

    def value(self, name: str, now: float) -> Any:
        """One field as filters see it (datetimes as epoch seconds; ``createdAt`` included)."""
        if name == "createdAt":
            return self.created_at
        if name == "executedAt":
            return self.executed_at(now)
        if name == "status":
            return self.status_at(now)
        if name == "command":
            return self.command
        if name == "id":
            return self.id
        if name == "vehicleId":
            return self.vehicle_id
        if name == "failedReason":
            return self.final_reason if now >= self.finish_at else None
        if name == "commandArguments":
            return self.arguments
        if name == "timeout":
            return max(1, math.ceil(self.timeout))
        return None

    def to_api(self, now: float) -> dict[str, Any]:
        done = now >= self.finish_at
        status = self.final_status if done else "PENDING"
        return {
            "id": self.id,
            "commandArguments": self.arguments,
            "timeout": max(1, math.ceil(self.timeout)),
            "executedAt": iso_utc(self.finish_at) if done and status == "EXECUTED" else None,
            "status": status,
            "failedReason": self.final_reason if done else None,
            "vehicleId": self.vehicle_id,
            "command": self.command,
        }


@dataclass(slots=True)
class _Vehicle:
    id: str
    magic: MagicBehaviour
    first_seen: float
    index: int
    executions: list[_Execution] = field(default_factory=list)
    create_times: deque[float] = field(default_factory=deque)
    #: ``(key, value)`` pairs, in the order added; a pair is held once.
    tags: list[tuple[str, str]] = field(default_factory=list)

    def has_tag(self, key: str, value: str | None) -> bool:
        return any(k == key and (value is None or v == value) for k, v in self.tags)

    def to_api(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.id.encode()).digest()
        vin = "WBA" + "".join(_VIN_CHARS[b % len(_VIN_CHARS)] for b in digest[:14])
        model, trim, year = _MODELS[digest[14] % len(_MODELS)]
        return {
            "make": "BMW",
            "model": model,
            "trim": trim,
            "modelYear": year,
            "vin": vin,
            "registrationPlate": None,
            "isRegNoValidated": None,
            "regNoValidatedAt": None,
            "id": self.id,
            "metadata": {
                "lastSeenAt": iso_utc(self.first_seen),
                "consentId": f"sim-consent-{digest[:4].hex()}",
                "accountId": "sim-account-1",
                "registrationDate": f"{year}-03-01",
            },
            "isListening": True,
            "listeningLastUpdated": None,
            "connectionStatus": "CONNECTED",
            "connectionErrorCode": None,
            "connectionErrorMessage": None,
            "actionCategory": None,
        }
