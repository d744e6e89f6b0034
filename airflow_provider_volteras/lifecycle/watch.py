"""The one watch routine: wait for executions to end, in a trigger or in the worker.

``watch_one`` follows one execution on the adaptive poll schedule of
:func:`~airflow_provider_volteras._core.waiting.watch_flow` until it is terminal or the deadline
passes (then one short last read, so a command that EXECUTED is never reported as a timeout).
``watch_executions`` runs it for many executions at once and turns each end into a
:class:`VehicleWait`. Both take a ``read(vehicle_id, execution_id, until)`` coroutine: the triggers
pass one over the shared aiohttp client (:func:`async_reader`), the in-worker waits one over the
synchronous hook run in threads (:func:`wait_in_worker`). Every read is cut at ``until``, the wait's
deadline, whatever the server or the retry policy does.

With webhooks on for the connection (``docs/webhooks.md``), a ``wake`` is a second source: the wait subscribes
to its execution on the webhook bus, a ``command.updated`` webhook wakes it, and it then reads the execution
once from the API and decides on that answer, never on the webhook. While webhooks flow the poll schedule
stretches to the connection's ``webhook_safety_poll``; when none is seen for a while (or the bus is down) it
is the normal schedule again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from airflow_provider_volteras._core.basics import is_terminal
from airflow_provider_volteras._core.events import WaitError, error_payload
from airflow_provider_volteras._core.waiting import FINAL_READ_GRACE, WaitPlan, watch_flow
from airflow_provider_volteras._core.wire import adrive
from airflow_provider_volteras.exceptions import VolterasError, VolterasTransportError

if TYPE_CHECKING:
    from airflow_provider_volteras.hooks.volteras import VolterasHook
    from airflow_provider_volteras.webhooks.bus import Listener, WebhookWake

#: ``status`` of one wait: the API's terminal statuses, ``PENDING`` when the deadline came first
#: (``status_read`` says whether any read succeeded) and ``ERROR`` when an error ended the wait.
VehicleWaitStatus = Literal["EXECUTED", "FAILED", "PENDING", "ERROR"]

#: ``read(vehicle_id, execution_id, until)``: the execution, or the error that read met (never raised).
Read = Callable[[str, str, float], Awaitable["dict[str, Any] | VolterasError"]]


class VehicleWait(TypedDict, total=False):
    """How the wait for one execution ended (JSON-serializable; a trigger event carries a list of them)."""

    vehicle_id: str
    execution_id: str
    status: VehicleWaitStatus
    failed_reason: str | None
    executed_at: str | None
    command: str | None
    #: ``commandArguments`` of the last read, when that read had them (``has_arguments``).
    arguments: Any
    has_arguments: bool
    status_read: bool
    error: WaitError | None


def wait_result(
    vehicle_id: str, execution_id: str, final: Mapping[str, Any] | None, last: Mapping[str, Any] | None
) -> VehicleWait:
    """The end of a wait: ``final`` is the terminal execution, or ``None`` when the deadline came first."""
    seen = final if final is not None else last
    result: VehicleWait = {
        "vehicle_id": vehicle_id,
        "execution_id": execution_id,
        "status": final["status"] if final is not None else "PENDING",
        "failed_reason": final.get("failedReason") if final is not None else None,
        "executed_at": final.get("executedAt") if final is not None else None,
        "command": seen.get("command") if seen is not None else None,
        "has_arguments": seen is not None and "commandArguments" in seen,
        "arguments": seen.get("commandArguments") if seen is not None else None,
        "status_read": seen is not None,
    }
    return result


def error_result(vehicle_id: str, execution_id: str, error: WaitError) -> VehicleWait:
    return {
        "vehicle_id": vehicle_id,
        "execution_id": execution_id,
        "status": "ERROR",
        "failed_reason": None,
        "executed_at": None,
        "command": None,
        "has_arguments": False,
        "arguments": None,
        "status_read": False,
        "error": error,
    }


def execution_of(wait: Mapping[str, Any]) -> dict[str, Any]:
    """The execution a wait ended on, in the API's shape (what a single command task returns)."""
    execution: dict[str, Any] = {
        "id": wait.get("execution_id"),
        "vehicleId": wait.get("vehicle_id"),
        "command": wait.get("command"),
        "status": wait.get("status"),
        "executedAt": wait.get("executed_at"),
        "failedReason": wait.get("failed_reason"),
    }
    if wait.get("has_arguments"):
        execution["commandArguments"] = wait.get("arguments")
    return execution


async def watch_one(
    read: Read,
    vehicle_id: str,
    execution_id: str,
    *,
    deadline: float,
    poll_interval: float,
    log: Any,
    what: str,
    poll_now: bool = True,
    jitter: float = 0.0,
    final_grace: float = FINAL_READ_GRACE,
    wake: WebhookWake | None = None,
    hand_over: bool = False,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(terminal execution or None at the deadline, last execution read)``; raises what ends the wait.

    ``wake``: the connection's webhook bus, when webhooks are on: a pause between two reads ends early
    when the execution's webhook comes, and stretches while webhooks flow (see the module's doc).

    ``hand_over``: a trigger takes the wait over at ``deadline`` (a task's first seconds in the worker).
    While webhooks flow, the last read at the deadline is then left out: the trigger subscribes and reads
    the execution's key before it pauses, so an end announced meanwhile wakes it at once, and it reads the
    execution itself before deciding. (Polling, the last read stays: it may spare the deferral.)
    """
    plan = WaitPlan(deadline=deadline, poll_interval=poll_interval, jitter=jitter)
    if poll_now:
        plan.poll_now()
    last: dict[str, Any] | None = None
    listener: Listener | None = None

    async def poll(pause: float) -> dict[str, Any] | VolterasError:
        nonlocal last
        if listener is None:
            await asyncio.sleep(pause)
        else:
            await listener.pause(pause, plan.deadline)
        if time.time() >= plan.deadline - DEADLINE_SLACK:
            raise _DeadlineReached  # not a read cut short (and no "polling failed" warning): the deadline came
        outcome = await read(vehicle_id, execution_id, plan.deadline)
        if isinstance(outcome, dict):
            last = outcome
        if listener is not None:
            await listener.after_read(outcome)
        return outcome

    last_read = True
    if wake is None:
        final = await _until_deadline(adrive(watch_flow(plan, log, what), poll))
    else:
        async with wake.watch(execution_id, what) as listener:  # subscribed (and its key read) before any pause
            final = await _until_deadline(adrive(watch_flow(plan, log, what), poll))
            last_read = not (hand_over and listener.mode() == "webhooks")
    if final is None and last_read:
        # The deadline passed (perhaps before the wait even started): one last, short read.
        outcome = await read(vehicle_id, execution_id, time.time() + final_grace)
        if isinstance(outcome, dict):
            last = outcome
            if is_terminal(outcome):
                final = outcome
    return final, last


#: A pause that ends this close to the wait's deadline is the end of the wait: no read is started then.
DEADLINE_SLACK = 0.05


class _DeadlineReached(Exception):
    """A pause of the watch ended at the wait's deadline: no read then (the last one follows)."""


async def _until_deadline(flow: Awaitable[dict[str, Any] | None]) -> dict[str, Any] | None:
    try:
        return await flow
    except _DeadlineReached:
        return None


async def watch_executions(
    read: Read,
    executions: Mapping[str, str],
    *,
    command: str | None,
    deadline: float,
    poll_interval: float,
    log: Any,
    poll_now: bool = True,
    jitter: float = 0.1,
    final_grace: float = FINAL_READ_GRACE,
    wake: WebhookWake | None = None,
    hand_over: bool = False,
) -> dict[str, VehicleWait]:
    """Wait for every ``{vehicle_id: execution_id}`` at once; one :class:`VehicleWait` per vehicle."""
    from airflow_provider_volteras.failures import api_failure

    label = command or "command"

    async def one(vehicle_id: str, execution_id: str) -> VehicleWait:
        try:
            final, last = await watch_one(
                read,
                vehicle_id,
                execution_id,
                deadline=deadline,
                poll_interval=poll_interval,
                log=log,
                what=f"{label} execution {execution_id} on vehicle {vehicle_id}",
                poll_now=poll_now,
                jitter=jitter,
                final_grace=final_grace,
                wake=wake,
                hand_over=hand_over,
            )
        except VolterasError as err:
            failure = api_failure(err, vehicle_id=vehicle_id, command=label, execution_id=execution_id, sent=True)
            return error_result(vehicle_id, execution_id, error_payload(failure))
        return wait_result(vehicle_id, execution_id, final, last)

    ended = await asyncio.gather(*(one(v, e) for v, e in executions.items()))
    return {w["vehicle_id"]: w for w in ended}


async def hold(until: float | None) -> None:
    """Fire no event before ``until`` (epoch seconds; at most a minute from now): see ``hold_until``."""
    if until is not None:
        await asyncio.sleep(max(0.0, min(until - time.time(), 60.0)))


@contextlib.asynccontextmanager
async def webhook_wake(settings: Any, log: Any) -> AsyncIterator[WebhookWake | None]:
    """The connection's webhook wake for this event loop, or ``None`` when webhooks are off (the bus module,
    and with it redis, is imported only when they are on)."""
    if not getattr(settings, "webhooks", False):
        yield None
        return
    from airflow_provider_volteras.webhooks.bus import webhook_wake as bus_wake

    async with bus_wake(settings, log) as wake:
        yield wake


def cut_at(what: str) -> VolterasTransportError:
    return VolterasTransportError(f"reading {what} did not end by the wait's deadline", maybe_sent=True)


def async_reader(client: Any, command: str | None) -> Read:
    """``read`` over the triggers' shared aiohttp client, each read cut at ``until``."""

    async def read(vehicle_id: str, execution_id: str, until: float) -> dict[str, Any] | VolterasError:
        try:
            async with asyncio.timeout(max(0.0, until - time.time())):
                result: dict[str, Any] = await client.get_command_execution(vehicle_id, execution_id, command=command)
                return result
        except VolterasError as err:
            return err
        except TimeoutError:
            return cut_at(f"execution {execution_id}")

    return read


def thread_reader(hook: VolterasHook, command: str | None, concurrency: int) -> Read:
    """``read`` over the synchronous hook, in threads, at most ``concurrency`` at once; each read (its
    retries and ``Retry-After`` pauses included) ends by ``until`` through the hook's wait deadline."""
    gate = asyncio.Semaphore(max(1, concurrency))

    def blocking(vehicle_id: str, execution_id: str, until: float) -> dict[str, Any] | VolterasError:
        with hook.deadline(until):
            try:
                return hook.get_command_execution(vehicle_id, execution_id, command=command)
            except VolterasError as err:
                return err

    async def read(vehicle_id: str, execution_id: str, until: float) -> dict[str, Any] | VolterasError:
        if time.time() >= until:
            return cut_at(f"execution {execution_id}")
        async with gate:
            return await asyncio.to_thread(blocking, vehicle_id, execution_id, until)

    return read


def wait_in_worker(
    hook: VolterasHook,
    executions: Mapping[str, str],
    *,
    command: str | None,
    deadline: float,
    poll_interval: float,
    log: Any,
    concurrency: int = 8,
    poll_now: bool = False,
    hand_over: bool = False,
) -> dict[str, VehicleWait]:
    """The in-worker wait: :func:`watch_executions` run to its end in this thread, over the sync hook
    (``hand_over``: a trigger takes over at ``deadline``, see :func:`watch_one`)."""
    from airflow_provider_volteras._core.waiting import final_read_grace

    async def main() -> dict[str, VehicleWait]:
        async with webhook_wake(hook.settings, log) as wake:
            return await watch_executions(
                thread_reader(hook, command, concurrency),
                executions,
                command=command,
                deadline=deadline,
                poll_interval=poll_interval,
                log=log,
                poll_now=poll_now,
                jitter=0.0,
                final_grace=final_read_grace(hook.settings),
                wake=wake,
                hand_over=hand_over,
            )

    return asyncio.run(main())


__all__ = [
    "Read",
    "VehicleWait",
    "VehicleWaitStatus",
    "async_reader",
    "error_result",
    "execution_of",
    "hold",
    "thread_reader",
    "wait_in_worker",
    "wait_result",
    "watch_executions",
    "watch_one",
    "webhook_wake",
]
