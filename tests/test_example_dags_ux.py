"""What a person sees in the example DAGs: trigger forms, refusals at trigger time, docs, the approval step."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from airflow_provider_volteras.catalogue import get_command_spec
from tests.example_loading import load_examples, under_default_deferrable, waited_in

NAMES = ("volteras_climate_off", "volteras_send_command", "volteras_unlock_doors_approved")


@pytest.fixture(scope="module")
def examples(airflow_db):
    """Loaded under the suite's ``default_deferrable = True`` (tests/conftest.py)."""
    return load_examples(airflow_db, NAMES, prefix="ux")


@pytest.fixture(scope="module")
def examples_airflow_default(airflow_db):
    """Loaded under Airflow's shipped ``default_deferrable = False``, which stays set while they run."""
    patch = under_default_deferrable("False")
    try:
        yield load_examples(airflow_db, NAMES, prefix="ux_airflow_default")
    finally:
        patch.undo()


# -- trigger forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("dag_id", ["volteras_climate_off", "volteras_send_command", "volteras_unlock_doors_approved"])
def test_every_param_has_a_title_and_a_description(examples, dag_id):
    params = examples[dag_id].params
    for key in params:
        param = params.get_param(key)
        assert param.schema.get("title") and len(param.description or "") > 20, key
    vehicle = params.get_param("vehicle_id")
    assert vehicle.value == "sim-ok-demo-1"
    for test_id in ("sim-ok-demo-1", "sim-fail-OEM_OAUTH_TOKEN_EXPIRED"):
        assert test_id in vehicle.description


def test_the_arguments_field_shows_its_real_default(examples):
    arguments = examples["volteras_send_command"].params.get_param("arguments")
    assert arguments.value == {}  # the form shows {} and {} is what is sent: no arguments
    for shape in ('{"limit": 80}', '"driverTemperature": 21'):
        assert shape in arguments.description


GOOD = [
    ("CLIMATE_OFF", {}),
    ("CLIMATE_OFF", None),
    ("SET_TEMPERATURE", {"driverTemperature": 21, "passengerTemperature": 20.5}),
    ("SET_CHARGE_LIMIT", {"limit": 80}),
]
BAD = [
    ("SET_CHARGE_LIMIT", {"limit": "80%"}),
    ("SET_CHARGE_LIMIT", {"limit": 120}),
    ("SET_CHARGE_LIMIT", {"limit": 80.5}),
    ("SET_TEMPERATURE", {"driverTemperature": "hot", "passengerTemperature": 20}),
    ("SET_TEMPERATURE", {"driverTemperature": 21}),
    ("CLIMATE_OFF", {"foo": 1}),
    ("SET_TEMPERATURE", [21, 21]),
]


@pytest.mark.parametrize(("command", "arguments"), GOOD)
def test_good_arguments_pass_the_form(examples, command, arguments):
    import copy

    params = copy.deepcopy(examples["volteras_send_command"].params)
    params.update({"command": command, "arguments": arguments})
    assert params.validate()["arguments"] == arguments


def test_the_form_bounds_are_the_catalogue_bounds(examples):
    shapes = {s["title"]: s for s in examples["volteras_send_command"].params.get_param("arguments").schema["oneOf"]}
    for command in ("SET_TEMPERATURE", "SET_CHARGE_LIMIT"):
        for field in get_command_spec(command).payload:
            prop = shapes[command]["properties"][field.api_name]
            assert (prop.get("minimum"), prop.get("maximum")) == (field.minimum, field.maximum)
            assert prop["type"] == ("integer" if field.integer else "number")


def _refused() -> type[Exception] | tuple[type[Exception], ...]:
    """What ``dag.test()`` raises for a param its schema refuses (Airflow 3.2's says ``ValueError``)."""
    from airflow_provider_volteras._compat import AIRFLOW_VERSION, ParamValidationError

    return (ParamValidationError, ValueError) if AIRFLOW_VERSION == (3, 2) else ParamValidationError


@pytest.mark.slow
@pytest.mark.parametrize(("command", "arguments"), BAD)
def test_bad_arguments_are_refused_when_the_run_is_triggered(sim, examples, command, arguments):
    conf = {"vehicle_id": "sim-ok-demo-1", "command": command, "arguments": arguments}
    with pytest.raises(_refused(), match="arguments"):
        examples["volteras_send_command"].test(run_conf=conf)
    assert sim.state.counters()["requests"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("vehicle_id", ["car/../1", "car 1", ""])
def test_a_bad_vehicle_id_is_refused_when_the_run_is_triggered(sim, examples, vehicle_id):
    with pytest.raises(_refused(), match="vehicle_id"):
        examples["volteras_climate_off"].test(run_conf={"vehicle_id": vehicle_id})
    assert sim.state.counters()["requests"] == 0


# -- the two-task pattern's docs -------------------------------------------------------------------


def test_the_two_task_dag_says_where_the_outcome_is_and_how_to_send_again(examples):
    dag = examples["volteras_climate_off"]
    doc = dag.doc_md
    for part in (
        "the run's outcome is the sensor's state",
        "fails at once, whatever the reason",
        'Clear `climate_off` with "Downstream" selected',
        "sends exactly one new command",
        "Clearing only `wait_for_climate_off` never sends anything",
    ):
        assert part in doc, part
    assert "Storage" not in doc  # a Clear alone sends again: no state-store chores
    assert "Green here does NOT mean the car executed it" in dag.task_dict["climate_off"].doc_md
    assert "never sends anything" in dag.task_dict["wait_for_climate_off"].doc_md


# -- human approval before UNLOCK_DOORS -------------------------------------------------------------


def test_the_unlock_waits_for_a_human_approval(examples):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_volteras.operators.commands import UnlockDoorsOperator

    dag = examples["volteras_unlock_doors_approved"]
    approve, unlock = dag.task_dict["approve_unlock"], dag.task_dict["unlock_doors"]
    assert isinstance(approve, ApprovalOperator) and isinstance(unlock, UnlockDoorsOperator)
    assert unlock.upstream_task_ids == {"approve_unlock"}
    assert unlock.trigger_rule == "all_success"
    assert approve.defaults == ["Reject"] and approve.response_timeout is not None
    assert "{{ params.vehicle_id }}" in approve.subject


#: How long the stand-in person keeps trying before giving up. Generous (a run normally needs a few
#: seconds), yet well within the suite's 300 s timeout, so a run it could not unblock still ends, as a
#: failure that says why, instead of waiting for input until the whole run is killed.
RESPONDER_PATIENCE = 180.0


class _Responder:
    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.submitted = 0  # resume events submitted (answers, or timeout sweeps run while a task waited)
        self.errors: list[str] = []  # e.g. SQLite "database is locked": tried again
        self.gave_up: str | None = None

    def report(self) -> str:
        return f"gave up: {self.gave_up}; submitted: {self.submitted}; last errors: {self.errors[-5:]}"


def _respond_when_asked(dag_id: str, chosen: str | None, done: threading.Event) -> _Responder:
    """Stand in for a person: whenever the approval task waits for input, answer it the way the REST
    API's PATCH .../hitlDetails does (``chosen`` set), or let its deadline pass and run the scheduler's
    timeout sweep (``chosen`` None).

    It keeps at it until ``done`` is set (the dag run ended): an attempt that fails is tried again, and a
    task found waiting again is resumed again (``dag.test()`` writes the state its in-process task
    reported, which can land after this answer). After ``RESPONDER_PATIENCE`` it gives up and fails the
    run's unfinished task instances, so ``dag.test()`` ends instead of waiting for input for ever.
    """
    from airflow._shared.timezones import timezone
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import State, TaskInstanceState
    from sqlalchemy import or_, select, update

    responder = _Responder()
    waiting = (TI.dag_id == dag_id, TI.task_id == "approve_unlock", TI.state == TaskInstanceState.AWAITING_INPUT)

    def respond_once() -> None:
        with create_session() as session:
            tis = session.scalars(select(TI).where(*waiting)).all()
            if chosen is not None:
                for ti in tis:
                    detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti.id))
                    if detail is None:
                        continue
                    if detail.responded_at is None:
                        detail.chosen_options = [chosen]
                        detail.params_input = {}
                        detail.responded_at = timezone.utcnow()
                        session.add(detail)
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                    responder.submitted += 1
                return
        if tis:
            # Resolves only the requests whose deadline has passed (applying the default, Reject): run it
            # until it does.
            SchedulerJobRunner.check_awaiting_input_timeouts(SimpleNamespace(log=logging.getLogger("test.hitl")))
            responder.submitted += 1

    def give_up() -> None:
        if responder.gave_up is None:
            responder.gave_up = (
                f"the run of {dag_id} had not ended {RESPONDER_PATIENCE:.0f} s after the responder started; "
                "its unfinished task instances were failed to end dag.test()"
            )
        with create_session() as session:
            session.execute(
                update(TI)
                .where(TI.dag_id == dag_id, or_(TI.state.is_(None), TI.state.not_in(State.finished)))
                .values(state=TaskInstanceState.FAILED),
                execution_options={"synchronize_session": False},
            )

    def run() -> None:
        deadline = time.monotonic() + RESPONDER_PATIENCE
        while not done.wait(0.2):
            try:
                if time.monotonic() < deadline:
                    respond_once()
                else:
                    give_up()  # again on every pass until the run has ended
            except Exception as err:  # noqa: BLE001 - recorded, then tried again
                responder.errors.append(f"{type(err).__name__}: {err}")

    responder.thread = threading.Thread(target=run, name=f"hitl-responder-{dag_id}", daemon=True)
    responder.thread.start()
    return responder


@pytest.mark.slow
@pytest.mark.parametrize(
    ("answer", "unlock_state", "creates", "default_deferrable"),
    [
        ("Approve", "success", {"sim-ok-demo-1": {"UNLOCK_DOORS": 1}}, "True"),
        # Airflow's own default: the unlock waits in the worker, with the same outcome.
        ("Approve", "success", {"sim-ok-demo-1": {"UNLOCK_DOORS": 1}}, "False"),
        ("Reject", "skipped", {}, "True"),
        (None, "skipped", {}, "True"),  # no answer before the deadline: the default, Reject
    ],
)
def test_only_an_approval_unlocks(request, sim, capfd, answer, unlock_state, creates, default_deferrable):
    loaded = "examples" if default_deferrable == "True" else "examples_airflow_default"
    dag = request.getfixturevalue(loaded)["volteras_unlock_doors_approved"]
    approve = dag.task_dict["approve_unlock"]
    saved = approve.response_timeout
    approve.response_timeout = timedelta(seconds=1) if answer is None else saved
    done = threading.Event()
    responder = _respond_when_asked(dag.dag_id, answer, done)
    try:
        run = dag.test(run_conf={"vehicle_id": "sim-ok-demo-1", "reason": "delivery"})
    finally:
        done.set()
        approve.response_timeout = saved
        responder.thread.join(30)
    assert not responder.thread.is_alive(), responder.report()
    assert responder.gave_up is None, responder.report()
    assert responder.submitted >= 1, responder.report()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"approve_unlock": "success", "unlock_doors": unlock_state}
    assert sim.state.counters()["creates"] == creates
    # unlock_doors follows [operators] default_deferrable, as the example's doc says.
    assert dag.task_dict["unlock_doors"].deferrable is (default_deferrable == "True")
    if creates:
        assert waited_in(capfd.readouterr().out) == {"triggerer" if default_deferrable == "True" else "worker"}
