"""Which try this is: a person's Clear, or one of Airflow's own retries.

Airflow tells a running task its ``try_number`` and its ``max_tries``. A task instance starts with
``max_tries = retries``; every Clear of a task instance that is not running (failed, succeeded, up for
retry, deferred) sets ``max_tries = try_number + retries`` (``clear_task_instances``), and so does the
scheduler when a task cleared while running has been stopped. An automatic retry (after a failure, a
killed worker or a lost heartbeat) changes neither. So

    first try since the last Clear = max_tries - retries + 1

which Airflow itself uses the same way (``RuntimeTaskInstance.get_first_reschedule_date``). Every
entry of a task's record carries the number of the try that last wrote it: an entry written before
the first try since the last Clear was written before a person cleared the task. The same fields and
the same rule hold in Airflow 3.1.8, 3.2.2 and 3.3.2 (see docs/recovery.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard


@dataclass(frozen=True)
class Attempt:
    """This try of a task instance."""

    #: Airflow's ``try_number`` of this try.
    number: int
    #: The first try since the task instance was last cleared (1 when it never was).
    first: int
    #: The map index of a mapped task instance, else ``None``.
    map_index: int | None = None

    def cleared_since(self, entry: dict[str, Any] | None) -> bool:
        """True when ``entry`` was last written by a try before the last Clear of this task instance.

        An entry without a try number (written by an older release of this provider, or where Airflow
        gave none) is never taken for one from before a Clear: the safe reading is "a retry".
        """
        written = entry.get("try") if isinstance(entry, dict) else None
        return _whole(written) and written < self.first


def attempt_of(context: Any, retries: Any) -> Attempt | None:
    """This try, from the task's context and its ``retries``; ``None`` when Airflow did not say.

    Without it (a context without a task instance, as in some unit tests) every later try is taken for
    an automatic retry: it re-attaches, and never sends again after a fatal ``FAILED``.
    """
    ti = context.get("ti") if hasattr(context, "get") else None
    number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if not (_whole(number) and _whole(max_tries) and _whole(retries)):
        return None
    first: int = max_tries - retries + 1
    if not 1 <= first <= number:
        return None  # not what a Clear or a retry leaves behind: no signal
    map_index = getattr(ti, "map_index", None)
    return Attempt(number=number, first=first, map_index=map_index if _whole(map_index) and map_index >= 0 else None)


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
