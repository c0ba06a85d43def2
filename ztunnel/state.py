"""The proxy's view of the mesh (`ProxyState`): workloads, services and L4 policies, with lookups. Pure.

A `ProxyState` is an immutable snapshot: config pushes build a new one and swap it in, so decisions made on
one snapshot are never torn by a concurrent update.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from ztunnel.identity import Identity

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class Protocol(StrEnum):
    TCP = "TCP"
    HBONE = "HBONE"


@dataclass(frozen=True)
class Waypoint:
    """A GatewayAddress: either an IP (`network/ip` in YAML) or a `namespace/hostname`."""

    address: IPAddr | None = None
    hostname: str | None = None  # "namespace/hostname"
    hbone_port: int = 15008

    def __str__(self) -> str:
        return f"/{self.address}" if self.address is not None else str(self.hostname)


@dataclass(frozen=True)
class Workload:
    uid: str
    name: str
    namespace: str
    ips: tuple[IPAddr, ...]
    service_account: str = "default"
    trust_domain: str = "cluster.local"
    protocol: Protocol = Protocol.TCP
    node: str = ""
    network: str = ""
    cluster_id: str = "Kubernetes"
    canonical_name: str = ""
    canonical_revision: str = ""
    workload_name: str = ""
    workload_type: str = "deployment"
    healthy: bool = True
    waypoint: Waypoint | None = None
    authorization_policies: tuple[str, ...] = ()
    # "ns/hostname" -> {service port: target port}
    services: dict[str, dict[int, int]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def identity(self) -> Identity:
        return Identity(self.trust_domain, self.namespace, self.service_account)


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    hostname: str
    vips: tuple[IPAddr, ...]
    ports: dict[int, int] = field(default_factory=dict, hash=False, compare=False)  # service -> target
    subject_alt_names: tuple[str, ...] = ()
    waypoint: Waypoint | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.hostname}"


class Scope(StrEnum):
    GLOBAL = "Global"
    NAMESPACE = "Namespace"
    WORKLOAD_SELECTOR = "WorkloadSelector"


class Action(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True)
class StringMatch:
    kind: str  # "exact" | "prefix" | "suffix" | "presence"
    value: str = ""

    def matches(self, s: str) -> bool:
        if self.kind == "exact":
            return s == self.value
        if self.kind == "prefix":
            return s.startswith(self.value)
        if self.kind == "suffix":
            return s.endswith(self.value)
        return s != ""  # presence


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Match:
    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    source_ips: tuple[Network, ...] = ()
    not_source_ips: tuple[Network, ...] = ()
    destination_ips: tuple[Network, ...] = ()
    not_destination_ips: tuple[Network, ...] = ()
    destination_ports: tuple[int, ...] = ()
    not_destination_ports: tuple[int, ...] = ()
    service_accounts: tuple[tuple[str, str], ...] = ()
    not_service_accounts: tuple[tuple[str, str], ...] = ()

    def is_empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    scope: Scope
    action: Action
    rules: tuple[tuple[tuple[Match, ...], ...], ...]  # rules[] of clauses[] of matches[]
    dry_run: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Endpoint:
    workload: Workload
    port: int  # target port for the service port (0 = per service target_port)


class ProxyState:
    """Immutable snapshot with indexes by IP, by service key and by policy key."""

    def __init__(
        self,
        workloads: Iterable[Workload] = (),
        services: Iterable[Service] = (),
        policies: Iterable[Policy] = (),
    ) -> None:
        self.workloads: dict[str, Workload] = {w.uid: w for w in workloads}
        self.services: dict[str, Service] = {s.key: s for s in services}
        self.policies: dict[str, Policy] = {p.key: p for p in policies}
        self.workload_by_ip: dict[IPAddr, Workload] = {}
        for w in sorted(self.workloads.values(), key=lambda w: w.uid):
            for ip in w.ips:
                self.workload_by_ip.setdefault(ip, w)
        self.services_by_vip: dict[IPAddr, list[Service]] = {}
        for s in self.services.values():
            for vip in s.vips:
                self.services_by_vip.setdefault(vip, []).append(s)
        # service key -> endpoints ordered by workload uid (stable order keeps round robin fair across pushes)
        self.endpoints: dict[str, list[Endpoint]] = {}
        for w in sorted(self.workloads.values(), key=lambda w: w.uid):
            for skey in w.services:
                self.endpoints.setdefault(skey, []).append(Endpoint(w, 0))
        self._portmaps: dict[tuple[str, str], dict[int, int]] = {
            (w.uid, skey): pm for w in self.workloads.values() for skey, pm in w.services.items()
        }

    # ------------------------------------------------------------------ lookups
    def find_workload(self, ip: IPAddr) -> Workload | None:
        return self.workload_by_ip.get(ip)

    def find_service(self, vip: IPAddr, prefer_namespace: str = "") -> Service | None:
        svcs = self.services_by_vip.get(vip)
        if not svcs:
            return None
        for s in svcs:
            if s.namespace == prefer_namespace:
                return s
        return svcs[0]

    def find_service_by_host(self, ns_host: str) -> Service | None:
        return self.services.get(ns_host)

    def ready_endpoints(self, svc: Service, service_port: int = 0) -> list[Workload]:
        """Healthy endpoints; for a service port whose target is per workload (a named targetPort: 0 in the
        service), only those whose port map has it, as ztunnel filters them before load balancing."""
        ready = [e.workload for e in self.endpoints.get(svc.key, ()) if e.workload.healthy and e.workload.ips]
        if service_port and svc.ports.get(service_port) == 0:
            ready = [w for w in ready if self._portmaps.get((w.uid, svc.key), {}).get(service_port)]
        return ready

    def per_workload_port(self, svc: Service, service_port: int) -> bool:
        """True when `service_port`'s target is only known per workload (so the endpoint set depends on it)."""
        return svc.ports.get(service_port) == 0

    def target_port(self, svc: Service, workload: Workload, service_port: int) -> int | None:
        """Endpoint port map for the service port > service target_port; None when the port is unknown."""
        if service_port not in svc.ports:
            return None
        pm = self._portmaps.get((workload.uid, svc.key), {})
        if pm.get(service_port):
            return pm[service_port]
        return svc.ports[service_port] or None

    def policies_for(self, workload: Workload) -> list[Policy]:
        """Global ∪ the workload's namespace ∪ its selector policies (ztunnel `state/policy.rs`)."""
        out = [
            p
            for p in self.policies.values()
            if p.scope is Scope.GLOBAL or (p.scope is Scope.NAMESPACE and p.namespace == workload.namespace)
        ]
        for key in workload.authorization_policies:
            p = self.policies.get(key)
            if p is not None and p.scope is Scope.WORKLOAD_SELECTOR:
                out.append(p)
        return out

    def resolve_waypoint(self, wp: Waypoint, prefer_namespace: str = "") -> tuple[Service | None, Workload | None]:
        """A waypoint address resolves to a service (VIP or namespace/hostname) or a workload IP."""
        if wp.address is not None:
            svc = self.find_service(wp.address, prefer_namespace)
            if svc is not None:
                return svc, None
            return None, self.find_workload(wp.address)
        if wp.hostname:
            return self.services.get(wp.hostname), None
        return None, None
