"""Browser tests: what a person sees in Airflow 3.3's UI, driven by Playwright in Debian's headless Chromium
against the real API server of the end-to-end deployment (``airflow`` fixture) and the simulator.

- a Volteras connection added through the connection form (every extra shown with its default, nothing
  masked, nothing required that is optional), saved without nulls, and tested from the Connections list's
  Test icon: green for the right secret, red with the cause for a wrong one;
- ``volteras_climate_off`` triggered from its trigger form, and its run seen succeeding;
- the paused fleet DAG triggered from its form: one run (no extra scheduled one), its mapped tasks listed
  by vehicle id, not 0, 1, 2;
- a Clear clicked in the UI after a fatal failure sends exactly one new command and the task succeeds: the
  single-task example, the two-task example (the sensor fails at once and names the Clear of the sending
  task with Downstream) and one mapped task of the fleet example;
- the Providers page links to the documentation;
- ``volteras_send_command``'s form refuses arguments of the wrong shape for the command before anything
  is sent, and sends the corrected ones once.

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` does it): Playwright's own browser
download is not used. A failing test saves a screenshot of the page (its path is printed in the report,
under ``test-screenshots/``). ``VOLTERAS_DOCS_SCREENSHOTS=docs/screenshots`` also saves the pictures the
README shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_volteras._core.extras import BOOLEAN_EXTRAS, NUMERIC_EXTRAS, SECRET_EXTRAS, STRING_EXTRAS

from ._deployment import ADMIN_PASSWORD, ADMIN_USER, ROOT, Deployment
from ._support import (
    CLIMATE_OFF,
    FLEET,
    REPORT_KEY,
    SEND,
    create_attempts,
    creates,
    executions,
    mapped_tis,
    prepare_fleet,
    set_scenario,
    state_mismatches,
    task_log,
    unpause,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(600)]

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No calls home: this machine reaches no other host.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-screenshots"


def chromium_path() -> str:
    found = os.environ.get("VOLTERAS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "the browser tests need Debian's chromium: apt-get install chromium (.ci/run does this; "
            "see the README's Tests section)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, airflow: Deployment, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A signed-in page on the deployment's UI; a screenshot of it is saved when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    tab.goto(f"{airflow.api_url}/")
    tab.get_by_label("Username").fill(ADMIN_USER)
    tab.get_by_label("Password").fill(ADMIN_PASSWORD)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(lambda url: "/auth/login" not in url)
    try:
        yield tab
    finally:
        report = request.node.stash.get(REPORT_KEY, None)
        if report is not None and report.failed:
            SCREENSHOTS.mkdir(exist_ok=True)
            shot = SCREENSHOTS / f"{request.node.name}.png"
            tab.screenshot(path=str(shot), full_page=True)
            print(f"\n[browser] screenshot of the failed page: {shot}")
        context.close()


def docs_shot(tab: Any, name: str) -> None:
    """Save a picture for the README when asked to (``VOLTERAS_DOCS_SCREENSHOTS``)."""
    folder = os.environ.get("VOLTERAS_DOCS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(folder) / f"{name}.png"))


def trigger_form(tab: Any, airflow: Deployment, dag_id: str) -> Any:
    """Open a DAG's page and its Trigger form; returns the form's dialog."""
    tab.goto(f"{airflow.api_url}/dags/{dag_id}")
    tab.get_by_role("button", name="Trigger Dag").click()
    return tab.get_by_role("dialog")


def choose(tab: Any, form: Any, option: str) -> None:
    """Pick ``option`` in the form's drop-down (connection type, command), as a person types it."""
    form.get_by_role("combobox").focus()
    tab.keyboard.type(option)
    tab.keyboard.press("Enter")


def click_test_icon(tab: Any, conn_id: str) -> tuple[dict[str, Any], str]:
    """Click the Test icon of a connection's row in the Connections list; the API's answer and the icon's colour."""
    row = tab.get_by_role("row").filter(has=tab.get_by_role("cell", name=conn_id, exact=True))
    button = row.get_by_role("button", name="Test Connection")
    with tab.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as answer:
        button.click()
    response = answer.value
    assert response.status == 200, f"the Test icon got HTTP {response.status}: {response.text()}"
    body = response.json()
    colour = "green" if body["status"] else "red"
    button.locator(f"svg[color='{colour}']").wait_for()
    return body, colour


# --------------------------------------------------------------------------- 1. connection form and Test icon


def test_a_connection_added_in_the_form_tests_green_from_the_list(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    conn_id = "volteras_ui_form"
    before = simulator.state.counters()["testTokenRequests"]
    page.goto(f"{airflow.api_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    form = page.get_by_role("dialog")
    form.get_by_label("Connection ID").fill(conn_id)
    choose(page, form, "Volteras")
    form.get_by_label("API base URL").fill(simulator.base_url)
    form.get_by_label("Client ID").fill("volteras-sim-client")
    form.get_by_label("Client Secret").fill("volteras-sim-secret")
    form.get_by_text("Extra Fields", exact=True).click()

    # Every extra is a field showing its default: never "***" (Airflow masks names with "token" in them).
    shown: dict[str, Any] = {}
    for name in NUMERIC_EXTRAS:
        shown[name] = form.locator(f"input[name='element_{name}']").input_value()
    for name in BOOLEAN_EXTRAS:
        shown[name] = form.locator(f"input[name='element_{name}']").is_checked()
    for name in STRING_EXTRAS:
        shown[name] = form.locator(f"[name='element_{name}']").input_value()
    record["form_shows"] = shown
    # A secret extra is a password field: Airflow shows (and reads back) its mask, which the provider reads as unset.
    unset = {name: "***" if name in SECRET_EXTRAS and shown.get(name) == "***" else "" for name in STRING_EXTRAS}
    assert shown == (
        {name: f"{default:g}" for name, (default, *_rest) in NUMERIC_EXTRAS.items()}
        | {name: flag for name, (flag, _) in BOOLEAN_EXTRAS.items()}
        | unset
    ), shown
    # Nothing optional is marked required: no extra's label carries the form's required "*".
    labels = {}
    for name in (*NUMERIC_EXTRAS, *BOOLEAN_EXTRAS, *STRING_EXTRAS):
        title = name.replace("_", " ").capitalize()
        label = form.locator("label").filter(has_text=re.compile(rf"^\s*{re.escape(title)}\s*\*?\s*$", re.IGNORECASE))
        labels[name] = " ".join(label.first.inner_text().split())
    record["extra_labels"] = labels
    assert [name for name, text in labels.items() if text.endswith("*")] == [], labels
    docs_shot(page, "connection-form")
    save = form.get_by_role("button", name="Save")
    assert save.is_enabled(), "the form cannot be saved with only the required fields filled in"
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections") and r.request.method == "POST") as made:
        save.click()
    assert made.value.status == 201, made.value.text()

    stored = airflow.get(f"/api/v2/connections/{conn_id}")
    extra = json.loads(stored["extra"])
    record["saved_extra"] = extra
    assert None not in extra.values(), extra  # no nulls saved
    assert extra == (
        {name: default for name, (default, *_rest) in NUMERIC_EXTRAS.items()}
        | {name: flag for name, (flag, _) in BOOLEAN_EXTRAS.items()}
        | {name: "***" if name in SECRET_EXTRAS and extra.get(name) == "***" else "" for name in STRING_EXTRAS}
    )

    # The list's Test icon: the UI posts "port": 0 for this port-less type; the provider's plugin makes it work.
    page.get_by_role("row").filter(has_text=conn_id).wait_for()
    good, colour = click_test_icon(page, conn_id)
    record.update(test_good=good, icon_good=colour)
    assert good["status"] is True and "volteras-sim-org" in good["message"], good
    docs_shot(page, "connections-list-test")

    airflow.request(
        "POST",
        "/api/v2/connections",
        expect=(201,),
        json={
            "connection_id": f"{conn_id}_wrong",
            "conn_type": "volteras",
            "host": simulator.base_url,
            "login": "volteras-sim-client",
            "password": "not-the-secret",
            "extra": json.dumps({"max_retries": 0}),
        },
    )
    page.reload()
    bad, colour = click_test_icon(page, f"{conn_id}_wrong")
    record.update(test_bad=bad, icon_bad=colour)
    assert bad["status"] is False and bad["message"].startswith("Volteras connection failed"), bad
    assert "not-the-secret" not in bad["message"] and "this connection" in bad["message"], bad
    assert simulator.state.counters()["testTokenRequests"] - before == 1


# --------------------------------------------------------------------------- 2. trigger form


def test_climate_off_triggered_from_its_form_succeeds(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    vid = "sim-ok-ui-form"
    set_scenario(simulator, vid, outcome="EXECUTED", delay=3.0)
    runs_before = {r["dag_run_id"] for r in airflow.dag_runs(CLIMATE_OFF)}
    form = trigger_form(page, airflow, CLIMATE_OFF)
    field = form.locator("[name='element_vehicle_id']")
    # The param explains itself and names the simulator's test ids.
    assert form.get_by_text("Simulator test ids", exact=False).is_visible()
    field.fill(vid)
    docs_shot(page, "trigger-form")
    form.get_by_role("button", name="Trigger").last.click()

    def new_run() -> dict[str, Any] | None:
        fresh = [r for r in airflow.dag_runs(CLIMATE_OFF) if r["dag_run_id"] not in runs_before]
        return fresh[0] if fresh else None

    run = wait_until("the run the form started", new_run, timeout=30)
    finished = airflow.wait_run(CLIMATE_OFF, run["dag_run_id"], timeout=180)
    record.update(run_state=finished["state"], conf=finished["conf"], creates=creates(simulator, [vid]))
    assert finished["conf"] == {"vehicle_id": vid} and finished["run_type"] == "manual", finished
    assert finished["state"] == "success", record
    assert creates(simulator, [vid]) == {vid: 1}
    # The person sees it: the run's page says Success.
    page.goto(f"{airflow.api_url}/dags/{CLIMATE_OFF}/runs/{run['dag_run_id']}")
    page.get_by_text("Success", exact=True).first.wait_for()


# --------------------------------------------------------------------------- 3. fleet form: one run, vehicle labels


def test_the_fleet_triggered_from_its_form_runs_once_and_lists_tasks_by_vehicle(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    """The fleet DAG is paused, as a new DAG is: the form's "Unpause on trigger" starts exactly the run
    asked for (a scheduled example also ran its latest slot: one click sent the command twice)."""
    fleet = ["sim-ok-ui-fleet-a", "sim-ok-ui-fleet-b", "sim-ok-ui-fleet-c"]
    for vid in fleet:
        set_scenario(simulator, vid, outcome="EXECUTED", delay=2.0)
    assert airflow.get(f"/api/v2/dags/{FLEET}")["is_paused"] is True
    assert airflow.dag_runs(FLEET) == []
    form = trigger_form(page, airflow, FLEET)
    assert form.get_by_text(f"Unpause {FLEET} on trigger").is_visible()
    form.locator("textarea[name='element_vehicle_ids']").fill("\n".join(fleet))
    form.get_by_role("button", name="Trigger").last.click()

    run = wait_until("the run the form started", lambda: (airflow.dag_runs(FLEET) or [None])[0], timeout=30)
    finished = airflow.wait_run(FLEET, run["dag_run_id"], timeout=240)
    time.sleep(5)  # a scheduled slot would have been created by now
    runs = airflow.dag_runs(FLEET)
    record.update(
        runs=[(r["run_type"], r["state"]) for r in runs], creates=creates(simulator, fleet), conf=finished["conf"]
    )
    # The form sends every param: the vehicles typed in win over the default tag.
    assert finished["state"] == "success" and finished["conf"]["vehicle_ids"] == fleet, record
    assert [r["run_type"] for r in runs] == ["manual"], record  # one click, one run
    assert creates(simulator, fleet) == dict.fromkeys(fleet, 1)

    page.goto(f"{airflow.api_url}/dags/{FLEET}/runs/{run['dag_run_id']}/tasks/climate_off/mapped")
    table = page.get_by_role("table")
    for vid in fleet:
        table.get_by_text(vid, exact=True).wait_for()
    headers = [text.strip() for text in table.locator("thead th").all_inner_texts()]
    column = headers.index("Map Index") + 1
    labels = [cell.strip() for cell in table.locator(f"tbody tr td:nth-child({column})").all_inner_texts()]
    record["map_index_labels"] = labels
    assert sorted(labels) == sorted(fleet), labels
    docs_shot(page, "fleet-mapped-tasks")


# --------------------------------------------------------------------------- 4. Clear after a fatal failure

#: The first command fails fatally (the owner's consent expired), the next one is executed. Each ends 3 s after
#: its create, within the tasks' first seconds in the worker: no deferral, so no trigger firing soon after one
#: (that meets Airflow 3.3.2's stale defer-exit event race: a "state mismatch" and an unwanted extra try; see
#: _support.py). The tries are what these tests count.
FATAL_THEN_EXECUTED = {
    "delay": 3.0,
    "sequence": [{"outcome": "FAILED", "failedReason": "OEM_OAUTH_TOKEN_EXPIRED"}, {"outcome": "EXECUTED"}],
}


def clear_in_the_ui(tab: Any, affected: int) -> None:
    """On a task instance's page: the Clear button, its dialog's default options (Downstream selected), Confirm."""
    tab.get_by_role("button", name="Press shift+c to clear").click()
    dialog = tab.get_by_role("dialog")
    dialog.get_by_text(f"Affected Tasks: {affected}").wait_for()
    dialog.get_by_role("button", name="Confirm").click()
    dialog.wait_for(state="detached")


def rerun(airflow: Deployment, dag_id: str, run_id: str) -> dict[str, Any]:
    """The cleared run, once it has run again to its end."""
    wait_until("the cleared run running again", lambda: airflow.dag_run(dag_id, run_id)["state"] != "failed", 60)
    return airflow.wait_run(dag_id, run_id, timeout=240)


def test_a_clear_in_the_ui_after_a_fatal_failure_sends_one_new_command(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    """The single-task example: fatal FAILED, the log says Clear sends again, a person clicks Clear, one new
    command is sent and the task succeeds."""
    vid = "ui-clear-single"
    set_scenario(simulator, vid, **FATAL_THEN_EXECUTED)
    unpause(airflow, SEND)
    run_id = airflow.trigger(SEND, {"vehicle_id": vid, "command": "CLIMATE_OFF", "arguments": None})
    assert airflow.wait_run(SEND, run_id, timeout=180)["state"] == "failed"
    page.goto(f"{airflow.api_url}/dags/{SEND}/runs/{run_id}/tasks/send_command")
    page.get_by_text("Clear this task in the Airflow UI", exact=False).first.wait_for()
    clear_in_the_ui(page, affected=1)

    again = rerun(airflow, SEND, run_id)
    made = executions(simulator, vid)
    ti = airflow.task_instance(SEND, run_id, "send_command")
    log = task_log(airflow, SEND, run_id, "send_command", 2)
    record.update(
        run_state=again["state"],
        executions=[e["status"] for e in made],
        try_number=ti["try_number"],
        state_mismatches=state_mismatches(airflow, SEND, run_id),
    )
    assert again["state"] == "success", record
    assert [e["status"] for e in made] == ["FAILED", "EXECUTED"]  # one new command, not more
    assert creates(simulator, [vid]) == {vid: 2} == create_attempts(simulator, [vid])
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    assert any("a person's Clear is a new intent" in line and made[0]["id"] in line for line in log), log[-20:]


def test_a_clear_of_the_sending_task_with_downstream_sends_one_new_command(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    """The two-task example: the sensor fails at once (its retries could only read the same FAILED execution)
    and names the one action that sends again; a person does it in the UI (Clear ``climate_off`` with
    Downstream) and the run succeeds with one new command, both tasks green."""
    vid = "ui-clear-two-task"
    set_scenario(simulator, vid, **FATAL_THEN_EXECUTED)
    unpause(airflow, CLIMATE_OFF)
    run_id = airflow.trigger(CLIMATE_OFF, {"vehicle_id": vid})
    first = airflow.wait_run(CLIMATE_OFF, run_id, timeout=180)
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(CLIMATE_OFF, run_id)}
    assert first["state"] == "failed"
    assert (tis["climate_off"]["state"], tis["wait_for_climate_off"]["state"]) == ("success", "failed")
    assert tis["wait_for_climate_off"]["try_number"] == 1  # not retried: the sensor has retries, but cannot use them
    # What the person reads: the sensor's log in the UI.
    page.goto(f"{airflow.api_url}/dags/{CLIMATE_OFF}/runs/{run_id}/tasks/wait_for_climate_off")
    page.get_by_text("This sensor only watches the command", exact=False).first.wait_for()
    message = " ".join(page.locator("body").inner_text().split())
    docs_shot(page, "fatal-failure-steps")
    headline = (
        f"CLIMATE_OFF on vehicle {vid} FAILED: OEM_OAUTH_TOKEN_EXPIRED (Airflow will NOT retry this sensor: it "
        "would read the same FAILED execution)"
    )
    assert headline in message
    assert "Clear task 'climate_off' with Downstream selected" in message, message[-3000:]
    assert "delete the key" not in message  # no state-store chores any more

    # The step, as a person follows it.
    page.goto(f"{airflow.api_url}/dags/{CLIMATE_OFF}/runs/{run_id}/tasks/climate_off")
    clear_in_the_ui(page, affected=2)  # Downstream is selected: climate_off and its sensor

    second = rerun(airflow, CLIMATE_OFF, run_id)
    made = executions(simulator, vid)
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(CLIMATE_OFF, run_id)}
    record.update(
        run_state=second["state"],
        executions=[e["status"] for e in made],
        tis={k: (v["state"], v["try_number"]) for k, v in tis.items()},
        state_mismatches=state_mismatches(airflow, CLIMATE_OFF, run_id),
    )
    assert second["state"] == "success", record
    assert [e["status"] for e in made] == ["FAILED", "EXECUTED"]  # one new command, not more
    assert creates(simulator, [vid]) == {vid: 2} == create_attempts(simulator, [vid])
    # No previously green task turned red: the sending task sent again instead of reporting the old failure.
    assert (tis["climate_off"]["state"], tis["climate_off"]["try_number"]) == ("success", 2)
    assert (tis["wait_for_climate_off"]["state"], tis["wait_for_climate_off"]["try_number"]) == ("success", 2)
    xcom = airflow.get(f"/api/v2/dags/{CLIMATE_OFF}/dagRuns/{run_id}/taskInstances/climate_off/xcomEntries/id")
    assert xcom["value"] == made[1]["id"]  # the sensor waited for the new command


def test_a_clear_of_one_mapped_fleet_task_sends_one_new_command_to_its_vehicle(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    """The mapped fleet example: one vehicle's task fails fatally; a person clears that mapped task instance
    in the UI (its record is its own, at its map index) and only that vehicle gets one new command."""
    ok, consent = "ui-clear-fleet-ok", "ui-clear-fleet-consent"
    set_scenario(simulator, ok, outcome="EXECUTED", delay=3.0)
    set_scenario(simulator, consent, **FATAL_THEN_EXECUTED)
    prepare_fleet(airflow)
    run_id = airflow.trigger(FLEET, {"vehicle_ids": [ok, consent]})
    assert airflow.wait_run(FLEET, run_id, timeout=240)["state"] == "failed"
    tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
    index = {ti["rendered_map_index"]: i for i, ti in tis.items()}[consent]
    assert (tis[index]["state"], tis[index]["try_number"]) == ("failed", 1)

    page.goto(f"{airflow.api_url}/dags/{FLEET}/runs/{run_id}/tasks/climate_off/mapped/{index}")
    page.get_by_text("Clear this task in the Airflow UI", exact=False).first.wait_for()
    clear_in_the_ui(page, affected=2)  # the vehicle's task and, downstream, fleet_outcome (it reports again)

    again = rerun(airflow, FLEET, run_id)
    tis = mapped_tis(airflow, FLEET, run_id, "climate_off")
    record.update(
        run_state=again["state"],
        tis={ti["rendered_map_index"]: (ti["state"], ti["try_number"]) for ti in tis.values()},
        creates=creates(simulator, [ok, consent]),
        state_mismatches=state_mismatches(airflow, FLEET, run_id),
    )
    assert again["state"] == "success", record
    assert record["tis"] == {ok: ("success", 1), consent: ("success", 2)}, record
    assert creates(simulator, [ok, consent]) == {ok: 1, consent: 2} == create_attempts(simulator, [ok, consent])
    assert [e["status"] for e in executions(simulator, consent)] == ["FAILED", "EXECUTED"]


# --------------------------------------------------------------------------- 5. providers page


def test_the_providers_page_lists_the_provider_without_an_unconfirmed_address(airflow: Deployment, page: Any) -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "urls" not in project  # no address that nobody confirmed (issue 17)
    page.goto(f"{airflow.api_url}/providers")
    row = page.get_by_role("row").filter(has_text="airflow-provider-volteras")
    row.first.wait_for()
    assert row.get_by_text("know whether each was executed", exact=False).is_visible()
    hrefs = [a.get_attribute("href") or "" for a in row.get_by_role("link").all()]
    assert not any("github.com/volteras" in h for h in hrefs), hrefs


# --------------------------------------------------------------------------- 6. arguments checked by the form


def test_the_command_form_refuses_bad_arguments_before_anything_is_sent(
    airflow: Deployment, simulator: Any, page: Any, record: dict[str, Any]
) -> None:
    vid = "sim-ok-ui-args"
    set_scenario(simulator, vid, outcome="EXECUTED", delay=2.0)
    unpause(airflow, SEND)
    form = trigger_form(page, airflow, SEND)
    form.locator("[name='element_vehicle_id']").fill(vid)
    choose(page, form, "SET_CHARGE_LIMIT")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=airflow.api_url)

    def arguments(text: str) -> None:
        """Paste ``text`` over the Arguments editor's content, as a person would (typed braces get auto-closed)."""
        editor = form.locator(".monaco-editor").first
        page.evaluate("text => navigator.clipboard.writeText(text)", text)
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Control+V")
        editor.get_by_text(text.split(":")[-1].strip(" }")).first.wait_for()

    def trigger() -> Any:
        with page.expect_response(
            lambda r: r.url.endswith(f"/dags/{SEND}/dagRuns") and r.request.method == "POST"
        ) as a:
            form.get_by_role("button", name="Trigger").last.click()
        return a.value

    arguments('{"limit": 150}')
    refused = trigger()
    form.get_by_text("150 is greater than the maximum of 100", exact=False).first.wait_for()
    docs_shot(page, "trigger-form-refused")
    record.update(refused_status=refused.status, refused=refused.json()["detail"][:120])
    assert refused.status == 400
    assert not [r for r in airflow.dag_runs(SEND) if r["conf"].get("vehicle_id") == vid]  # no run was created
    assert simulator.state.executions(vid) == []  # nothing reached the API

    arguments('{"limit": 80}')
    accepted = trigger()
    assert accepted.status == 200, accepted.text()
    run_id = accepted.json()["dag_run_id"]
    finished = airflow.wait_run(SEND, run_id, timeout=180)
    made = executions(simulator, vid)
    record.update(run_state=finished["state"], sent=[(e["command"], e["commandArguments"]) for e in made])
    assert finished["state"] == "success", record
    assert [(e["command"], e["commandArguments"], e["status"]) for e in made] == [
        ("SET_CHARGE_LIMIT", {"limit": 80}, "EXECUTED")
    ]
