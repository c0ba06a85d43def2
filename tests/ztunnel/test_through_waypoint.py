"""Issue 4 item 3: a service with a waypoint — our ztunnel → the real Envoy waypoint (configured by
our control plane) → our destination ztunnel → the backend, with the HTTPRoute's weights applied."""

from __future__ import annotations

import collections
import re
import shutil
from pathlib import Path

import pytest

from pyambient.demo.runtime import DemoMesh
from pyambient.demo.scenarios import Mesh
from pyambient.runtime.envoy import wait_until

pytestmark = [pytest.mark.ztunnel, pytest.mark.envoy]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mesh"


def test_service_traffic_goes_ztunnel_waypoint_ztunnel_with_route_weights(tmp_path: Path) -> None:
    mesh_dir = tmp_path / "mesh"
    shutil.copytree(EXAMPLES, mesh_dir)
    demo = DemoMesh(mesh_dir, tmp_path).start()
    try:
        mesh = Mesh(demo)
        vip, port = mesh.vip("httpbin")
        counts: collections.Counter[str] = collections.Counter()
        requests = 500  # the waypoint picks per request at random: σ of the 90/10 share is 1.3 %, bounds are ≥5σ
        for _ in range(requests):
            status, body = mesh.get("sleep-0", (vip, port))
            assert status == 200
            counts[body] += 1
        assert set(counts) == {"httpbin-v1-0", "httpbin-v2-0"}
        assert 0.83 <= counts["httpbin-v1-0"] / requests <= 0.97, counts

        waypoint_ip = demo.plan.waypoints[0].pod.ip if demo.plan else ""
        source, destination = demo.ztunnels["node-a"], demo.ztunnels["node-b"]
        steering = (
            rf"proxying to {re.escape(vip)}:{port} using HBONE via {re.escape(waypoint_ip)}:15008 type ToServerWaypoint"
        )
        wait_until(
            lambda: any(re.search(steering, line) for line in source.log_lines()),
            timeout=5,
            what="the source ztunnel steers the VIP to the waypoint",
        )
        from_waypoint = 'src.identity="spiffe://cluster.local/ns/default/sa/waypoint"'
        wait_until(
            lambda: any(
                from_waypoint in line and 'dst.workload="httpbin-v1-0"' in line for line in destination.log_lines()
            ),
            timeout=5,
            what="the destination ztunnel receives HBONE from the waypoint's identity",
        )
        envoy = demo.envoys["waypoint"]
        assert envoy.stat("cluster.connect_originate.upstream_cx_total") > 0
        assert demo.control is not None and len(demo.control.control_plane.nacks) == 0
    finally:
        demo.stop()
