"""Outbound decision (ztunnel `proxy/outbound.rs::build_request`): where a captured connection goes. Pure.

Order: self-call guard → service VIP with a waypoint → HBONE to the waypoint (authority = VIP:port) →
service VIP → round-robin endpoint → (endpoint's workload has a waypoint and we are not it → waypoint) →
same node → local fast path → HBONE (captured endpoint) or plain TCP → unknown IP → passthrough.
"""

from __future__ import annotations

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


def _to_waypoint(
    state: ProxyState,
    lbs: LoadBalancers,
    wp: Waypoint,
    source: Workload,
    original: tuple[IPAddr, int],
    dst_service: Service | None,
    dst_workload: Workload | None,
) -> Request:
    wsvc, wwl = state.resolve_waypoint(wp, source.namespace)
    if wsvc is not None:
        wwl = lbs.pick(state, wsvc)
        if wwl is None:
            raise NoHealthyUpstream(f"no healthy waypoint endpoint for {wsvc.hostname}")
    if wwl is None or not wwl.ips:
        raise Unavailable(f"unknown waypoint {wp}")
    return Request(
        Protocol.HBONE,
        RequestType.TO_SERVER_WAYPOINT,
        (wwl.ips[0], wp.hbone_port),
        original,
        _sans(wsvc, wwl),
        dst_workload,
        dst_service,
    )


def _from_waypoint(state: ProxyState, source: Workload, wp: Waypoint) -> bool:
    """Is `source` (one of) the waypoint's own workloads?"""
    wsvc, wwl = state.resolve_waypoint(wp, source.namespace)
    if wwl is not None:
        return wwl.uid == source.uid
    if wsvc is not None:
        return any(w.uid == source.uid for w in state.ready_endpoints(wsvc))
    return False


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
    ip, port = dst
    if (ip, port) in listener_addrs or (ip.is_loopback and port in ILLEGAL_PORTS and (ip, port) in listener_addrs):
        raise SelfCall(f"self call to {ip}:{port}")

    svc: Service | None = None
    upstream: Workload | None = state.find_workload(ip)
    target_port = port
    if upstream is None:
        svc = state.find_service(ip, source.namespace)
        if svc is None:
            return Request(Protocol.TCP, RequestType.PASSTHROUGH, dst, dst)
        if svc.waypoint is not None and not _from_waypoint(state, source, svc.waypoint):
            return _to_waypoint(state, lbs, svc.waypoint, source, dst, svc, None)
        if port not in svc.ports:
            raise NoHealthyUpstream(f"service {svc.hostname} has no port {port}")
        upstream = lbs.pick(state, svc)
        if upstream is None:
            raise NoHealthyUpstream(f"no healthy upstream for {svc.hostname}:{port}")
        tp = state.target_port(svc, upstream, port)
        if tp is None:
            raise NoHealthyUpstream(f"no target port for {svc.hostname}:{port} on {upstream.name}")
        target_port = tp
    elif upstream.waypoint is not None and not _from_waypoint(state, source, upstream.waypoint):
        return _to_waypoint(state, lbs, upstream.waypoint, source, dst, None, upstream)

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
