"""Apache Airflow provider for the Volteras Connect vehicle API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ``apache_airflow_provider`` entry point (no heavy imports)."""
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
            {"integration-name": "Volteras", "python-modules": ["airflow_provider_volteras.operators.commands"]},
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
                "python-modules": ["airflow_provider_volteras.triggers.command_execution"],
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
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for each HTTP answer.",
                        "schema": {"type": ["number", "null"], "minimum": 0.1, "maximum": 600},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of one request on connection errors, timeouts, 5xx and 429.",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain HTTP",
                        "description": "Allow an http:// base URL to a non-loopback host. Never for production.",
                        "schema": {"type": ["boolean", "null"]},
                    },
                },
            }
        ],
    }
