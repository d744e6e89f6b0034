"""How a simulated vehicle behaves: magic vehicle ids, explicit scenarios, and the one rule that combines them."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .constants import (
    _DELAY_SUFFIX,
    _FAIL_REASON,
    _VALID_VEHICLE_ID,
    DEFAULT_FAILED_REASON,
    EXECUTION_STATUSES,
    TEXT_FAILED_REASON,
)


@dataclass(frozen=True)
class MagicBehaviour:
    """What a vehicle id alone asks of the simulator."""

    missing: bool = False
    outcome: str = "EXECUTED"
    failed_reason: str | None = None
    delay: float | None = None


def parse_magic_vehicle_id(vehicle_id: str) -> MagicBehaviour:
    """Decode the behaviour encoded in a vehicle id (see ``MAGIC_VEHICLE_IDS``)."""
    if not _VALID_VEHICLE_ID.match(vehicle_id) or vehicle_id.startswith("sim-missing"):
        return MagicBehaviour(missing=True)
    delay: float | None = None
    base = vehicle_id
    match = _DELAY_SUFFIX.search(base)
    if match:
        delay = float(match.group(1))
        base = base[: match.start()]
    if base.startswith("sim-stuck"):
        return MagicBehaviour(outcome="PENDING", delay=delay)
    if base.startswith("sim-fail-text"):
        return MagicBehaviour(outcome="FAILED", failed_reason=TEXT_FAILED_REASON, delay=delay)
    reason = _FAIL_REASON.match(base)
    if reason:
        return MagicBehaviour(outcome="FAILED", failed_reason=reason.group(1), delay=delay)
    if base == "sim-fail" or base.startswith("sim-fail-"):
        return MagicBehaviour(outcome="FAILED", failed_reason=DEFAULT_FAILED_REASON, delay=delay)
    return MagicBehaviour(delay=delay)


# --------------------------------------------------------------------------- config & scenarios


def _check_outcome(outcome: str) -> str:
    if outcome not in EXECUTION_STATUSES:
        raise ValueError(f"outcome must be one of {EXECUTION_STATUSES}, got {outcome!r}")
    return outcome


def _check_delay(delay: float | None) -> float | None:
    if delay is not None and (not isinstance(delay, (int, float)) or not delay >= 0 or math.isinf(delay)):
        raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
    return None if delay is None else float(delay)


@dataclass(frozen=True)
class ScenarioStep:
    """One entry of a scenario ``sequence``: the fate of one created command."""

    outcome: str = "EXECUTED"
    failed_reason: str | None = None
    delay: float | None = None

    @classmethod
    def coerce(cls, value: ScenarioStep | Mapping[str, Any]) -> ScenarioStep:
        """Accept a step or a dict with camelCase or snake_case keys."""
        if isinstance(value, ScenarioStep):
            step = value
        else:
            step = cls(
                outcome=value.get("outcome", "EXECUTED"),
                failed_reason=value.get("failedReason", value.get("failed_reason")),
                delay=value.get("delaySeconds", value.get("delay")),
            )
        _check_outcome(step.outcome)
        return replace(step, delay=_check_delay(step.delay))

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "failedReason": self.failed_reason, "delaySeconds": self.delay}


@dataclass
class _Scenario:
    outcome: str | None = None
    failed_reason: str | None = None
    delay: float | None = None
    sequence: deque[ScenarioStep] = field(default_factory=deque)
    rate_limit_max: int | None = None
    rate_limit_window: int | None = None
    rate_limit_remaining: int | None = None


# --------------------------------------------------------------------------- faults


def effective_behaviour(magic: MagicBehaviour, scenario: _Scenario | None) -> tuple[str, str | None, float | None]:
    """The one precedence rule: the magic vehicle id first, then the explicit scenario.

    Returns ``(outcome, failed_reason, delay)``; the reason is only kept for ``FAILED`` (the default
    reason when none is given), and a ``None`` delay means the simulator's default delay.
    """
    outcome, reason, delay = magic.outcome, magic.failed_reason, magic.delay
    if scenario is not None:
        if scenario.outcome is not None:
            if scenario.outcome != outcome:
                reason = None
            outcome = scenario.outcome
        if scenario.failed_reason is not None:
            reason = scenario.failed_reason
        if scenario.delay is not None:
            delay = scenario.delay
    return outcome, final_reason(outcome, reason), delay


def final_reason(outcome: str, reason: str | None) -> str | None:
    """A ``FAILED`` execution always has a reason; other outcomes have none."""
    return (reason or DEFAULT_FAILED_REASON) if outcome == "FAILED" else None
