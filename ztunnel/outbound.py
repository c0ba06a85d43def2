"""Outbound decision (ztunnel `proxy/outbound.rs::build_request`): where a captured connection goes. Pure.

Order: self-call guard → service VIP with a waypoint → HBONE to the waypoint (authority = VIP:port) →
service VIP → round-robin endpoint → (endpoint's workload has a waypoint and we are not it → waypoint) →
same node → local fast path → HBONE (captured endpoint) or plain TCP → unknown IP → passthrough.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ztunnel.errors import NoHealthyUpstream, SelfCall, Unavailable
from ztunnel.lb import LoadBalancers
from ztunnel.state import IPAddr, Protocol, ProxyState, Service, Waypoint, Workload

ILLEGAL_PORTS = frozenset({15001, 15006, 15008, 15080})


class RequestType(StrEnum):
    DIRECT = "Direct"
    DIRECT_LOCAL = "DirectLocal"
    TO_SERVER_WAYPOINT = "ToServerWaypoint"
    PASSTHROUGH = "Passthrough"


@dataclass(frozen=True)
class Request:
    protocol: Protocol
    request_type: RequestType
    gateway: tuple[IPAddr, int]  # where we dial (ip:15008 for HBONE, ip:port for TCP)
    destination: tuple[IPAddr, int]  # the HBONE :authority / the real target
    upstream_sans: tuple[str, ...] = ()
    dst_workload: Workload | None = None
    dst_service: Service | None = None

    @property
    def authority(self) -> str:
        ip, port = self.destination
        return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"

    def log_line(self) -> str:
        """Istio's line: `proxying to <ip:port> using HBONE via <ip:15008> type Direct`."""
        g = self.gateway
        via = f"[{g[0]}]:{g[1]}" if g[0].version == 6 else f"{g[0]}:{g[1]}"
        if self.protocol is Protocol.HBONE:
            return f"proxying to {self.authority} using HBONE via {via} type {self.request_type.value}"
        return f"proxying to {via} using TCP via {via} type {self.request_type.value}"


def _sans(svc: Service | None, wl: Workload) -> tuple[str, ...]:
    sans = list(svc.subject_alt_names) if svc else []
    sans.append(str(wl.identity))
    return tuple(dict.fromkeys(sans))


@dataclass(frozen=True)
class Pick:
    """The part of a decision that depends on a load-balancer pick: pick an endpoint of `service`, then
    `finish(endpoint)` gives the Request (or raises). Everything before it is a pure function of the state."""

    service: Service
    finish: Callable[[Workload | None], Request]
    port: int = 0  # the service port: endpoints without it (named targetPort not on that pod) are not picked


Plan = Request | Pick


def _to_waypoint(
    state: ProxyState,
    wp: Waypoint,
    source: Workload,
    original: tuple[IPAddr, int],
    dst_service: Service | None,
    dst_workload: Workload | None,
) -> Plan:
    wsvc, wwl = state.resolve_waypoint(wp, source.namespace)

    def via(waypoint: Workload | None) -> Request:
        if waypoint is None and wsvc is not None:
            raise NoHealthyUpstream(f"no healthy waypoint endpoint for {wsvc.hostname}")
        if waypoint is None or not waypoint.ips:
            raise Unavailable(f"unknown waypoint {wp}")
        return Request(
            Protocol.HBONE,
            RequestType.TO_SERVER_WAYPOINT,
            (waypoint.ips[0], wp.hbone_port),
            original,
            _sans(wsvc, waypoint),
            dst_workload,
            dst_service,
        )

    if wsvc is not None:
        return Pick(wsvc, via)
    return via(wwl)


def _from_waypoint(state: ProxyState, source: Workload, wp: Waypoint) -> bool:
    """Is `source` (one of) the waypoint's own workloads?"""
    wsvc, wwl = state.resolve_waypoint(wp, source.namespace)
    if wwl is not None:
        return wwl.uid == source.uid
    if wsvc is not None:
        return any(w.uid == source.uid for w in state.ready_endpoints(wsvc))
    return False


def plan_request(
    state: ProxyState,
    source: Workload,
    dst: tuple[IPAddr, int],
    *,
    local_node: str,
    listener_addrs: frozenset[tuple[IPAddr, int]] = frozenset(),
    hbone_port: int = 15008,
) -> Plan:
    """The decision up to the load-balancer pick: a Request, or a Pick to finish per connection. Pure, so the
    caller may cache it per (state, source, destination)."""
    ip, port = dst
    if (ip, port) in listener_addrs or (ip.is_loopback and port in ILLEGAL_PORTS and (ip, port) in listener_addrs):
        raise SelfCall(f"self call to {ip}:{port}")

    upstream: Workload | None = state.find_workload(ip)
    if upstream is None:
        svc = state.find_service(ip, source.namespace)
        if svc is None:
            return Request(Protocol.TCP, RequestType.PASSTHROUGH, dst, dst)
        if svc.waypoint is not None and not _from_waypoint(state, source, svc.waypoint):
            return _to_waypoint(state, svc.waypoint, source, dst, svc, None)
        if port not in svc.ports:
            raise NoHealthyUpstream(f"service {svc.hostname} has no port {port}")
        service = svc

        def to_endpoint(endpoint: Workload | None) -> Request:
            if endpoint is None:
                raise NoHealthyUpstream(f"no healthy upstream for {service.hostname}:{port}")
            tp = state.target_port(service, endpoint, port)
            if tp is None:
                raise NoHealthyUpstream(f"no target port for {service.hostname}:{port} on {endpoint.name}")
            return _direct(endpoint, ip, tp, service, local_node, hbone_port)

        return Pick(service, to_endpoint, port)
    if upstream.waypoint is not None and not _from_waypoint(state, source, upstream.waypoint):
        return _to_waypoint(state, upstream.waypoint, source, dst, None, upstream)
    return _direct(upstream, ip, port, None, local_node, hbone_port)


def _direct(
    upstream: Workload, ip: IPAddr, target_port: int, svc: Service | None, local_node: str, hbone_port: int
) -> Request:
    up_ip = ip if ip in upstream.ips else upstream.ips[0]
    if upstream.protocol is Protocol.HBONE:
        rtype = RequestType.DIRECT_LOCAL if local_node and upstream.node == local_node else RequestType.DIRECT
        return Request(
            Protocol.HBONE,
            rtype,
            (up_ip, hbone_port),
            (up_ip, target_port),
            _sans(svc, upstream),
            upstream,
            svc,
        )
    return Request(Protocol.TCP, RequestType.DIRECT, (up_ip, target_port), (up_ip, target_port), (), upstream, svc)


def resolve(plan: Plan, state: ProxyState, lbs: LoadBalancers) -> Request:
    """Finish a plan for one connection: pick (round robin, fair under concurrency) where the plan says so."""
    if isinstance(plan, Request):
        return plan
    return plan.finish(lbs.pick(state, plan.service, plan.port))


def build_request(
    state: ProxyState,
    lbs: LoadBalancers,
    source: Workload,
    dst: tuple[IPAddr, int],
    *,
    local_node: str,
    listener_addrs: frozenset[tuple[IPAddr, int]] = frozenset(),
    hbone_port: int = 15008,
) -> Request:
    plan = plan_request(
        state, source, dst, local_node=local_node, listener_addrs=listener_addrs, hbone_port=hbone_port
    )
    return resolve(plan, state, lbs)
