"""Embedded Volteras Connect API simulator (FastAPI + uvicorn) for demos, tests and benchmarks.

Start it from Python::

    from airflow_provider_volteras.simulator import SimulatorServer

    with SimulatorServer(port=0, default_delay=0.2) as sim:
        sim.base_url                     # http://127.0.0.1:<port>
        sim.state.set_scenario("car-1", outcome="FAILED", failed_reason="OEM_VEHICLE_OFFLINE")
        sim.state.counters()             # thread-safe snapshot

or as ``python -m airflow_provider_volteras.simulator --port 0``. Defaults: client id
``volteras-sim-client``, secret ``volteras-sim-secret``, organization ``volteras-sim-org``,
tokens live 3600 s, commands leave PENDING after 1.0 s and time out after 300 s
(FAILED ``OEM_COMMAND_TIMEOUT``).

The ``/_simulator/...`` control paths (scenarios, config, faults, counters, reset) need no
authentication: only ever bind the simulator to loopback, never expose it.

Magic vehicle ids (an explicit scenario always wins over them):

- ``sim-ok...`` or any other valid id: EXECUTED after the default delay.
- ``sim-fail-<REASON>...`` (e.g. ``sim-fail-OEM_VEHICLE_OFFLINE``): FAILED with that reason.
- ``sim-fail-text...``: FAILED with the plain-string reason "Vehicle did not respond".
- ``sim-stuck...``: PENDING until the platform timeout, then FAILED ``OEM_COMMAND_TIMEOUT``.
- ``sim-missing...``: RESOURCE_NOT_FOUND (404) on every vehicle endpoint.
- suffix ``-d<seconds>`` sets the delay, e.g. ``sim-ok-d30``, ``sim-fail-OEM_TIMEOUT-d2.5``.

Importing this package does not import FastAPI or uvicorn; ``SimulatorServer`` and
``create_app`` load them on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .state import (
    FAULT_KINDS,
    MAGIC_VEHICLE_IDS,
    ScenarioStep,
    SimulatorConfig,
    SimulatorError,
    SimulatorState,
    parse_magic_vehicle_id,
)

if TYPE_CHECKING:
    from .app import create_app
    from .server import SimulatorServer

__all__ = [
    "FAULT_KINDS",
    "MAGIC_VEHICLE_IDS",
    "ScenarioStep",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorServer",
    "SimulatorState",
    "create_app",
    "parse_magic_vehicle_id",
]


def __getattr__(name: str) -> Any:
    if name == "SimulatorServer":
        from .server import SimulatorServer

        return SimulatorServer
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
