"""Apache Airflow provider for the Volteras Connect vehicle API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def connection_form_fields() -> dict[str, Any]:
    """The connection form's extra fields, made from the table the connection settings are checked with.

    Each field shows its default (as its initial value, so the form saves the default rather than a
    null) and the same description the settings use, so the form and the code cannot drift apart. No
    extra is required: every type admits null, which is how Airflow's form tells an optional field.
    """
    from airflow_provider_volteras._core.extras import BOOLEAN_EXTRAS, NUMERIC_EXTRAS, SECRET_EXTRAS, STRING_EXTRAS

    fields: dict[str, Any] = {}
    for name, (default, minimum, maximum, description) in NUMERIC_EXTRAS.items():
        whole = float(default).is_integer() and float(minimum).is_integer() and name == "max_retries"
        fields[name] = {
            "label": name.replace("_", " ").capitalize(),
            "description": f"{description} Default {default:g}, from {minimum:g} to {maximum:g}.",
            "schema": {
                # Optional: Airflow's form marks a field required (with a "*") unless its type admits null.
                # The field starts at its default; emptied, it saves null, which the settings read as unset.
                "type": ["integer" if whole else "number", "null"],
                "minimum": minimum,
                "maximum": maximum,
                "default": int(default) if whole else default,
            },
        }
    for name, (flag, description) in BOOLEAN_EXTRAS.items():
        fields[name] = {
            "label": name.replace("_", " ").capitalize(),
            "description": f"{description} Default {'on' if flag else 'off'}.",
            "schema": {"type": ["boolean", "null"], "default": flag},
        }
    for name, description in STRING_EXTRAS.items():
        fields[name] = {
            "label": name.replace("_", " ").capitalize(),
            # The description says what an empty field means (it differs from one extra to the next).
            "description": description,
            # Left empty, it is saved as "" (not null), which the settings read as "not set".
            "schema": {"type": ["string", "null"], "default": ""},
        }
        if name in SECRET_EXTRAS:  # a password field: Airflow masks it and keeps the stored value on save
            fields[name]["schema"]["format"] = "password"
    return fields


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ``apache_airflow_provider`` entry point (no heavy imports).

    Every module that defines a hook, operator, sensor or trigger is listed (``tests/test_provider.py``
    walks the package to keep it so). The API-server plugin is not listed under ``plugins``: Airflow
    loads a provider's ``plugins`` only with ``[core] lazy_discover_providers = False``, and then the
    ``airflow.plugins`` entry point (which loads it with every setting) would register it a second time,
    an import error. The entry point alone registers it once.
    """
    return {
        "package-name": "airflow-provider-volteras",
        "name": "Volteras",
        "description": "Send remote commands to electric vehicles through the Volteras Connect API "
        "and know whether each was executed.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Volteras",
                "external-doc-url": "https://docs.volteras.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Volteras", "python-modules": ["airflow_provider_volteras.hooks.volteras"]},
        ],
        "operators": [
            {
                "integration-name": "Volteras",
                "python-modules": [
                    "airflow_provider_volteras.operators.commands",
                    "airflow_provider_volteras.operators.fleet",
                ],
            },
        ],
        "sensors": [
            {
                "integration-name": "Volteras",
                "python-modules": ["airflow_provider_volteras.sensors.command_execution"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Volteras",
                "python-modules": [
                    "airflow_provider_volteras.triggers.command_execution",
                    "airflow_provider_volteras.triggers.fleet",
                ],
            },
        ],
        # ``volteras://vehicles/<id>/commands/<COMMAND>``: the asset an executed command records.
        "asset-uris": [
            {
                "schemes": ["volteras"],
                "handler": "airflow_provider_volteras.assets.sanitize_uri",
                "factory": "airflow_provider_volteras.assets.command_asset",
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_volteras.hooks.volteras.VolterasHook",
                "hook-name": "Volteras",
                "connection-type": "volteras",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "login": "Client ID",
                        "password": "Client Secret",
                        "host": "API base URL",
                    },
                    "placeholders": {
                        "host": "https://api.volteras.com",
                        "login": "Volteras client id",
                        "password": "Volteras client secret",
                        "extra": '{"timeout": 30, "max_retries": 5}',
                    },
                },
                "conn-fields": connection_form_fields(),
            }
        ],
    }
