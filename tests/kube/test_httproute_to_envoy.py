"""An HTTPRoute applied with kubectl reaches a running Envoy waypoint as new route weights.

The whole path is real: kubectl → kube-apiserver → the controller's watches → mesh model →
control plane → delta ADS → Envoy's /config_dump.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.kube.cluster import KubeCluster
from waypoint.controller import WaypointController
from waypoint.kube.api import KubeApi
from xds.envoy.bootstrap import WaypointNode
from xds.mesh.model import Mesh
from xds.mesh.objects import mesh_from_objects

pytestmark = [pytest.mark.kube, pytest.mark.envoy]

SERVICES = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {selector}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: {ns}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
"""

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web-split, namespace: {ns}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - backendRefs:
    - {{name: web-v1, port: 80, weight: {v1}}}
    - {{name: web-v2, port: 80, weight: {v2}}}
"""


@pytest.fixture
def control_plane() -> Iterator[ControlPlaneThread]:
    control = ControlPlaneThread(Mesh()).start()
    try:
        yield control
    finally:
        control.stop()


@pytest.fixture
def fed_controller(kube_api: KubeApi, control_plane: ControlPlaneThread) -> Iterator[WaypointController]:
    def publish(objects: list[dict]) -> None:  # type: ignore[type-arg]
        control_plane.control_plane.update(mesh_from_objects(objects))

    running = WaypointController(kube_api, publish=publish)
    running.start()
    assert running.wait_synced(30)
    try:
        yield running
    finally:
        running.stop()


def test_kubectl_applied_httproute_reaches_envoy_weights(
    kube_cluster: KubeCluster,
    namespace: str,
    control_plane: ControlPlaneThread,
    fed_controller: WaypointController,
    tmp_path: Path,
) -> None:
    kube_cluster.kubectl("label", "namespace", namespace, "istio.io/dataplane-mode=ambient")
    for name, selector in (
        ("web", "{app: web}"),
        ("web-v1", "{app: web, version: v1}"),
        ("web-v2", "{app: web, version: v2}"),
    ):
        kube_cluster.apply(SERVICES.format(name=name, ns=namespace, selector=selector))
    kube_cluster.apply(GATEWAY.format(ns=namespace))
    node = WaypointNode("waypoint", namespace, "127.0.12.9")
    credentials = control_plane.waypoint_credentials(node)
    envoy = EnvoyProcess(tmp_path, node, credentials=credentials).start()
    try:
        chain = f"inbound-vip|80|http|web.{namespace}.svc.cluster.local"
        wait_until(lambda: chain in json.dumps(envoy.config_dump()), timeout=60, what="envoy has the web chain")
        kube_cluster.apply(ROUTE.format(ns=namespace, v1=90, v2=10))
        wait_until(lambda: envoy.route_weights(chain) == [90, 10], timeout=60, what="90/10 in envoy")
        kube_cluster.apply(ROUTE.format(ns=namespace, v1=50, v2=50))
        wait_until(lambda: envoy.route_weights(chain) == [50, 50], timeout=60, what="50/50 in envoy")
        assert envoy.alive()
        assert len(control_plane.control_plane.nacks) == 0
    finally:
        envoy.stop()
