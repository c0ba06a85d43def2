"""What ztunnels receive: workloads, services (`istio.workload.Address`) and L4 policies
(`istio.security.Authorization`), as a pure function of the mesh.

Resource names follow istiod: workloads by uid `<cluster>//Pod/<ns>/<name>`, services by
`<ns>/<hostname>`, policies by `<ns>/<name>`.
"""

from __future__ import annotations

import ipaddress

from envoy_data_plane.envoy.config.core.v3 import Node

from xds import peer_authentication, resources, ztunnel_authz
from xds.mesh import binding
from xds.mesh.model import (
    HBONE_PORT,
    AuthorizationPolicy,
    Mesh,
    Protocol,
    Service,
    Waypoint,
    Workload,
)
from xds.snapshot import Snapshot
from xds.workloadapi import (
    Address,
    AppProtocol,
    Authorization,
    GatewayAddress,
    NamespacedHostname,
    NetworkAddress,
    Port,
    PortList,
    TunnelProtocol,
    WorkloadStatus,
)
from xds.workloadapi import Service as ApiService
from xds.workloadapi import Workload as ApiWorkload

CLUSTER_ID = "Kubernetes"
ZTUNNEL_NODE_PREFIX = "ztunnel~"


def _ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def waypoint_address(mesh: Mesh, waypoint: Waypoint) -> GatewayAddress:
    """By hostname when the waypoint's Service exists (Istio ≥1.24), else by the waypoint pod's IP."""
    if mesh.service(waypoint.namespace, waypoint.name) is not None:
        return GatewayAddress(
            hostname=NamespacedHostname(namespace=waypoint.namespace, hostname=waypoint.hostname),
            hbone_mtls_port=HBONE_PORT,
        )
    pods = mesh.waypoint_workloads(waypoint)
    ip = pods[0].ip if pods else (waypoint.addresses[0] if waypoint.addresses else "0.0.0.0")
    return GatewayAddress(address=NetworkAddress(address=_ip(ip)), hbone_mtls_port=HBONE_PORT)


def _app_protocol(protocol: Protocol) -> AppProtocol:
    # as istiod's toAppProtocol: anything else (gRPC-Web included) is UNKNOWN to ztunnel
    return {Protocol.HTTP: AppProtocol.HTTP11, Protocol.HTTP2: AppProtocol.HTTP2, Protocol.GRPC: AppProtocol.GRPC}.get(
        protocol, AppProtocol.UNKNOWN
    )


def _selected_by(mesh: Mesh, policy: AuthorizationPolicy, workload: Workload) -> bool:
    """Selector policies of the workload's namespace or of the root namespace whose labels it carries."""
    if policy.selector is None or policy.target_refs:
        return False
    if policy.namespace not in (workload.namespace, mesh.root_namespace):
        return False
    return all(workload.labels.get(k) == v for k, v in policy.selector.items())


def workload_resource(mesh: Mesh, workload: Workload) -> tuple[str, Address]:
    uid = f"{CLUSTER_ID}//Pod/{workload.namespace}/{workload.name}"
    waypoint = binding.workload_waypoint(mesh, workload)
    # istiod's encoding: the service lists a named targetPort as 0, each workload says what it is on that pod
    # (ports the pod does not serve are left out, so ztunnel never picks it for them)
    services = {}
    for s in mesh.workload_services.get((workload.namespace, workload.name), ()):
        resolved = ((p, mesh.target_port(s, p, workload)) for p in s.ports)
        services[f"{s.namespace}/{s.hostname}"] = PortList(
            ports=[Port(service_port=p.port, target_port=target) for p, target in resolved if target is not None]
        )
    policies = [
        p.key
        for p in mesh.policies
        if _selected_by(mesh, p, workload) and ztunnel_authz.enforced_by_ztunnels(p)
    ]
    policies += peer_authentication.workload_policy_keys(mesh, workload, mesh.root_namespace)
    return uid, Address(
        workload=ApiWorkload(
            uid=uid,
            name=workload.name,
            namespace=workload.namespace,
            addresses=[_ip(workload.ip)],
            tunnel_protocol=TunnelProtocol.HBONE if workload.captured else TunnelProtocol.NONE,
            trust_domain=mesh.trust_domain,
            service_account=workload.service_account,
            waypoint=waypoint_address(mesh, waypoint) if waypoint else None,
            node=workload.node,
            canonical_name=workload.canonical_name,
            canonical_revision=workload.canonical_revision,
            workload_name=workload.canonical_name,
            status=WorkloadStatus.HEALTHY if workload.ready else WorkloadStatus.UNHEALTHY,
            cluster_id=CLUSTER_ID,
            services=services,
            authorization_policies=policies,
        )
    )


def service_resource(mesh: Mesh, service: Service) -> tuple[str, Address]:
    waypoint = binding.service_waypoint(mesh, service)
    return f"{service.namespace}/{service.hostname}", Address(
        service=ApiService(
            name=service.name,
            namespace=service.namespace,
            hostname=service.hostname,
            addresses=[NetworkAddress(address=_ip(v)) for v in service.vips],
            ports=[
                Port(service_port=p.port, target_port=p.target_port, app_protocol=_app_protocol(p.protocol))
                for p in service.ports
            ],
            waypoint=waypoint_address(mesh, waypoint) if waypoint else None,
        )
    )


def policy_resource(mesh: Mesh, policy: AuthorizationPolicy) -> tuple[str, Authorization] | None:
    """The ztunnels' view of a policy (`xds.ztunnel_authz`); None when they do not enforce it."""
    resource = ztunnel_authz.authorization(mesh, policy)
    return None if resource is None else (policy.key, resource)


def ztunnel_resources(mesh: Mesh) -> Snapshot:
    addresses = [workload_resource(mesh, w) for w in mesh.workloads]
    addresses += [service_resource(mesh, s) for s in mesh.services]
    policies = [p for p in (policy_resource(mesh, x) for x in mesh.policies) if p is not None]
    policies += peer_authentication.ztunnel_policies(mesh, mesh.root_namespace)
    return Snapshot.build({resources.ADDRESS: addresses, resources.AUTHORIZATION: policies})


def ztunnel_snapshot(mesh: Mesh, node: Node, control_plane: object) -> Snapshot | None:
    """Every ztunnel gets the whole mesh (ztunnel filters by node itself)."""
    if not node.id.startswith(ZTUNNEL_NODE_PREFIX):
        return None
    return ztunnel_resources(mesh)
