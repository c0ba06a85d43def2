"""What ztunnels receive: workloads, services (`istio.workload.Address`) and L4 policies
(`istio.security.Authorization`), as a pure function of the mesh.

Resource names follow istiod: workloads by uid `<cluster>//Pod/<ns>/<name>`, services by
`<ns>/<hostname>`, policies by `<ns>/<name>`.
"""

from __future__ import annotations

import ipaddress

from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.google.protobuf import Empty

from xds import peer_authentication, resources
from xds.mesh import binding
from xds.mesh.model import (
    HBONE_PORT,
    ROOT_NAMESPACE,
    AuthorizationPolicy,
    Mesh,
    PolicyAction,
    PolicyRule,
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
    AuthzAction,
    AuthzScope,
    Clause,
    GatewayAddress,
    Match,
    NamespacedHostname,
    NetworkAddress,
    Port,
    PortList,
    Rule,
    StringMatch,
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


def _selects(selector: dict[str, str] | None, workload: Workload) -> bool:
    return selector is not None and all(workload.labels.get(k) == v for k, v in selector.items())


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
        f"{p.namespace}/{p.name}"
        for p in mesh.policies
        if p.namespace == workload.namespace
        and not p.target_refs
        and _selects(dict(p.selector or {}) or None, workload)
    ]
    policies += peer_authentication.workload_policy_keys(mesh, workload)
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


def _string_match(value: str) -> StringMatch:
    if value == "*":
        return StringMatch(presence=Empty())
    if value.endswith("*"):
        return StringMatch(prefix=value[:-1])
    if value.startswith("*"):
        return StringMatch(suffix=value[1:])
    return StringMatch(exact=value)


def _principal(value: str) -> str:
    # Policies write principals as `<td>/ns/<ns>/sa/<sa>`; accept the spiffe:// form too.
    return value.removeprefix("spiffe://")


def _rule(rule: PolicyRule) -> Rule:
    """Fields of one rule must all match (AND of clauses); values within a field are OR-ed."""
    clauses = []
    if rule.principals or rule.not_principals:
        clauses.append(
            Clause(
                matches=[
                    Match(
                        principals=[_string_match(_principal(p)) for p in rule.principals],
                        not_principals=[_string_match(_principal(p)) for p in rule.not_principals],
                    )
                ]
            )
        )
    if rule.namespaces or rule.not_namespaces:
        clauses.append(
            Clause(
                matches=[
                    Match(
                        namespaces=[_string_match(n) for n in rule.namespaces],
                        not_namespaces=[_string_match(n) for n in rule.not_namespaces],
                    )
                ]
            )
        )
    if rule.ports or rule.not_ports:
        clauses.append(
            Clause(matches=[Match(destination_ports=list(rule.ports), not_destination_ports=list(rule.not_ports))])
        )
    return Rule(clauses=clauses)


def policy_resource(policy: AuthorizationPolicy) -> tuple[str, Authorization] | None:
    """L4 view of a policy; None when the policy is for a waypoint (targetRefs) to enforce."""
    if policy.target_refs:
        return None
    if policy.selector:
        scope = AuthzScope.WORKLOAD_SELECTOR
    elif policy.namespace == ROOT_NAMESPACE:
        scope = AuthzScope.GLOBAL
    else:
        scope = AuthzScope.NAMESPACE
    rules = []
    for rule in policy.rules:
        if rule.has_l7 and policy.action is PolicyAction.ALLOW:
            continue  # an L7 condition can never be proven at L4: this ALLOW rule matches nothing
        rules.append(_rule(rule))
    return f"{policy.namespace}/{policy.name}", Authorization(
        name=policy.name,
        namespace=policy.namespace,
        scope=scope,
        action=AuthzAction.DENY if policy.action is PolicyAction.DENY else AuthzAction.ALLOW,
        rules=rules,
    )


def ztunnel_resources(mesh: Mesh) -> Snapshot:
    addresses = [workload_resource(mesh, w) for w in mesh.workloads]
    addresses += [service_resource(mesh, s) for s in mesh.services]
    policies = [p for p in (policy_resource(x) for x in mesh.policies) if p is not None]
    policies += peer_authentication.ztunnel_policies(mesh)
    return Snapshot.build({resources.ADDRESS: addresses, resources.AUTHORIZATION: policies})


def ztunnel_snapshot(mesh: Mesh, node: Node, control_plane: object) -> Snapshot | None:
    """Every ztunnel gets the whole mesh (ztunnel filters by node itself)."""
    if not node.id.startswith(ZTUNNEL_NODE_PREFIX):
        return None
    return ztunnel_resources(mesh)
