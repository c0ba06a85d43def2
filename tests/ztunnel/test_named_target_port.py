"""Issue 9's probe, over real processes: a Service with `targetPort: http`, whose two pods declare `http` on
different container ports (8080, 8081) and a third pod that declares no `http` at all. Requests to the VIP reach
both pods on their own port — through our ztunnels alone, and through a real Envoy waypoint — and never the third.
A Service without a selector is served from its EndpointSlice."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from pyambient.demo.runtime import DemoMesh
from pyambient.demo.scenarios import Mesh

pytestmark = [pytest.mark.ztunnel, pytest.mark.envoy, pytest.mark.policy]

MESH = """
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep-0, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, nodeName: node-a}
status: {podIP: 127.0.1.10}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 127.96.0.40
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-wp, namespace: default, labels: {istio.io/use-waypoint: waypoint}}
spec:
  clusterIP: 127.96.0.41
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: default, labels: {app: web}}
spec:
  serviceAccountName: web
  nodeName: node-b
  containers: [{name: app, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 127.0.1.40}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec:
  serviceAccountName: web
  nodeName: node-b
  containers: [{name: app, ports: [{name: metrics, containerPort: 9090}, {name: http, containerPort: 8081}]}]
status: {podIP: 127.0.1.41}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: default, labels: {app: web}}
spec:
  serviceAccountName: web
  nodeName: node-b
  containers: [{name: app, ports: [{name: metrics, containerPort: 9090}]}]
status: {podIP: 127.0.1.42}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  clusterIP: 127.96.0.42
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: default, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
endpoints: [{addresses: [127.0.1.41], conditions: {ready: true}}]
ports: [{name: http, port: 8081}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata:
  name: waypoint
  namespace: default
  labels: {gateway.istio.io/managed: istio.io-mesh-controller, gateway.networking.k8s.io/gateway-name: waypoint}
spec:
  clusterIP: 127.96.0.2
  selector: {gateway.networking.k8s.io/gateway-name: waypoint}
  ports: [{name: mesh, port: 15008, appProtocol: hbone}]
---
apiVersion: v1
kind: Pod
metadata:
  name: waypoint-0
  namespace: default
  labels: {gateway.networking.k8s.io/gateway-name: waypoint, istio.io/dataplane-mode: none}
spec: {serviceAccountName: waypoint}
status: {podIP: 127.0.2.1}
"""


def test_named_target_port_reaches_each_pod_on_its_own_port(tmp_path: Path) -> None:
    mesh_dir = tmp_path / "mesh"
    mesh_dir.mkdir()
    (mesh_dir / "mesh.yaml").write_text(MESH)
    demo = DemoMesh(mesh_dir, tmp_path).start()
    try:
        assert demo.plan is not None
        served = {(b.pod.name, b.port) for b in demo.plan.backends}
        assert served == {("web-0", 8080), ("web-1", 8081)}  # web-2 serves no `http`: no backend behind it
        mesh = Mesh(demo)
        for service in ("web", "web-wp"):
            counts: collections.Counter[str] = collections.Counter()
            for _ in range(20):
                status, body = mesh.get("sleep-0", mesh.vip(service))
                assert status == 200, (service, body)
                counts[body] += 1
            # round robin over the two pods that declare `http` (the ztunnel alternates; Envoy's default
            # round robin over two hosts does too), never the third
            assert set(counts) == {"web-0", "web-1"}, (service, counts)
        # a Service without a selector: its EndpointSlice says where (web-1) and on which port (8081)
        for _ in range(3):
            assert mesh.get("sleep-0", mesh.vip("ext")) == (200, "web-1")
        source = demo.ztunnels["node-a"]
        lines = source.log_lines()
        assert any("proxying to 127.0.1.40:8080 using HBONE" in line for line in lines)
        assert any("proxying to 127.0.1.41:8081 using HBONE" in line for line in lines)
        assert any("proxying to 127.96.0.41:80 using HBONE via 127.0.2.1:15008 type ToServerWaypoint" in line
                   for line in lines)  # fmt: skip
        assert demo.control is not None and len(demo.control.control_plane.nacks) == 0
    finally:
        demo.stop()
