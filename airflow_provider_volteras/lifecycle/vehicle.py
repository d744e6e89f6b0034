"""One vehicle's command lifecycle: resume or adopt what an earlier try sent, or send, and remember it.

:meth:`Lifecycle.prepare` decides, for each vehicle, whether to wait for an execution (one an
earlier try sent, one adopted, or one just created) or whether its outcome is already known. It is
the only code that creates commands for an operator, so its rules hold for a single-vehicle task
and for every vehicle of a fleet alike:

* "create in flight" is recorded before the POST, and the issued id as soon as the API gives it;
* a retry re-attaches to a recorded execution while it may still be in flight, adopts what a lost
  create left behind, and sends again only when nothing of its own can be in flight;
* a person's Clear after a ``FAILED`` execution is a new intent: the first try after the Clear sends
  one new command (Airflow's own retries never do after a fatal ``FAILED``; see :mod:`.tries`);
* a 409 that follows an attempt that may have been applied is taken for our own command, never as
  "someone else's, send again";
* another sender's execution is never taken as ours (arguments must match, and only what did not
  exist before our create can be adopted);
* the cost of a create does not grow with the vehicle's history (only recent executions are listed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_volteras._core.basics import STATUS_EXECUTED, STATUS_FAILED, STATUS_PENDING
from airflow_provider_volteras._core.intent import arguments_match, describe_arguments, id_digest
from airflow_provider_volteras.exceptions import (
    VolterasCommandError,
    VolterasCommandInProgressError,
    VolterasError,
    VolterasFatalCommandError,
    VolterasNotFoundError,
    VolterasRetryableCommandError,
    VolterasTransportError,
    VolterasUnexpectedResponseError,
)
from airflow_provider_volteras.failures import DelayKind, already_final, api_failure, state_store_steps
from airflow_provider_volteras.lifecycle.outcomes import Judge, Outcome, executed, failed, failure_of, skipped

if TYPE_CHECKING:
    from airflow_provider_volteras.catalogue import CommandSpec
    from airflow_provider_volteras.hooks.volteras import VolterasHook
    from airflow_provider_volteras.lifecycle.records import Records
    from airflow_provider_volteras.lifecycle.tries import Attempt

IfInProgress = Literal["wait", "fail", "skip"]

#: A create that may have been applied (its answer was lost, then a 409 came) is not sent again
#: before this many seconds: long past the listing's read-after-write lag. Until then a retry looks
#: for it and waits.
SETTLE_SECONDS = 30.0


@dataclass
class Step:
    """What to do with one vehicle: ``wait`` for ``execution_id``, or its ``outcome`` is known."""

    vehicle_id: str
    execution_id: str | None = None
    outcome: Outcome | None = None
    origin: Literal["sent", "earlier try"] = "sent"
    #: The execution as last answered (the create answer, or a read), when there is one.
    execution: dict[str, Any] | None = None


class Lifecycle:
    """Record, resume or adopt, send: the steps before a wait, for any number of vehicles."""

    def __init__(
        self,
        hook: VolterasHook,
        records: Records,
        judge: Judge,
        spec: CommandSpec,
        log: Any,
        *,
        if_in_progress: IfInProgress = "wait",
        task_id: str | None = None,
        concurrency: int = 1,
        attempt: Attempt | None = None,
    ) -> None:
        self.hook = hook
        self.records = records
        self.judge = judge
        self.spec = spec
        self.command = spec.command.value
        self.arguments = judge.arguments
        self.log = log
        self.if_in_progress = if_in_progress
        self.task_id = task_id
        self.concurrency = max(1, concurrency)
        self.attempt = attempt

    # -- all vehicles -----------------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``fn`` over ``items``, ``concurrency`` at once, results in order. An exception that is not a
        vehicle's outcome (a bug, a lost supervisor) cancels what has not started and ends the try."""
        items = list(items)
        if len(items) <= 1 or self.concurrency == 1:
            yield from map(fn, items)
            return
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="volteras-command") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for future in futures:
                    yield future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def prepare(self, vehicles: list[str]) -> list[Step]:
        """One step per vehicle, in order: re-attach, adopt or send, and record each before it matters."""
        steps = list(self.map(self.prepare_one, vehicles))
        # A Clear is used up by the first try after it that decides: one that re-attached says so in the
        # record, so a retry of it, finding the same execution FAILED later, does not take it for a new intent.
        stale = [
            s.vehicle_id
            for s in steps
            if s.outcome is None and self.attempt is not None and self.cleared(self.records.entry(s.vehicle_id))
        ]
        if stale:
            self.records.try_update({vid: self.records.merge(vid) for vid in stale}, "that this try re-attached")
        return steps

    def cleared(self, entry: dict[str, Any] | None) -> bool:
        """True when a person cleared this task instance after ``entry`` was written (see :mod:`.tries`)."""
        return self.attempt is not None and self.attempt.cleared_since(entry)

    def prepare_one(self, vehicle_id: str) -> Step:
        entry = self.records.entry(vehicle_id)
        if entry is not None:
            step = self._resume(vehicle_id, entry, cleared=self.cleared(entry))
            if step is not None:
                step.origin = "earlier try"
                return step
        return self._send(vehicle_id)

    # -- an earlier try's record ------------------------------------------------------------------

    def _resume(self, vehicle_id: str, entry: dict[str, Any], *, cleared: bool = False) -> Step | None:
        """The step for what an earlier try recorded; ``None`` when the command must be sent (again).

        ``cleared``: a person cleared the task instance after the entry was written. Then a ``FAILED``
        execution (fatal or not) is sent again once, and a final outcome other than ``EXECUTED`` is looked
        at afresh; what may still be in flight is re-attached to all the same."""
        final = entry.get("final") if isinstance(entry.get("final"), dict) else None
        execution_id = entry.get("id") if isinstance(entry.get("id"), str) and entry.get("id") else None
        if final is not None:
            kind = final.get("classification")
            if kind == "executed" or (kind == "skipped" and not cleared):
                return Step(vehicle_id, outcome=dict(final))  # type: ignore[arg-type]
            if kind == "skipped":
                self.log.info(
                    "This task was cleared after an earlier try skipped %s on vehicle %s; trying again.",
                    self.command,
                    vehicle_id,
                )
                return None
            if final.get("status") == STATUS_FAILED and (cleared or kind != "fatal"):
                if cleared:
                    self._say_cleared(vehicle_id, final.get("execution_id"), final.get("reason"))
                return None  # failed for a retryable reason, or a person cleared the task: send again
            if kind == "fatal" and final.get("execution_id") and not cleared:
                # A fatal answer is final for this task instance: never re-sent on our own (a task can run
                # again without a person, e.g. when the scheduler mislabels a deferral as a failure).
                error = failure_of(final, self.command)
                if final.get("status") == STATUS_FAILED:
                    error = already_final(error, task_id=self.task_id)
                return Step(vehicle_id, outcome=failed(vehicle_id, error, str(final.get("status") or "UNKNOWN")))
        if execution_id is None:
            if isinstance(entry.get("in_flight"), dict):
                return self._adopt_in_flight(vehicle_id, entry["in_flight"], cleared=cleared)
            return None  # nothing was created
        try:
            execution = self._read_recorded(vehicle_id, execution_id)
        except VolterasError as err:
            return self._error(vehicle_id, err, execution_id, sent=True)
        if execution is None:
            return None
        return self._follow(vehicle_id, execution, cleared=cleared)

    def _say_cleared(self, vehicle_id: str, execution_id: Any, reason: Any) -> None:
        self.log.info(
            "%s execution %s on vehicle %s FAILED (%s) before this task was cleared: a person's Clear is a new "
            "intent, so this try sends one new command.",
            self.command,
            execution_id,
            vehicle_id,
            reason,
        )

    def _read_recorded(self, vehicle_id: str, execution_id: str) -> dict[str, Any] | None:
        """The recorded execution. A 404 for an id the API issued is confirmed through the listing
        before anything is sent again (a read-after-write lag or a passing glitch must not duplicate)."""
        try:
            return self.hook.get_command_execution(vehicle_id, execution_id, command=self.command)
        except VolterasNotFoundError:
            pass
        listed = self.hook.find_listed_execution(vehicle_id, execution_id, self.command)
        if listed is not None:
            self.log.warning(
                "Execution %s from an earlier try answered 404 but is listed (%s); re-attaching to it.",
                execution_id,
                listed.get("status"),
            )
            return listed
        self.log.warning(
            "Execution %s from an earlier try is neither readable (404) nor listed; sending a new command.",
            execution_id,
        )
        return None

    def _follow(self, vehicle_id: str, execution: dict[str, Any], *, cleared: bool = False) -> Step | None:
        """Re-attach to an earlier try's execution: wait while pending, report what is final, re-send a
        retryable FAILED (and any FAILED after a person's Clear)."""
        execution_id = str(execution["id"])
        status = execution.get("status")
        if status not in (STATUS_EXECUTED, STATUS_FAILED):
            self.log.info(
                "Re-attaching to %s execution %s on vehicle %s from an earlier try (still %s); "
                "not sending the command again.",
                self.command,
                execution_id,
                vehicle_id,
                status or "unknown",
            )
            return Step(vehicle_id, execution_id=execution_id, execution=execution)
        outcome = self.judge.of_execution(vehicle_id, execution)
        if outcome["classification"] == "executed":
            self.log.info(
                "%s execution %s on vehicle %s from an earlier try already EXECUTED; not sending again.",
                self.command,
                execution_id,
                vehicle_id,
            )
            return Step(vehicle_id, outcome=outcome)
        if cleared and status == STATUS_FAILED:
            self._say_cleared(vehicle_id, execution_id, outcome["reason"])
            return None
        if outcome["classification"] == "retryable" and status == STATUS_FAILED:
            self.log.info(
                "Execution %s from an earlier try FAILED (%s, retryable); sending the command again.",
                execution_id,
                outcome["reason"],
            )
            return None
        if status == STATUS_FAILED:
            error = already_final(failure_of(outcome, self.command), task_id=self.task_id)
            return Step(vehicle_id, outcome=failed(vehicle_id, error, STATUS_FAILED))
        return Step(vehicle_id, outcome=outcome)

    def _adopt_in_flight(self, vehicle_id: str, flight: dict[str, Any], *, cleared: bool = False) -> Step | None:
        """An earlier try started a create and never learnt its outcome: adopt what appeared since, if anything."""
        before = set(flight.get("before") or ())
        since = flight.get("since") if isinstance(flight.get("since"), (int, float)) else None
        try:
            found = self.hook.find_new_execution(
                vehicle_id, self.command, self.arguments, lambda i: id_digest(i) in before, since=since
            )
        except VolterasError as err:
            return self._error(vehicle_id, err, None, sent=True)
        if found is not None:
            self.log.warning(
                "An earlier try's create of %s on vehicle %s got no answer, but execution %s (%s) appeared since; "
                "adopting it instead of sending the command again.",
                self.command,
                vehicle_id,
                found["id"],
                found.get("status"),
            )
            self.records.try_update({vehicle_id: {"id": found["id"]}}, "the execution id")
            return self._follow(vehicle_id, found, cleared=cleared)
        young = since is not None and time.time() - since < SETTLE_SECONDS
        if flight.get("applied") or (flight.get("maybe_applied") and young):
            return Step(vehicle_id, outcome=self._outcome_unknown(vehicle_id, bool(flight.get("applied"))))
        self.log.warning(
            "An earlier try's create of %s on vehicle %s got no answer and nothing appeared since; sending it.",
            self.command,
            vehicle_id,
        )
        return None

    def _outcome_unknown(self, vehicle_id: str, applied: bool) -> Outcome:
        cause = (
            "a create was answered with success, but the answer could not be read"
            if applied
            else "a create's answer was lost and the API then said a command was already in progress"
        )
        error = VolterasRetryableCommandError(
            f"Volteras command {self.command} on vehicle {vehicle_id}: {cause}, and the execution is not listed "
            "yet. Not sending it again; Airflow will retry the task and look for it again. To send a new command "
            f"instead: {self._forget_steps(vehicle_id)}",
            vehicle_id=vehicle_id,
            command=self.command,
            reason="CREATE_OUTCOME_UNKNOWN",
            delay_kind=DelayKind.TRANSIENT.value,
        )
        return failed(vehicle_id, error, "UNKNOWN")

    def _forget_steps(self, vehicle_id: str) -> str:
        """How a person makes this task forget a create whose outcome is unknown (a Clear re-adopts it)."""
        if not self.records.single:
            return (
                f"start a new DAG run for vehicle {vehicle_id} (this task's record also holds its other vehicles' "
                "commands, which must not be sent again)."
            )
        return state_store_steps(self.task_id, map_index=self.attempt.map_index if self.attempt else None)

    def _error(self, vehicle_id: str, err: Exception, execution_id: str | None, *, sent: bool) -> Step:
        failure = api_failure(err, vehicle_id=vehicle_id, command=self.command, execution_id=execution_id, sent=sent)
        return Step(vehicle_id, outcome=failed(vehicle_id, failure, "UNKNOWN" if sent else "NOT_SENT"))

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, vehicle_id: str) -> Step:
        """Send the command. "Create in flight" is recorded before the POST and the id as soon as it is
        issued, so whatever stops this try (a timeout, a killed worker, an unreadable answer), the next
        try adopts or re-attaches instead of sending again."""
        hook, command = self.hook, self.command
        try:
            before = hook.recent_execution_ids(vehicle_id, command)
        except VolterasError as err:
            return self._error(vehicle_id, err, None, sent=False)
        flight: dict[str, Any] = {"since": time.time(), "before": sorted({id_digest(i) for i in before})}
        try:
            self.records.update({vehicle_id: {"in_flight": flight}})
        except Exception as err:  # noqa: BLE001 - never send without a record
            error = VolterasRetryableCommandError(
                f"Volteras command {command} on vehicle {vehicle_id} was NOT sent: the task state store could not "
                f"record it ({type(err).__name__}: {str(err)[:200]}), and sending without a record could send it "
                "twice on a retry. Airflow will retry the task.",
                vehicle_id=vehicle_id,
                command=command,
                reason="STATE_STORE_ERROR",
            )
            return Step(vehicle_id, outcome=failed(vehicle_id, error, "NOT_SENT"))
        try:
            execution = hook.create_command_execution(
                vehicle_id,
                self.spec.command,
                self.arguments,
                before=before,
                on_issued=lambda eid: self.records.try_update({vehicle_id: {"id": eid}}, "the execution id"),
            )
        except VolterasCommandInProgressError as err:
            if err.maybe_ours:
                # An earlier attempt of this very call may have been applied, and the listing does not show
                # it yet: the pending command is probably ours. Never "someone else's, send again".
                self.records.try_update(
                    {vehicle_id: {"in_flight": {**flight, "maybe_applied": True}}}, "the create's unknown outcome"
                )
                return Step(vehicle_id, outcome=self._outcome_unknown(vehicle_id, applied=False))
            return self._in_progress(vehicle_id, err)
        except VolterasUnexpectedResponseError as err:
            if err.execution_id is not None:
                # The API issued an id but the rest of its answer cannot be believed: follow the id (the
                # outcome is judged on what the API says of it when the wait ends).
                self.log.warning(
                    "The answer to %s on vehicle %s cannot be believed (%s); following execution %s.",
                    command,
                    vehicle_id,
                    err.api_message,
                    err.execution_id,
                )
                return Step(vehicle_id, execution_id=err.execution_id)
            if err.create_applied:
                self.records.try_update(
                    {vehicle_id: {"in_flight": {**flight, "applied": True}}}, "the create's unreadable success"
                )
            return self._error(vehicle_id, err, None, sent=err.create_applied)
        except VolterasTransportError as err:
            if err.maybe_sent:
                self.records.try_update(
                    {vehicle_id: {"in_flight": {**flight, "maybe_applied": True}}}, "the create's unknown outcome"
                )
            else:
                self.records.try_update({vehicle_id: None}, "that nothing was sent")
            return self._error(vehicle_id, err, None, sent=err.maybe_sent)
        except VolterasError as err:
            # Anything else is an answer that says the command was not applied (a refusal, a server error
            # after which nothing of ours was listed); the in-flight record still lets a retry look again.
            return self._error(vehicle_id, err, None, sent=False)
        self.log.info(
            "Sent %s to vehicle %s: execution %s is %s.", command, vehicle_id, execution["id"], execution.get("status")
        )
        if execution.get("status") in (STATUS_EXECUTED, STATUS_FAILED):
            outcome = self.judge.of_execution(vehicle_id, execution)
            return Step(vehicle_id, outcome=outcome, execution_id=str(execution["id"]), execution=execution)
        return Step(vehicle_id, execution_id=str(execution["id"]), execution=execution)

    def _in_progress(self, vehicle_id: str, err: VolterasCommandInProgressError) -> Step:
        """``COMMAND_ALREADY_IN_PROGRESS`` for a create that certainly was not ours."""
        command = self.command
        self.records.try_update({vehicle_id: None}, "that nothing was created")
        what = f"A {command} command is already pending on vehicle {vehicle_id} (requestId {err.request_id})"
        if self.if_in_progress == "skip":
            return Step(vehicle_id, outcome=skipped(vehicle_id, "COMMAND_ALREADY_IN_PROGRESS", what))
        if self.if_in_progress == "fail":
            error: VolterasCommandError = VolterasFatalCommandError(
                f"{what}; if_in_progress='fail', so this task fails. Airflow will NOT retry the task.",
                vehicle_id=vehicle_id,
                command=command,
                reason="COMMAND_ALREADY_IN_PROGRESS",
            )
            return Step(vehicle_id, outcome=failed(vehicle_id, error, "NOT_SENT"))
        try:
            pending = self.hook.find_pending_execution(vehicle_id, self.spec.command)
        except VolterasError as lookup:
            return self._error(vehicle_id, lookup, None, sent=False)
        if pending is None or not arguments_match(self.arguments, pending.get("commandArguments")):
            detail = (
                f"{what}, but it was no longer pending when looked up, so its outcome is unknown to this task"
                if pending is None
                else f"{what}: execution {pending['id']} of another sender, with "
                f"{describe_arguments(pending.get('commandArguments'))}, but this task asks for "
                f"{describe_arguments(self.arguments)}. It is not adopted"
            )
            # The other sender's execution id is named in the message only: it is never recorded as ours.
            error = VolterasRetryableCommandError(
                f"{detail}. Airflow will retry the task; the platform ends a pending command within 5 minutes.",
                vehicle_id=vehicle_id,
                command=command,
                reason="COMMAND_ALREADY_IN_PROGRESS",
                delay_kind=DelayKind.VEHICLE_BUSY.value,
            )
            return Step(vehicle_id, outcome=failed(vehicle_id, error, "NOT_SENT"))
        self.log.warning(
            "%s: execution %s has the same arguments; adopting it and waiting for it instead of sending another.",
            what,
            pending["id"],
        )
        self.records.try_update({vehicle_id: {"id": pending["id"]}}, "the execution id")
        if pending.get("status") != STATUS_PENDING:
            return Step(vehicle_id, outcome=self.judge.of_execution(vehicle_id, pending))
        return Step(vehicle_id, execution_id=str(pending["id"]), execution=pending)


__all__ = ["SETTLE_SECONDS", "IfInProgress", "Lifecycle", "Step", "executed"]
