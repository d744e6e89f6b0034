"""The record of what a command task sent, in Airflow's task state store (before Airflow 3.3, in an
Airflow Variable named for the task instance: ``_compat.VariableStateStore``, docs/airflow-versions.md).

One entry per vehicle, the same for a single-vehicle task and a fleet task::

    {"in_flight": {"since": epoch, "before": [id digests], "window": epoch, "applied": bool,
                   "maybe_applied": bool}}     written before a create is sent
    {"id": execution id}                       as soon as the API issued an id (or one was adopted)
    ... plus "final": Outcome                  once its outcome is known
    ... plus "asset": execution id             once its asset event was emitted (never twice)
    ... plus "try": Airflow's try number       of the try that last wrote the entry (see tries.py)

A single-vehicle task keeps its one entry flat under ``volteras_command_execution`` together with
``vehicle_id``, ``command`` and ``arguments``; a fleet task keeps ``{"command", "arguments",
"selection", "vehicles": {vehicle_id: entry}}`` under ``volteras_fleet_command_executions``, where
``selection`` is ``{"source", "vehicles", "at", "try"}``: the vehicles the task resolved (from a tag, a filter or
given ids), written before anything is sent, so that a retry acts on exactly those. Both layouts are read
and written by the same :class:`Records`, which writes durably (a write returns once stored) and
lets concurrent writers of one task share a write.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from airflow_provider_volteras._core.intent import arguments_match, describe_arguments
from airflow_provider_volteras.exceptions import VolterasRetryableCommandError

#: Key of a single-vehicle command task's record (do not rename).
STATE_KEY = "volteras_command_execution"
#: Key of a fleet task's record (do not rename).
FLEET_STATE_KEY = "volteras_fleet_command_executions"

_FLAT = ("vehicle_id", "command", "arguments")


class Records:
    """Per-vehicle entries of one task's record.

    ``single`` picks the flat one-vehicle layout. Every change is durable before :meth:`update`
    returns, but concurrent changes (a fleet's create threads) share one write: the record is written
    at most once at a time, and each write carries every change made before it started.
    """

    def __init__(
        self,
        store: Any,
        log: Any,
        *,
        key: str,
        command: str,
        arguments: dict[str, Any] | None,
        single: bool,
        label: str,
        try_number: int | None = None,
    ) -> None:
        self.store = store
        self.log = log
        self.key = key
        self.command = command
        self.arguments = arguments
        self.single = single
        self.label = label
        #: Stamped on every entry this try writes, so a later try can tell a Clear from a retry.
        self.try_number = try_number
        self.vehicles: dict[str, dict[str, Any]] = {}
        #: A fleet task's recorded selection ``{"source", "vehicles", "at", "try"}`` (``None`` until recorded).
        self.selection: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._version = 0
        self._written = 0
        self._writing = False
        self._failed: tuple[int, Exception] | None = None
        self.writes = 0
        if store is None:
            log.warning("No task state store in the context: a retry cannot re-attach to this task's command.")

    # -- reading ------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the stored record; entries of another command or other arguments are not this task's intent."""
        if self.store is None:
            return
        try:
            record = self.store.get(self.key)
        except Exception as err:
            raise VolterasRetryableCommandError(
                f"Volteras command {self.command} on {self.label}: the task state store could not be read "
                f"({type(err).__name__}: {str(err)[:200]}), so this task cannot tell whether an earlier try "
                "already sent the command. Nothing was sent. Airflow will retry the task.",
                vehicle_id=self.label,
                command=self.command,
                reason="STATE_STORE_ERROR",
            ) from err
        if not isinstance(record, dict):
            return
        if self.single:
            vehicles = {}
            if record.get("vehicle_id") != self.label:
                self.log.info(
                    "An earlier try sent %s to %s; this try sends %s to %s.",
                    record.get("command"),
                    record.get("vehicle_id"),
                    self.command,
                    self.label,
                )
                return
            vehicles[self.label] = {k: v for k, v in record.items() if k not in _FLAT}
        else:
            vehicles = {k: v for k, v in dict(record.get("vehicles") or {}).items() if isinstance(v, dict)}
        if record.get("command") != self.command or not arguments_match(self.arguments, record.get("arguments")):
            self.log.info(
                "An earlier try sent %s with %s; this try sends %s with %s, so it does not re-attach to it.",
                record.get("command"),
                describe_arguments(record.get("arguments")),
                self.command,
                describe_arguments(self.arguments),
            )
            return
        selection = record.get("selection")
        with self._cond:
            self.vehicles = vehicles
            self.selection = selection if isinstance(selection, dict) and not self.single else None

    def recorded_vehicles(self, source: Any) -> list[str] | None:
        """The vehicles an earlier try recorded for a selection from ``source``; ``None`` when none was
        recorded (or from another source, or unreadable)."""
        with self._cond:
            selection = dict(self.selection or {})
        vehicles = selection.get("vehicles")
        if selection.get("source") != source or not isinstance(vehicles, list) or not vehicles:
            return None
        if not all(isinstance(v, str) for v in vehicles):
            return None
        return list(vehicles)

    def entry(self, vehicle_id: str) -> dict[str, Any] | None:
        with self._cond:
            entry = self.vehicles.get(vehicle_id)
            return dict(entry) if isinstance(entry, dict) else None

    # -- writing ------------------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        if self.single:
            [(vehicle_id, entry)] = self.vehicles.items() if len(self.vehicles) == 1 else [(None, {})]
            return {"vehicle_id": vehicle_id, "command": self.command, "arguments": self.arguments, **entry}
        selection = {} if self.selection is None else {"selection": self.selection}
        return {"command": self.command, "arguments": self.arguments, **selection, "vehicles": dict(self.vehicles)}

    def record_selection(self, source: Any, vehicles: list[str], at: float) -> None:
        """Write a fleet task's resolved vehicles (and where they came from) durably: before any send."""
        stamp = {} if self.try_number is None else {"try": self.try_number}
        with self._cond:
            self.selection = {"source": source, "vehicles": list(vehicles), "at": at, **stamp}
        self.update({})

    def update(self, changes: Mapping[str, dict[str, Any] | None], *, durable: bool = True) -> None:
        """Apply ``{vehicle_id: entry}`` (``None`` removes it); return once written (unless not ``durable``)."""
        with self._cond:
            if self.single:  # one vehicle's entry: the record is about this task's vehicle only
                self.vehicles = {k: v for k, v in self.vehicles.items() if k in changes}
            for vehicle_id, value in changes.items():
                if value is None:
                    self.vehicles.pop(vehicle_id, None)
                else:
                    stamp = {} if self.try_number is None else {"try": self.try_number}
                    self.vehicles[vehicle_id] = {**value, **stamp}
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
                snapshot = self._snapshot()
                error: Exception | None = None
                self._cond.release()
                try:
                    if self.single and snapshot["vehicle_id"] is None:
                        self.store.delete(self.key)
                    else:
                        self.store.set(self.key, snapshot)
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

    def merge(self, vehicle_id: str, **fields: Any) -> dict[str, Any]:
        """The vehicle's entry with ``fields`` set (``None`` removes a field); not written."""
        entry = self.entry(vehicle_id) or {}
        for name, value in fields.items():
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = value
        return entry

    def try_update(self, changes: Mapping[str, dict[str, Any] | None], what: str) -> None:
        """A write whose failure is survivable (the earlier record still lets a retry find the execution)."""
        try:
            self.update(changes)
        except Exception as err:  # noqa: BLE001 - logged; the earlier record still lets a retry find it
            self.log.warning(
                "Could not record %s in the task state store (%s: %s); a retry will look the execution up "
                "through the listing instead.",
                what,
                type(err).__name__,
                str(err)[:200],
            )
