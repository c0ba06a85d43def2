"""Collects benchmark figures into results/latest.json as `{"name","metric","value","unit","anchor","ratio"}`."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
_lock = threading.Lock()


def record(name: str, metric: str, value: float, unit: str, *, anchor: float | None = None) -> None:
    """Add or replace one figure; `ratio` = value / anchor when an anchor was measured in the same run."""
    entry = {
        "name": name,
        "metric": metric,
        "value": value,
        "unit": unit,
        "anchor": anchor,
        "ratio": (value / anchor) if anchor else None,
    }
    with _lock:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        rows = [r for r in rows if not (r["name"] == name and r["metric"] == metric)] + [entry]
        tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
        tmp.replace(RESULTS)
