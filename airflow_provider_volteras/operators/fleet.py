"""Send one command to many vehicles in one task: ``VolterasFleetCommandOperator``.

One task (one worker launch, one hook, one token) creates the command on every vehicle with a
bounded thread pool, remembers each created execution in the task state store, then waits for all
of them in ONE ``FleetCommandTrigger`` (or in the worker when ``deferrable=False``). Every vehicle's
outcome is returned (XCom) and logged as a table; the task fails when any vehicle did not end
``EXECUTED``: fatal only -> ``VolterasFatalCommandError`` (no retry), otherwise retryable, and the
retry re-sends only to the vehicles that need it.

Split a fleet larger than a few hundred vehicles into chunks and map over the chunks
(:func:`chunked`, :func:`chunk_label_template`): 5,000 vehicles in chunks of 500 are 10 mapped
tasks, far below ``[core] max_map_length`` (1,024), where one mapped task per vehicle fails.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from airflow.sdk import BaseOperator

from airflow_provider_volteras._core.basics import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    STATUS_EXECUTED,
    STATUS_FAILED,
    STATUS_PENDING,
    validate_id,
)
from airflow_provider_volteras._core.intent import arguments_match, describe_arguments, id_digest
from airflow_provider_volteras._core.waiting import MIN_POLL_INTERVAL
from airflow_provider_volteras._waiting import (
    VolterasTaskMixin,
    check_static_command,
    checked_if_in_progress,
    default_deferrable,
    is_static,
    reason_overrides,
    seconds,
)
from airflow_provider_volteras.catalogue import CommandSpec, VehicleCommand, build_payload, get_command_spec
from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasCommandInProgressError,
    VolterasError,
    VolterasFatalCommandError,
    VolterasInvalidInputError,
    VolterasNotFoundError,
    VolterasRetryableCommandError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.failures import DelayKind, api_failure, command_failure, pending_at_deadline

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_volteras.triggers.fleet import VehicleWait

#: Task state store key of a fleet task (do not rename): ``{"command", "arguments", "vehicles": {vehicle_id:
#: {"id": execution id} | {"in_flight": {...}}, plus "final" once its outcome is known}}``.
FLEET_STATE_KEY = "volteras_fleet_command_executions"

IfInProgress = Literal["wait", "fail", "skip"]
Classification = Literal["executed", "retryable", "fatal", "skipped"]

#: Default retry-policy delays, longest first: the kind a fleet failure reports when its vehicles differ.
_DELAY_ORDER = (
    DelayKind.VEHICLE_OFFLINE.value,
    DelayKind.RATE_LIMITED.value,
    DelayKind.VEHICLE_BUSY.value,
    DelayKind.TRANSIENT.value,
)


# ---------------------------------------------------------------------------------------------
# Chunking helpers for DAG authors
# ---------------------------------------------------------------------------------------------


def chunked(vehicle_ids: Iterable[str], size: int = 500) -> list[list[str]]:
    """Split vehicle ids into consecutive chunks of ``size`` (the last may be shorter), for ``.expand``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"chunk size must be a positive integer, got {size!r}")
    ids = list(vehicle_ids)
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def chunk_label_template(size: int = 500, field: str = "vehicle_ids") -> str:
    """A ``map_index_template`` naming each chunk of :func:`chunked` by position and first/last vehicle:
    ``vehicles 1–500 (sim-ok-1 … sim-ok-500)``; a one-vehicle chunk shows the vehicle id."""
    ids = f"task.{field}"
    first = f"ti.map_index * {int(size)} + 1"
    return (
        f"{{% if {ids} | length == 1 %}}{{{{ {ids}[0] }}}}"
        f"{{% else %}}vehicles {{{{ {first} }}}}–{{{{ ti.map_index * {int(size)} + {ids} | length }}}} "
        f"({{{{ {ids}[0] }}}} … {{{{ {ids}[-1] }}}}){{% endif %}}"
    )


def _vehicle_list(value: Any) -> list[str]:
    """Every vehicle id checked (all bad ones named at once), duplicates dropped, order kept."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise VolterasInvalidInputError(
            f"vehicle_ids must be a list of vehicle ids, got {type(value).__name__} {str(value)[:80]!r}"
        )
    bad: list[str] = []
    ids: list[str] = []
    for item in value:
        try:
            ids.append(validate_id(item))
        except VolterasInvalidInputError:
            bad.append(repr(item)[:60])
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise VolterasInvalidInputError(
            f"{len(bad)} of {len(value)} vehicle id(s) are not valid ({shown}): ids are ASCII letters, digits "
            "and _ . : ~ - only. Nothing was sent to any vehicle."
        )
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------------------------------------
# The task state store record, written by many threads
# ---------------------------------------------------------------------------------------------


class _FleetStore:
    """The task's record of what it sent, one key for the whole fleet, written with group commits.

    Every change is durable before the caller goes on (an "in flight" mark before a create is sent,
    the execution id as soon as it is issued), but concurrent changes from the create threads share
    one write: the whole record is written at most once at a time, and each write carries every
    change made before it started.
    """

    def __init__(self, store: Any, log: Any, command: str, arguments: dict[str, Any] | None) -> None:
        self.store = store
        self.log = log
        self.record: dict[str, Any] = {"command": command, "arguments": arguments, "vehicles": {}}
        self._cond = threading.Condition()
        self._version = 0
        self._written = 0
        self._writing = False
        self._failed: tuple[int, Exception] | None = None
        self.writes = 0
        if store is None:
            log.warning("No task state store in the context: a retry cannot re-attach to this task's commands.")

    def read(self) -> dict[str, Any] | None:
        if self.store is None:
            return None
        try:
            record = self.store.get(FLEET_STATE_KEY)
        except Exception as err:
            raise VolterasRetryableCommandError(
                f"Volteras fleet command {self.record['command']}: the task state store could not be read "
                f"({type(err).__name__}: {str(err)[:200]}), so this task cannot tell which vehicles an earlier try "
                "already sent the command to. Nothing was sent. Airflow will retry the task.",
                vehicle_id="(fleet)",
                command=self.record["command"],
                reason="STATE_STORE_ERROR",
            ) from err
        return record if isinstance(record, dict) else None

    def entry(self, vehicle_id: str) -> dict[str, Any] | None:
        with self._cond:
            entry = self.record["vehicles"].get(vehicle_id)
            return entry if isinstance(entry, dict) else None

    def update(self, changes: Mapping[str, dict[str, Any] | None], *, durable: bool = True) -> None:
        """Apply ``{vehicle_id: entry}`` (``None`` removes it) and, if ``durable``, return once written."""
        with self._cond:
            vehicles = self.record["vehicles"]
            for vehicle_id, value in changes.items():
                if value is None:
                    vehicles.pop(vehicle_id, None)
                else:
                    vehicles[vehicle_id] = value
            self._version += 1
            mine = self._version
            if self.store is None:
                return
            while self._written < mine:
                if self._failed is not None and self._failed[0] >= mine:
                    raise self._failed[1]
                if self._writing:
                    if not durable:
                        return
                    self._cond.wait()
                    continue
                self._writing = True
                version = self._version
                snapshot = {**self.record, "vehicles": dict(vehicles)}
                error: Exception | None = None
                self._cond.release()
                try:
                    self.store.set(FLEET_STATE_KEY, snapshot)
                except Exception as err:  # noqa: BLE001 - handed to every writer this write was for
                    error = err
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self.writes += 1
                    self._cond.notify_all()
                if error is not None:
                    self._failed = (version, error)
                    raise error
                self._written = max(self._written, version)

    def try_update(self, changes: Mapping[str, dict[str, Any] | None], what: str) -> None:
        try:
            self.update(changes)
        except Exception as err:  # noqa: BLE001 - the earlier record still lets a retry find the execution
            self.log.warning(
                "Could not record %s in the task state store (%s: %s); a retry will look it up through the listing.",
                what,
                type(err).__name__,
                str(err)[:200],
            )


# ---------------------------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------------------------


class VolterasFleetCommandOperator(VolterasTaskMixin, BaseOperator):
    """Send one command to many vehicles in one task and wait until each is executed.

    Creates run ``max_concurrent_creates`` at a time through one hook (one token). Each created
    execution is recorded in the task state store as soon as the API issues its id; a retry reads
    that record and never re-sends to a vehicle whose command is pending or ``EXECUTED``, nor to one
    whose command ``FAILED`` for a fatal reason: it re-sends only to vehicles whose command failed
    for a retryable reason or was never sent. All executions are then awaited in one
    ``FleetCommandTrigger`` (``deferrable=True``) or in the worker.

    The return value (XCom) is one dict per vehicle, in ``vehicle_ids`` order: ``vehicle_id``,
    ``execution_id``, ``status`` (``EXECUTED``/``FAILED``/``PENDING``/``UNKNOWN``/``NOT_SENT``/``SKIPPED``),
    ``failed_reason``, ``classification`` (``executed``/``retryable``/``fatal``/``skipped``), ``reason``
    (the failedReason or error code) and ``origin`` (``sent``/``earlier try``). The same list is pushed
    under the XCom key ``outcomes`` when the task fails.

    :param vehicle_ids: The vehicles (templated; a list, e.g. one chunk of a mapped task).
    :param command: A creatable command, e.g. ``"CLIMATE_OFF"`` (templated).
    :param arguments: The command's JSON arguments, API names (templated).
    :param volteras_conn_id: The connection.
    :param deferrable: Wait in the triggerer (one trigger for all vehicles); ``False`` waits in the worker.
        Default: ``[operators] default_deferrable``.
    :param poll_interval: Longest pause between two status checks of one execution (polls start ~1 s apart).
    :param timeout: How long to wait for the commands to end; a command still pending then is a
        retryable failure of its vehicle (the retry re-attaches to it).
    :param max_concurrent_creates: Creates (and, in the worker, status reads) in flight at once.
    :param if_in_progress: Per vehicle, on ``COMMAND_ALREADY_IN_PROGRESS``: ``"wait"`` adopts the
        pending execution when its arguments match, ``"fail"`` makes it a fatal failure, ``"skip"`` skips it.
    :param retryable_reasons: ``failedReason`` codes to treat as retryable.
    :param fatal_reasons: ``failedReason`` codes to treat as fatal (wins over ``retryable_reasons``).
    """

    template_fields: Sequence[str] = ("vehicle_ids", "command", "arguments")
    template_fields_renderers = {"arguments": "json"}
    ui_color = "#c5ead6"

    def __init__(
        self,
        *,
        vehicle_ids: Sequence[str] | str,
        command: str | VehicleCommand,
        arguments: dict[str, Any] | None = None,
        volteras_conn_id: str = "volteras_default",
        deferrable: bool | None = None,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_WAIT_TIMEOUT,
        max_concurrent_creates: int = 8,
        if_in_progress: IfInProgress = "wait",
        retryable_reasons: Iterable[str] | str = (),
        fatal_reasons: Iterable[str] | str = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vehicle_ids = vehicle_ids
        self.command = command.value if isinstance(command, VehicleCommand) else command
        self.arguments = arguments
        self.volteras_conn_id = volteras_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.wait_poll_interval = seconds(poll_interval, "poll_interval", minimum=MIN_POLL_INTERVAL)
        self.wait_timeout = seconds(timeout, "timeout")
        if isinstance(max_concurrent_creates, bool) or not isinstance(max_concurrent_creates, int):
            raise ValueError(f"max_concurrent_creates must be an integer, got {max_concurrent_creates!r}")
        if not 1 <= max_concurrent_creates <= 64:
            raise ValueError(f"max_concurrent_creates must be between 1 and 64, got {max_concurrent_creates}")
        self.max_concurrent_creates = max_concurrent_creates
        self.if_in_progress = checked_if_in_progress(if_in_progress)
        self.retryable_reasons = reason_overrides(retryable_reasons, "retryable_reasons")
        self.fatal_reasons = reason_overrides(fatal_reasons, "fatal_reasons")
        if is_static(self.vehicle_ids) and isinstance(self.vehicle_ids, (list, tuple)):
            _vehicle_list(self.vehicle_ids)
        check_static_command(self.command, self.command_arguments())

    def command_arguments(self) -> dict[str, Any] | None:
        return self.arguments

    # -- run ----------------------------------------------------------------------------------

    def _intent(self) -> tuple[list[str], CommandSpec, dict[str, Any] | None]:
        command = str(self.command)
        try:
            vehicles = _vehicle_list(self.vehicle_ids)
            spec = get_command_spec(command)
            arguments = build_payload(spec.command, self.command_arguments())
        except VolterasInvalidInputError as err:
            raise api_failure(err, vehicle_id=f"{_count(self.vehicle_ids)} vehicles", command=command[:80]) from err
        return vehicles, spec, arguments

    def execute(self, context: Context) -> list[dict[str, Any]]:
        vehicles, spec, arguments = self._intent()
        command = spec.command.value
        if not vehicles:
            self.log.info("No vehicles in this task: nothing to send.")
            return []
        store = _FleetStore(context.get("task_state_store"), self.log, command, arguments)
        started = time.time()
        settled: dict[str, dict[str, Any]] = {}
        pending: dict[str, str] = {}
        to_send = self._resume(store, vehicles, spec, arguments, settled, pending)
        reattached = list(pending)
        if to_send:
            self.log.info(
                "Sending %s to %d vehicle(s), %d at a time%s.",
                command,
                len(to_send),
                self.max_concurrent_creates,
                f" ({len(vehicles) - len(to_send)} handled by an earlier try)" if len(to_send) < len(vehicles) else "",
            )
            self._send_all(store, to_send, spec, arguments, settled, pending)
            self.log.info(
                "Sent %s to %d vehicle(s) in %.1f s (%d state-store write(s)).",
                command,
                len(to_send),
                time.time() - started,
                store.writes,
            )
        if not pending:
            return self._conclude(context, store, vehicles, command, settled, {}, reattached)
        deadline = time.time() + self.wait_timeout
        if self.deferrable:
            from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

            # What is settled already is written down: the resumed task reads it back from the store
            # (``dag.test()`` replaces the deferral's kwargs with the event; a triggerer keeps both).
            marks: dict[str, dict[str, Any] | None] = {
                vid: {**(store.entry(vid) or {}), "final": _final(o)} for vid, o in settled.items()
            }
            marks |= {vid: {**(store.entry(vid) or {}), "id": pending[vid], "reattached": True} for vid in reattached}
            store.try_update(marks, "the outcomes known before deferring")
            self.log.info(
                "%d of %d %s execution(s) are not finished; deferring to one trigger until %s.",
                len(pending),
                len(vehicles),
                command,
                datetime.fromtimestamp(deadline, tz=UTC).isoformat(),
            )
            self.defer(
                trigger=FleetCommandTrigger(
                    command=command,
                    executions=pending,
                    deadline=deadline,
                    volteras_conn_id=self.volteras_conn_id,
                    poll_interval=self.wait_poll_interval,
                ),
                method_name="execute_complete",
                kwargs={"settled": settled, "pending": pending, "reattached": reattached},
            )
        self.log.info("%d %s execution(s) are not finished; waiting in the worker.", len(pending), command)
        waited = self._wait_in_worker(pending, command, deadline)
        return self._conclude(context, store, vehicles, command, settled, waited, reattached)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        settled: dict[str, dict[str, Any]] | None = None,
        pending: dict[str, str] | None = None,
        reattached: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Resume after the trigger fired: every vehicle that was waited for must have an outcome."""
        vehicles, spec, arguments = self._intent()
        command = spec.command.value
        store = _FleetStore(context.get("task_state_store"), self.log, command, arguments)
        record = store.read()
        if record is not None and record.get("command") == command:
            store.record["vehicles"] = dict(record.get("vehicles") or {})
        if pending is None or settled is None:
            settled, pending, reattached = self._from_store(store, vehicles)
        payload = event if isinstance(event, dict) else {}
        pending = dict(pending or {})
        waited: dict[str, VehicleWait] = {}
        if payload.get("status") == "done" and payload.get("command") == command:
            for outcome in payload.get("outcomes") or ():
                if not isinstance(outcome, dict):
                    continue
                vid = outcome.get("vehicle_id")
                if isinstance(vid, str) and pending.get(vid) == outcome.get("execution_id"):
                    waited[vid] = cast("VehicleWait", outcome)
        elif payload.get("status") == "error" and isinstance(payload.get("error"), dict):
            error = payload["error"]
            waited = {
                vid: {"vehicle_id": vid, "execution_id": eid, "status": "ERROR", "status_read": False, "error": error}
                for vid, eid in pending.items()
            }
        for vid, eid in pending.items():
            if vid not in waited:  # an event that is not about this task's executions never counts as success
                waited[vid] = {
                    "vehicle_id": vid,
                    "execution_id": eid,
                    "status": "ERROR",
                    "status_read": False,
                    "error": {
                        "message": f"the trigger's event has no outcome for execution {eid}; its outcome is unknown",
                        "reason": "UNEXPECTED_ANSWER",
                        "delay_kind": DelayKind.TRANSIENT.value,
                        "retryable": True,
                    },
                }
        return self._conclude(context, store, vehicles, command, dict(settled or {}), waited, reattached or ())

    def _from_store(
        self, store: _FleetStore, vehicles: list[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[str]]:
        """What this try settled and what it deferred on, read back from the task state store."""
        settled: dict[str, dict[str, Any]] = {}
        pending: dict[str, str] = {}
        reattached: list[str] = []
        for vid in vehicles:
            entry = store.entry(vid) or {}
            final = entry.get("final")
            if isinstance(final, dict) and final.get("classification"):
                settled[vid] = final
            elif isinstance(entry.get("id"), str):
                pending[vid] = entry["id"]
                if entry.get("reattached"):
                    reattached.append(vid)
        return settled, pending, reattached

    # -- re-attaching to what an earlier try sent ------------------------------------------------

    def _resume(
        self,
        store: _FleetStore,
        vehicles: list[str],
        spec: CommandSpec,
        arguments: dict[str, Any] | None,
        settled: dict[str, dict[str, Any]],
        pending: dict[str, str],
    ) -> list[str]:
        """Sort the vehicles by what an earlier try did; return those to send to now."""
        command = spec.command.value
        record = store.read()
        earlier: dict[str, Any] = {}
        if record is not None:
            if record.get("command") != command or not arguments_match(arguments, record.get("arguments")):
                self.log.info(
                    "An earlier try sent %s with %s; this try sends %s with %s, so it does not re-attach to it.",
                    record.get("command"),
                    describe_arguments(record.get("arguments")),
                    command,
                    describe_arguments(arguments),
                )
            else:
                earlier = {k: v for k, v in dict(record.get("vehicles") or {}).items() if isinstance(v, dict)}
                store.record["vehicles"] = dict(earlier)
        known = [vid for vid in vehicles if vid in earlier]
        to_send = [vid for vid in vehicles if vid not in earlier]
        if not known:
            return to_send
        self.log.info(
            "An earlier try of this task handled %d of the %d vehicle(s); checking them.", len(known), len(vehicles)
        )
        reattached = executed = final = resend = 0
        to_read = {vid: earlier[vid] for vid in known}
        for vid, (decision, execution) in zip(to_read, self._map(self._follow_earlier, to_read.items()), strict=True):
            if decision == "send":
                resend += 1
                to_send.append(vid)
            elif decision == "wait":
                reattached += 1
                pending[vid] = execution["id"]
            else:
                settled[vid] = {**execution, "origin": "earlier try"}
                if settled[vid]["classification"] == "executed":
                    executed += 1
                else:
                    final += 1
        self.log.info(
            "Earlier try: %d still pending (re-attached), %d EXECUTED, %d failure(s) not re-sent, %d to send again.",
            reattached,
            executed,
            final,
            resend,
        )
        order = {vid: i for i, vid in enumerate(vehicles)}
        return sorted(to_send, key=order.__getitem__)

    def _follow_earlier(self, item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        """``("wait", execution)``, ``("settled", outcome)`` or ``("send", {})`` for one vehicle of an earlier try."""
        vid, entry = item
        command = str(get_command_spec(str(self.command)).command.value)
        arguments = build_payload(command, self.command_arguments())
        final = entry.get("final")
        execution_id = entry.get("id")
        if isinstance(final, dict) and final.get("classification") in ("executed", "fatal", "skipped"):
            return "settled", final  # seen final by an earlier try: never re-read, never re-sent
        if isinstance(final, dict) and (final.get("status") == STATUS_FAILED or not execution_id):
            if not isinstance(entry.get("in_flight"), dict) or execution_id:
                return "send", {}  # failed retryably, or never sent
        try:
            if isinstance(execution_id, str) and execution_id:
                execution = self._read_recorded(vid, execution_id, command, arguments)
            else:
                execution = self._adopt_in_flight(vid, entry.get("in_flight"), command, arguments)
        except VolterasCommandError as err:
            return "settled", _outcome_from_error(vid, execution_id, err)
        if execution is None:
            return "send", {}
        status = execution.get("status")
        if status == STATUS_PENDING:
            return "wait", execution
        if status == STATUS_EXECUTED:
            return "settled", _outcome(vid, execution["id"], STATUS_EXECUTED, None, "executed", None)
        if status == STATUS_FAILED:
            error = self._failure(execution, vid, command)
            if error.retryable:
                return "send", {}
            return "settled", _outcome_from_error(vid, execution["id"], error, status=STATUS_FAILED)
        return "wait", execution

    def _read_recorded(
        self, vid: str, execution_id: str, command: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        try:
            return self.hook.get_command_execution(vid, execution_id, command=command)
        except VolterasNotFoundError:
            pass
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vid, command=command, execution_id=execution_id) from err
        try:
            listed = self.hook.find_new_execution(vid, command, arguments, lambda i: i != execution_id)
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vid, command=command, execution_id=execution_id) from err
        if listed is None:
            self.log.warning(
                "Execution %s on %s from an earlier try is neither readable nor listed; sending again.",
                execution_id,
                vid,
            )
        return listed

    def _adopt_in_flight(
        self, vid: str, flight: Any, command: str, arguments: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """An earlier try started a create on ``vid`` and never recorded its id: adopt what appeared since."""
        flight = flight if isinstance(flight, dict) else {}
        before = set(flight.get("before") or ())
        try:
            found = self.hook.find_new_execution(vid, command, arguments, lambda i: id_digest(i) in before)
        except VolterasError as err:
            raise api_failure(err, vehicle_id=vid, command=command) from err
        if found is not None:
            self.log.warning(
                "An earlier try's create on %s got no recorded answer, but execution %s (%s) appeared since; "
                "adopting it.",
                vid,
                found["id"],
                found["status"],
            )
            return found
        if flight.get("applied"):
            raise VolterasRetryableCommandError(
                f"Volteras command {command} on vehicle {vid}: an earlier try's create was answered with success, "
                "but the execution is not listed yet. Not sending it again.",
                vehicle_id=vid,
                command=command,
                reason="CREATE_OUTCOME_UNKNOWN",
            )
        return None

    # -- sending ----------------------------------------------------------------------------------

    def _map(self, fn: Any, items: Iterable[Any]) -> Iterator[Any]:
        """``fn`` over ``items`` with at most ``max_concurrent_creates`` at once; results in order.

        An exception that is not a per-vehicle outcome (a bug, a killed connection to the supervisor)
        cancels what has not started and ends the try: whatever was created is in the state store.
        """
        items = list(items)
        if len(items) <= 1 or self.max_concurrent_creates == 1:
            yield from map(fn, items)
            return
        with ThreadPoolExecutor(self.max_concurrent_creates, thread_name_prefix="volteras-fleet") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for future in futures:
                    yield future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _send_all(
        self,
        store: _FleetStore,
        vehicles: list[str],
        spec: CommandSpec,
        arguments: dict[str, Any] | None,
        settled: dict[str, dict[str, Any]],
        pending: dict[str, str],
    ) -> None:
        def one(vid: str) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
            return (vid, *self._create_one(store, vid, spec, arguments))

        for vid, execution, outcome in self._map(one, vehicles):
            if outcome is not None:
                settled[vid] = {**outcome, "origin": "sent"}
            elif execution is not None:
                status = execution.get("status")
                if status == STATUS_EXECUTED:
                    settled[vid] = {**_outcome(vid, execution["id"], status, None, "executed", None), "origin": "sent"}
                elif status == STATUS_FAILED:
                    error = self._failure(execution, vid, spec.command.value)
                    settled[vid] = {**_outcome_from_error(vid, execution["id"], error, status=status), "origin": "sent"}
                else:
                    pending[vid] = execution["id"]

    def _create_one(
        self, store: _FleetStore, vid: str, spec: CommandSpec, arguments: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Send the command to one vehicle: ``(execution, None)`` or ``(None, outcome)`` when it was not created."""
        command = spec.command.value
        hook = self.hook
        try:
            before = hook.command_execution_ids(vid, spec.command)
        except VolterasError as err:
            return None, _outcome_from_error(vid, None, api_failure(err, vehicle_id=vid, command=command), "NOT_SENT")
        flight: dict[str, Any] = {"since": time.time(), "before": sorted({id_digest(i) for i in before})}
        try:
            store.update({vid: {"in_flight": flight}})
        except Exception as err:  # noqa: BLE001 - not sending without a record
            error = VolterasRetryableCommandError(
                f"Volteras command {command} was NOT sent to vehicle {vid}: the task state store could not record it "
                f"({type(err).__name__}: {str(err)[:200]}).",
                vehicle_id=vid,
                command=command,
                reason="STATE_STORE_ERROR",
            )
            return None, _outcome_from_error(vid, None, error, "NOT_SENT")
        try:
            execution = hook.create_command_execution(
                vid,
                spec.command,
                arguments,
                before=before,
                on_issued=lambda eid: store.try_update({vid: {"id": eid}}, f"execution {eid} of {vid}"),
            )
        except VolterasCommandInProgressError as err:
            return self._in_progress(store, err, vid, spec, arguments)
        except VolterasUnexpectedResponseError as err:
            if err.execution_id is not None:
                return {"id": err.execution_id, "vehicleId": vid, "command": command, "status": STATUS_PENDING}, None
            if err.create_applied:
                store.try_update({vid: {"in_flight": {**flight, "applied": True}}}, f"the unreadable create of {vid}")
            return None, _outcome_from_error(vid, None, api_failure(err, vehicle_id=vid, command=command), "UNKNOWN")
        except VolterasError as err:
            return None, _outcome_from_error(vid, None, api_failure(err, vehicle_id=vid, command=command), "NOT_SENT")
        return execution, None

    def _in_progress(
        self,
        store: _FleetStore,
        err: VolterasCommandInProgressError,
        vid: str,
        spec: CommandSpec,
        arguments: dict[str, Any] | None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        command = spec.command.value
        store.try_update({vid: None}, f"that nothing was created on {vid}")
        if self.if_in_progress == "skip":
            return None, _outcome(vid, None, "SKIPPED", None, "skipped", "COMMAND_ALREADY_IN_PROGRESS")
        if self.if_in_progress == "fail":
            return None, _outcome(vid, None, "NOT_SENT", None, "fatal", "COMMAND_ALREADY_IN_PROGRESS")
        try:
            found = self.hook.find_pending_execution(vid, spec.command)
        except VolterasError as lookup:
            return None, _outcome_from_error(
                vid, None, api_failure(lookup, vehicle_id=vid, command=command), "NOT_SENT"
            )
        if found is None or not arguments_match(arguments, found.get("commandArguments")):
            error = VolterasRetryableCommandError(
                f"A {command} command is already pending on vehicle {vid}"
                + (" with other arguments" if found is not None else ", no longer pending when looked up"),
                vehicle_id=vid,
                command=command,
                reason="COMMAND_ALREADY_IN_PROGRESS",
                delay_kind=DelayKind.VEHICLE_BUSY.value,
            )
            return None, _outcome_from_error(vid, found["id"] if found else None, error, "NOT_SENT")
        self.log.warning("%s already pending on %s as execution %s: adopting it.", command, vid, found["id"])
        store.try_update({vid: {"id": found["id"]}}, f"execution {found['id']} of {vid}")
        return found, None

    # -- waiting in the worker ----------------------------------------------------------------------

    def _wait_in_worker(self, pending: dict[str, str], command: str, deadline: float) -> dict[str, VehicleWait]:
        """Poll every pending execution on its own adaptive schedule, ``max_concurrent_creates`` reads at once."""
        from airflow_provider_volteras._core.events import error_payload
        from airflow_provider_volteras._core.waiting import WaitPlan, watch_flow
        from airflow_provider_volteras.triggers.fleet import error_outcome, slim_outcome

        hook = self.hook
        results: dict[str, VehicleWait] = {}
        flows: dict[str, Any] = {}
        last: dict[str, dict[str, Any] | None] = {}
        due: list[tuple[float, str]] = []

        def settle(vid: str, step: Any) -> None:
            """Advance one vehicle's wait flow with ``step``; schedule its next poll or record its end."""
            eid = pending[vid]
            try:
                pause = flows[vid].send(step)
            except StopIteration as stop:
                results[vid] = slim_outcome(vid, eid, stop.value, last[vid])
                return
            except VolterasError as err:
                failure = api_failure(err, vehicle_id=vid, command=command, execution_id=eid)
                results[vid] = error_outcome(vid, eid, error_payload(failure))
                return
            heapq.heappush(due, (time.time() + pause, vid))

        for vid, eid in pending.items():
            flows[vid] = watch_flow(
                WaitPlan(deadline=deadline, poll_interval=self.wait_poll_interval),
                self.log,
                f"{command} execution {eid} on vehicle {vid}",
            )
            last[vid] = None
            settle(vid, None)

        def read(vid: str) -> dict[str, Any] | Exception:
            try:
                execution = hook.get_command_execution(vid, pending[vid], command=command)
            except VolterasError as err:
                return err
            last[vid] = execution
            return execution

        with ThreadPoolExecutor(self.max_concurrent_creates, thread_name_prefix="volteras-fleet-wait") as pool:
            reading: dict[Future[Any], str] = {}
            while due or reading:
                now = time.time()
                while due and due[0][0] <= now and len(reading) < self.max_concurrent_creates:
                    _, vid = heapq.heappop(due)
                    reading[pool.submit(read, vid)] = vid
                room = len(reading) < self.max_concurrent_creates
                pause = max(0.0, due[0][0] - now) if due and room else None
                if not reading:
                    time.sleep(pause or 0.0)
                    continue
                done, _ = wait(reading, timeout=pause, return_when=FIRST_COMPLETED)
                for future in done:
                    settle(reading.pop(future), future.result())
        return results

    # -- the end --------------------------------------------------------------------------------------

    def _failure(self, execution: dict[str, Any], vid: str, command: str) -> VolterasCommandError:
        return command_failure(
            execution,
            vehicle_id=vid,
            command=command,
            retryable_reasons=self.retryable_reasons,
            fatal_reasons=self.fatal_reasons,
        )

    def _waited_outcome(self, wait_result: VehicleWait, command: str) -> dict[str, Any]:
        from airflow_provider_volteras._core.events import failure_from_payload

        vid = wait_result["vehicle_id"]
        eid = wait_result.get("execution_id")
        status = wait_result.get("status")
        if status == STATUS_EXECUTED:
            return _outcome(vid, eid, STATUS_EXECUTED, None, "executed", None)
        if status == STATUS_FAILED:
            execution = {"id": eid, "failedReason": wait_result.get("failed_reason")}
            return _outcome_from_error(vid, eid, self._failure(execution, vid, command), status=STATUS_FAILED)
        if status == STATUS_PENDING:
            error = pending_at_deadline(
                vid, command, eid, self.wait_timeout, status_read=bool(wait_result.get("status_read"))
            )
            return _outcome_from_error(
                vid, eid, error, status="PENDING" if wait_result.get("status_read") else "UNKNOWN"
            )
        error = failure_from_payload(wait_result.get("error"), vehicle_id=vid, command=command, execution_id=eid)
        return _outcome_from_error(vid, eid, error, status="UNKNOWN")

    def _conclude(
        self,
        context: Context,
        store: _FleetStore,
        vehicles: list[str],
        command: str,
        settled: dict[str, dict[str, Any]],
        waited: Mapping[str, VehicleWait],
        reattached: Iterable[str],
    ) -> list[dict[str, Any]]:
        outcomes: dict[str, dict[str, Any]] = dict(settled)
        earlier = set(reattached)
        for vid, wait_result in waited.items():
            origin = "earlier try" if vid in earlier else "sent"
            outcomes[vid] = {**self._waited_outcome(wait_result, command), "origin": origin}
        result: list[dict[str, Any]] = []
        for vid in vehicles:
            outcome = outcomes.get(vid) or _outcome(vid, None, "UNKNOWN", None, "retryable", "NO_OUTCOME")
            outcome.setdefault("origin", None)
            result.append(outcome)
        # Remember what is final, so a retry neither re-reads nor re-sends it.
        changes: dict[str, dict[str, Any] | None] = {}
        for o in result:
            entry = dict(store.entry(o["vehicle_id"]) or {})
            if o["execution_id"]:
                entry["id"] = o["execution_id"]
            entry.pop("reattached", None)
            changes[o["vehicle_id"]] = {**entry, "final": _final(o)}
        if changes:
            store.try_update(changes, "the final outcomes")
        self.log.info("%s outcome per vehicle:\n%s", command, outcome_table(result))
        executed = [o for o in result if o["classification"] == "executed"]
        skipped = [o for o in result if o["classification"] == "skipped"]
        fatal = [o for o in result if o["classification"] == "fatal"]
        retryable = [o for o in result if o["classification"] == "retryable"]
        if not fatal and not retryable:
            self.log.info(
                "%s EXECUTED on all %d vehicle(s)%s.",
                command,
                len(executed),
                f" ({len(skipped)} skipped)" if skipped else "",
            )
            return result
        context["ti"].xcom_push(key="outcomes", value=result)
        summary = (
            f"Volteras fleet command {command}: {len(executed)} of {len(result)} vehicle(s) EXECUTED, "
            f"{len(fatal)} failed fatally, {len(retryable)} failed retryably"
            + (f", {len(skipped)} skipped" if skipped else "")
            + "."
        )
        if fatal:
            summary += f" Fatal (not re-sent on a retry): {_names(fatal)}."
        if retryable:
            summary += f" Retryable: {_names(retryable)}."
        if retryable:
            kinds = {o.get("delay_kind") or DelayKind.TRANSIENT.value for o in retryable}
            kind = next(k for k in (*_DELAY_ORDER, *kinds) if k in kinds)
            raise VolterasRetryableCommandError(
                summary + " Airflow will retry the task; the retry sends the command again only to the retryable "
                "vehicles and re-attaches to any still pending.",
                vehicle_id=f"{len(retryable)} of {len(result)} vehicles",
                command=command,
                reason=_common_reason(retryable),
                delay_kind=kind,
            )
        raise VolterasFatalCommandError(
            summary + " Airflow will NOT retry the task. To send again once the causes are fixed, delete the task's "
            f"state-store key '{FLEET_STATE_KEY}' and clear the task, or start a new DAG run.",
            vehicle_id=f"{len(fatal)} of {len(result)} vehicles",
            command=command,
            reason=_common_reason(fatal),
        )


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------


def _count(value: Any) -> int | str:
    return len(value) if isinstance(value, (list, tuple)) else "?"


def _outcome(
    vid: str,
    eid: str | None,
    status: str,
    failed_reason: str | None,
    classification: Classification,
    reason: str | None,
    delay_kind: str | None = None,
) -> dict[str, Any]:
    return {
        "vehicle_id": vid,
        "execution_id": eid,
        "status": status,
        "failed_reason": failed_reason,
        "classification": classification,
        "reason": reason,
        "delay_kind": delay_kind,
    }


def _outcome_from_error(
    vid: str, eid: str | None, error: VolterasCommandError, status: str | None = None
) -> dict[str, Any]:
    status = status or "UNKNOWN"
    return _outcome(
        vid,
        eid or error.execution_id,
        status,
        error.reason if status == STATUS_FAILED else None,
        "retryable" if error.retryable else "fatal",
        error.reason,
        error.delay_kind if error.retryable else None,
    )


def _final(o: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("vehicle_id", "execution_id", "status", "failed_reason", "classification", "reason", "delay_kind", "origin")
    return {k: o.get(k) for k in keys}


def _names(outcomes: list[dict[str, Any]], limit: int = 20) -> str:
    shown = ", ".join(f"{o['vehicle_id']} ({o['reason'] or o['status']})" for o in outcomes[:limit])
    return shown + (f" and {len(outcomes) - limit} more (see the table above)" if len(outcomes) > limit else "")


def _common_reason(outcomes: list[dict[str, Any]]) -> str:
    reasons = {o["reason"] for o in outcomes}
    return str(next(iter(reasons))) if len(reasons) == 1 else "MIXED"


def outcome_table(outcomes: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table of per-vehicle outcomes, for the task log."""
    header = ("#", "vehicle", "execution", "status", "failedReason / error", "retry?", "from")
    rows = [
        (
            str(i),
            str(o["vehicle_id"]),
            str(o.get("execution_id") or "-"),
            str(o["status"]),
            str(o.get("failed_reason") or (o.get("reason") if o["classification"] != "executed" else "") or "-"),
            {"executed": "done", "fatal": "fatal", "retryable": "retryable", "skipped": "skipped"}[o["classification"]],
            str(o.get("origin") or "-"),
        )
        for i, o in enumerate(outcomes, 1)
    ]
    widths = [max(len(r[c]) for r in (header, *rows)) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _FleetCatalogueOperator(VolterasFleetCommandOperator):
    spec: ClassVar[CommandSpec]
    template_fields: Sequence[str] = ("vehicle_ids",)

    def __init__(self, *, vehicle_ids: Sequence[str] | str, **kwargs: Any) -> None:
        if "command" in kwargs:
            raise TypeError(f"{type(self).__name__} always sends {self.spec.command.value}; do not pass command=")
        super().__init__(vehicle_ids=vehicle_ids, command=self.spec.command.value, **kwargs)


class FleetClimateOffOperator(_FleetCatalogueOperator):
    """Turn the climate off on many vehicles in one task. Sends ``CLIMATE_OFF``; see
    ``VolterasFleetCommandOperator`` for the parameters (all but ``command`` and ``arguments``)."""

    spec = get_command_spec(VehicleCommand.CLIMATE_OFF)


__all__ = [
    "FLEET_STATE_KEY",
    "FleetClimateOffOperator",
    "VolterasFleetCommandOperator",
    "chunk_label_template",
    "chunked",
    "outcome_table",
]
