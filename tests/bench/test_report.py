"""benchmarks.report: the ztunnel rows, their ratios to the Envoy pair of the same run, and the ceiling rows."""

from __future__ import annotations

from typing import Any

from benchmarks.report import build, table


def _raw() -> dict[str, Any]:
    def bulk(value: float, cost: float) -> dict[str, Any]:
        return {"value": value, "unit": "Gbit/s", "cpu_s_per_gb": cost}

    return {
        "_meta": {"rounds": 1},
        "envoy": {"tput1": bulk(5.0, 2.0), "crr": {"value": 1000.0, "unit": "conn/s", "cpu_us_per_op": 600.0}},
        "ztunnel-cython": {"tput1": bulk(6.0, 1.8), "crr": {"value": 1100.0, "unit": "conn/s", "cpu_us_per_op": 550.0}},
        "ceiling-c-plain": {"tput1": bulk(7.5, 1.0)},
    }


def test_rows_are_ratios_to_the_envoy_pair_and_ceilings_come_last() -> None:
    rows = build(_raw())
    assert [(r["name"], r["metric"], r["ratio"]) for r in rows] == [
        ("ztunnel-cython-hbone-pair", "tput1", 1.2),
        ("ztunnel-cython-hbone-pair", "crr", 1.1),
        ("ceiling-c-plain-relay-pair", "tput1", 1.5),
    ]


def test_the_table_judges_targets_but_not_ceilings() -> None:
    text = table(build(_raw()), _raw())
    lines = [" ".join(line.split()) for line in text.splitlines()[1:]]
    assert "ztunnel-cython-hbone-pair tput1 6.000 Gbit/s 5.000 1.200 1.5x 1.80 CPU-s/GB below" in lines
    assert "ztunnel-cython-hbone-pair crr 1100.000 conn/s 1000.000 1.100 1.0x 550 CPU-µs/op ok" in lines
    assert "ceiling-c-plain-relay-pair tput1 7.500 Gbit/s 5.000 1.500 1.00 CPU-s/GB (ceiling)" in lines
    assert "(anchor) envoy-hbone-pair tput1 5.000 Gbit/s 2.00 CPU-s/GB" in lines
