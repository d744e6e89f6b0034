"""Access tokens shared by the task processes of one machine (issue 11, item 1)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_volteras._core import tokens
from airflow_provider_volteras._core.settings import ClientSettings
from airflow_provider_volteras.hooks._token_file import TokenFile
from airflow_provider_volteras.hooks.volteras import VolterasHook
from tests.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET

ONE_CALL = (
    "import sys, time\n"
    "from airflow_provider_volteras.hooks.volteras import VolterasHook\n"
    "while time.time() < float(sys.argv[1]): time.sleep(0.01)\n"  # all processes call at once
    "VolterasHook().get_rate_limits('car-shared')\n"
)


def use(
    monkeypatch: pytest.MonkeyPatch, sim: Any, directory: Path, secret: str = SIM_CLIENT_SECRET, **extra: Any
) -> str:
    value = json.dumps(
        {
            "conn_type": "volteras",
            "login": SIM_CLIENT_ID,
            "password": secret,
            "host": sim.base_url,
            "extra": {"shared_cache_dir": str(directory), "max_retries": 3, "retry_max_wait": 0.2, **extra},
        }
    )
    monkeypatch.setenv("AIRFLOW_CONN_VOLTERAS_DEFAULT", value)
    return value


def token_requests(sim: Any) -> int:
    return int(sim.state.counters()["tokenRequests"])


@pytest.mark.slow
def test_twenty_task_processes_on_one_machine_share_one_token(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    connection = use(monkeypatch, sim, tmp_path / "cache")
    env = {**os.environ, "AIRFLOW_CONN_VOLTERAS_DEFAULT": connection}
    start_at = time.time() + 12  # after every process has imported Airflow
    processes = [
        subprocess.Popen([sys.executable, "-c", ONE_CALL, str(start_at)], env=env, stderr=subprocess.PIPE)
        for _ in range(20)
    ]
    failures = [p.stderr.read().decode()[-500:] for p in processes if p.wait(120) != 0 and p.stderr]
    assert not failures, failures
    assert sim.state.counters()["rateLimitRequests"] == 20
    print(f"20 task processes on one machine: {token_requests(sim)} token request(s)")
    assert token_requests(sim) <= 2, "20 processes on one machine must share the token"


def test_the_file_is_private_and_encrypted(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    use(monkeypatch, sim, directory)
    hook = VolterasHook()
    access = hook.get_access_token()
    [token_file] = directory.glob("*.token")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    content = token_file.read_bytes()
    refresh = tokens.TOKEN_CACHE.refresh_token(hook.settings)
    for secret in (access, refresh, SIM_CLIENT_SECRET):
        assert secret and secret.encode() not in content


def test_a_process_without_the_secret_cannot_use_the_file(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    use(monkeypatch, sim, directory)
    VolterasHook().get_access_token()
    settings = ClientSettings(
        base_url=sim.base_url, client_id=SIM_CLIENT_ID, client_secret="another-secret", token_cache_dir=str(directory)
    )
    store = TokenFile(settings)
    # Another secret means another file name and another key: nothing to read, nothing readable.
    assert store.read() is None
    [token_file] = directory.glob("*.token")
    store.path.write_bytes(token_file.read_bytes())
    assert store.read() is None


def test_a_fresh_process_takes_the_token_from_the_file(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    use(monkeypatch, sim, tmp_path / "cache")
    VolterasHook().get_rate_limits("car-1")
    tokens.TOKEN_CACHE.clear()  # what a new task process starts with
    VolterasHook().get_rate_limits("car-1")
    assert token_requests(sim) == 1


def test_a_token_that_expired_in_the_file_is_renewed_and_written_back(
    sim: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    sim.state.configure(token_ttl=2)
    directory = tmp_path / "cache"
    use(monkeypatch, sim, directory)
    first = VolterasHook().get_access_token()
    [token_file] = directory.glob("*.token")
    before = token_file.read_bytes()
    time.sleep(2.2)
    tokens.TOKEN_CACHE.clear()
    second = VolterasHook().get_access_token()
    assert second != first and token_file.read_bytes() != before
    assert token_requests(sim) == 2


def test_a_refused_token_from_the_file_is_not_used_again(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    use(monkeypatch, sim, tmp_path / "cache")
    VolterasHook().get_rate_limits("car-1")
    sim.state.expire_tokens()  # the platform forgets the token the file holds
    tokens.TOKEN_CACHE.clear()
    assert VolterasHook().get_rate_limits("car-1")
    assert token_requests(sim) == 2


@pytest.mark.parametrize("problem", ["corrupt-file", "unwritable-directory", "switched-off"])
def test_the_hook_works_without_the_file(sim: Any, monkeypatch: Any, tmp_path: Path, problem: str, capfd: Any) -> None:
    directory = tmp_path / "cache"
    extra: dict[str, Any] = {}
    if problem == "corrupt-file":
        use(monkeypatch, sim, directory)
        store = TokenFile(VolterasHook().settings)
        directory.mkdir(mode=0o700)
        store.path.write_bytes(b"not a token")
    elif problem == "unwritable-directory":
        directory = tmp_path / "a-file-not-a-directory"
        directory.write_text("x")
    else:
        extra = {"shared_cache": False}
    use(monkeypatch, sim, directory, **extra)
    hook = VolterasHook()
    for _ in range(3):
        hook.get_rate_limits("car-1")
    assert token_requests(sim) == 1
    out = capfd.readouterr()
    if problem == "switched-off":
        assert not directory.exists()
    else:
        assert (out.out + out.err).count("Volteras token cache:") == 1
    if problem == "corrupt-file":
        assert TokenFile(hook.settings).read() is not None  # replaced by a good one


def test_a_token_file_that_cannot_be_written_costs_no_second_token_request(
    sim: Any, monkeypatch: Any, tmp_path: Path, capfd: Any
) -> None:
    use(monkeypatch, sim, tmp_path / "cache")

    def unwritable(self: TokenFile, token: Any) -> None:
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(TokenFile, "write", unwritable)
    hook = VolterasHook()
    assert hook.get_access_token()
    hook.get_rate_limits("car-1")
    assert token_requests(sim) == 1, "a renewal whose token could not be written must not renew again"
    out = capfd.readouterr()
    assert (out.out + out.err).count("Volteras token cache:") == 1


def test_a_tilde_in_shared_cache_dir_is_the_home_directory(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    use(monkeypatch, sim, Path("~/volteras-cache"))
    hook = VolterasHook()
    assert hook.settings.token_cache_dir == str(tmp_path / "home" / "volteras-cache")
    hook.get_access_token()
    assert list((tmp_path / "home" / "volteras-cache").glob("*.token"))
    assert not (tmp_path / "~").exists()
    assert stat.S_IMODE((tmp_path / "home" / "volteras-cache").stat().st_mode) == 0o700


def test_an_existing_folder_is_used_without_changing_its_mode(sim: Any, monkeypatch: Any, tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    use(monkeypatch, sim, directory)
    VolterasHook().get_access_token()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755, "a folder the hook did not create is never chmod-ed"
    [token_file] = directory.glob("*.token")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o775, 0o777, 0o1777])
def test_a_folder_others_may_write_to_is_refused_with_a_warning(
    sim: Any, monkeypatch: Any, tmp_path: Path, capfd: Any, mode: int
) -> None:
    directory = tmp_path / f"open-{mode:o}"
    directory.mkdir()
    directory.chmod(mode)
    use(monkeypatch, sim, directory)
    hook = VolterasHook()
    for _ in range(2):
        hook.get_rate_limits("car-1")
    assert token_requests(sim) == 1
    assert stat.S_IMODE(directory.stat().st_mode) == mode
    assert list(directory.iterdir()) == [], "nothing is written to a folder others may write to"
    out = capfd.readouterr()
    assert (out.out + out.err).count("Volteras token cache:") == 1
