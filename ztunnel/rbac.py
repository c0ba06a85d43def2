"""L4 authorization (ztunnel `src/rbac.rs`): DENY first, then ALLOW; no ALLOW policy = allow. Pure."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ztunnel.identity import Identity
from ztunnel.state import Action, IPAddr, Match, Network, Policy, StringMatch


@dataclass(frozen=True)
class ConnInfo:
    """What RBAC sees of a connection. `dst_port` is the resolved target port."""

    src_ip: IPAddr
    dst_ip: IPAddr
    dst_port: int
    src_identity: Identity | None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""  # "explicitly denied by: ns/name" | "allow policies exist, but none allowed"
    policy: str = ""


ALLOW = Verdict(True)


def _strings(ms: tuple[StringMatch, ...], s: str) -> bool:
    return any(m.matches(s) for m in ms)


def _ips(nets: tuple[Network, ...], ip: IPAddr) -> bool:
    return any(ip.version == n.version and ip in n for n in nets)  # type: ignore[operator]


def _pair(pos: bool, pos_empty: bool, neg: bool, neg_empty: bool) -> bool:
    return (pos_empty or pos) and (neg_empty or not neg)


def match_matches(m: Match, c: ConnInfo) -> bool:
    ident = c.src_identity
    principal = ident.principal if ident else ""
    ns = ident.namespace if ident else ""
    sa = (ident.namespace, ident.service_account) if ident else ("", "")
    return (
        _pair(_strings(m.namespaces, ns), not m.namespaces, _strings(m.not_namespaces, ns), not m.not_namespaces)
        and _pair(
            _strings(m.principals, principal),
            not m.principals,
            _strings(m.not_principals, principal),
            not m.not_principals,
        )
        and _pair(
            _ips(m.source_ips, c.src_ip),
            not m.source_ips,
            _ips(m.not_source_ips, c.src_ip),
            not m.not_source_ips,
        )
        and _pair(
            _ips(m.destination_ips, c.dst_ip),
            not m.destination_ips,
            _ips(m.not_destination_ips, c.dst_ip),
            not m.not_destination_ips,
        )
        and _pair(
            c.dst_port in m.destination_ports,
            not m.destination_ports,
            c.dst_port in m.not_destination_ports,
            not m.not_destination_ports,
        )
        and _pair(
            sa in m.service_accounts,
            not m.service_accounts,
            sa in m.not_service_accounts,
            not m.not_service_accounts,
        )
    )


def clause_matches(matches: tuple[Match, ...], c: ConnInfo) -> bool:
    """ANY match, skipping empty ones (ztunnel `rbac.rs`): a clause of only empty matches matches nothing,
    while a clause without matches matches anything."""
    if not matches:
        return True
    return any(match_matches(m, c) for m in matches if not m.is_empty())


def policy_matches(p: Policy, c: ConnInfo) -> bool:
    """ANY rule; a rule = ALL clauses (none: anything). An empty rules list never matches."""
    return any(all(clause_matches(matches, c) for matches in clauses) for clauses in p.rules)


def authorize(policies: list[Policy], c: ConnInfo) -> Verdict:
    live = [p for p in policies if not p.dry_run]
    for p in live:
        if p.action is Action.DENY and policy_matches(p, c):
            return Verdict(False, f"explicitly denied by: {p.key}", p.key)
    allows = [p for p in live if p.action is Action.ALLOW]
    if not allows:
        return ALLOW
    for p in allows:
        if policy_matches(p, c):
            return Verdict(True, policy=p.key)
    return Verdict(False, "allow policies exist, but none allowed")


def cidr(s: str) -> Network:
    return ipaddress.ip_network(s, strict=False)
