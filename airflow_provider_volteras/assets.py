"""Airflow assets for executed commands, so other DAGs can run when a car did something.

When a command task succeeds (the API reports the execution ``EXECUTED``), it records an asset event
on ``volteras://vehicles/<vehicle_id>/commands/<COMMAND>`` with the execution id and ``executedAt``
in its extra. Vehicle ids are usually templated, so the concrete asset is only known at run time:
the tasks declare the asset alias ``volteras-command-executed`` in their ``outlets``, and
:func:`record_executed` adds the concrete asset to it.

A downstream DAG is scheduled on one vehicle's command with
``schedule=[command_asset("veh_123", "CLIMATE_OFF")]``, or on every executed command with
``schedule=[executed_alias()]``.

The ``volteras`` URI scheme is registered through the provider's ``asset-uris`` entry, with
:func:`sanitize_uri` as its handler: Airflow refuses a malformed ``volteras://`` URI when a DAG
declares it, and normalizes the command to upper case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

from airflow.sdk import Asset, AssetAlias

if TYPE_CHECKING:
    from airflow.sdk import Context

SCHEME = "volteras"
#: The alias every command task puts in its outlets; see :func:`with_executed_alias`.
EXECUTED_ALIAS = "volteras-command-executed"

_ID = re.compile(r"[A-Za-z0-9_.:~-]{1,200}")
_COMMAND = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def sanitize_uri(parts: SplitResult) -> SplitResult:
    """Airflow's URI handler for the ``volteras`` scheme (``asset-uris`` in the provider info).

    Accepts ``volteras://vehicles/<vehicle_id>/commands/<COMMAND>`` only, with the provider's vehicle id
    characters; returns it with the command upper-cased. Anything else raises ``ValueError``.
    """
    segments = parts.path.split("/")[1:] if parts.path.startswith("/") else []
    if (
        parts.netloc != "vehicles"
        or len(segments) != 3
        or segments[1] != "commands"
        or not _ID.fullmatch(segments[0])
        or segments[0] in (".", "..")
        or ".." in segments[0]
        or not _COMMAND.fullmatch(segments[2])
    ):
        raise ValueError(
            "A volteras:// asset URI must be volteras://vehicles/<vehicle_id>/commands/<COMMAND> "
            "(vehicle ids use ASCII letters, digits and _ . : ~ -), got "
            f"{SplitResult(parts.scheme, parts.netloc, parts.path, '', '').geturl()[:200]!r}"
        )
    return parts._replace(path=f"/{segments[0]}/commands/{segments[2].upper()}", query="", fragment="")


def command_asset_uri(vehicle_id: str, command: str) -> str:
    """``volteras://vehicles/<vehicle_id>/commands/<COMMAND>``."""
    uri = f"{SCHEME}://vehicles/{vehicle_id}/commands/{str(command).upper()}"
    from urllib.parse import urlsplit

    return sanitize_uri(urlsplit(uri)).geturl()


def command_asset(vehicle_id: str, command: str) -> Asset:
    """The asset of one command on one vehicle, e.g. for ``schedule=[...]`` of a downstream DAG."""
    return Asset(uri=command_asset_uri(vehicle_id, command))


def executed_alias() -> AssetAlias:
    """The asset alias command tasks record their executed commands under."""
    return AssetAlias(name=EXECUTED_ALIAS)


def with_executed_alias(outlets: Any = None) -> list[Any]:
    """A task's ``outlets`` with the executed-command alias added (what the user passed is kept)."""
    if outlets is None:
        items: list[Any] = []
    elif isinstance(outlets, (list, tuple, set)):
        items = list(outlets)
    else:
        items = [outlets]
    if not any(isinstance(o, AssetAlias) and o.name == EXECUTED_ALIAS for o in items):
        items.append(executed_alias())
    return items


def executed_extra(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The asset event's extra: what a downstream DAG needs to find the execution."""
    return {
        "execution_id": execution.get("id"),
        "executedAt": execution.get("executedAt"),
        "vehicle_id": execution.get("vehicleId"),
        "command": execution.get("command"),
    }


def record_executed(
    context: Context | Mapping[str, Any], vehicle_id: str, command: str, execution: Mapping[str, Any]
) -> bool:
    """Record the asset event of an ``EXECUTED`` execution; call it when a command task succeeds.

    Returns whether an event was recorded: only when the task declares the executed-command alias in
    its ``outlets`` (the default) and the execution is ``EXECUTED``. Never raises for a missing context
    entry: recording the event must not turn an executed command into a failed task.
    """
    if execution.get("status") != "EXECUTED":
        return False
    task = context.get("task")
    outlets: Iterable[Any] = getattr(task, "outlets", None) or ()
    if not any(isinstance(o, AssetAlias) and o.name == EXECUTED_ALIAS for o in outlets):
        return False
    events = context.get("outlet_events")
    if events is None:
        return False
    extra = executed_extra({"vehicleId": vehicle_id, "command": command, **dict(execution)})
    events[executed_alias()].add(command_asset(vehicle_id, command), extra=extra)
    return True
