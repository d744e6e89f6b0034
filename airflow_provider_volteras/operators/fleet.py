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

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_volteras._core.basics import validate_id
from airflow_provider_volteras._waiting import is_static
from airflow_provider_volteras.catalogue import CommandSpec, VehicleCommand, get_command_spec
from airflow_provider_volteras.exceptions import VolterasInvalidInputError
from airflow_provider_volteras.lifecycle.outcomes import RECORD_KEYS, Outcome, outcome_table
from airflow_provider_volteras.lifecycle.records import FLEET_STATE_KEY
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


class VolterasFleetCommandOperator(CommandTaskOperator):
    """Send one command to many vehicles in one task and wait until each is executed.

    Every vehicle goes through the same lifecycle as a single-vehicle task; creates run
    ``max_concurrent_creates`` at a time through one hook (one token). Each created execution is
    recorded in the task state store as soon as the API issues its id; a retry reads that record and
    never re-sends to a vehicle whose command may be in flight or ``EXECUTED``, nor to one whose command
    ``FAILED`` for a fatal reason: it re-sends only to vehicles whose command failed for a retryable
    reason or was never sent. All executions are then awaited in one ``FleetCommandTrigger`` (after the
    first seconds in the worker) or in the worker. Each executed vehicle gets one asset event.

    The return value (XCom) is one dict per vehicle, in ``vehicle_ids`` order: ``vehicle_id``,
    ``execution_id``, ``status`` (``EXECUTED``/``FAILED``/``PENDING``/``UNKNOWN``/``NOT_SENT``/``SKIPPED``),
    ``failed_reason``, ``classification`` (``executed``/``retryable``/``fatal``/``skipped``), ``reason``
    (the failedReason or error code), ``delay_kind`` and ``origin`` (``sent``/``earlier try``). The same
    list is pushed under the XCom key ``outcomes`` when the task fails.

    :param vehicle_ids: The vehicles (templated; a list, e.g. one chunk of a mapped task).
    :param max_concurrent_creates: Creates (and, in the worker, status reads) in flight at once (1 to 64).

    The other parameters are those of :class:`~airflow_provider_volteras.lifecycle.task.CommandTaskOperator`;
    ``if_in_progress`` applies per vehicle.
    """

    template_fields: Sequence[str] = ("vehicle_ids", "command", "arguments")
    ui_color = "#c5ead6"
    state_key: ClassVar[str] = FLEET_STATE_KEY
    single: ClassVar[bool] = False

    def __init__(self, *, vehicle_ids: Sequence[str] | str, max_concurrent_creates: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vehicle_ids = vehicle_ids
        if isinstance(max_concurrent_creates, bool) or not isinstance(max_concurrent_creates, int):
            raise ValueError(f"max_concurrent_creates must be an integer, got {max_concurrent_creates!r}")
        if not 1 <= max_concurrent_creates <= 64:
            raise ValueError(f"max_concurrent_creates must be between 1 and 64, got {max_concurrent_creates}")
        self.max_concurrent_creates = max_concurrent_creates
        self.concurrency = max_concurrent_creates
        if is_static(self.vehicle_ids) and isinstance(self.vehicle_ids, (list, tuple)):
            _vehicle_list(self.vehicle_ids)
        self.check_when_parsed()

    def vehicles(self) -> list[str]:
        return _vehicle_list(self.vehicle_ids)

    def vehicles_label(self) -> str:
        return f"{_count(self.vehicle_ids)} vehicles"

    def execute(self, context: Context) -> list[dict[str, Any]]:
        vehicles, spec, arguments = self.intent()
        command = spec.command.value
        if not vehicles:
            self.log.info("No vehicles in this task: nothing to send.")
            return []
        self.log.info("Sending %s to %d vehicle(s), %d at a time.", command, len(vehicles), self.concurrency)
        outcomes = self.run_commands(context, vehicles, spec, arguments)
        return self.finish_task(context, outcomes, command)  # type: ignore[arg-type]

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


class _FleetCatalogueOperator(VolterasFleetCommandOperator):
    spec: ClassVar[CommandSpec]
    template_fields: Sequence[str] = ("vehicle_ids",)

    def __init__(self, *, vehicle_ids: Sequence[str] | str, **kwargs: Any) -> None:
        super().__init__(vehicle_ids=vehicle_ids, **self.fixed_command(self.spec, kwargs))


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
