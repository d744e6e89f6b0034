"""Run the climate-off example DAG against the embedded simulator and print what happened."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"


def main() -> int:
    vehicle_id = sys.argv[1] if len(sys.argv) > 1 else "sim-ok"
    home = Path(tempfile.mkdtemp(prefix="volteras-demo-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Wait for commands in the triggerer (the operators follow this setting, as Airflow's own do).
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "VOLTERAS_EXAMPLE_RETRY_SECONDS": "2",
    }
    print(f"== Airflow home {home}: migrating the metadata DB")
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    sim = subprocess.Popen(
        [BIN / "python", "-m", "airflow_provider_volteras.simulator", "--port", "0", "--default-delay", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            print(f"simulator did not start: {line!r}", file=sys.stderr)
            return 1
        base_url = match.group(0)
        print(f"== Volteras simulator at {base_url}")
        env["AIRFLOW_CONN_VOLTERAS_DEFAULT"] = json.dumps(
            {
                "conn_type": "volteras",
                "login": "volteras-sim-client",
                "password": "volteras-sim-secret",
                "host": base_url,
            }
        )
        print(f"== airflow dags test volteras_climate_off (vehicle_id={vehicle_id})")
        log = home / "dags-test.log"
        with log.open("w") as out:
            run = subprocess.run(
                [BIN / "airflow", "dags", "test", "volteras_climate_off", "-c", json.dumps({"vehicle_id": vehicle_id})],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        text = log.read_text()
        for pattern in (
            "Sent CLIMATE_OFF",
            "deferring until",
            "running trigger in line",
            "EXECUTED \\(",
            "FAILED with",
            "Marking run",
            "DagRun Finished",
        ):
            for found in re.findall(rf".*{pattern}.*", text):
                print("   ", re.sub(r"\s+\[[^\]]*\]\s+loc=.*$", "", found.strip())[:220])
        with urllib.request.urlopen(f"{base_url}/_simulator/counters") as resp:
            counters = json.load(resp)
        creates = counters.get("creates", {}).get(vehicle_id, {})
        state = "success" if "state=success" in text else "failed"
        print(
            f"== Outcome: DAG run {state}; the simulator received {sum(creates.values())} CLIMATE_OFF create(s) for "
            f"{vehicle_id}, {counters.get('polls')} status polls, {counters.get('tokenRequests')} token request(s)."
        )
        print(f"   Full log: {log}")
        return 0 if (run.returncode == 0 and state == "success") or vehicle_id != "sim-ok" else 1
    finally:
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
