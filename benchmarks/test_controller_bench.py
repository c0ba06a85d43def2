"""Benchmark (issue 3, item 6): 100 waypoint Gateways applied at once against a real apiserver.

Measured from the `kubectl apply` until every Gateway has its ServiceAccount, Deployment and
Service and shows Accepted=True. Also reported: the mesh feed's latency from the first watch
event of a burst to the control plane holding the rebuilt mesh (event → xDS push).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest benchmarks` does not put the repository root on sys.path
    sys.path.insert(0, str(ROOT))

from tests.kube.cluster import KubeCluster, remove_cluster, start_cluster  # noqa: E402
from waypoint.controller import WaypointController  # noqa: E402
from waypoint.kube.api import (  # noqa: E402
    DEPLOYMENTS,
    GATEWAYS,
    SERVICE_ACCOUNTS,
    SERVICES,
    KubeApi,
    api_client_from_kubeconfig,
)
from xds.controlplane import ControlPlane  # noqa: E402
from xds.mesh.objects import mesh_from_objects  # noqa: E402

pytestmark = pytest.mark.kube

GATEWAYS_PER_ROUND = 100
_rounds = itertools.count(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeCluster]:
    running = start_cluster()
    try:
        yield running
    finally:
        remove_cluster(running)


@pytest.fixture(scope="module")
def controller(cluster: KubeCluster) -> Iterator[WaypointController]:
    control_plane = ControlPlane(debounce=0.0)

    def publish(objects: list[dict[str, Any]]) -> None:
        control_plane.update(mesh_from_objects(objects))

    api = KubeApi(api_client_from_kubeconfig(str(cluster.kubeconfig)))
    running = WaypointController(api, publish=publish)
    running.start()
    assert running.wait_synced(30)
    try:
        yield running
    finally:
        running.stop()
        api.close()


def gateways_manifest(namespace: str, count: int) -> str:
    documents = [
        f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint-{i}, namespace: {namespace}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
"""
        for i in range(count)
    ]
    return "---\n".join(documents)


def converged(controller: WaypointController, namespace: str, count: int) -> bool:
    def in_namespace(kind: Any) -> list[dict[str, Any]]:
        return [o for o in controller.items(kind) if o["metadata"].get("namespace") == namespace]

    accepted = [
        g for g in in_namespace(GATEWAYS)
        if any(c.get("type") == "Accepted" and c.get("status") == "True"
               for c in (g.get("status") or {}).get("conditions") or ())
    ]
    return len(accepted) == count and all(
        len(in_namespace(kind)) == count for kind in (SERVICE_ACCOUNTS, DEPLOYMENTS, SERVICES)
    )


def test_hundred_gateways_to_accepted(benchmark: Any, cluster: KubeCluster,
                                      controller: WaypointController) -> None:
    def setup() -> tuple[tuple[str], dict[str, Any]]:
        namespace = f"bench-{next(_rounds)}"
        cluster.kubectl("create", "namespace", namespace)
        return (namespace,), {}

    def apply_and_wait(namespace: str) -> None:
        cluster.apply(gateways_manifest(namespace, GATEWAYS_PER_ROUND))
        deadline = time.monotonic() + 300
        while not converged(controller, namespace, GATEWAYS_PER_ROUND):
            assert time.monotonic() < deadline, "100 Gateways did not converge in 300 s"
            time.sleep(0.02)

    benchmark.pedantic(apply_and_wait, setup=setup, rounds=3, iterations=1)
    assert controller.reconcile_errors == 0
    if benchmark.stats is not None:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["per_gateway_ms"] = round(1000 * mean / GATEWAYS_PER_ROUND, 2)
    # One isolated change after the bursts: watch event → mesh rebuilt → handed to the control plane.
    feed = controller.mesh_feed
    assert feed is not None
    latencies = []
    for attempt in range(5):
        published = feed.publishes
        cluster.kubectl("label", "--overwrite", "namespace", "default", f"bench-probe={attempt}")
        deadline = time.monotonic() + 10
        while feed.publishes == published:
            assert time.monotonic() < deadline, "no push after a namespace label change"
            time.sleep(0.005)
        assert feed.last_latency_seconds is not None
        latencies.append(feed.last_latency_seconds)
    benchmark.extra_info["event_to_push_ms_median"] = round(1000 * sorted(latencies)[len(latencies) // 2], 2)
    benchmark.extra_info["mesh_objects"] = len(controller.mesh_objects())
    benchmark.extra_info["applies"] = controller.reconciler.applies
    benchmark.extra_info["status_writes"] = controller.reconciler.status_writes
