"""The client secret and the tokens never appear in logs, exception messages or reprs, and are masked."""

from __future__ import annotations

import base64
import logging
import uuid

import pytest
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_volteras._core.tokens import TOKEN_CACHE
from airflow_provider_volteras.exceptions import VolterasError

VEHICLE = "sim-ok-secrets"


def test_secret_and_tokens_never_leak(sim, connect, caplog, capfd, hook_logs, closed_port):
    caplog.set_level(logging.DEBUG)
    secret = f"Vsecret-{uuid.uuid4().hex}"  # unique: the process-wide masker cannot know it yet
    wrong = f"Wwrong-{uuid.uuid4().hex}"
    assert secret in redact(f"before {secret}")  # not registered before the hook sees it
    sim.state.configure(client_secret=secret)
    hook = connect(secret=secret, max_retries=1)

    texts: list[str] = [repr(hook), str(hook.settings), repr(hook.settings)]
    tokens: set[str] = set()

    def note_tokens() -> None:
        tokens.add(hook.get_access_token())
        refresh = TOKEN_CACHE.refresh_token(hook.settings)
        assert refresh
        tokens.add(refresh)

    def expect_failure(call) -> None:
        with pytest.raises(VolterasError) as info:
            call()
        err = info.value
        texts.extend([str(err), repr(err), repr(err.args), repr(vars(err))])

    # success paths
    ok, message = hook.test_connection()
    assert ok
    texts.append(message)
    note_tokens()
    execution = hook.create_command_execution(VEHICLE, "SET_CHARGE_LIMIT", {"limit": 80})
    texts.append(repr(hook.get_command_execution(VEHICLE, execution["id"])))
    texts.append(repr(list(hook.list_command_executions(VEHICLE))))
    sim.state.expire_tokens()  # 401 -> renewal with the refresh token
    hook.get_rate_limits(VEHICLE)
    note_tokens()
    sim.state.add_fault("status", method="POST", path="^/v1/oauth2/token$", count=1, status=503)
    sim.state.expire_tokens()
    hook.get_rate_limits(VEHICLE)  # renewal itself retried after a 503
    note_tokens()
    texts.append(repr(hook))

    # failure paths
    sim.state.add_fault("unauthorized", method="GET", path="^/v1/rate-limits$", count=2)
    expect_failure(lambda: hook.get_rate_limits(VEHICLE))
    note_tokens()
    sim.state.add_fault("status", method="GET", path="^/v1/rate-limits$", count=None, status=500)
    expect_failure(lambda: hook.get_rate_limits(VEHICLE))
    sim.state.clear_faults()
    sim.state.add_fault("malformed_json", method="GET", path="/command-executions/")
    expect_failure(lambda: hook.get_command_execution(VEHICLE, execution["id"]))
    bad = connect("volteras_wrong", secret=wrong)
    expect_failure(lambda: bad.get_rate_limits(VEHICLE))
    ok, message = bad.test_connection()
    assert not ok
    texts.extend([message, repr(bad)])
    closed = connect("volteras_closed", host=f"http://127.0.0.1:{closed_port}", secret=secret, max_retries=0)
    expect_failure(lambda: closed.get_rate_limits(VEHICLE))
    expect_failure(lambda: hook.create_command_execution("sim-missing-x", "CLIMATE_OFF"))

    # the simulator really issued several tokens, and we know all of them
    assert sim.state.counters()["tokenRequestsByGrant"]["refresh_token"] >= 2
    assert len(tokens) >= 8
    tokens |= set(getattr(sim.state, "_access", {})) | set(getattr(sim.state, "_refresh", {}))  # all issued

    captured = capfd.readouterr()
    texts.extend([caplog.text, repr([r.__dict__ for r in caplog.records]), repr(hook_logs), captured.out, captured.err])
    assert len(caplog.records) > 10 and hook_logs  # logging really was captured
    haystack = "\n".join(texts)
    basic = base64.b64encode(f"{sim.state.config.client_id}:{secret}".encode()).decode()
    for needle in [secret, wrong, basic, *tokens]:
        assert needle not in haystack

    # registered with Airflow's secrets masker, so Airflow's log handlers hide them too
    for needle in [secret, *tokens]:
        assert needle not in redact(f"value: {needle}!")
