"""What the provider package defines, found by walking its files: every module with a public hook,
operator, sensor or trigger class. Used by tests/test_provider.py against the checkout and, run as a
script with a clean venv's Python, by tests/test_wheel.py against the installed wheel (it imports nothing
from this repository)."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from pathlib import Path

#: Public task classes that get_provider_info does not list, each with why (a new class fails the tests
#: until it is listed or named here).
NOT_FOR_DAGS = {
    "airflow_provider_volteras.lifecycle.task.CommandTaskOperator": "the base of the single and fleet operators",
}

KINDS = ("hooks", "operators", "sensors", "triggers")


def defined_components(unimportable: dict[str, str] | None = None) -> dict[str, dict[str, list[str]]]:
    """Per kind: module name to the public classes of that kind it defines. Files are walked, not
    packages (``lifecycle/`` has no ``__init__``); the module names come from the installed package.

    With ``unimportable`` (a dict to fill), a module that cannot be imported for a missing module is
    recorded there (module name to the missing one) instead of failing: what an optional extra brings.
    """
    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    import airflow_provider_volteras

    package = Path(airflow_provider_volteras.__file__).resolve().parent
    found: dict[str, dict[str, list[str]]] = {kind: {} for kind in KINDS}
    for path in sorted(package.rglob("*.py")):
        parts = (package.name, *path.relative_to(package).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if unimportable is None or not err.name or err.name.startswith(package.name):
                raise
            unimportable[name] = err.name
            continue
        for cls_name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != name or cls_name.startswith("_"):
                continue
            if f"{name}.{cls_name}" in NOT_FOR_DAGS:
                continue
            for kind, base in (
                ("sensors", BaseSensorOperator),
                ("operators", BaseOperator),
                ("triggers", BaseTrigger),
                ("hooks", BaseHook),
            ):
                if issubclass(cls, base):
                    found[kind].setdefault(name, []).append(cls_name)
                    break
    return found


if __name__ == "__main__":
    import airflow_provider_volteras

    missing: dict[str, str] = {}
    components = defined_components(missing)
    json.dump(
        {"file": airflow_provider_volteras.__file__, "components": components, "unimportable": missing}, sys.stdout
    )
