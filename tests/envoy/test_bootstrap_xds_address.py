"""The waypoint bootstrap's xDS cluster: an IP is a STATIC endpoint, a name is resolved (STRICT_DNS).

With `--xds HOST:PORT` (the plaintext port, local tools; waypoint pods use the agent's socket instead) the host
may be a name, e.g. `pyambient-controller.istio-system.svc`; Envoy refuses a name in a STATIC cluster
(`malformed IP address`), which only a real pod showed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xds.envoy.bootstrap import XDS_CLUSTER, WaypointNode, bootstrap_json, waypoint_bootstrap

ENVOY = Path(sys.executable).parent / "envoy"

ROWS = [
    pytest.param("10.96.0.10", "STATIC", id="ip-literal-is-static"),
    pytest.param("::1", "STATIC", id="ipv6-literal-is-static"),
    pytest.param("pyambient-controller.istio-system.svc", "STRICT_DNS", id="service-name-is-resolved"),
    pytest.param("localhost", "STRICT_DNS", id="plain-hostname-is-resolved"),
]


@pytest.mark.parametrize(("host", "expected"), ROWS)
def test_xds_cluster_type_follows_the_address(host: str, expected: str) -> None:
    bootstrap = waypoint_bootstrap(WaypointNode("waypoint", "ns", "10.244.0.9"), host, 15010)
    assert bootstrap.static_resources is not None
    cluster = next(c for c in bootstrap.static_resources.clusters if c.name == XDS_CLUSTER)
    assert cluster.type is not None and cluster.type.name == expected


@pytest.mark.envoy
def test_envoy_accepts_a_bootstrap_naming_the_xds_server(tmp_path: Path) -> None:
    bootstrap = waypoint_bootstrap(WaypointNode("waypoint", "ns", "127.0.0.1"),
                                   "pyambient-controller.istio-system.svc", 15010)
    config = tmp_path / "bootstrap.json"
    config.write_text(bootstrap_json(bootstrap))
    result = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(config)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
