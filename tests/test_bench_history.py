"""The history benchmark's claim, small: API requests per command do not grow with the vehicle's history.

Runs ``benchmarks.bench_history.run`` (embedded simulator, ``ClimateOffOperator(deferrable=False)``) for
histories of 0 and 2,000 past executions, on both paths (create answered; create answer lost, so the
adoption listing runs). The windowed provider must make the same requests at both sizes; the unwindowed
variant (``command_filter`` ignoring ``since``) must make more at 2,000, so this fails if the window stops
narrowing the listings. Request counts only: nothing on time.
"""

from __future__ import annotations

from typing import Any

from benchmarks.bench_history import KINDS, PATHS, run

SMALL, LARGE = 0, 2_000


def _counts(row: dict[str, Any]) -> dict[str, int]:
    return {kind: row[kind] for kind in (*KINDS, "total")}


def test_requests_per_command_stay_flat_as_history_grows() -> None:
    rows = run([SMALL, LARGE])
    by = {(r["variant"], r["path"], r["history"]): r for r in rows}
    assert len(by) == len(rows) == 8
    for path in PATHS:
        small, large = by[("windowed", path, SMALL)], by[("windowed", path, LARGE)]
        assert _counts(large) == _counts(small), path
        assert small["create"] == 1 and small["list"] >= 1, path
        whole_small, whole_large = by[("unwindowed", path, SMALL)], by[("unwindowed", path, LARGE)]
        # Without the window a listing pages through the 2,000 past executions (100 a page).
        assert whole_large["list"] >= small["list"] + 19, (path, whole_large)
        assert whole_large["total"] > large["total"], (path, whole_large, large)
        assert _counts(whole_small) == _counts(small), path  # the same paths: only the history differs
