"""Control-plane benchmarks: config generation at scale, and config volume waypoints vs sidecars."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.meshgen import synthetic_mesh
from benchmarks.results import record
from benchmarks.sidecar_model import shared_sidecar_parts, sidecar_snapshot
from xds import resources
from xds.envoy.waypoint import build_waypoint
from xds.mesh.objects import mesh_from_objects
from xds.snapshot import Snapshot
from xds.ztunnel_state import ztunnel_resources


def _waypoint_snapshot(mesh: Any, waypoint: Any) -> Snapshot:
    built = build_waypoint(mesh, waypoint)
    return Snapshot.build(
        {
            resources.LISTENER: [(r.name, r) for r in built.listeners],
            resources.CLUSTER: [(r.name, r) for r in built.clusters],
            resources.ENDPOINT: [(r.cluster_name, r) for r in built.endpoints],
        }
    )


@pytest.fixture(scope="module")
def big_mesh() -> Any:
    # 10 namespaces × 100 services × 10 pods = 1000 services, 10k workloads, 10 waypoints.
    return mesh_from_objects(synthetic_mesh(10, 100, 10))


def test_build_and_serialize_waypoints_1000_services_10k_workloads(benchmark: Any, big_mesh: Any) -> None:
    def build_all() -> int:
        return sum(_waypoint_snapshot(big_mesh, w).total_bytes() for w in big_mesh.waypoints)

    total = benchmark.pedantic(build_all, rounds=1, iterations=1)
    record("xds_waypoint_build_1000svc_10k", "seconds", benchmark.stats.stats.mean, "s")
    record("xds_waypoint_config_1000svc_10k", "bytes", total, "B")


def test_build_and_serialize_ztunnel_state_1000_services_10k_workloads(benchmark: Any, big_mesh: Any) -> None:
    total = benchmark.pedantic(lambda: ztunnel_resources(big_mesh).total_bytes(), rounds=1, iterations=1)
    record("xds_ztunnel_build_1000svc_10k", "seconds", benchmark.stats.stats.mean, "s")
    record("xds_ztunnel_config_1000svc_10k", "bytes", total, "B")


def test_config_volume_waypoints_vs_sidecars() -> None:
    """2 namespaces × 25 deployments × 10 pods; 2 waypoint replicas per namespace (the seed's setup)."""
    replicas = 2
    mesh = mesh_from_objects(synthetic_mesh(2, 25, 10, waypoint_replicas=replicas))
    waypoint_bytes = sum(_waypoint_snapshot(mesh, w).total_bytes() for w in mesh.waypoints) * replicas
    shared = shared_sidecar_parts(mesh)
    pods = [w for w in mesh.workloads if "gateway.networking.k8s.io/gateway-name" not in w.labels]
    per_sidecar = sidecar_snapshot(mesh, pods[0], shared).total_bytes()
    sidecar_bytes = per_sidecar * len(pods)
    ratio = waypoint_bytes / sidecar_bytes
    print(
        f"\nwaypoints: {waypoint_bytes} B, sidecars: {sidecar_bytes} B ({len(pods)} × {per_sidecar} B), "
        f"ratio {ratio:.2%} (Istio reports 0.8%)"
    )
    record("config_volume_waypoints", "bytes", waypoint_bytes, "B", anchor=sidecar_bytes)
    assert ratio < 0.1  # a property of the design (scoping), not a timing
