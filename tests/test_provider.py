"""Packaging: provider registration, connection forms, cheap imports, example DAGs, README truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_volteras import get_provider_info
from airflow_provider_volteras.failures import FAILED_REASONS
from airflow_provider_volteras.hooks.volteras import VolterasHook
from airflow_provider_volteras.operators.commands import OPERATORS
from tests.provider_components import NOT_FOR_DAGS, defined_components

ROOT = Path(__file__).resolve().parents[1]


def test_provider_info_names_every_component():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-volteras"
    [conn] = info["connection-types"]
    assert conn["connection-type"] == "volteras"
    assert conn["hook-class-name"] == "airflow_provider_volteras.hooks.volteras.VolterasHook"
    behaviour = conn["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema", "port"}
    assert behaviour["relabeling"] == {"login": "Client ID", "password": "Client Secret", "host": "API base URL"}
    assert behaviour["placeholders"]["host"] == "https://api.volteras.com"


def test_provider_info_lists_every_hook_operator_sensor_and_trigger_the_package_defines():
    """get_provider_info once listed neither the fleet operator nor its trigger (issue 17, item 4)."""
    info = get_provider_info()
    defined = defined_components()
    assert "FleetClimateOffOperator" in defined["operators"]["airflow_provider_volteras.operators.fleet"]
    assert "FleetCommandTrigger" in defined["triggers"]["airflow_provider_volteras.triggers.fleet"]
    for kind, modules in defined.items():
        listed = [module for entry in info[kind] for module in entry["python-modules"]]
        assert sorted(listed) == sorted(modules), kind
    for qualname in NOT_FOR_DAGS:
        module, _, name = qualname.rpartition(".")
        assert hasattr(__import__(module, fromlist=[name]), name), f"{qualname} is gone: drop it from NOT_FOR_DAGS"


def test_airflow_lists_every_trigger_module():
    from airflow.providers_manager import ProvidersManager

    ours = {t.trigger_class_name for t in ProvidersManager().trigger if t.package_name == "airflow-provider-volteras"}
    assert ours == set(defined_components()["triggers"])


def test_the_plugin_is_registered_once_whatever_the_provider_discovery():
    """The plugin comes from the ``airflow.plugins`` entry point. Listed under the provider info's
    ``plugins`` too, Airflow loads it a second time when providers are not discovered lazily and records
    "already registered" as a plugin import error; not listed there, it loads once either way."""
    from importlib.metadata import distribution

    assert "plugins" not in get_provider_info()
    [entry] = [ep for ep in distribution("airflow-provider-volteras").entry_points if ep.group == "airflow.plugins"]
    assert entry.value == "airflow_provider_volteras.plugins.connection_test:VolterasPlugin"
    code = (
        "from airflow import plugins_manager as pm\n"
        "if hasattr(pm, '_get_plugins'):\n"  # Airflow 3.2 and later
        "    plugins, errors = pm._get_plugins()\n"
        "else:\n"  # Airflow 3.1: module globals
        "    pm.ensure_plugins_loaded(); plugins, errors = pm.plugins, pm.import_errors\n"
        "print(sorted(p.name for p in plugins if p.name == 'volteras'), errors)"
    )
    for lazy in ("True", "False"):
        env = {**os.environ, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": lazy}
        out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True).stdout
        assert out.strip().splitlines()[-1] == "['volteras'] {}", (lazy, out)


def test_airflow_sees_the_provider_and_its_connection_type():
    from airflow.providers_manager import ProvidersManager

    try:  # Airflow >= 3.2: tasks look hooks up in the task SDK's own providers manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:  # Airflow 3.1
        ProvidersManagerTaskRuntime = ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-volteras" in pm.providers
    assert "volteras" in pm.field_behaviours
    runtime = ProvidersManagerTaskRuntime()
    assert runtime.hooks["volteras"].hook_class_name == "airflow_provider_volteras.hooks.volteras.VolterasHook"


def test_hook_contract():
    assert VolterasHook.conn_name_attr == "volteras_conn_id"
    assert VolterasHook.default_conn_name == "volteras_default"
    assert VolterasHook.conn_type == "volteras" and VolterasHook.hook_name == "Volteras"


def test_connection_from_json_env(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOLTERAS_JSON",
        json.dumps({"conn_type": "volteras", "login": "cid", "password": "sec", "extra": {"timeout": 7}}),
    )
    settings = VolterasHook("volteras_json").settings
    assert settings.base_url == "https://api.volteras.com" and settings.client_id == "cid" and settings.timeout == 7


def test_connection_from_uri_env(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_URI", "volteras://cid:s%2Fec@api.sandbox.volteras.com?timeout=12")
    settings = VolterasHook("volteras_uri").settings
    assert settings.base_url == "https://api.sandbox.volteras.com"
    assert settings.client_secret == "s/ec" and settings.timeout == 12


def test_connections_add_cli(airflow_db):
    env = {**os.environ}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "connections",
            "add",
            "volteras_cli",
            "--conn-type",
            "volteras",
            "--conn-login",
            "cid",
            "--conn-password",
            "sec",
            "--conn-host",
            "https://api.sandbox.volteras.com",
            "--conn-extra",
            '{"max_retries": 2}',
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "get", "volteras_cli", "-o", "json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    [conn] = json.loads(out)
    assert conn["conn_type"] == "volteras" and conn["host"] == "https://api.sandbox.volteras.com"


def test_importing_operators_and_sensor_stays_cheap():
    code = (
        "import sys, airflow.sdk; before = set(sys.modules);"
        "import airflow_provider_volteras.operators.commands, airflow_provider_volteras.sensors.command_execution,"
        " airflow_provider_volteras.hooks.volteras;"
        "added = set(sys.modules) - before;"
        "bad = sorted(m for m in added if m.split('.')[0] in {'fastapi', 'uvicorn', 'starlette', 'httpx', 'aiohttp'}"
        " or m.startswith(('airflow_provider_volteras.simulator', 'airflow_provider_volteras.triggers',"
        " 'airflow_provider_volteras.hooks._async')));"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_example_dags_parse_without_errors():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "volteras_climate_off",
        "volteras_send_command",
        "volteras_fleet_climate_off",
        "volteras_fleet_climate_off_batch",
        "volteras_fleet_climate_off_by_tag",
        "volteras_unlock_doors_approved",
        "volteras_after_climate_off",
    }


README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("reason", sorted(FAILED_REASONS))
def test_readme_failure_table_matches_the_code(reason):
    info = FAILED_REASONS[reason]
    [row] = [line for line in README.splitlines() if line.startswith(f"| `{reason}` |")]
    assert ("**fatal**" in row) == (not info.retryable)
    assert info.meaning in row and info.action in row


@pytest.mark.parametrize("name", sorted(cls.__name__ for cls in OPERATORS.values()))
def test_readme_documents_every_operator(name):
    assert f"`{name}`" in README


def test_the_connection_form_has_every_extra_with_its_default_and_no_nulls():
    """The form is made from the table the settings are checked with: nothing can drift (issue 12, item 2)."""
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_volteras._core.extras import BOOLEAN_EXTRAS, NUMERIC_EXTRAS, STRING_EXTRAS

    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert set(fields) == set(NUMERIC_EXTRAS) | set(BOOLEAN_EXTRAS) | set(STRING_EXTRAS)
    for name, (default, _, _, description) in NUMERIC_EXTRAS.items():
        assert fields[name]["schema"]["default"] == default and description in fields[name]["description"]
        assert fields[name]["schema"]["type"][0] in ("integer", "number")
    for name, (flag, description) in BOOLEAN_EXTRAS.items():
        assert fields[name]["schema"] == {"type": ["boolean", "null"], "default": flag}
        assert description in fields[name]["description"]
    # What the API server hands the UI: every field starts at its default, never at null.
    widgets = ProvidersManager().connection_form_widgets
    for name in fields:
        widget = widgets[f"extra__volteras__{name}"]
        assert widget.field["value"] is not None, name


@pytest.mark.parametrize("name", sorted(get_provider_info()["connection-types"][0]["conn-fields"]))
def test_readme_documents_every_connection_extra(name):
    assert f"| `{name}` |" in README


def test_the_form_airflow_serves_shows_every_default_unmasked():
    """What the API server's ``/ui/connections/hook_meta`` gives the connection form. Airflow masks the value
    of any extra whose name holds a sensitive word ("token", "secret", "proxy", ...): such an extra showed
    "***" in the form and saved it. No extra may be named so, except the secrets (``SECRET_EXTRAS``): they
    are masked on purpose, and the "***" the form saves for an untouched one reads as "not set"."""
    from types import SimpleNamespace

    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    from airflow_provider_volteras._core.extras import SECRET_EXTRAS
    from airflow_provider_volteras._core.settings import ClientSettings

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "volteras"]
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert meta.extra_fields is not None
    served = {name: spec["value"] for name, spec in meta.extra_fields.items()}
    secrets = {name: served.pop(name) for name in SECRET_EXTRAS}
    assert served == {name: field["schema"]["default"] for name, field in fields.items() if name not in SECRET_EXTRAS}
    assert "***" not in json.dumps(served)
    assert all(fields[name]["schema"]["format"] == "password" for name in SECRET_EXTRAS)
    # The form saved every field as served: the secrets' "***" placeholders turn nothing on.
    saved = {**served, **secrets}
    conn = SimpleNamespace(conn_id="c1", login="cid", password="s", host="", port=None, extra_dejson=saved)
    assert ClientSettings.from_connection(conn).webhooks is False


def test_former_extra_names_still_work_and_say_what_they_are_called_now():
    from types import SimpleNamespace

    from airflow_provider_volteras._core.settings import ClientSettings
    from airflow_provider_volteras.exceptions import VolterasConfigurationError

    def settings(extra: dict[str, object]) -> ClientSettings:
        conn = SimpleNamespace(conn_id="c1", login="cid", password="s", host="", port=None, extra_dejson=extra)
        return ClientSettings.from_connection(conn)

    with pytest.warns(FutureWarning, match="token_cache, token_refresh_lead are now called shared_cache, refresh_lead"):
        old = settings({"token_refresh_lead": 7, "token_cache": False})
    assert (old.token_refresh_lead, old.token_cache) == (7.0, False)
    with pytest.warns(FutureWarning, match="shared_cache_dir"):
        assert settings({"token_cache_dir": "/tmp/x"}).token_cache_dir == "/tmp/x"
    with pytest.raises(VolterasConfigurationError, match="disagree"):
        settings({"token_cache": False, "shared_cache": True})
