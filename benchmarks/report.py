"""`python -m benchmarks.report`: fold the ztunnel measurements (benchmarks/results/ztunnel-raw.json, written by
benchmarks/test_ztunnel_bench.py) into benchmarks/results/latest.json — the shared list of
{"name", "metric", "value", "unit", "anchor", "ratio"} kept by `benchmarks.results.record`, where for the ztunnel
rows the anchor is the Envoy HBONE pair measured in the same run — and print every row as a table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.results import record

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("tput1", "tput4", "rr", "crr")
TARGETS = {"tput1": 1.5, "tput4": 1.5, "rr": 1.0, "crr": 1.0}
ANCHOR = "envoy"
CEILING = "ceiling-"  # C relay pairs (benchmarks/ceiling_relay.c): what is possible here, not targets


def row_name(raw_name: str) -> str:
    return f"{raw_name}-relay-pair" if raw_name.startswith(CEILING) else f"{raw_name}-hbone-pair"


def build(raw: dict[str, Any]) -> list[dict[str, Any]]:
    anchor = raw.get(ANCHOR, {})
    rows: list[dict[str, Any]] = []
    names = [k for k in raw if not k.startswith("_") and k != ANCHOR]
    for name in sorted(names, key=lambda k: (k.startswith(CEILING), k)):
        for metric in METRICS:
            ours = raw[name].get(metric)
            ref = anchor.get(metric)
            if ours is None:
                continue
            a = ref["value"] if ref else None
            row = {
                "name": row_name(name),
                "metric": metric,
                "value": round(ours["value"], 3),
                "unit": ours["unit"],
                "anchor": round(a, 3) if a is not None else None,
                "ratio": round(ours["value"] / a, 3) if a else None,
            }
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], raw: dict[str, Any]) -> str:
    lines = [f"{'name':<34} {'metric':<6} {'value':>12} {'unit':<7} {'envoy':>12} {'ratio':>7} {'target':>7}  cpu"]
    raw_names = {row_name(k): k for k in raw if not k.startswith("_")}
    for r in rows:
        cost = raw[raw_names[r["name"]]][r["metric"]]
        cpu = (
            f"{cost['cpu_s_per_gb']:.2f} CPU-s/GB"
            if "cpu_s_per_gb" in cost
            else f"{cost.get('cpu_us_per_op', 0):.0f} CPU-µs/op"
        )
        if r["name"].startswith(CEILING):
            target, ok = f"{'':>7}", "(ceiling)"
        else:
            t = TARGETS[r["metric"]]
            target = f"{t:>6.1f}x"
            ok = "" if r["ratio"] is None else ("ok" if r["ratio"] >= t else "below")
        lines.append(
            f"{r['name']:<34} {r['metric']:<6} {r['value']:>12.3f} {r['unit']:<7} "
            f"{(r['anchor'] or 0):>12.3f} {(r['ratio'] or 0):>7.3f} {target}  {cpu} {ok}"
        )
    anchor = raw.get(ANCHOR, {})
    for metric in METRICS:
        if metric in anchor:
            a = anchor[metric]
            cpu = (
                f"{a['cpu_s_per_gb']:.2f} CPU-s/GB"
                if "cpu_s_per_gb" in a
                else f"{a.get('cpu_us_per_op', 0):.0f} CPU-µs/op"
            )
            lines.append(
                f"{'(anchor) envoy-hbone-pair':<34} {metric:<6} {a['value']:>12.3f} {a['unit']:<7} "
                f"{'':>12} {'':>7} {'':>7}  {cpu}"
            )
    return "\n".join(lines)


def main() -> int:
    raw_path = RESULTS / "ztunnel-raw.json"
    if raw_path.exists():
        raw = json.loads(raw_path.read_text())
        rows = build(raw)
        for r in rows:
            record(r["name"], r["metric"], r["value"], r["unit"], anchor=r["anchor"])
        print("ztunnel (layout `nodes`, ratios to the Envoy HBONE pair measured in the same run):")
        print(table(rows, raw))
        print()
    else:
        print(f"(no {raw_path.name}: run `pytest benchmarks --benchmark-enable` for the ztunnel figures)")
    latest = RESULTS / "latest.json"
    all_rows = json.loads(latest.read_text()) if latest.exists() else []
    print(f"{latest.relative_to(RESULTS.parent.parent)}:")
    print(f"{'name':<44} {'metric':<24} {'value':>14} {'unit':<10} {'anchor':>14} {'ratio':>8}")
    for r in all_rows:
        anchor = "" if r.get("anchor") is None else f"{r['anchor']:.3f}"
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        print(f"{r['name']:<44} {r['metric']:<24} {r['value']:>14.3f} {r['unit']:<10} {anchor:>14} {ratio:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
