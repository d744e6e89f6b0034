"""The command task: one flow for ``VolterasCommandOperator`` (a fleet of one) and the fleet operators.

prepare (:class:`~.vehicle.Lifecycle`) -> watch (:mod:`~.watch`: the first seconds in the worker,
then in one trigger or on in the worker) -> conclude (outcomes recorded, asset events at most once
per execution, one task failure built in :meth:`CommandTaskMixin.task_failure`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from airflow.sdk import BaseOperator

from airflow_provider_volteras._compat import task_state_store
from airflow_provider_volteras._core.basics import DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT
from airflow_provider_volteras._core.events import error_payload
from airflow_provider_volteras._core.waiting import MIN_POLL_INTERVAL
from airflow_provider_volteras._waiting import (
    VolterasTaskMixin,
    check_static_command,
    checked_if_in_progress,
    default_deferrable,
    rate_limit_window,
    reason_overrides,
    seconds,
)
from airflow_provider_volteras.assets import with_executed_alias
from airflow_provider_volteras.catalogue import VehicleCommand, build_payload, get_command_spec
from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasFatalCommandError,
    VolterasInvalidInputError,
)
from airflow_provider_volteras.failures import DelayKind, api_failure, unexpected_outcome
from airflow_provider_volteras.lifecycle.outcomes import Judge, Outcome, failed, failure_of, outcome_table, slim
from airflow_provider_volteras.lifecycle.records import Records
from airflow_provider_volteras.lifecycle.tries import attempt_of

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_volteras.catalogue import CommandSpec
    from airflow_provider_volteras.lifecycle.vehicle import Lifecycle, Step
    from airflow_provider_volteras.lifecycle.watch import VehicleWait

#: Before deferring, a task watches its commands in the worker for this many seconds: most commands
#: end within seconds, and a trigger that fires right after a deferral meets a scheduler race.
WORKER_FIRST_SECONDS = 5.0
#: A trigger fires no event sooner than this many seconds after the deferral, for the same race.
TRIGGER_HOLD_SECONDS = 5.0

#: Default retry-policy delays, longest first: the kind a failure reports when its vehicles differ.
_DELAY_ORDER = (
    DelayKind.VEHICLE_OFFLINE.value,
    DelayKind.RATE_LIMITED.value,
    DelayKind.VEHICLE_BUSY.value,
    DelayKind.TRANSIENT.value,
)


class CommandTaskMixin(VolterasTaskMixin):
    """Needs, on the operator: ``volteras_conn_id``, ``deferrable``, ``wait_poll_interval``,
    ``wait_timeout``, ``if_in_progress``, ``retryable_reasons``, ``fatal_reasons``, ``log``, ``task_id``."""

    #: Task state store key and layout of this kind of task.
    state_key: ClassVar[str]
    single: ClassVar[bool]
    #: Creates (and in-worker status reads) in flight at once.
    concurrency: int = 1
    worker_first_seconds: float = WORKER_FIRST_SECONDS
    trigger_hold_seconds: float = TRIGGER_HOLD_SECONDS

    deferrable: bool
    wait_poll_interval: float
    wait_timeout: float
    if_in_progress: str
    retryable_reasons: Iterable[str]
    fatal_reasons: Iterable[str]
    log: Any

    # -- the parts ----------------------------------------------------------------------------------

    def judge(self, command: str, arguments: dict[str, Any] | None) -> Judge:
        return Judge(
            command=command,
            arguments=arguments,
            retryable_reasons=self.retryable_reasons,
            fatal_reasons=self.fatal_reasons,
        )

    def records(self, context: Context, command: str, arguments: dict[str, Any] | None, vehicles: list[str]) -> Records:
        """This task's record, read from the task state store."""
        try_number = getattr(context.get("ti"), "try_number", None)
        records = Records(
            task_state_store(context, self.log),
            self.log,
            key=self.state_key,
            command=command,
            arguments=arguments,
            single=self.single,
            label=vehicles[0] if self.single else f"{len(vehicles)} vehicles",
            try_number=try_number if isinstance(try_number, int) else None,
        )
        records.load()
        return records

    def lifecycle(self, records: Records, spec: CommandSpec, arguments: dict[str, Any] | None) -> Lifecycle:
        from airflow_provider_volteras.lifecycle.vehicle import Lifecycle

        return Lifecycle(
            self.hook,
            records,
            self.judge(spec.command.value, arguments),
            spec,
            self.log,
            if_in_progress=cast(Any, self.if_in_progress),
            task_id=getattr(self, "task_id", None),
            concurrency=self.concurrency,
        )

    # -- the flow -----------------------------------------------------------------------------------

    def on_prepared(self, context: Context, pending: dict[str, str]) -> None:
        """Called with ``{vehicle_id: execution_id}`` still to wait for, before any wait (a hook for subclasses)."""

    def run_commands(
        self,
        context: Context,
        vehicles: list[str],
        spec: CommandSpec,
        arguments: dict[str, Any] | None,
        *,
        wait: bool = True,
    ) -> list[Outcome] | list[Step]:
        """Prepare every vehicle, wait, and conclude (or defer). Without ``wait``, the prepared steps."""
        command = spec.command.value
        records = self.records(context, command, arguments, vehicles)
        attempt = attempt_of(context, getattr(self, "retries", None))
        if attempt is not None and attempt.number == attempt.first > 1:
            self.log.info(
                "Try %d follows a Clear of this task instance: an earlier try's command that FAILED is sent again "
                "(once); one that may still be in flight is re-attached to, one that EXECUTED is not sent again.",
                attempt.number,
            )
        lifecycle = self.lifecycle(records, spec, arguments)
        lifecycle.attempt = attempt
        steps = lifecycle.prepare(vehicles)
        if not wait:
            return steps
        settled: dict[str, Outcome] = {}
        pending: dict[str, str] = {}
        reattached: list[str] = []
        for step in steps:
            if step.outcome is not None:
                settled[step.vehicle_id] = {**step.outcome, "origin": step.origin}
            elif step.execution_id is not None:
                pending[step.vehicle_id] = step.execution_id
                if step.origin == "earlier try":
                    reattached.append(step.vehicle_id)
        if any(step.origin == "earlier try" for step in steps):
            kinds = [
                "still pending (re-attached)"
                if step.outcome is None
                else "EXECUTED"
                if step.outcome["classification"] == "executed"
                else "not sent again"
                for step in steps
                if step.origin == "earlier try"
            ]
            self.log.info(
                "An earlier try of this task handled %d of %d vehicle(s): %s.",
                len(kinds),
                len(steps),
                ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)),
            )
        self.on_prepared(context, pending)
        return self.watch_and_conclude(context, records, lifecycle.judge, vehicles, settled, pending, reattached)

    def watch_and_conclude(
        self,
        context: Context,
        records: Records,
        judge: Judge,
        vehicles: list[str],
        settled: dict[str, Outcome],
        pending: dict[str, str],
        reattached: list[str],
    ) -> list[Outcome]:
        from airflow_provider_volteras.lifecycle.watch import wait_in_worker

        command = judge.command
        started = time.time()
        deadline = started + self.wait_timeout
        waits: dict[str, VehicleWait] = {}
        if pending and self.deferrable:
            first = min(deadline, started + self.worker_first_seconds)
            if self.worker_first_seconds > 0:
                for vid, result in self._wait_here(pending, command, first, hand_over=first < deadline).items():
                    if result["status"] != "PENDING" or first >= deadline:
                        waits[vid] = result
            still = {vid: eid for vid, eid in pending.items() if vid not in waits}
            if still:
                # What ended in the worker is settled here: the resumed task knows only what the
                # deferral carries and what the record holds, never this try's waits.
                earlier = set(reattached)
                ended = {}
                for vid, result in waits.items():
                    outcome = judge.of_wait(result, time.time() - started)
                    outcome["origin"] = "earlier try" if vid in earlier else "sent"
                    ended[vid] = outcome
                self._defer(records, command, {**settled, **ended}, still, reattached, deadline)
        elif pending:
            self.log.info("%d %s execution(s) are not finished; waiting in the worker.", len(pending), command)
            waits = wait_in_worker(
                self.hook,
                pending,
                command=command,
                deadline=deadline,
                poll_interval=self.wait_poll_interval,
                log=self.log,
                concurrency=self.concurrency,
            )
        return self.conclude(context, records, judge, vehicles, settled, waits, reattached, time.time() - started)

    def _wait_here(
        self, pending: Mapping[str, str], command: str, until: float, *, hand_over: bool = False
    ) -> dict[str, VehicleWait]:
        from airflow_provider_volteras.lifecycle.watch import wait_in_worker

        return wait_in_worker(
            self.hook,
            pending,
            command=command,
            deadline=until,
            poll_interval=self.wait_poll_interval,
            log=self.log,
            concurrency=self.concurrency,
            hand_over=hand_over,
        )

    def _defer(
        self,
        records: Records,
        command: str,
        settled: dict[str, Outcome],
        pending: dict[str, str],
        reattached: list[str],
        deadline: float,
    ) -> None:
        from airflow_provider_volteras.triggers.fleet import FleetCommandTrigger

        # What is settled already is written down: the resumed task reads it back from the store.
        marks: dict[str, dict[str, Any] | None] = {
            vid: records.merge(vid, final=slim(o)) for vid, o in settled.items() if vid not in pending
        }
        marks |= {
            vid: records.merge(vid, id=pending[vid], final=None, reattached=True if vid in reattached else None)
            for vid in pending
        }
        records.try_update(marks, "the outcomes known before deferring")
        self.log.info(
            "%d %s execution(s) are not finished; deferring to the triggerer until %s.",
            len(pending),
            command,
            datetime.fromtimestamp(deadline, tz=UTC).isoformat(),
        )
        cast(Any, self).defer(
            trigger=FleetCommandTrigger(
                command=command,
                executions=pending,
                deadline=deadline,
                volteras_conn_id=self.volteras_conn_id,
                poll_interval=self.wait_poll_interval,
                hold_until=time.time() + self.trigger_hold_seconds if self.trigger_hold_seconds > 0 else None,
            ),
            method_name="execute_complete",
            kwargs={
                "settled": {vid: slim(o) for vid, o in settled.items()},
                "pending": pending,
                "reattached": reattached,
            },
        )

    def resume_from_event(
        self,
        context: Context,
        vehicles: list[str],
        spec: CommandSpec,
        arguments: dict[str, Any] | None,
        event: Any,
        settled: Mapping[str, Any] | None,
        pending: Mapping[str, str] | None,
        reattached: Iterable[str] | None,
    ) -> list[Outcome]:
        """After the trigger fired: every vehicle that was waited for must have an outcome from the event."""
        command = spec.command.value
        records = self.records(context, command, arguments, vehicles)
        judge = self.judge(command, arguments)
        if pending is None or settled is None:
            # ``dag.test()`` replaces the deferral's kwargs with the event: read them back from the record.
            settled, pending, reattached = {}, {}, []
            for vid in vehicles:
                entry = records.entry(vid) or {}
                final = entry.get("final")
                if isinstance(final, dict) and final.get("classification"):
                    settled[vid] = final
                elif isinstance(entry.get("id"), str):
                    pending[vid] = entry["id"]
                    if entry.get("reattached"):
                        reattached.append(vid)
        pending = dict(pending)
        payload = event if isinstance(event, dict) else {}
        waits: dict[str, VehicleWait] = {}
        if payload.get("status") == "done" and payload.get("command") == command:
            for result in payload.get("outcomes") or ():
                who = result.get("vehicle_id") if isinstance(result, dict) else None
                if (
                    isinstance(who, str)
                    and pending.get(who) == result.get("execution_id")
                    and result.get("command") in (None, command)
                ):
                    waits[who] = cast("VehicleWait", result)
        elif payload.get("status") == "error" and isinstance(payload.get("error"), dict):
            from airflow_provider_volteras.lifecycle.watch import error_result

            waits = {vid: error_result(vid, eid, payload["error"]) for vid, eid in pending.items()}
        for vid, eid in pending.items():
            if vid not in waits:  # an event that is not about this task's executions never counts as success
                error = unexpected_outcome(
                    vid,
                    command,
                    eid,
                    f"the trigger's event has no outcome for execution {eid} ({str(event)[:120]})",
                    reason="UNEXPECTED_ANSWER",
                )
                from airflow_provider_volteras.lifecycle.watch import error_result

                waits[vid] = error_result(vid, eid, error_payload(error))
        return self.conclude(
            context,
            records,
            judge,
            vehicles,
            {vid: cast(Outcome, dict(o)) for vid, o in settled.items()},
            waits,
            list(reattached or ()),
            self.wait_timeout,
        )

    # -- the end ------------------------------------------------------------------------------------

    def conclude(
        self,
        context: Context,
        records: Records,
        judge: Judge,
        vehicles: list[str],
        settled: Mapping[str, Outcome],
        waits: Mapping[str, VehicleWait],
        reattached: Iterable[str],
        waited: float,
    ) -> list[Outcome]:
        """Every vehicle's outcome, in order; recorded (so a retry neither re-reads nor re-sends what is
        final), with one asset event per execution that EXECUTED, never twice across tries."""
        from airflow_provider_volteras.assets import record_executed

        earlier = set(reattached)
        result: list[Outcome] = []
        changes: dict[str, dict[str, Any] | None] = {}
        for vid in vehicles:
            if vid in waits:
                outcome = judge.of_wait(waits[vid], waited)
                outcome["origin"] = "earlier try" if vid in earlier else "sent"
            elif vid in settled:
                outcome = cast(Outcome, dict(settled[vid]))
                outcome.setdefault("origin", None)
            else:
                error = unexpected_outcome(vid, judge.command, None, "no outcome", reason="NO_OUTCOME")
                outcome = {**failed(vid, error), "origin": None}
            entry = records.merge(vid, final=slim(outcome), id=outcome.get("execution_id"), reattached=None)
            eid = outcome.get("execution_id")
            if outcome["classification"] == "executed" and eid and entry.get("asset") != eid:
                execution = outcome.get("execution") or {"id": eid, "status": "EXECUTED"}
                if record_executed(context, vid, judge.command, {**execution, "status": "EXECUTED"}):
                    entry["asset"] = eid
            changes[vid] = entry
            result.append(outcome)
        if changes:
            records.try_update(changes, "the final outcomes")
        return result

    def task_failure(self, outcomes: list[Outcome], command: str) -> VolterasCommandError | None:
        """The one task failure for these outcomes (``None`` when none failed): a single vehicle's own
        failure, or a fleet's summary, fatal only when no vehicle's failure is retryable."""
        fatal = [o for o in outcomes if o["classification"] == "fatal"]
        retryable = [o for o in outcomes if o["classification"] == "retryable"]
        if not fatal and not retryable:
            return None
        if self.single:
            error = failure_of(outcomes[0], command)
            self._add_rate_limit_window(error)
            return error
        from airflow_provider_volteras.exceptions import VolterasRetryableCommandError

        executed = [o for o in outcomes if o["classification"] == "executed"]
        skipped_ = [o for o in outcomes if o["classification"] == "skipped"]
        summary = (
            f"Volteras fleet command {command}: {len(executed)} of {len(outcomes)} vehicle(s) EXECUTED, "
            f"{len(fatal)} failed fatally, {len(retryable)} failed retryably"
            + (f", {len(skipped_)} skipped" if skipped_ else "")
            + "."
        )
        if fatal:
            summary += f" Fatal (not re-sent on a retry): {_names(fatal)}."
        details = _details([*fatal, *retryable])
        if retryable:
            summary += f" Retryable: {_names(retryable)}."
            kinds = {o.get("delay_kind") or DelayKind.TRANSIENT.value for o in retryable}
            kind = next(k for k in (*_DELAY_ORDER, *kinds) if k in kinds)
            error = VolterasRetryableCommandError(
                summary + " Airflow will retry the task; the retry sends the command again only to the retryable "
                "vehicles and re-attaches to any still pending." + details,
                vehicle_id=_vehicles_label(retryable),
                command=command,
                reason=_common_reason(retryable),
                delay_kind=kind,
            )
            if kind == DelayKind.RATE_LIMITED.value:
                error.rate_limit_window_seconds = self._rate_limit_window(
                    next(o["vehicle_id"] for o in retryable if o.get("delay_kind") == kind)
                )
            return error
        return VolterasFatalCommandError(
            summary + " Airflow will NOT retry the task. To send again once the causes are fixed, Clear the task: "
            "the first try after a person's Clear sends one new command to each vehicle whose command FAILED, "
            "and nothing to the vehicles that EXECUTED." + details,
            vehicle_id=_vehicles_label(fatal),
            command=command,
            reason=_common_reason(fatal),
        )

    def _add_rate_limit_window(self, error: VolterasCommandError) -> None:
        if error.retryable and error.delay_kind == DelayKind.RATE_LIMITED.value:
            error.rate_limit_window_seconds = self._rate_limit_window(error.vehicle_id)

    def _rate_limit_window(self, vehicle_id: str) -> int | None:
        return rate_limit_window(self.hook, vehicle_id, self.log)

    def log_outcomes(self, outcomes: list[Outcome], command: str) -> None:
        """The outcome table, counts by outcome and by failed reason, and the vehicles to act on."""
        from airflow_provider_volteras.lifecycle.summary import summary_lines

        self.log.info("%s outcome per vehicle:\n%s", command, outcome_table(outcomes))
        for line in summary_lines(outcomes, command):
            self.log.info("%s", line)


class CommandTaskOperator(CommandTaskMixin, BaseOperator):
    """What the single-vehicle and the fleet command operators share: the parameters of a command and of
    its wait, checked when the DAG is parsed, and the resume after a deferral.

    :param command: A creatable ``VehicleCommandEnum`` value, e.g. ``"CLIMATE_OFF"`` (templated).
    :param arguments: The command's JSON arguments with the API's names (templated).
    :param volteras_conn_id: The Volteras connection.
    :param deferrable: Wait in the triggerer, freeing the worker slot (after a first few seconds in the
        worker, where most commands end). Default: ``[operators] default_deferrable``.
    :param poll_interval: Longest pause between two status checks, in seconds (polls start ~1 s apart).
    :param timeout: How long to wait for the command to end, in seconds or a ``timedelta``; a command
        still pending then is a retryable failure (the retry re-attaches to it).
    :param if_in_progress: On ``COMMAND_ALREADY_IN_PROGRESS``: ``"wait"`` adopts the pending execution
        when its arguments match, ``"fail"`` makes it a fatal failure, ``"skip"`` skips it.
    :param retryable_reasons: ``failedReason`` codes to treat as retryable.
    :param fatal_reasons: ``failedReason`` codes to treat as fatal (wins over ``retryable_reasons``).
    """

    template_fields_renderers = {"arguments": "json"}

    def __init__(
        self,
        *,
        command: str | VehicleCommand,
        arguments: dict[str, Any] | None = None,
        volteras_conn_id: str = "volteras_default",
        deferrable: bool | None = None,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_WAIT_TIMEOUT,
        if_in_progress: Literal["wait", "fail", "skip"] = "wait",
        retryable_reasons: Iterable[str] | str = (),
        fatal_reasons: Iterable[str] | str = (),
        **kwargs: Any,
    ) -> None:
        kwargs["outlets"] = with_executed_alias(kwargs.get("outlets"))
        super().__init__(**kwargs)
        self.command = command.value if isinstance(command, VehicleCommand) else command
        self.arguments = arguments
        self.volteras_conn_id = volteras_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.wait_poll_interval = seconds(poll_interval, "poll_interval", minimum=MIN_POLL_INTERVAL)
        self.wait_timeout = seconds(timeout, "timeout")
        self.if_in_progress = checked_if_in_progress(if_in_progress)
        self.retryable_reasons = reason_overrides(retryable_reasons, "retryable_reasons")
        self.fatal_reasons = reason_overrides(fatal_reasons, "fatal_reasons")

    def command_arguments(self) -> dict[str, Any] | None:
        """The JSON arguments to send (subclasses build them from typed parameters)."""
        return self.arguments

    @classmethod
    def fixed_command(cls, spec: CommandSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the command of a named operator (``ClimateOffOperator`` ...), which takes none."""
        if "command" in kwargs:
            raise TypeError(f"{cls.__name__} always sends {spec.command.value}; do not pass command=")
        return {**kwargs, "command": spec.command.value}

    def check_when_parsed(self) -> None:
        """Refuse at DAG-parse time what is already wrong; templated values are checked when the task runs."""
        check_static_command(self.command, self.command_arguments())

    def vehicles(self) -> list[str]:
        """The vehicles of this task, checked (``VolterasInvalidInputError`` otherwise)."""
        raise NotImplementedError

    def vehicles_label(self) -> str:
        """How a failure names this task's vehicles before they could be checked."""
        raise NotImplementedError

    def intent(self) -> tuple[list[str], CommandSpec, dict[str, Any] | None]:
        """The checked vehicles, command and arguments; bad input fails before any HTTP call."""
        try:
            vehicles = self.vehicles()
        except VolterasInvalidInputError as err:
            raise api_failure(err, vehicle_id=self.vehicles_label()[:80], command=str(self.command)[:80]) from err
        return (vehicles, *self.command_intent())

    def command_intent(self) -> tuple[CommandSpec, dict[str, Any] | None]:
        """The checked command and arguments (without the vehicles); bad input fails before any HTTP call."""
        command = str(self.command)
        try:
            spec = get_command_spec(command)
            arguments = build_payload(spec.command, self.command_arguments())
        except VolterasInvalidInputError as err:
            raise api_failure(err, vehicle_id=self.vehicles_label()[:80], command=command[:80]) from err
        return spec, arguments

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        settled: dict[str, dict[str, Any]] | None = None,
        pending: dict[str, str] | None = None,
        reattached: list[str] | None = None,
    ) -> Any:
        """Resume after the trigger fired: every vehicle waited for must have an outcome from this very event."""
        vehicles, spec, arguments = self.intent()
        outcomes = self.resume_from_event(context, vehicles, spec, arguments, event, settled, pending, reattached)
        return self.finish_task(context, outcomes, spec.command.value)

    def finish_task(self, context: Context, outcomes: list[Outcome], command: str) -> Any:
        """The task's return value for these outcomes, or its failure (see the subclasses)."""
        raise NotImplementedError


def _vehicles_label(outcomes: list[Outcome], limit: int = 20) -> str:
    """The failed vehicles' ids (a fleet failure names vehicles, never counts, in ``vehicle_id``)."""
    ids = [str(o["vehicle_id"]) for o in outcomes]
    return ",".join(ids[:limit]) + (f",+{len(ids) - limit} more" if len(ids) > limit else "")


def _names(outcomes: list[Outcome], limit: int = 20) -> str:
    shown = ", ".join(f"{o['vehicle_id']} ({o.get('reason') or o['status']})" for o in outcomes[:limit])
    return shown + (f" and {len(outcomes) - limit} more (see the table above)" if len(outcomes) > limit else "")


def _details(outcomes: list[Outcome], limit: int = 3) -> str:
    """The first failed vehicles' own messages (what happened, to which vehicle, what to do)."""
    shown = [str(dict(o.get("error") or {}).get("message") or "") for o in outcomes[:limit]]
    lines = [m for m in shown if m]
    more = (
        f"\n(and {len(outcomes) - limit} more failed vehicle(s); see the table in the log)"
        if len(outcomes) > limit
        else ""
    )
    return ("\n" + "\n".join(lines) + more) if lines else ""


def _common_reason(outcomes: list[Outcome]) -> str:
    reasons = {o.get("reason") for o in outcomes}
    return str(next(iter(reasons))) if len(reasons) == 1 else "MIXED"
