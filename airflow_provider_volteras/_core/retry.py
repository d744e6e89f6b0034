"""The retry policy of one request (tenacity), shared by both transports."""

from __future__ import annotations

import logging
import time
from typing import Any

import tenacity

from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras.exceptions import (
    TRANSIENT_ERRORS,
    VolterasRateLimitError,
)

# ---------------------------------------------------------------------------------------------
# Retries (tenacity), the same policy for both transports
# ---------------------------------------------------------------------------------------------


class _BackoffOrRetryAfter:
    """Exponential backoff with jitter; a ``Retry-After`` from the server wins when it is longer."""

    def __init__(self, settings: ClientSettings) -> None:
        import tenacity

        self.backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=settings.retry_max_wait, jitter=0.5)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = self.backoff(retry_state)
        outcome = retry_state.outcome
        err = outcome.exception() if outcome is not None else None
        if isinstance(err, VolterasRateLimitError) and err.retry_after is not None:
            wait = max(wait, err.retry_after)
        return float(wait)


class _StopAtDeadline(tenacity.stop.stop_base):
    """Stop retrying when the next pause would end after an absolute deadline (epoch seconds)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.time() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


def retry_kwargs(
    settings: ClientSettings,
    log: logging.Logger | Any,
    *,
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``: bounded attempts and total time,
    and, inside a wait, no retry whose pause would end after the wait's ``deadline`` (epoch seconds)."""
    import tenacity

    def before_sleep(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Volteras request failed (%s); retry %d of %d in %.1f s",
            err,
            state.attempt_number,
            settings.max_retries,
            wait,
        )

    stop = (
        tenacity.stop_after_attempt(settings.max_retries + 1)
        | tenacity.stop_after_delay(settings.retry_total_seconds)
        | tenacity.stop_before_delay(settings.retry_total_seconds)
    )
    if deadline is not None:
        stop = stop | _StopAtDeadline(deadline)
    return {
        "retry": tenacity.retry_if_exception_type(retry_on),
        "stop": stop,
        "wait": _BackoffOrRetryAfter(settings),
        "before_sleep": before_sleep,
        "reraise": True,
    }
