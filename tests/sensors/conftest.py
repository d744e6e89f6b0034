"""Fixtures of the sensor tests."""

from __future__ import annotations

import pytest

from airflow_provider_volteras.triggers.command_execution import CommandExecutionTrigger


@pytest.fixture
def deferred(monkeypatch):
    """The execution ids the sensor's trigger ran for (empty when the sensor never deferred)."""
    seen: list[str] = []
    original = CommandExecutionTrigger.run

    async def recording_run(self):
        seen.append(self.command_execution_id)
        async for event in original(self):
            yield event

    monkeypatch.setattr(CommandExecutionTrigger, "run", recording_run)
    return seen
