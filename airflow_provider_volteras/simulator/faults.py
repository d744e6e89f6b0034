"""Injected faults: what a fault does and which requests it matches."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .behaviour import _check_delay
from .constants import FAULT_KINDS, WRONG_SHAPES


@dataclass
class Fault:
    """A queued fault, applied to the next ``remaining`` matching API requests."""

    kind: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    method: str | None = None
    path: str | None = None
    remaining: int | None = 1
    status: int = 500
    error: str | None = None
    message: str | None = None
    html: bool = False
    retry_after: float | None = 1.0
    retry_after_date: bool = False
    delay: float = 0.0
    apply: bool = False
    reset: bool = False
    shape: str = "missing_status"
    status_value: str = "CANCELLED"
    fields: dict[str, Any] | None = None
    applied: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.remaining is not None and self.remaining < 1:
            raise ValueError("count must be >= 1 (or None for unlimited)")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        if self.shape not in WRONG_SHAPES:
            raise ValueError(f"shape must be one of {WRONG_SHAPES}")
        if _check_delay(self.delay) is None:
            self.delay = 0.0
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError("retry_after must be >= 0")
        self.method = self.method.upper() if self.method else None
        try:
            self._regex = re.compile(self.path) if self.path else None
        except re.error as exc:
            raise ValueError(f"invalid path regex {self.path!r}: {exc}") from None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self._regex is None or self._regex.search(path) is not None

    def error_code(self) -> str:
        """The envelope code answered by ``status``/``rate_limit``/``unauthorized`` faults."""
        if self.error:
            return self.error
        if self.kind == "rate_limit":
            return "INTERNAL_RATE_LIMITED"
        if self.kind == "unauthorized":
            return "AUTHENTICATION_ERROR"
        by_status = {
            400: "REQUEST_VALIDATION_ERROR",
            401: "AUTHENTICATION_ERROR",
            403: "NOT_PERMITTED",
            404: "RESOURCE_NOT_FOUND",
            409: "COMMAND_ALREADY_IN_PROGRESS",
            422: "REQUEST_VALIDATION_ERROR",
            429: "INTERNAL_RATE_LIMITED",
        }
        return by_status.get(self.status, "SERVER_ERROR" if self.status >= 500 else "REQUEST_VALIDATION_ERROR")

    def to_dict(self) -> dict[str, Any]:
        """camelCase view, as accepted/served at ``/_simulator/faults``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "count": self.remaining,
            "applied": self.applied,
            "status": self.status,
            "error": self.error,
            "message": self.message,
            "html": self.html,
            "retryAfter": self.retry_after,
            "retryAfterDate": self.retry_after_date,
            "delaySeconds": self.delay,
            "apply": self.apply,
            "reset": self.reset,
            "shape": self.shape,
            "statusValue": self.status_value,
            "fields": self.fields,
        }


# --------------------------------------------------------------------------- records
