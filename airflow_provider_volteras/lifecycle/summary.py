"""The end of a fleet's log: every vehicle's outcome, counts by outcome and by failed reason, and the
vehicles to act on.

A fleet operator (one task for many vehicles) logs it after its outcomes
(:meth:`~airflow_provider_volteras.lifecycle.task.CommandTaskMixin.log_outcomes`). A fleet mapped one
task per vehicle (``ClimateOffOperator.partial(...).expand(vehicle_id=...)``) gets the very same lines
from one task that runs after all of them (:func:`report_mapped_fleet`), made from the outcome each
vehicle's task pushed to XCom (:data:`OUTCOME_KEY`). Reporting reads XCom only: it sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_volteras.lifecycle.outcomes import Outcome, failed, outcome_table, slim

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key under which a single-vehicle command task pushes its vehicle's outcome (a stored record).
OUTCOME_KEY = "outcome"


def summary_lines(outcomes: Sequence[Mapping[str, Any]], command: str, limit: int = 50) -> list[str]:
    """Counts by outcome and by failed reason, then the vehicles that did not end EXECUTED (or skipped)."""
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for o in outcomes:
        counts[o["classification"]] = counts.get(o["classification"], 0) + 1
        if o["classification"] in ("fatal", "retryable") and o.get("reason"):
            reasons[str(o["reason"])] = reasons.get(str(o["reason"]), 0) + 1
    by_reason = "; by reason: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) if reasons else ""
    lines = [f"{command}: {', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}{by_reason}"]
    act = [o for o in outcomes if o["classification"] in ("fatal", "retryable")]
    if act:
        shown = ", ".join(
            f"{o['vehicle_id']} ({o.get('reason') or o.get('status')}, {o['classification']})" for o in act[:limit]
        )
        more = f" and {len(act) - limit} more (see the table above)" if len(act) > limit else ""
        lines.append(f"{command}: vehicles to act on ({len(act)}): {shown}{more}")
    else:
        lines.append(f"{command}: no vehicle to act on")
    return lines


def mapped_outcomes(context: Context, task_id: str, vehicles: Sequence[str], command: str) -> list[Outcome]:
    """The outcome of each vehicle of a task mapped one per vehicle, in map-index order: what its task pushed
    under :data:`OUTCOME_KEY`, or, when it pushed none, a failure saying so."""
    from airflow_provider_volteras.failures import unexpected_outcome

    ti = context["ti"]
    result: list[Outcome] = []
    for index, vehicle_id in enumerate(vehicles):
        pushed = ti.xcom_pull(task_ids=task_id, key=OUTCOME_KEY, map_indexes=index)
        if isinstance(pushed, dict) and pushed.get("vehicle_id") == vehicle_id and pushed.get("classification"):
            result.append(cast(Outcome, dict(pushed)))
            continue
        error = unexpected_outcome(
            vehicle_id,
            command,
            None,
            f"task {task_id!r} (map index {index}) recorded no outcome: it ended before the command's end was known "
            "(see its log)",
            reason="NO_OUTCOME",
        )
        result.append(failed(vehicle_id, error))
    return result


def report_mapped_fleet(
    context: Context, *, task_id: str, vehicles: Sequence[str] | None, command: str, log: Any
) -> list[dict[str, Any]]:
    """Log a mapped fleet's outcome as a fleet operator logs its own, and fail (without retry) when any
    vehicle did not end EXECUTED, naming them. Returns the outcome records (XCom)."""
    from airflow_provider_volteras._compat import AirflowSkipException
    from airflow_provider_volteras.exceptions import VolterasFatalCommandError

    if vehicles is None:
        raise AirflowSkipException("No vehicles were chosen for this run, so there is no fleet outcome to report.")
    outcomes = mapped_outcomes(context, task_id, vehicles, command)
    log.info("%s outcome per vehicle (task %s):\n%s", command, task_id, outcome_table(outcomes))
    lines = summary_lines(outcomes, command)
    for line in lines:
        log.info("%s", line)
    act = [o for o in outcomes if o["classification"] in ("fatal", "retryable")]
    if act:
        executed = sum(1 for o in outcomes if o["classification"] == "executed")
        raise VolterasFatalCommandError(
            f"Volteras fleet command {command}: {executed} of {len(outcomes)} vehicle(s) EXECUTED. {lines[-1]}. "
            f"Each vehicle's task {task_id!r} says what happened and what to do; this task only reports (it sends "
            "nothing).",
            vehicle_id=",".join(str(o["vehicle_id"]) for o in act[:20]) + (",..." if len(act) > 20 else ""),
            command=command,
            reason="FLEET_INCOMPLETE",
        )
    return [slim(o) for o in outcomes]


__all__ = ["OUTCOME_KEY", "mapped_outcomes", "report_mapped_fleet", "summary_lines"]
