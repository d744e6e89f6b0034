"""What differs between the Airflow releases this provider supports (3.1, 3.2 and 3.3), in one place.

Everything else imports these names from here. Differences (``docs/airflow-versions.md`` tells users):

* Airflow 3.1 keeps the exceptions a task raises in ``airflow.exceptions`` (3.2 moved them to
  ``airflow.sdk.exceptions``), its configuration in ``airflow.configuration`` and the plugin base class in
  ``airflow.plugins_manager``.
* Airflow 3.3 brought the task state store (``context["task_state_store"]``), the task ``retry_policy``
  and ``amask_secret``. Before 3.3 a command task keeps its record in an Airflow Variable named for the
  task instance (:class:`VariableStateStore`), ``VolterasRetryPolicy`` has no effect (a retryable failure
  waits the task's ``retry_delay``), and secrets are masked with ``mask_secret``.
* Airflow 3.1's channel from a task to its supervisor has no lock, so while this provider's store is in
  use its requests are serialized (:func:`serialize_task_comms`): a fleet task's threads share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from typing import TYPE_CHECKING, Any

import airflow

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.configuration import conf
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
        ParamValidationError,
        TaskDeferred,
    )
    from airflow.sdk.plugins_manager import AirflowPlugin
else:
    try:  # Airflow >= 3.2
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowNotFoundException,
            AirflowRescheduleException,
            AirflowSensorTimeout,
            AirflowSkipException,
            AirflowTaskTimeout,
            ParamValidationError,
            TaskDeferred,
        )
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowNotFoundException,
            AirflowRescheduleException,
            AirflowSensorTimeout,
            AirflowSkipException,
            AirflowTaskTimeout,
            ParamValidationError,
            TaskDeferred,
        )
    try:  # Airflow >= 3.2
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf
    try:  # Airflow >= 3.2
        from airflow.sdk.plugins_manager import AirflowPlugin
    except ImportError:  # Airflow 3.1
        from airflow.plugins_manager import AirflowPlugin
    try:  # Airflow >= 3.3
        from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
    except ImportError:  # Airflow 3.1 and 3.2: a task takes no retry_policy

        class RetryPolicy:
            """Stand-in base class: before Airflow 3.3 no task takes a ``retry_policy``."""

        RetryDecision = None

__all__ = [
    "AIRFLOW_VERSION",
    "HAS_RETRY_POLICY",
    "HAS_TASK_STATE_STORE",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowPlugin",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "CarriedOverStore",
    "ParamValidationError",
    "RetryDecision",
    "RetryPolicy",
    "TaskDeferred",
    "VariableStateStore",
    "amask_secret",
    "conf",
    "mask_secret",
    "retry_policy_ignored",
    "serialize_task_comms",
    "task_state_store",
]

log = logging.getLogger(__name__)

#: The running Airflow release, e.g. ``(3, 1)``.
AIRFLOW_VERSION: tuple[int, int] = tuple(int(p) for p in re.findall(r"\d+", airflow.__version__)[:2])  # type: ignore[assignment]
#: Airflow 3.3 gives a task ``context["task_state_store"]``.
HAS_TASK_STATE_STORE = AIRFLOW_VERSION >= (3, 3)
#: Airflow 3.3 gives a task a ``retry_policy`` argument.
HAS_RETRY_POLICY = RetryPolicy.__module__ != __name__

DOCS = "docs/airflow-versions.md"
_noted: set[str] = set()
_noted_lock = threading.Lock()


def _once(topic: str) -> bool:
    """True the first time ``topic`` is asked for in this process."""
    with _noted_lock:
        if topic in _noted:
            return False
        _noted.add(topic)
        return True


def retry_policy_ignored(logger: Any = None) -> None:
    """Say once per process that this Airflow ignores ``VolterasRetryPolicy`` (no ``retry_policy`` before 3.3)."""
    if HAS_RETRY_POLICY or not _once("retry_policy"):
        return
    (logger or log).warning(
        "Airflow %s has no task retry_policy (it came with Airflow 3.3): VolterasRetryPolicy has no effect, "
        "a retryable command failure waits the task's retry_delay and a fatal one still fails at once. See %s.",
        airflow.__version__,
        DOCS,
    )


# -- secrets ---------------------------------------------------------------------------------------


def mask_secret(secret: str) -> None:
    """Mask ``secret`` in the logs of this process and of its supervisor."""
    from airflow.sdk.log import mask_secret as _mask_secret

    _mask_secret(secret)


async def amask_secret(secret: str) -> None:
    """``mask_secret`` from a coroutine (a trigger's event loop)."""
    try:  # Airflow >= 3.3
        from airflow.sdk.log import amask_secret as _amask_secret
    except ImportError:  # Airflow 3.1 and 3.2: masks in this process (the trigger's log lines are made here);
        # telling the supervisor from the event loop's thread is not possible there, and mask_secret skips it.
        mask_secret(secret)
        return
    await _amask_secret(secret)


# -- the task state store --------------------------------------------------------------------------


def task_state_store(context: Context, logger: Any = None) -> Any:
    """The store a command task keeps its record in: Airflow 3.3's ``task_state_store`` (which also finds a
    record that a try on Airflow 3.1 or 3.2 left, see :class:`CarriedOverStore`); before 3.3 a
    :class:`VariableStateStore` for the running task instance; ``None`` when neither can be had."""
    store = context.get("task_state_store")
    if not HAS_TASK_STATE_STORE and store is not None:
        return store  # given by the caller (a test's context)
    ti = context.get("ti")
    dag_id, run_id, task_id = (getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id"))
    if not (isinstance(dag_id, str) and isinstance(run_id, str) and isinstance(task_id, str)) or not _in_task():
        return store  # not a running task instance (e.g. execute() called by hand)
    map_index = getattr(ti, "map_index", -1)
    if not HAS_TASK_STATE_STORE:
        return VariableStateStore(dag_id, run_id, task_id, map_index, logger=logger)
    if store is None:
        return None
    variables = VariableStateStore(dag_id, run_id, task_id, map_index, logger=logger, announce=False)
    return CarriedOverStore(store, variables, logger or log)


def _in_task() -> bool:
    from airflow.sdk.execution_time import task_runner

    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


class CarriedOverStore:
    """Airflow 3.3's task state store that also finds the record a try on Airflow 3.1 or 3.2 left in its
    Variable: a task retried, cleared or resumed from a deferral across an upgrade of Airflow re-attaches
    to what that try sent. The Variable is read only when the store has no record; the record moves into
    the store with the next write, and then the Variable is deleted."""

    def __init__(self, store: Any, variables: VariableStateStore, logger: Any) -> None:
        self.store = store
        self.variables = variables
        self.log = logger
        self.carried: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        value = self.store.get(key)
        if value is not None:
            return value
        try:
            value = self.variables.get(key)
        except Exception as err:  # noqa: BLE001 - the store is the record on 3.3; the Variable only helps an upgrade
            self.log.warning(
                "Could not look for a record left before the upgrade to Airflow 3.3 in Variable %s (%s: %s).",
                self.variables.variable_key(key),
                type(err).__name__,
                str(err)[:200],
            )
            return default
        if value is None:
            return default
        self.carried.add(key)
        self.log.info(
            "Read this task's record from Variable %s, written by a try on Airflow 3.1 or 3.2; it moves to the "
            "task state store with the next write.",
            self.variables.variable_key(key),
        )
        return value

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        self.store.set(key, value, **kwargs)
        self._forget(key)

    def delete(self, key: str) -> None:
        self.store.delete(key)
        self._forget(key)

    def _forget(self, key: str) -> None:
        if key not in self.carried:
            return
        self.carried.discard(key)
        try:
            self.variables.delete(key)
        except Exception as err:  # noqa: BLE001 - the store holds the record now; a leftover is read only without it
            self.log.warning(
                "Could not delete Variable %s (%s: %s); delete it by hand.",
                self.variables.variable_key(key),
                type(err).__name__,
                str(err)[:200],
            )


#: Longest Variable key Airflow stores (``variable.key`` is 250 characters).
_MAX_KEY = 250
_PLAIN = re.compile(r"[A-Za-z0-9_.~+:-]+")


class VariableStateStore:
    """The task state store for Airflow 3.1 and 3.2: one Airflow Variable per key and task instance.

    What a retry needs from the store, and why a Variable gives it where XCom cannot: a Variable lives
    until it is deleted (XComs of a task instance are cleared when a new try starts, and by a Clear);
    its key names the task instance (``<key>:<dag_id>:<task_id>:<map_index>:<run_id>``, or a digest of
    them past 250 characters), so no other task reads it; and it is read and written through the
    task's supervisor and Airflow's execution API, as every task reaches the metadata database.

    The requests go to the supervisor directly (``GetVariable``, ``PutVariable``, ``DeleteVariable``),
    not through ``Variable.get``/``Variable.set``: ``Variable.set`` and ``Variable.delete`` log a failed
    write and return as if it had worked (a create must not follow a write that failed), and
    ``Variable.get`` asks the secrets backends and their cache first (a stale copy could hide a create).
    Like the task state store, a write returns once the API server stored it, and a failure raises.
    """

    def __init__(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int | None,
        logger: Any = None,
        *,
        announce: bool = True,
    ) -> None:
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.map_index = -1 if map_index is None else int(map_index)
        self.log = logger or log
        serialize_task_comms()
        if announce and _once("variable_store"):
            self.log.info(
                "Airflow %s has no task state store (it came with Airflow 3.3): this provider keeps each command "
                "task's record in an Airflow Variable named <record>:<dag_id>:<task_id>:<map_index>:<run_id>, "
                "e.g. %s. See %s.",
                airflow.__version__,
                self.variable_key("volteras_command_execution"),
                DOCS,
            )

    def __repr__(self) -> str:
        return f"<VariableStateStore {self.variable_key('*')}>"

    def variable_key(self, key: str) -> str:
        """The Variable that holds ``key`` for this task instance."""
        plain = f"{key}:{self.dag_id}:{self.task_id}:{self.map_index}:{self.run_id}"
        if len(plain) <= _MAX_KEY and _PLAIN.fullmatch(plain):
            return plain
        digest = hashlib.sha256(json.dumps(self._identity(key), sort_keys=True).encode()).hexdigest()[:40]
        readable = ":".join(re.sub(r"[^A-Za-z0-9_.-]", "_", part) for part in (key, self.dag_id, self.task_id))
        return readable[: _MAX_KEY - 42] + f":{digest}"

    def _identity(self, key: str) -> dict[str, Any]:
        return {
            "key": key,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
        }

    def get(self, key: str, default: Any = None) -> Any:
        from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable

        name = self.variable_key(key)
        resp = _send(GetVariable(key=name))
        if isinstance(resp, ErrorResponse):
            if _is_not_found(resp):
                return default
            raise RuntimeError(f"Airflow could not read Variable {name!r}: {resp.error} {resp.detail}")
        raw = getattr(resp, "value", None)
        if raw is None:
            return default
        stored = json.loads(raw)
        identity = self._identity(key)
        if not isinstance(stored, dict) or {k: stored.get(k) for k in identity} != identity or "value" not in stored:
            raise ValueError(
                f"Variable {name!r} does not hold this task instance's {key!r} record "
                f"(expected {json.dumps(identity)}); delete it or restore it."
            )
        return stored["value"]

    def set(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.comms import ErrorResponse, PutVariable

        if value is None:
            raise ValueError("Cannot set value as None")
        name = self.variable_key(key)
        body = json.dumps({**self._identity(key), "value": value}, separators=(",", ":"))
        description = (
            f"Record of a Volteras command task ({self.dag_id}.{self.task_id}, run {self.run_id}); "
            "delete it to make a Clear send the command again. See airflow-provider-volteras's "
            f"{DOCS}."
        )
        resp = _send(PutVariable(key=name, value=body, description=description[:1000]))
        if isinstance(resp, ErrorResponse):
            raise RuntimeError(f"Airflow could not store Variable {name!r}: {resp.error} {resp.detail}")

    def delete(self, key: str) -> None:
        from airflow.sdk.execution_time.comms import DeleteVariable, ErrorResponse

        name = self.variable_key(key)
        resp = _send(DeleteVariable(key=name))
        if isinstance(resp, ErrorResponse) and not _is_not_found(resp):
            raise RuntimeError(f"Airflow could not delete Variable {name!r}: {resp.error} {resp.detail}")


def _is_not_found(resp: Any) -> bool:
    return str(getattr(resp.error, "value", resp.error)) == "VARIABLE_NOT_FOUND"


def _comms() -> Any:
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        raise RuntimeError("Not in a running Airflow task: there is no supervisor to keep the record with.")
    return comms


def _send(msg: Any) -> Any:
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        return _comms().send(msg)
    except AirflowRuntimeError as err:  # an error response (the API server refused or failed)
        return err.error


class _SerializedComms:
    """A task's channel to its supervisor with one request at a time (Airflow 3.1's has no lock of its
    own: two threads sending at once can interleave their frames or take each other's answers)."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_lock", threading.RLock())

    def send(self, msg: Any) -> Any:
        with self._lock:
            return self._inner.send(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def serialize_task_comms() -> None:
    """Make the running task's supervisor channel safe for threads where Airflow's is not (3.1)."""
    from airflow.sdk.execution_time import task_runner

    with _noted_lock:
        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
        if comms is None or isinstance(comms, _SerializedComms) or hasattr(comms, "_thread_lock"):
            return
        task_runner.SUPERVISOR_COMMS = _SerializedComms(comms)  # type: ignore[assignment]
