"""``[core] hostname_callable`` of the end-to-end deployments: each Airflow process reports the name its
test gave it (``VOLTERAS_E2E_HOSTNAME``: ``worker-1``, ``triggerer-2``, ...), so the REST API tells which
worker ran a task try and which triggerer job is which process."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("VOLTERAS_E2E_HOSTNAME") or socket.getfqdn()
