"""Cheap definitions shared by the operators, the sensor and the protocol core.

DAG files import the operators, so this module is all they load of the client at parse time: id
validation, the execution statuses and the wait defaults. Everything else lives in ``_protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_volteras.exceptions import VolterasInvalidInputError

STATUS_PENDING = "PENDING"
STATUS_EXECUTED = "EXECUTED"
STATUS_FAILED = "FAILED"
EXECUTION_STATUSES = frozenset({STATUS_PENDING, STATUS_EXECUTED, STATUS_FAILED})
TERMINAL_STATUSES = frozenset({STATUS_EXECUTED, STATUS_FAILED})

FIRST_POLL_DELAY = 1.0
POLL_GROWTH = 1.5
DEFAULT_POLL_INTERVAL = 15.0
DEFAULT_WAIT_TIMEOUT = 600.0

MAX_ID_LENGTH = 200
_ID_RE = re.compile(r"[A-Za-z0-9_.:~-]+")


def validate_id(value: Any, what: str = "vehicle_id") -> str:
    """Refuse an id that is empty, too long, or could change the request path; return it unchanged.

    Ids are ASCII letters, digits and ``_ . : ~ -`` (no ``..``), so a path separator, query, fragment,
    percent-escape, whitespace, control character or unicode look-alike can never reach a URL.
    """
    if not isinstance(value, str):
        raise VolterasInvalidInputError(f"{what} must be a string, got {type(value).__name__}.")
    if not value:
        raise VolterasInvalidInputError(f"{what} is empty.")
    if len(value) > MAX_ID_LENGTH:
        raise VolterasInvalidInputError(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH} allowed.")
    if not _ID_RE.fullmatch(value) or ".." in value or value == ".":
        bad = sorted({c for c in value if not _ID_RE.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad[:5]) if bad else "'..'" if ".." in value else "only '.'"
        raise VolterasInvalidInputError(
            f"{what} {value[:60]!r} contains {shown}; ids may only use ASCII letters, digits and _ . : ~ - "
            "(and no '..')."
        )
    return value


def is_terminal(execution: Mapping[str, Any]) -> bool:
    return execution.get("status") in TERMINAL_STATUSES


#: Longest execution id believed from an answer (or accepted from XCom).
MAX_ISSUED_ID_LENGTH = 500


def validate_issued_id(value: Any, what: str = "command_execution_id") -> str:
    """Check an id the API issued (an execution id): non-empty text, bounded, printable, no whitespace.

    Issued ids are not held to the rules of ids users type (the API may use ``+``, ``/`` or ``=``);
    they are always percent-encoded as one path segment when used.
    """
    if not isinstance(value, str):
        raise VolterasInvalidInputError(f"{what} must be a string, got {type(value).__name__}.")
    if not value or len(value) > MAX_ISSUED_ID_LENGTH:
        raise VolterasInvalidInputError(f"{what} must be 1 to {MAX_ISSUED_ID_LENGTH} characters long.")
    if not value.isprintable() or any(c.isspace() for c in value) or value in (".", ".."):
        raise VolterasInvalidInputError(
            f"{what} {value[:60]!r} is not an id the API issues (control characters, spaces, or only dots)."
        )
    return value
