"""Unlock a vehicle's doors only after another person approved it in Airflow.

Unlocking a car is sensitive, so a person decides first: `approve_unlock` is Airflow's
human-in-the-loop `ApprovalOperator`. Trigger the DAG, then an approver opens **Required Actions** in the
UI (or the `approve_unlock` task instance) and chooses **Approve** or **Reject**.

**Who can approve.** Only the users listed in `APPROVERS` (Airflow user ids; set
`VOLTERAS_UNLOCK_APPROVERS=alice,bob` where DAGs are parsed; default `admin`), and never the person who
asked: the run's triggering user is taken out of the list for their own request. Airflow enforces the
list (`assigned_users`): anyone else gets "not a respondent for the task" (HTTP 403). When the requester
is the only approver, `approve_unlock` fails at once and nothing is sent.

* **Approve**: `unlock_doors` sends UNLOCK_DOORS and succeeds only when the car executed it.
* **Reject**: `unlock_doors` is skipped; nothing is sent.
* **No answer within an hour**: Airflow takes the default answer, Reject (`approve_unlock` is green,
  answered by no one); `unlock_doors` is skipped and nothing is sent. Trigger a new run to ask again.

**Where each task waits.** `approve_unlock` holds no worker slot while it waits for the person: on
Airflow 3.3 the task waits for input and the scheduler applies the timeout; on 3.1 and 3.2 it defers to
the triggerer. `unlock_doors` follows `[operators] default_deferrable`, which Airflow ships `False`: it
waits **in the worker** for the seconds an unlock takes (up to its timeout for a car that does not
answer), or in the triggerer when that setting is True.

docs/approvals.md has the details. Simulator test ids: `sim-ok-demo-1` (executed),
`sim-fail-OEM_OAUTH_TOKEN_EXPIRED` (fails, fatal).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param

from airflow_provider_volteras.operators.commands import UnlockDoorsOperator

#: Airflow user ids that may approve an unlock (with Airflow's simple auth manager: the user names).
APPROVERS = [u.strip() for u in os.environ.get("VOLTERAS_UNLOCK_APPROVERS", "admin").split(",") if u.strip()]


def _is(user: Any, name: str | None) -> bool:
    """Whether an Airflow user (``{"id": ..., "name": ...}``) is the one named ``name``."""
    return bool(name) and isinstance(user, dict) and name in (user.get("id"), user.get("name"))


class ApprovalByOthersOperator(ApprovalOperator):
    """An approval only the listed approvers can give, and never the person who asked for it.

    The run's triggering user is taken out of ``assigned_users`` when the task runs, so Airflow refuses
    their answer. Should an approval by the requester reach the task anyway (an auth manager whose user
    ids are not the name Airflow records as the run's triggering user), the task fails: nothing is sent.
    """

    def __init__(self, *, approvers: list[str], **kwargs: Any) -> None:
        super().__init__(assigned_users=[{"id": user, "name": user} for user in approvers], **kwargs)

    def execute(self, context: Any) -> Any:
        requester = context["dag_run"].triggering_user_name
        others = [user for user in self.assigned_users or [] if not _is(user, requester)]
        if not others:
            raise AirflowFailException(
                f"No one may approve this request: the approvers are {[u['id'] for u in self.assigned_users or []]} "
                f"and {requester} asked for it. Add another approver (VOLTERAS_UNLOCK_APPROVERS) or let "
                "another approver trigger the run. Nothing was sent."
            )
        self.assigned_users = others
        self.log.info(
            "Approvers of this request: %s (%s asked for it and may not approve it).",
            ", ".join(user["id"] for user in others),
            requester or "no user",
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        requester = context["dag_run"].triggering_user_name
        if self.APPROVE in (event.get("chosen_options") or []) and _is(event.get("responded_by_user"), requester):
            raise AirflowFailException(
                f"{requester} approved their own request, which is not accepted. Nothing was sent."
            )
        return super().execute_complete(context=context, event=event)


with DAG(
    dag_id="volteras_unlock_doors_approved",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["volteras", "example"],
    doc_md=__doc__,
    params={
        "vehicle_id": Param(
            "sim-ok-demo-1",
            type="string",
            minLength=1,
            maxLength=200,
            pattern=r"^[A-Za-z0-9._:~-]+$",
            title="Vehicle id",
            description=(
                "The vehicle whose doors to unlock once approved (letters, digits and . _ : ~ - only). "
                "Simulator test ids: sim-ok-demo-1 (executed), sim-fail-OEM_OAUTH_TOKEN_EXPIRED (fails, fatal)."
            ),
        ),
        "reason": Param(
            "",
            type="string",
            maxLength=500,
            title="Why unlock?",
            description="Shown to the person who approves.",
        ),
    },
) as dag:
    approve = ApprovalByOthersOperator(
        task_id="approve_unlock",
        approvers=APPROVERS,
        subject="Unlock the doors of vehicle {{ params.vehicle_id }}?",
        body=(
            "**{{ dag_run.triggering_user_name or 'Someone' }}** asks to unlock the doors of vehicle "
            "`{{ params.vehicle_id }}`.\n\nReason: {{ params.reason or '(none given)' }}\n\n"
            "Approve sends UNLOCK_DOORS to the car. Reject (or no answer within an hour) sends nothing. "
            "The person who asked cannot approve."
        ),
        defaults="Reject",
        response_timeout=timedelta(hours=1),
    )
    unlock = UnlockDoorsOperator(
        task_id="unlock_doors",
        vehicle_id="{{ params.vehicle_id }}",
        retries=2,
        retry_delay=timedelta(seconds=30),
        doc_md="Runs only after `approve_unlock` was approved; sends UNLOCK_DOORS and waits until EXECUTED.",
    )
    approve >> unlock
