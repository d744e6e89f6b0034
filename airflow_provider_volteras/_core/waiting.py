"""Waiting for a command execution to end: the adaptive poll schedule and the wait flow."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from airflow_provider_volteras._core.basics import (
    DEFAULT_POLL_INTERVAL,
    FIRST_POLL_DELAY,
    POLL_GROWTH,
    is_terminal,
)
from airflow_provider_volteras.exceptions import (
    TRANSIENT_ERRORS,
    VolterasError,
    VolterasNotFoundError,
    VolterasUnexpectedResponseError,
)

# ---------------------------------------------------------------------------------------------
# Waiting for a command: the adaptive poll schedule
# ---------------------------------------------------------------------------------------------


def poll_delays(poll_interval: float = DEFAULT_POLL_INTERVAL, first: float = FIRST_POLL_DELAY) -> Iterator[float]:
    """Seconds to sleep before each poll: fast at first, growing by half each time up to ``poll_interval``."""
    delay = min(first, poll_interval)
    while True:
        yield delay
        delay = min(delay * POLL_GROWTH, poll_interval)


@dataclass
class WaitPlan:
    """When to poll next, bounded by an absolute deadline (epoch seconds, UTC)."""

    deadline: float
    poll_interval: float = DEFAULT_POLL_INTERVAL
    jitter: float = 0.0
    """Shorten each pause by up to this fraction at random, so many waits started together spread out."""
    _delays: Iterator[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._delays = poll_delays(self.poll_interval)

    def poll_now(self) -> None:
        """Make the first poll immediate (a wait that resumes, e.g. after a triggerer restart)."""
        self._delays = itertools.chain([0.0], self._delays)

    def next_sleep(self, now: float | None = None) -> float | None:
        """Seconds to sleep before the next poll; ``None`` once the deadline has passed."""
        now = time.time() if now is None else now
        remaining = self.deadline - now
        if remaining <= 0:
            return None
        pause = next(self._delays)
        if self.jitter:
            pause *= 1.0 - random.random() * self.jitter
        return min(pause, remaining)

    def backoff(self, failures: int) -> float:
        """Extra pause after ``failures`` polls in a row could not get an answer."""
        return min(self.poll_interval, 2.0 ** min(failures, 6))


#: Poll failures that do not end a wait: the next poll may well get an answer. A 404 is one of them
#: for a while: the id was issued by the API itself, so "not found" first means a read-after-write lag.
RECOVERABLE_POLL_ERRORS: tuple[type[VolterasError], ...] = (
    *TRANSIENT_ERRORS,
    VolterasUnexpectedResponseError,
    VolterasNotFoundError,
)
#: Seconds of 404s, with no readable answer in between, after which "not found" is believed.
NOT_FOUND_GRACE = 60.0
#: Longest wait, in seconds, for the one status read made after a wait's deadline.
FINAL_READ_GRACE = 3.0
#: The shortest pause between two status checks a task may ask for (less is a tight loop on the API).
MIN_POLL_INTERVAL = 0.1
#: When a long wait logs that it is still waiting: first after this many seconds, then at most once a minute.
PROGRESS_FIRST, PROGRESS_EVERY = 30.0, 60.0


def final_read_grace(settings: Any) -> float:
    """How long the last read after a wait's deadline may take: short, and within the request timeout."""
    return float(min(getattr(settings, "timeout", FINAL_READ_GRACE), FINAL_READ_GRACE))


def watch_flow(plan: WaitPlan, log: logging.Logger | Any, what: str) -> Generator[float, Any, dict[str, Any] | None]:
    """Wait for an execution to end. Yields seconds to pause; expects the next poll's execution or error.

    Returns the terminal execution, or ``None`` when the deadline passes first. Recoverable poll
    errors (transient or unreadable answers, and 404s for up to ``NOT_FOUND_GRACE`` seconds in a
    row) add a growing backoff and the wait goes on; others (authentication, a lasting 404) are raised.
    """
    failures = 0
    not_found_since: float | None = None
    started = time.time()
    next_progress = started + PROGRESS_FIRST
    status = "not read yet"
    while True:
        pause = plan.next_sleep()
        if pause is None:
            return None
        if failures:
            pause = min(pause + plan.backoff(failures), max(0.0, plan.deadline - time.time()))
        if time.time() >= next_progress:
            log.info(
                "%s: status %s after %.0f s; next check in %.0f s (waiting until %s)",
                what,
                status,
                time.time() - started,
                pause,
                time.strftime("%H:%M:%S UTC", time.gmtime(plan.deadline)),
            )
            next_progress = time.time() + PROGRESS_EVERY
        outcome = yield pause
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, RECOVERABLE_POLL_ERRORS):
                raise outcome
            if isinstance(outcome, VolterasNotFoundError):
                not_found_since = time.time() if not_found_since is None else not_found_since
                if time.time() - not_found_since >= NOT_FOUND_GRACE:
                    raise outcome
            else:
                not_found_since = None
            failures += 1
            log.warning("Polling %s failed (%s); %d failure(s) in a row, polling on", what, outcome, failures)
            continue
        failures = 0
        not_found_since = None
        status = str(outcome.get("status") if isinstance(outcome, dict) else "unknown")
        if is_terminal(outcome):
            return cast(dict[str, Any], outcome)
