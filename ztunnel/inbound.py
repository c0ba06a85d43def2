"""Inbound decisions (ztunnel `proxy/inbound.rs`, `inbound_passthrough.rs`): validate a CONNECT and
authorize it; authorize plaintext. Pure: the shell in `proxy.py` does the I/O."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from ztunnel.errors import BadRequest, Denied, SelfCall, Unavailable
from ztunnel.identity import Identity
from ztunnel.outbound import ILLEGAL_PORTS
from ztunnel.rbac import ConnInfo, authorize
from ztunnel.state import IPAddr, ProxyState, Workload

# authorities repeat (one per destination ip:port): parse each address text once
_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)


@dataclass(frozen=True)
class InboundDecision:
    workload: Workload
    upstream: tuple[IPAddr, int]
    hairpin_waypoint: bool = False  # destination has a waypoint and the caller is not it


def parse_authority(authority: str) -> tuple[IPAddr, int]:
    """`ip:port` or `[v6]:port`; anything else is a 400."""
    try:
        if authority.startswith("["):
            host, _, port_s = authority[1:].partition("]:")
        else:
            host, _, port_s = authority.rpartition(":")
        port = int(port_s)
        if not 0 < port < 65536:
            raise ValueError(port)
        return _ip(host), port
    except ValueError as e:
        raise BadRequest(f"invalid authority {authority!r}") from e


def _is_from_waypoint(state: ProxyState, wl: Workload, src: Identity | None) -> bool:
    if wl.waypoint is None or src is None:
        return False
    wsvc, wwl = state.resolve_waypoint(wl.waypoint, wl.namespace)
    if wwl is not None:
        return wwl.identity == src
    if wsvc is not None:
        return any(w.identity == src for w in state.ready_endpoints(wsvc))
    return False


def decide_connect(
    state: ProxyState,
    *,
    method: str,
    authority: str,
    local_ip: IPAddr,
    src_ip: IPAddr,
    src_identity: Identity | None,
) -> InboundDecision:
    """Method → authority → destination == local socket IP → local workload → port → RBAC."""
    if method != "CONNECT":
        raise BadRequest(f"method {method!r} is not CONNECT")
    ip, port = parse_authority(authority)
    if ip != local_ip:
        raise BadRequest(f"authority {authority} does not match the local address {local_ip}")
    wl = state.find_workload(ip)
    if wl is None:
        raise Unavailable(f"unknown local workload {ip}")
    if port in ILLEGAL_PORTS:
        raise SelfCall(f"illegal target port {port}")
    check_rbac(state, wl, ConnInfo(src_ip, ip, port, src_identity))
    return InboundDecision(
        wl,
        (ip, port),
        hairpin_waypoint=wl.waypoint is not None and not _is_from_waypoint(state, wl, src_identity),
    )


def decide_plaintext(state: ProxyState, *, dst: tuple[IPAddr, int], src_ip: IPAddr) -> InboundDecision:
    """15006: no identity, so STRICT (a DENY with notPrincipals: [presence]) rejects it here."""
    ip, port = dst
    if port in ILLEGAL_PORTS:
        raise SelfCall(f"illegal target port {port}")
    wl = state.find_workload(ip)
    if wl is None:
        raise Unavailable(f"unknown local workload {ip}")
    check_rbac(state, wl, ConnInfo(src_ip, ip, port, None))
    return InboundDecision(wl, dst)


def check_rbac(state: ProxyState, wl: Workload, conn: ConnInfo) -> None:
    verdict = authorize(state.policies_for(wl), conn)
    if not verdict.allowed:
        raise Denied(verdict.reason)
