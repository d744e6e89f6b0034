"""Send one command to many vehicles in one task: ``VolterasFleetCommandOperator``.

One task (one worker launch, one hook, one token) creates the command on every vehicle with a
bounded thread pool, remembers each created execution in the task state store, then waits for all
of them in ONE ``FleetCommandTrigger`` (or in the worker when ``deferrable=False``). Every vehicle's
outcome is returned (XCom) and logged as a table; the task fails when any vehicle did not end
``EXECUTED``: fatal only -> ``VolterasFatalCommandError`` (no retry), otherwise retryable, and the
retry re-sends only to the vehicles that need it.

The vehicles are a selection resolved when the task runs: ``vehicle_ids`` (a list, or an upstream
task's XCom), ``tag="key=value"`` or ``vehicle_filter=`` (the API's listing filter), read from
``GET /v1/vehicles``. The resolved vehicles are logged and recorded in the task state store before
anything is sent; every later try of the task (a retry, a resumed deferral) works on that record and
never lists again, so a vehicle tagged in between is never sent to. ``preview=True`` resolves and logs
the selection and sends nothing.

Split a fleet larger than a few hundred vehicles into chunks and map over the chunks
(:func:`chunked`, :func:`chunk_label_template`): 5,000 vehicles in chunks of 500 are 10 mapped
tasks, far below ``[core] max_map_length`` (1,024), where one mapped task per vehicle fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_volteras._compat import task_state_store
from airflow_provider_volteras._core.vehicles import (
    VehicleSelection,
    check_max_vehicles,
    check_selected,
    filter_text,
    parse_tag,
)
from airflow_provider_volteras._waiting import is_static
from airflow_provider_volteras.catalogue import CommandSpec, VehicleCommand, get_command_spec
from airflow_provider_volteras.exceptions import (
    VolterasError,
    VolterasInvalidInputError,
    VolterasRetryableCommandError,
)
from airflow_provider_volteras.failures import api_failure
from airflow_provider_volteras.lifecycle.outcomes import RECORD_KEYS, Outcome, outcome_table
from airflow_provider_volteras.lifecycle.records import FLEET_STATE_KEY, Records
from airflow_provider_volteras.lifecycle.task import CommandTaskOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


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


class VolterasFleetCommandOperator(CommandTaskOperator):
    """Send one command to many vehicles in one task and wait until each is executed.

    The vehicles are exactly one selection, resolved when the task runs: ``vehicle_ids`` (a list, or an
    upstream task's XCom), ``tag`` or ``vehicle_filter`` (the API's vehicle listing). They are logged and
    recorded in the task state store before anything is sent; a retry or a resumed deferral acts on the
    recorded vehicles and never lists again, so no vehicle outside the first selection is ever sent to.
    An empty selection, or one above ``max_vehicles``, fails the task (no retry) before any command.

    Every vehicle goes through the same lifecycle as a single-vehicle task; creates run
    ``max_concurrent_creates`` at a time through one hook (one token). Each created execution is
    recorded in the task state store as soon as the API issues its id; a retry reads that record and
    never re-sends to a vehicle whose command may be in flight or ``EXECUTED``, nor to one whose command
    ``FAILED`` for a fatal reason: it re-sends only to vehicles whose command failed for a retryable
    reason or was never sent. All executions are then awaited in one ``FleetCommandTrigger`` (after the
    first seconds in the worker) or in the worker. Each executed vehicle gets one asset event.

    The return value (XCom) is one dict per vehicle, in selection order: ``vehicle_id``,
    ``execution_id``, ``status`` (``EXECUTED``/``FAILED``/``PENDING``/``UNKNOWN``/``NOT_SENT``/``SKIPPED``),
    ``failed_reason``, ``classification`` (``executed``/``retryable``/``fatal``/``skipped``), ``reason``
    (the failedReason or error code), ``delay_kind`` and ``origin`` (``sent``/``earlier try``). The same
    list is pushed under the XCom key ``outcomes`` when the task fails. A preview returns the selected ids.

    :param vehicle_ids: The vehicles (templated; a list, e.g. an upstream task's XCom or one chunk of a
        mapped task).
    :param tag: The vehicles with this tag, ``"key=value"`` (or ``{"key": ..., "value": ...}``), as
        ``GET /v1/vehicles?tagKey=...&tagValue=...`` lists them when the task first runs (templated).
    :param vehicle_filter: The vehicles the API's JSON listing filter matches, e.g.
        ``{"field": "model", "operator": "==", "value": "i4"}`` (templated).
    :param max_vehicles: The most vehicles the selection may hold (default: 1,000 for a tag or a filter,
        no cap for ``vehicle_ids``); a bigger selection fails the task before anything is sent.
    :param preview: Resolve and log the selection, record nothing, send nothing (templated, e.g.
        ``"{{ params.preview }}"``).
    :param max_concurrent_creates: Creates (and, in the worker, status reads) in flight at once (1 to 64).

    The other parameters are those of :class:`~airflow_provider_volteras.lifecycle.task.CommandTaskOperator`;
    ``if_in_progress`` applies per vehicle.
    """

    template_fields: Sequence[str] = ("vehicle_ids", "tag", "vehicle_filter", "preview", "command", "arguments")
    template_fields_renderers = {"arguments": "json", "vehicle_filter": "json"}
    ui_color = "#c5ead6"
    state_key: ClassVar[str] = FLEET_STATE_KEY
    single: ClassVar[bool] = False

    def __init__(
        self,
        *,
        vehicle_ids: Sequence[str] | str | None = None,
        tag: str | Mapping[str, str] | None = None,
        vehicle_filter: Any = None,
        max_vehicles: int | None = None,
        preview: bool | str = False,
        max_concurrent_creates: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        sources = {"vehicle_ids": vehicle_ids, "tag": tag, "vehicle_filter": vehicle_filter}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"{type(self).__name__} takes exactly one of vehicle_ids, tag and vehicle_filter (the vehicles to "
                f"send to); got {' and '.join(given) if given else 'none'}."
            )
        self.vehicle_ids = vehicle_ids
        self.tag = tag
        self.vehicle_filter = vehicle_filter
        self.max_vehicles = check_max_vehicles(max_vehicles)
        if not isinstance(preview, bool) and is_static(preview):
            raise ValueError(f"preview must be True or False (or a template), got {preview!r}")
        self.preview = preview
        if isinstance(max_concurrent_creates, bool) or not isinstance(max_concurrent_creates, int):
            raise ValueError(f"max_concurrent_creates must be an integer, got {max_concurrent_creates!r}")
        if not 1 <= max_concurrent_creates <= 64:
            raise ValueError(f"max_concurrent_creates must be between 1 and 64, got {max_concurrent_creates}")
        self.max_concurrent_creates = max_concurrent_creates
        self.concurrency = max_concurrent_creates
        #: This try's vehicles, once resolved (or read back from the record).
        self._selected: list[str] | None = None
        if is_static(vehicle_ids) and isinstance(vehicle_ids, (list, tuple)):
            selection = VehicleSelection.of(vehicle_ids=vehicle_ids)
            check_selected(selection, len(selection.value), self.max_vehicles)
        if tag is not None and is_static(tag):
            parse_tag(tag)
        if vehicle_filter is not None and is_static(vehicle_filter):
            filter_text(vehicle_filter, "vehicle_filter")
        self.check_when_parsed()

    # -- the selection ------------------------------------------------------------------------------

    def selection(self) -> VehicleSelection:
        """The selection as rendered for this try (checked: ``VolterasInvalidInputError``)."""
        return VehicleSelection.of(vehicle_ids=self.vehicle_ids, tag=self.tag, vehicle_filter=self.vehicle_filter)

    def vehicles(self) -> list[str]:
        """This try's vehicles: those :meth:`select` resolved or read back from the task's record."""
        if self._selected is None:
            raise RuntimeError("a fleet task's vehicles are resolved when it runs (select())")
        return list(self._selected)

    def vehicles_label(self) -> str:
        if self._selected is not None:
            return f"{len(self._selected)} vehicles"
        if self.tag is not None:
            return f"the vehicles tagged {str(self.tag)[:60]}"
        if self.vehicle_filter is not None:
            return "the vehicles vehicle_filter selects"
        return f"{_count(self.vehicle_ids)} vehicles"

    def _checked_selection(self, command: str) -> tuple[VehicleSelection, bool]:
        try:
            return self.selection(), _flag(self.preview)
        except VolterasInvalidInputError as err:
            raise api_failure(err, vehicle_id=self.vehicles_label()[:80], command=command) from err

    def _resolve(self, selection: VehicleSelection, command: str) -> list[str]:
        """The selection's vehicles from the API (or the given ids), checked: empty or too many is fatal."""
        try:
            return self.hook.resolve_selection(selection, max_vehicles=self.max_vehicles)
        except VolterasError as err:
            raise api_failure(err, vehicle_id=self.vehicles_label()[:80], command=command) from err

    def _records(self, context: Context, command: str, arguments: dict[str, Any] | None, label: str) -> Records:
        records = Records(
            task_state_store(context, self.log),
            self.log,
            key=self.state_key,
            command=command,
            arguments=arguments,
            single=False,
            label=label,
            try_number=_try_number(context),
        )
        records.load()
        return records

    def select(self, context: Context, command: str, arguments: dict[str, Any] | None) -> list[str]:
        """This try's vehicles: the ones an earlier try of this task recorded for the same selection, else
        the selection resolved now and recorded (durably) before this method returns, i.e. before any send."""
        selection, _ = self._checked_selection(command)
        records = self._records(context, command, arguments, f"the fleet selected by {selection.describe()}")
        recorded = records.recorded_vehicles(selection.source()) if selection.listed else None
        if recorded is not None:
            earlier = records.selection or {}
            at, by = earlier.get("at"), earlier.get("try")
            when = datetime.fromtimestamp(at, tz=UTC).isoformat() if isinstance(at, (int, float)) else "earlier"
            self.log.info(
                "Acting on the %d vehicle(s) an earlier try of this task (%s) selected by %s at %s (recorded in "
                "the task state store); the vehicle listing is not read again, so its changes since do not "
                "apply: %s",
                len(recorded),
                f"try {by}" if isinstance(by, int) else "its first",
                selection.describe(),
                when,
                _shown(recorded),
            )
            self._selected = recorded
            return recorded
        vehicles = self._resolve(selection, command)
        try:
            records.record_selection(selection.source(), vehicles, time.time())
        except Exception as err:
            raise VolterasRetryableCommandError(
                f"Volteras fleet command {command}: the {len(vehicles)} selected vehicle(s) could not be recorded "
                f"in the task state store ({type(err).__name__}: {str(err)[:200]}), so a retry could not keep to "
                "them. Nothing was sent. Airflow will retry the task.",
                vehicle_id=f"{len(vehicles)} vehicles",
                command=command,
                reason="STATE_STORE_ERROR",
            ) from err
        self.log.info(
            "Selected %d vehicle(s) by %s and recorded them before sending anything; every later try of this "
            "task acts on exactly these: %s",
            len(vehicles),
            selection.describe(),
            _shown(vehicles),
        )
        self._selected = vehicles
        return vehicles

    # -- the task -----------------------------------------------------------------------------------

    def execute(self, context: Context) -> list[dict[str, Any]] | list[str]:
        spec, arguments = self.command_intent()
        command = spec.command.value
        selection, preview = self._checked_selection(command)
        if preview:
            vehicles = self._resolve(selection, command)
            self.log.info(
                "Preview: %s would be sent to these %d vehicle(s) (selected by %s). Nothing was sent and nothing "
                "was recorded: %s",
                command,
                len(vehicles),
                selection.describe(),
                _shown(vehicles, limit=1000),
            )
            return vehicles
        vehicles = self.select(context, command, arguments)
        self.log.info("Sending %s to %d vehicle(s), %d at a time.", command, len(vehicles), self.concurrency)
        outcomes = self.run_commands(context, vehicles, spec, arguments)
        return self.finish_task(context, outcomes, command)  # type: ignore[arg-type]

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        settled: dict[str, dict[str, Any]] | None = None,
        pending: dict[str, str] | None = None,
        reattached: list[str] | None = None,
    ) -> Any:
        """Resume after the trigger fired, on the vehicles this try recorded (never a new listing)."""
        spec, arguments = self.command_intent()
        command = spec.command.value
        selection, _ = self._checked_selection(command)
        records = self._records(context, command, arguments, f"the fleet selected by {selection.describe()}")
        vehicles = records.recorded_vehicles(selection.source())
        if vehicles is None:
            # No record (no task state store): the deferral's own kwargs name every vehicle of this try.
            vehicles = list(dict.fromkeys([*(settled or {}), *(pending or {})]))
        if not vehicles:
            raise VolterasRetryableCommandError(
                f"Volteras fleet command {command}: this task resumed after its wait but neither the task state "
                "store nor the deferral names its vehicles. Airflow will retry the task; the retry re-attaches to "
                "what was sent.",
                vehicle_id=self.vehicles_label()[:80],
                command=command,
                reason="STATE_STORE_ERROR",
            )
        self._selected = vehicles
        return super().execute_complete(context, event, settled, pending, reattached)

    def finish_task(self, context: Context, outcomes: list[Outcome], command: str) -> list[dict[str, Any]]:
        result = [{**{k: o.get(k) for k in RECORD_KEYS}, "origin": o.get("origin")} for o in outcomes]
        self.log_outcomes(outcomes, command)
        failure = self.task_failure(outcomes, command)
        if failure is None:
            skipped = sum(1 for o in outcomes if o["classification"] == "skipped")
            executed = len(outcomes) - skipped
            self.log.info(
                "%s EXECUTED on all %d vehicle(s)%s.", command, executed, f" ({skipped} skipped)" if skipped else ""
            )
            return result
        context["ti"].xcom_push(key="outcomes", value=result)
        raise failure


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------


def _count(value: Any) -> int | str:
    return len(value) if isinstance(value, (list, tuple)) else "?"


def _shown(vehicle_ids: Sequence[str], limit: int = 50) -> str:
    shown = ", ".join(vehicle_ids[:limit])
    return shown + (f" and {len(vehicle_ids) - limit} more" if len(vehicle_ids) > limit else "")


def _try_number(context: Context) -> int | None:
    number = getattr(context.get("ti"), "try_number", None)
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def _flag(value: Any) -> bool:
    """``preview`` as rendered: a boolean, or its text when the DAG does not render native objects."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise VolterasInvalidInputError(f"preview must be True or False, got {str(value)[:40]!r}")


class _FleetCatalogueOperator(VolterasFleetCommandOperator):
    spec: ClassVar[CommandSpec]
    template_fields: Sequence[str] = ("vehicle_ids", "tag", "vehicle_filter", "preview")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**self.fixed_command(self.spec, kwargs))


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
