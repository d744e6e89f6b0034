"""Fixtures for the simulator tests: one real server per session, reset before every test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_volteras.simulator import SimulatorServer

#: The API reference data vendored into the repository (see ``tests/data/volteras/README.md``).
SHARED_DIR = Path(__file__).resolve().parents[1] / "data" / "volteras"
CLIENT_ID = "volteras-sim-client"
CLIENT_SECRET = "volteras-sim-secret"
#: Default delay before a command leaves PENDING in these tests.
TEST_DELAY = 0.2


def shared_file(name: str) -> Path:
    """Path of a reference file; fails the test clearly when the shared directory is absent."""
    path = SHARED_DIR / name
    if not path.is_file():
        pytest.fail(
            f"reference file {path} is missing: it is vendored in tests/data/volteras (see its README)",
            pytrace=False,
        )
    return path


class Api:
    """A small ``requests`` client bound to the simulator, with a bearer token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.token: str | None = None

    def login(self) -> str:
        response = self.session.post(
            f"{self.base_url}/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=5,
        )
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]
        return self.token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 5)
        return self.session.request(method, f"{self.base_url}{path}", headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def create(self, vehicle_id: str, slug: str = "climate-on", **kwargs: Any) -> requests.Response:
        return self.post(f"/v1/vehicles/{vehicle_id}/command-execution:{slug}", **kwargs)

    def poll(self, vehicle_id: str, execution_id: str) -> requests.Response:
        return self.get(f"/v1/vehicles/{vehicle_id}/command-executions/{execution_id}")

    def created(self, vehicle_id: str, slug: str = "climate-on", **kwargs: Any) -> dict[str, Any]:
        response = self.create(vehicle_id, slug, **kwargs)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def close(self) -> None:
        self.session.close()


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(port=0, default_delay=TEST_DELAY) as server:
        yield server


@pytest.fixture
def simulator(sim_server: SimulatorServer) -> Iterator[SimulatorServer]:
    """The session simulator, reset to its start-up settings with no tokens, faults or data."""
    sim_server.state.reset()
    yield sim_server
    sim_server.state.reset()


@pytest.fixture
def api(simulator: SimulatorServer) -> Iterator[Api]:
    client = Api(simulator.base_url)
    client.login()
    yield client
    client.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
