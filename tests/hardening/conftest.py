"""Hardening suite fixtures; the shared ``sim``/``airflow_db`` fixtures come from ``tests/conftest.py``."""

from __future__ import annotations

from typing import Any

from ._support import STATS

_LABELS = {
    "fault_runs": "fault cases run (hook + trigger)",
    "faults_applied": "faults the simulator applied",
    "hostile_inputs": "hostile inputs tried",
    "hypothesis_examples": "hypothesis examples run",
    "hypothesis_parsed_executions": "hypothesis executions parsed successfully (vehicle/status property held)",
    "hypothesis_valid_results": "hypothesis answers parsed into valid results (all parsers)",
    "places_searched": "places searched for secrets",
    "leaks": "secret/token leaks found",
    "load_events": "load-test trigger events",
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not STATS:
        return
    terminalreporter.section("volteras hardening")
    for key, label in _LABELS.items():
        if key in STATS or (key == "leaks" and "places_searched" in STATS):
            terminalreporter.write_line(f"{label}: {STATS[key]}")
