"""`pyambient demo --check`: the main job, end to end (control plane, 2 ztunnels, Envoy waypoint, backends)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.envoy, pytest.mark.ztunnel]


def test_demo_check_passes_every_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pyambient", "demo", "--check", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    print(done.stdout[-4000:], done.stderr[-2000:])
    assert done.returncode == 0
    assert "6/6 scenarios passed" in done.stdout
    for evidence in (
        "using HBONE via",
        "RBAC rejected conn=",
        "helloworld-v1-0=",
        "istio_tcp_connections_opened_total",
    ):
        assert evidence in done.stdout
