"""The suite-wide timeout stops a test even when the code under test takes SIGALRM over.

Airflow's in-process task timeout (inside ``dag.test()``) installs its own SIGALRM handler and
cancels the pending alarm, which disarms pytest-timeout's default "signal" method: a hung test
then runs forever. pyproject.toml sets ``timeout_method = "thread"``; this runs a child pytest with
that configuration and a 3 s timeout against a test that disarms the alarm, and checks the child
was stopped by the timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HANGS_AFTER_DISARMING_THE_ALARM = """
import signal
import time


def test_hangs_after_taking_sigalrm_over():
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.alarm(0)
    print("ALARM DISARMED", flush=True)
    time.sleep(600)
"""


def test_a_test_that_disarms_sigalrm_is_still_stopped(tmp_path):
    test_file = tmp_path / "test_hang.py"
    test_file.write_text(HANGS_AFTER_DISARMING_THE_ALARM)
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),  # the suite's own [tool.pytest.ini_options], timeout_method included
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-s",
            "--timeout",
            "3",
            str(test_file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,  # far beyond the 3 s: reaching it means the child was never stopped
    )
    output = child.stdout + child.stderr
    assert "ALARM DISARMED" in output, output  # the child really ran the test and disarmed the alarm
    assert "Timeout" in output, output  # pytest-timeout's banner, followed by the stacks it dumps
    assert "test_hangs_after_taking_sigalrm_over" in output, output
    assert child.returncode != 0, output
    assert " passed" not in output, output
