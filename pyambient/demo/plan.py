"""What a local demo mesh runs, derived from the mesh model alone (pure).

- one ztunnel per `spec.nodeName` ("node"), at 127.0.0.2, 127.0.0.3, … in name order;
- one Envoy per waypoint pod (a pod labelled `gateway.networking.k8s.io/gateway-name`), listening on
  the pod's IP;
- one small HTTP backend per serving pod and target port (pods that some service selects).
"""

from __future__ import annotations

from dataclasses import dataclass

from xds.mesh.model import GATEWAY_NAME_LABEL, Mesh, Waypoint, Workload

FIRST_NODE_IP = 2  # 127.0.0.1 is the control plane's; nodes start at 127.0.0.2


@dataclass(frozen=True)
class NodePlan:
    name: str
    ip: str
    workloads: tuple[Workload, ...]


@dataclass(frozen=True)
class WaypointPlan:
    waypoint: Waypoint
    pod: Workload


@dataclass(frozen=True)
class BackendPlan:
    pod: Workload
    port: int


@dataclass(frozen=True)
class DemoPlan:
    nodes: tuple[NodePlan, ...]
    waypoints: tuple[WaypointPlan, ...]
    backends: tuple[BackendPlan, ...]

    def node_of(self, workload_name: str) -> NodePlan:
        return next(n for n in self.nodes if any(w.name == workload_name for w in n.workloads))


def plan(mesh: Mesh) -> DemoPlan:
    names = sorted({w.node for w in mesh.workloads if w.node and GATEWAY_NAME_LABEL not in w.labels})
    nodes = tuple(
        NodePlan(
            name=name,
            ip=f"127.0.0.{FIRST_NODE_IP + i}",
            workloads=tuple(w for w in mesh.workloads if w.node == name and GATEWAY_NAME_LABEL not in w.labels),
        )
        for i, name in enumerate(names)
    )
    waypoints = tuple(
        WaypointPlan(waypoint, pod) for waypoint in mesh.waypoints for pod in mesh.waypoint_workloads(waypoint)[:1]
    )
    backends: dict[tuple[str, int], BackendPlan] = {}
    for service in mesh.services:
        if mesh.waypoint(service.namespace, service.name) is not None:
            continue  # the waypoint's own Service: Envoy serves it
        for port in service.ports:
            for pod, target in mesh.port_endpoints(service, port):
                backends.setdefault((pod.ip, target), BackendPlan(pod, target))
    return DemoPlan(nodes=nodes, waypoints=waypoints, backends=tuple(backends.values()))
