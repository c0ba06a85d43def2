"""AuthorizationPolicy → `istio.security.Authorization` for ztunnels, as istiod converts it (pure).

Only policies without targetRefs reach ztunnels (those with targetRefs are the waypoints'); ALLOW and
DENY only (AUDIT and CUSTOM are not ztunnel actions: not sent, with a `ZtunnelAccepted` condition).

A rule becomes clauses that must all hold: one for its `to[]` entries (ports), one for its `from[]`
entries (ipBlocks, namespaces, principals), one per `when[]` condition on an L4 key; inside a clause
the matches are OR-ed. ztunnel cannot see HTTP attributes, so it fails closed as Istio does: an ALLOW
rule using one is omitted (if that leaves no rules, the ALLOW policy matches nothing and still denies
everything it selects), and a DENY rule is enforced without its HTTP parts, denying more. A `from`/`to`
entry or a `when` condition that has nothing left after dropping the HTTP parts matches anything, so
its clause is left out of the rule (ztunnel skips empty matches, so sending one would silently make
the DENY rule match nothing — the opposite of failing closed).
"""

from __future__ import annotations

import ipaddress

from envoy_data_plane.google.protobuf import Empty

from xds.mesh.model import AuthorizationPolicy, Condition, Mesh, Operation, PolicyAction, PolicyRule, Source
from xds.workloadapi import (
    Authorization,
    AuthzAction,
    AuthzAddress,
    AuthzScope,
    Clause,
    Match,
    Rule,
    StringMatch,
)


def string_match(value: str) -> StringMatch:
    """Istio's value syntax: `*` (present), `*suffix`, `prefix*`, else exact."""
    if value == "*":
        return StringMatch(presence=Empty())
    if value.startswith("*"):
        return StringMatch(suffix=value[1:])
    if value.endswith("*"):
        return StringMatch(prefix=value[:-1])
    return StringMatch(exact=value)


def _principals(values: tuple[str, ...]) -> list[StringMatch]:
    # As written (`<td>/ns/<ns>/sa/<sa>`; the parser refuses `spiffe://`): ztunnel strips the scheme itself.
    return [string_match(v) for v in values]


def _addresses(values: tuple[str, ...]) -> list[AuthzAddress]:
    out = []
    for value in values:
        net = ipaddress.ip_network(value, strict=False)  # validated by the parser
        out.append(AuthzAddress(address=net.network_address.packed, length=net.prefixlen))
    return out


def _is_empty(match: Match) -> bool:
    return not any(
        (
            match.namespaces,
            match.not_namespaces,
            match.principals,
            match.not_principals,
            match.source_ips,
            match.not_source_ips,
            match.destination_ips,
            match.not_destination_ips,
            match.destination_ports,
            match.not_destination_ports,
            match.service_accounts,
            match.not_service_accounts,
        )
    )


def _operation_match(op: Operation) -> Match:
    return Match(destination_ports=list(op.ports), not_destination_ports=list(op.not_ports))


def _source_match(src: Source) -> Match:
    return Match(
        source_ips=_addresses(src.ip_blocks),
        not_source_ips=_addresses(src.not_ip_blocks),
        namespaces=[string_match(v) for v in src.namespaces],
        not_namespaces=[string_match(v) for v in src.not_namespaces],
        principals=_principals(src.principals),
        not_principals=_principals(src.not_principals),
    )


def _condition_match(cond: Condition) -> Match:
    """One `when` entry on an L4 key (other keys give an empty match)."""
    key, pos, neg = cond.key, cond.values, cond.not_values
    match = Match()
    if key == "source.ip":
        match.source_ips, match.not_source_ips = _addresses(pos), _addresses(neg)
    elif key == "destination.ip":
        match.destination_ips, match.not_destination_ips = _addresses(pos), _addresses(neg)
    elif key == "destination.port":
        match.destination_ports, match.not_destination_ports = [int(v) for v in pos], [int(v) for v in neg]
    elif key == "source.namespace":
        match.namespaces, match.not_namespaces = [string_match(v) for v in pos], [string_match(v) for v in neg]
    elif key == "source.principal":
        match.principals, match.not_principals = _principals(pos), _principals(neg)
    return match


def _clause(matches: list[Match]) -> Clause | None:
    """None when some alternative is empty (it matches anything, so the clause constrains nothing)."""
    if not matches or any(_is_empty(m) for m in matches):
        return None
    return Clause(matches=matches)


def _rule(action: PolicyAction, rule: PolicyRule) -> Rule | None:
    """None: the rule is omitted (an ALLOW rule needing HTTP attributes never matches at ztunnel)."""
    if action is PolicyAction.ALLOW and rule.http_fields:
        return None
    candidates: list[list[Match]] = []
    if rule.operations:
        candidates.append([_operation_match(op) for op in rule.operations])
    if rule.sources:
        candidates.append([_source_match(src) for src in rule.sources])
    candidates.extend([_condition_match(cond)] for cond in rule.conditions)
    clauses = [c for c in (_clause(m) for m in candidates) if c is not None]
    return Rule(clauses=clauses)


def scope(mesh: Mesh, policy: AuthorizationPolicy) -> AuthzScope:
    if policy.selector is not None:
        return AuthzScope.WORKLOAD_SELECTOR
    return AuthzScope.GLOBAL if policy.namespace == mesh.root_namespace else AuthzScope.NAMESPACE


def enforced_by_ztunnels(policy: AuthorizationPolicy) -> bool:
    return not policy.target_refs and policy.action in (PolicyAction.ALLOW, PolicyAction.DENY)


def authorization(mesh: Mesh, policy: AuthorizationPolicy) -> Authorization | None:
    """The ztunnel resource for a policy, or None when ztunnels do not enforce it (see module doc)."""
    if not enforced_by_ztunnels(policy):
        return None
    rules = [r for r in (_rule(policy.action, rule) for rule in policy.rules) if r is not None]
    return Authorization(
        name=policy.name,
        namespace=policy.namespace,
        scope=scope(mesh, policy),
        action=AuthzAction.DENY if policy.action is PolicyAction.DENY else AuthzAction.ALLOW,
        rules=rules,
    )
