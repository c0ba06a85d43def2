"""Applies delta xDS updates (istio.workload.Address, istio.security.Authorization) to the proxy's state.

xDS resources are kept by name in `XdsStore`; `merge()` lays them over the static (YAML) resources and
builds a new `ProxyState`. A resource that cannot be converted makes the whole response a NACK naming it.
"""

from __future__ import annotations

import ipaddress

import betterproto2

from xds import workloadapi as w
from xds.client import Update
from ztunnel.errors import ConfigError
from ztunnel.state import (
    Action,
    IPAddr,
    Match,
    Network,
    Policy,
    Protocol,
    ProxyState,
    Scope,
    Service,
    StringMatch,
    Waypoint,
    Workload,
)


def _ip(b: bytes, where: str) -> IPAddr:
    if len(b) not in (4, 16):
        raise ConfigError(where, "addresses", f"{len(b)} bytes is not an IP address")
    return ipaddress.ip_address(b)


def _waypoint(g: w.GatewayAddress | None, where: str) -> Waypoint | None:
    if g is None:
        return None
    port = g.hbone_mtls_port or 15008
    if g.address is not None:
        return Waypoint(address=_ip(g.address.address, where), hbone_port=port)
    if g.hostname is not None:
        return Waypoint(hostname=f"{g.hostname.namespace}/{g.hostname.hostname}", hbone_port=port)
    return None


def workload_from_xds(m: w.Workload, name: str) -> Workload:
    if m.tunnel_protocol == w.TunnelProtocol.LEGACY_ISTIO_MTLS:
        raise ConfigError(name, "tunnel_protocol", "LEGACY_ISTIO_MTLS is not supported")
    return Workload(
        uid=m.uid or name,
        name=m.name,
        namespace=m.namespace,
        ips=tuple(_ip(a, name) for a in m.addresses),
        service_account=m.service_account or "default",
        trust_domain=m.trust_domain or "cluster.local",
        protocol=Protocol.HBONE if m.tunnel_protocol == w.TunnelProtocol.HBONE else Protocol.TCP,
        node=m.node,
        network=m.network,
        cluster_id=m.cluster_id or "Kubernetes",
        canonical_name=m.canonical_name,
        canonical_revision=m.canonical_revision,
        workload_name=m.workload_name,
        workload_type=w.WorkloadType(m.workload_type).name.lower(),
        healthy=m.status == w.WorkloadStatus.HEALTHY,
        waypoint=_waypoint(m.waypoint, name),
        authorization_policies=tuple(m.authorization_policies),
        services={k: {p.service_port: p.target_port for p in v.ports} for k, v in m.services.items()},
    )


def service_from_xds(m: w.Service, name: str) -> Service:
    return Service(
        name=m.name,
        namespace=m.namespace,
        hostname=m.hostname,
        vips=tuple(_ip(a.address, name) for a in m.addresses),
        ports={p.service_port: p.target_port for p in m.ports},
        subject_alt_names=tuple(m.subject_alt_names),
        waypoint=_waypoint(m.waypoint, name),
    )


def _sm(s: w.StringMatch) -> StringMatch:
    if s.exact is not None:
        return StringMatch("exact", s.exact)
    if s.prefix is not None:
        return StringMatch("prefix", s.prefix)
    if s.suffix is not None:
        return StringMatch("suffix", s.suffix)
    return StringMatch("presence")


def _nets(xs: list[w.AuthzAddress], name: str) -> tuple[Network, ...]:
    out: list[Network] = []
    for a in xs:
        ip = _ip(a.address, name)
        out.append(ipaddress.ip_network(f"{ip}/{a.length or ip.max_prefixlen}", strict=False))
    return tuple(out)


def policy_from_xds(m: w.Authorization, name: str) -> Policy:
    def match(x: w.Match) -> Match:
        return Match(
            namespaces=tuple(map(_sm, x.namespaces)),
            not_namespaces=tuple(map(_sm, x.not_namespaces)),
            principals=tuple(map(_sm, x.principals)),
            not_principals=tuple(map(_sm, x.not_principals)),
            source_ips=_nets(x.source_ips, name),
            not_source_ips=_nets(x.not_source_ips, name),
            destination_ips=_nets(x.destination_ips, name),
            not_destination_ips=_nets(x.not_destination_ips, name),
            destination_ports=tuple(x.destination_ports),
            not_destination_ports=tuple(x.not_destination_ports),
            service_accounts=tuple((s.namespace, s.service_account) for s in x.service_accounts),
            not_service_accounts=tuple((s.namespace, s.service_account) for s in x.not_service_accounts),
        )

    return Policy(
        name=m.name,
        namespace=m.namespace,
        scope=[Scope.GLOBAL, Scope.NAMESPACE, Scope.WORKLOAD_SELECTOR][int(m.scope)],
        action=Action.DENY if m.action == w.AuthzAction.DENY else Action.ALLOW,
        rules=tuple(tuple(tuple(match(x) for x in cl.matches) for cl in r.clauses) for r in m.rules),
        dry_run=m.dry_run,
    )


class XdsStore:
    """Resources received over xDS, by resource name."""

    def __init__(self) -> None:
        self.workloads: dict[str, Workload] = {}
        self.services: dict[str, Service] = {}
        self.policies: dict[str, Policy] = {}

    def apply(self, update: Update) -> None:
        """Convert everything first (so a bad resource leaves the store untouched), then apply."""
        new_w: dict[str, Workload] = {}
        new_s: dict[str, Service] = {}
        new_p: dict[str, Policy] = {}
        for name, msg in update.updated.items():
            if isinstance(msg, w.Address):
                kind, body = betterproto2.which_one_of(msg, "type")
                if isinstance(body, w.Workload):
                    new_w[name] = workload_from_xds(body, name)
                elif isinstance(body, w.Service):
                    new_s[name] = service_from_xds(body, name)
                else:
                    raise ConfigError(name, "type", f"unknown address kind {kind!r}")
            elif isinstance(msg, w.Authorization):
                new_p[name] = policy_from_xds(msg, name)
            else:
                raise ConfigError(name, "(type)", f"unexpected {type(msg).__name__}")
        for name in update.removed:
            self.workloads.pop(name, None)
            self.services.pop(name, None)
            self.policies.pop(name, None)
        self.workloads.update(new_w)
        self.services.update(new_s)
        self.policies.update(new_p)

    def merge(self, static: ProxyState) -> ProxyState:
        wls = dict(static.workloads)
        wls.update({x.uid: x for x in self.workloads.values()})
        svcs = dict(static.services)
        svcs.update({x.key: x for x in self.services.values()})
        pols = dict(static.policies)
        pols.update({x.key: x for x in self.policies.values()})
        return ProxyState(wls.values(), svcs.values(), pols.values())
