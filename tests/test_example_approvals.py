"""The approval example (``volteras_unlock_doors_approved``): who may answer, what a timeout does, and that
nothing is sent without another person's approval.

Answers go through the function behind Airflow's REST API ``PATCH .../hitlDetails`` (what the Required
Actions page calls), so the refusals asserted are the ones Airflow enforces (``assigned_users``). Under
``dag.test()`` the run's triggering user, the requester, is ``dag_test``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tests.example_loading import load_examples

pytestmark = pytest.mark.slow

DAG_ID = "volteras_unlock_doors_approved"
REQUESTER = "dag_test"  # dag.test()'s triggering user
PATIENCE = 120.0


@pytest.fixture(scope="module")
def example(airflow_db):
    return load_examples(airflow_db, [DAG_ID], prefix="approvals")[DAG_ID]


def users(*ids: str) -> list[dict[str, str]]:
    return [{"id": i, "name": i} for i in ids]


class Person(threading.Thread):
    """Answers the approval once it waits for input: each ``(user, choice)`` in turn through Airflow's REST
    API function until one is accepted; ``("bypass", user, choice)`` writes an answer straight to the
    database (as an auth manager that lets anyone answer would); ``("timeout",)`` runs the scheduler's
    sweep that applies the default answer once the deadline passed."""

    def __init__(self, steps: list[tuple[Any, ...]]) -> None:
        super().__init__(daemon=True, name="approver")
        self.steps = list(steps)
        self.results: list[str] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + PATIENCE
        while not self.done.wait(0.2):
            if time.monotonic() > deadline:
                self._fail_the_run()
                continue
            try:
                if self._waiting() is not None:
                    self._step() if self.steps else self._resume()
            except Exception as err:  # noqa: BLE001 - e.g. SQLite "database is locked": tried again
                self.errors.append(f"{type(err).__name__}: {err}")

    def _waiting(self, session: Any = None) -> Any:
        """The approval task instance while it waits for input (in ``session``, to change it there)."""
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        if session is None:
            with create_session() as own:
                return self._waiting(own)
        return session.scalar(
            select(TI).where(
                TI.dag_id == DAG_ID, TI.task_id == "approve_unlock", TI.state == TaskInstanceState.AWAITING_INPUT
            )
        )

    def _step(self) -> None:
        from airflow._shared.timezones import timezone
        from airflow.api_fastapi.app import create_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from airflow.models.hitl import HITLDetail
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session
        from fastapi import HTTPException
        from sqlalchemy import select

        step = self.steps[0]
        if step[0] == "timeout":
            SchedulerJobRunner.check_awaiting_input_timeouts(SimpleNamespace(log=logging.getLogger("test.hitl")))
            return  # again until the task no longer waits
        ti = self._waiting()
        if step[0] == "bypass":
            _, user, choice = step
            with create_session() as session:
                ti = self._waiting(session)
                detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti.id))
                detail.chosen_options, detail.params_input = [choice], {}
                detail.responded_by, detail.responded_at = {"id": user, "name": user}, timezone.utcnow()
                session.add(detail)
                handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
            self.results.append(f"{user}: written")
            self.steps.pop(0)
            return
        user, choice = step
        create_auth_manager()
        with create_session() as session:
            try:
                update_hitl_detail(
                    dag_id=DAG_ID,
                    dag_run_id=ti.run_id,
                    task_id="approve_unlock",
                    update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[choice]),
                    user=SimpleAuthManagerUser(username=user, role="admin"),
                    session=session,
                )
            except HTTPException as err:
                session.rollback()
                self.results.append(f"{user}: HTTP {err.status_code} {err.detail}")
                self.steps.pop(0)
                return
        self.results.append(f"{user}: accepted")
        self.steps.clear()

    def _resume(self) -> None:
        """Answered, yet found waiting again: ``dag.test()`` writes the state its in-process task reported,
        which can land after the answer. Resume it with the recorded answer, as Airflow's API did."""
        from airflow.models.hitl import HITLDetail
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            ti = self._waiting(session)
            detail = None if ti is None else session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti.id))
            if detail is not None and detail.responded_at is not None:
                handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)

    def _fail_the_run(self) -> None:
        """Out of patience: fail what is unfinished so dag.test() ends (the test then fails, saying why)."""
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from airflow.utils.state import State, TaskInstanceState
        from sqlalchemy import or_, update

        self.errors.append("out of patience")
        with create_session() as session:
            session.execute(
                update(TI)
                .where(TI.dag_id == DAG_ID, or_(TI.state.is_(None), TI.state.not_in(State.finished)))
                .values(state=TaskInstanceState.FAILED),
                execution_options={"synchronize_session": False},
            )


def _preload() -> None:
    """Import here what the person's thread uses: two threads importing Airflow's models at once deadlock."""
    import airflow.api_fastapi.auth.managers.simple.user
    import airflow.api_fastapi.core_api.routes.public.hitl
    import airflow.jobs.scheduler_job_runner
    import airflow.models.dagrun
    import airflow.models.hitl
    import airflow.models.trigger
    import airflow.triggers.base  # noqa: F401


def run_with(example, steps: list[tuple[Any, ...]], *, approvers: list[str], timeout: timedelta | None = None):
    """One run of the example with these approvers and these answers: (task states, what the person got,
    the stored request: assigned users, chosen options, who answered)."""
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session
    from sqlalchemy import select

    _preload()
    approve = example.task_dict["approve_unlock"]
    saved = (approve.assigned_users, approve.response_timeout)
    approve.assigned_users = users(*approvers)
    approve.response_timeout = timeout or saved[1]
    person = Person(steps)
    person.start()
    try:
        dr = example.test(run_conf={"vehicle_id": "sim-ok-demo-1", "reason": "delivery"})
    finally:
        person.done.set()
        approve.assigned_users, approve.response_timeout = saved
        person.join(30)
    assert "out of patience" not in person.errors, (person.results, sorted(set(person.errors)))
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    with create_session() as session:
        detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == tis["approve_unlock"].id))
        stored = (
            None
            if detail is None
            else {
                "assigned": [u["id"] for u in detail.assigned_users or []],
                "chosen": detail.chosen_options,
                "by": (detail.responded_by or {}).get("id"),
            }
        )
    return {t: str(ti.state) for t, ti in tis.items()}, person.results, stored


def test_the_example_names_its_approvers_and_takes_reject_on_timeout(example):
    approve = example.task_dict["approve_unlock"]
    assert approve.assigned_users == users("admin")  # VOLTERAS_UNLOCK_APPROVERS unset: admin only
    assert approve.defaults == ["Reject"] and approve.response_timeout == timedelta(hours=1)
    assert example.task_dict["unlock_doors"].upstream_task_ids == {"approve_unlock"}


def test_only_an_approver_other_than_the_requester_can_approve(sim, example):
    states, got, stored = run_with(
        example,
        [("mallory", "Approve"), (REQUESTER, "Approve"), ("admin", "Approve")],
        approvers=[REQUESTER, "admin"],
    )
    # Airflow refuses a user who is not assigned, and the requester, who was taken out of the list.
    assert got[0].startswith("mallory: HTTP 403") and "not a respondent" in got[0], got
    assert got[1].startswith(f"{REQUESTER}: HTTP 403"), got
    assert got[2] == "admin: accepted", got
    assert stored == {"assigned": ["admin"], "chosen": ["Approve"], "by": "admin"}
    assert states == {"approve_unlock": "success", "unlock_doors": "success"}
    assert sim.state.counters()["creates"] == {"sim-ok-demo-1": {"UNLOCK_DOORS": 1}}


def test_a_requester_who_is_the_only_approver_gets_no_approval(sim, example):
    states, _, stored = run_with(example, [], approvers=[REQUESTER])
    assert states == {"approve_unlock": "failed", "unlock_doors": "upstream_failed"}
    assert stored is None  # no request was made: no one could have answered it
    assert sim.state.counters()["creates"] == {}


def test_an_approval_by_the_requester_that_reaches_the_task_sends_nothing(sim, example):
    """An auth manager that lets the requester answer (e.g. user ids that are not the triggering user's
    name): the task itself refuses the self-approval."""
    states, got, stored = run_with(example, [("bypass", REQUESTER, "Approve")], approvers=[REQUESTER, "admin"])
    assert got == [f"{REQUESTER}: written"]
    assert stored == {"assigned": ["admin"], "chosen": ["Approve"], "by": REQUESTER}
    assert states == {"approve_unlock": "failed", "unlock_doors": "upstream_failed"}
    assert sim.state.counters()["creates"] == {}


def test_no_answer_by_the_deadline_is_a_reject_by_no_one(sim, example):
    states, _, stored = run_with(example, [("timeout",)], approvers=["admin"], timeout=timedelta(seconds=1))
    assert stored == {"assigned": ["admin"], "chosen": ["Reject"], "by": None}
    assert states == {"approve_unlock": "success", "unlock_doors": "skipped"}
    assert sim.state.counters()["creates"] == {}
