"""Importing the API (what every server process does) keeps the import-time objects out of the collector's scans
and collects the young generation less often (backend/api/app.py, tune_gc)."""

from __future__ import annotations

import subprocess
import sys


def test_a_fresh_process_that_imports_the_api_freezes_and_sets_the_thresholds() -> None:
    code = (
        "import gc; before = gc.get_freeze_count(); import backend.api.app as app; "
        "print(before, gc.get_freeze_count(), gc.get_threshold() == app.GC_THRESHOLDS)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after, thresholds = int(out[0]), int(out[1]), out[2]
    assert before == 0 and after > 100_000 and thresholds == "True"
