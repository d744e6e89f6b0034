"""The shared token file's lock is waited for within the request timeout and the wait's deadline.

Another process (here: another open file description of the same lock file, which ``flock`` treats
as another holder) keeps the lock, as a process whose token request trickles would: the hook stops
waiting in time and renews without the file, saying so once.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_volteras.exceptions import VolterasError
from airflow_provider_volteras.hooks._token_file import TokenFile
from airflow_provider_volteras.hooks.volteras import VolterasHook
from tests.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET

#: How long the other holder keeps the lock (it lets go when the test ends): what the hook must not wait
#: for. The hook is due after a 2 s request timeout or a 3 s deadline; the bounds below are half of this,
#: so a slow machine cannot fail them but a hook that waited for the holder would.
HOLD_SECONDS = 120.0


def use(monkeypatch: pytest.MonkeyPatch, sim: Any, directory: Path, **extra: Any) -> None:
    value = json.dumps(
        {
            "conn_type": "volteras",
            "login": SIM_CLIENT_ID,
            "password": SIM_CLIENT_SECRET,
            "host": sim.base_url,
            "extra": {"shared_cache_dir": str(directory), "max_retries": 0, **extra},
        }
    )
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", value)


@pytest.fixture
def held_lock(sim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The token file's lock, held by someone else for ``HOLD_SECONDS`` (released early at the end)."""
    directory = tmp_path / "cache"
    use(monkeypatch, sim, directory, timeout=2)
    store = TokenFile(VolterasHook().settings)
    directory.mkdir(mode=0o700)
    fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = threading.Event()
    guard = threading.Lock()

    def release() -> None:
        with guard:
            if not released.is_set():
                released.set()
                os.close(fd)

    timer = threading.Timer(HOLD_SECONDS, release)
    timer.start()
    yield directory
    timer.cancel()
    release()


def still_held(lock_path: Path) -> bool:
    """Whether someone else holds the lock (taking it without waiting fails)."""
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_held_lock_is_waited_for_no_longer_than_the_request_timeout(held_lock: Path, sim: Any, capfd: Any) -> None:
    hook = VolterasHook()
    token, elapsed = timed(hook.get_access_token)
    assert token
    # The token was renewed while the other holder still had the lock: the hook did not wait for it.
    assert still_held(TokenFile(hook.settings).lock_path)
    assert elapsed < HOLD_SECONDS / 2, f"a held lock kept the token request {elapsed:.1f} s for a 2 s timeout"
    assert sim.state.counters()["tokenRequests"] == 1
    hook.get_rate_limits("car-1")  # the token renewed without the file is used
    out = capfd.readouterr()
    assert (out.out + out.err).count("Volteras token cache:") == 1


def test_a_held_lock_cannot_hold_a_wait_past_its_deadline(
    held_lock: Path, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, sim, held_lock, timeout=300)  # the request timeout alone would outlast the holder
    hook = VolterasHook()

    def wait() -> Any:
        try:
            return hook.wait_for_command_execution("car-lock", "e-1", deadline=time.time() + 3, poll_interval=1)
        except VolterasError as err:  # the execution does not exist: only the time taken matters here
            return err

    _, elapsed = timed(wait)
    # The wait ended while the other holder still had the lock: it did not wait for it.
    assert still_held(TokenFile(hook.settings).lock_path)
    assert elapsed < HOLD_SECONDS / 2, f"a wait with a 3 s deadline took {elapsed:.1f} s behind a held lock"
