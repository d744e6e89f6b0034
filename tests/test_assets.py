"""Asset events on EXECUTED: the volteras:// URI scheme, the alias, and the events a run records."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from airflow_provider_volteras.assets import (
    EXECUTED_ALIAS,
    command_asset,
    command_asset_uri,
    executed_alias,
    record_executed,
    sanitize_uri,
    with_executed_alias,
)

ROOT = Path(__file__).resolve().parents[1]

DAGS = textwrap.dedent(
    """
    from datetime import datetime

    from airflow.sdk import DAG, task

    from airflow_provider_volteras.assets import executed_alias, record_executed, with_executed_alias
    from airflow_provider_volteras.operators.commands import ClimateOffOperator

    EXECUTION = {"id": "exec-a1", "vehicleId": "car-a1", "command": "CLIMATE_OFF", "status": "EXECUTED",
                 "executedAt": "2026-05-01T10:00:00Z"}

    with DAG("vt_asset_record", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as record_dag:

        @task(outlets=[executed_alias()])
        def executed(**context):
            return record_executed(context, "car-a1", "CLIMATE_OFF", EXECUTION)

        @task(outlets=[executed_alias()])
        def failed(**context):
            return record_executed(context, "car-a2", "CLIMATE_OFF", {**EXECUTION, "status": "FAILED"})

        executed()
        failed()

    with DAG("vt_asset_operator", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as operator_dag:
        ClimateOffOperator(task_id="send", vehicle_id="car-a3", outlets=with_executed_alias(), poll_interval=1)
    """
)


def asset_events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        ).all()
        return [{"extra": dict(r.extra or {}), "task_id": r.source_task_id, "dag_id": r.source_dag_id} for r in rows]


@pytest.fixture(scope="module")
def dags(airflow_db):
    target = airflow_db / "dags" / "volteras_asset_test_dags.py"
    target.parent.mkdir(exist_ok=True)
    target.write_text(DAGS)
    spec = importlib.util.spec_from_file_location("volteras_asset_test_dags", target)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("volteras://vehicles/veh_123/commands/CLIMATE_OFF", "volteras://vehicles/veh_123/commands/CLIMATE_OFF"),
        (
            "volteras://vehicles/sim-ok-demo-1/commands/climate_off",
            "volteras://vehicles/sim-ok-demo-1/commands/CLIMATE_OFF",
        ),
        ("volteras://vehicles/a.b:c~d/commands/LOCK_DOORS?x=1#f", "volteras://vehicles/a.b:c~d/commands/LOCK_DOORS"),
    ],
)
def test_sanitize_uri_accepts_and_normalizes(uri, expected):
    assert sanitize_uri(urlsplit(uri)).geturl() == expected


@pytest.mark.parametrize(
    "uri",
    [
        "volteras://fleet/veh_1/commands/CLIMATE_OFF",
        "volteras://vehicles/veh_1/CLIMATE_OFF",
        "volteras://vehicles/veh_1/commands/",
        "volteras://vehicles/../commands/CLIMATE_OFF",
        "volteras://vehicles/veh%2F1/commands/CLIMATE_OFF",
        "volteras://vehicles/veh 1/commands/CLIMATE_OFF",
        "volteras://vehicles/veh_1/commands/CLIMATE_OFF/extra",
    ],
)
def test_sanitize_uri_refuses_other_shapes(uri):
    with pytest.raises(ValueError, match="volteras://vehicles/<vehicle_id>/commands/<COMMAND>"):
        sanitize_uri(urlsplit(uri))


def test_helpers():
    assert command_asset_uri("veh_1", "set_temperature") == "volteras://vehicles/veh_1/commands/SET_TEMPERATURE"
    assert command_asset("veh_1", "CLIMATE_OFF").uri == "volteras://vehicles/veh_1/commands/CLIMATE_OFF"
    assert executed_alias().name == EXECUTED_ALIAS == "volteras-command-executed"
    mine = command_asset("x", "LOCK_DOORS")
    assert with_executed_alias() == [executed_alias()]
    assert with_executed_alias(mine) == [mine, executed_alias()]
    assert with_executed_alias([mine, executed_alias()]) == [mine, executed_alias()]


def test_record_executed_needs_the_alias_in_outlets_and_an_executed_command():
    class Events(dict):
        def __missing__(self, key):
            raise AssertionError("no event may be recorded")

    class Task:
        outlets: list = []

    execution = {"id": "e", "status": "EXECUTED"}
    assert record_executed({"task": Task(), "outlet_events": Events()}, "v", "CLIMATE_OFF", execution) is False
    Task.outlets = [executed_alias()]
    failed = {"id": "e", "status": "FAILED"}
    assert record_executed({"task": Task(), "outlet_events": Events()}, "v", "CLIMATE_OFF", failed) is False
    assert record_executed({"task": Task()}, "v", "CLIMATE_OFF", execution) is False


@pytest.mark.slow
def test_a_run_records_the_asset_event_with_uri_and_extra(dags):
    run = dags.record_dag.test()
    assert str(run.state) == "success"
    events = asset_events("volteras://vehicles/car-a1/commands/CLIMATE_OFF")
    assert events == [
        {
            "extra": {
                "execution_id": "exec-a1",
                "executedAt": "2026-05-01T10:00:00Z",
                "vehicle_id": "car-a1",
                "command": "CLIMATE_OFF",
            },
            "task_id": "executed",
            "dag_id": "vt_asset_record",
        }
    ]
    assert asset_events("volteras://vehicles/car-a2/commands/CLIMATE_OFF") == []


@pytest.mark.slow
def test_a_command_operator_records_its_executed_command(sim, dags):
    """Needs the operator to call ``record_executed`` when it succeeds (see the report to the lead)."""
    run = dags.operator_dag.test()
    assert str(run.state) == "success"
    [event] = asset_events("volteras://vehicles/car-a3/commands/CLIMATE_OFF")
    assert event["task_id"] == "send" and event["extra"]["command"] == "CLIMATE_OFF"
    assert event["extra"]["execution_id"] and event["extra"]["executedAt"]
    assert sim.state.counters()["creates"] == {"car-a3": {"CLIMATE_OFF": 1}}


def test_consumer_example_is_scheduled_on_the_executed_command_asset():
    spec = importlib.util.spec_from_file_location("consumer", ROOT / "example_dags" / "volteras_after_climate_off.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [asset] = list(module.dag.timetable.asset_condition.objects)
    assert asset.uri == "volteras://vehicles/sim-ok-demo-1/commands/CLIMATE_OFF"
