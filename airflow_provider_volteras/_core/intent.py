"""What a task asked for, and whether an execution is about it.

An execution may only be adopted or re-attached to when it is the task's intent: the same vehicle,
the same command and the same arguments. This module compares arguments and holds the shape of the
task-state-store record that remembers a create (in flight, then created), both free of I/O.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_volteras._core.basics import validate_issued_id
from airflow_provider_volteras.exceptions import VolterasInvalidInputError

#: Key of the task state store entry that remembers the execution a task created (do not rename).
STATE_KEY = "volteras_command_execution"


def _normal(value: Any) -> Any:
    """A comparable form of JSON arguments: numbers by value (55 == 55.0), null and {} alike at the top."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return repr(value)


def arguments_match(asked: Mapping[str, Any] | None, found: Any) -> bool:
    """True when an execution's ``commandArguments`` (``found``) are the arguments this task sends.

    A command without arguments matches an execution whose arguments are absent, null or ``{}``.
    Arguments that cannot be read never match.
    """
    asked_normal = _normal(dict(asked)) if asked else {}
    if found is None:
        found_normal: Any = {}
    elif isinstance(found, Mapping):
        found_normal = _normal(found)
    else:
        return False
    return bool(asked_normal == found_normal)


def describe_arguments(arguments: Any) -> str:
    if not arguments:
        return "no arguments"
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items()) if isinstance(arguments, Mapping) else repr(arguments)
    return text if len(text) <= 200 else text[:200] + "..."


def issued_id(value: Any) -> str | None:
    """``value`` if it can be an execution id the API issued (see ``validate_issued_id``), else ``None``."""
    try:
        return validate_issued_id(value)
    except VolterasInvalidInputError:
        return None


def id_digest(execution_id: str) -> str:
    """A short stand-in for an id in the in-flight record: enough to tell ids apart, small to store."""
    return hashlib.sha256(execution_id.encode()).hexdigest()[:16]


def in_flight_record(
    vehicle_id: str, command: str, arguments: Mapping[str, Any] | None, before: Iterable[str]
) -> dict[str, Any]:
    """Written before a create is sent: a later try adopts what appeared since instead of sending again."""
    return {
        "vehicle_id": vehicle_id,
        "command": command,
        "arguments": dict(arguments) if arguments else None,
        "in_flight": {"since": time.time(), "before": sorted({id_digest(i) for i in before})},
    }


def created_record(
    execution_id: str, vehicle_id: str, command: str, arguments: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Written as soon as the API issued an id for the create, before anything else can fail."""
    return {
        "id": execution_id,
        "vehicle_id": vehicle_id,
        "command": command,
        "arguments": dict(arguments) if arguments else None,
    }
