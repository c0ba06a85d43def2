"""AuthorizationPolicies a waypoint enforces, as Envoy RBAC filters (pure).

Which policies: those attached with `targetRefs` to the waypoint's Gateway, or to a Service the
waypoint serves (for that service's chains), as in Istio ≥ 1.22. DENY policies become one RBAC
filter and ALLOW policies a second one after it, so a DENY always wins and, once any ALLOW policy
exists, a request matching none of them is refused.

The peer is not on the connection that reaches these chains (it arrives through `main_internal`),
so principals and namespaces are matched on the filter state `io.istio.peer_principal` that
`connect_terminate` shared from the client certificate.
"""

from __future__ import annotations

import re

from envoy_data_plane.envoy.config.listener.v3 import Filter
from envoy_data_plane.envoy.config.rbac.v3 import (
    Permission,
    PermissionSet,
    Policy,
    Principal,
    PrincipalSet,
    Rbac,
    RbacAction,
)
from envoy_data_plane.envoy.config.route.v3 import HeaderMatcher
from envoy_data_plane.envoy.extensions.filters.http.rbac.v3 import Rbac as HttpRbac
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpFilter
from envoy_data_plane.envoy.extensions.filters.network.rbac.v3 import Rbac as NetworkRbac
from envoy_data_plane.envoy.type.matcher.v3 import FilterStateMatcher, PathMatcher, RegexMatcher, StringMatcher

from xds.envoy.common import pack
from xds.mesh.model import AuthorizationPolicy, Mesh, PolicyAction, PolicyRule, Service, Waypoint

PEER_PRINCIPAL = "io.istio.peer_principal"


def policies_for(mesh: Mesh, waypoint: Waypoint, service: Service | None) -> tuple[AuthorizationPolicy, ...]:
    """Policies targeting the waypoint's Gateway, or (for its chains) the given service."""
    out = []
    for policy in mesh.policies:
        for kind, name in policy.target_refs:
            on_gateway = kind == "Gateway" and policy.namespace == waypoint.namespace and name == waypoint.name
            on_service = (
                service is not None
                and kind == "Service"
                and policy.namespace == service.namespace
                and name == service.name
            )
            if on_gateway or on_service:
                out.append(policy)
                break
    return tuple(out)


def _string(value: str, *, spiffe: bool = False) -> StringMatcher:
    """Istio's value syntax: exact, `prefix*`, `*suffix`, or `*` (present)."""
    if spiffe and value != "*" and not value.startswith("spiffe://"):
        value = "spiffe://" + value
    if value in ("*", "spiffe://*"):
        return StringMatcher(safe_regex=RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return StringMatcher(prefix=value[:-1])
    if value.startswith("*") or value.startswith("spiffe://*"):
        return StringMatcher(suffix=value.split("*", 1)[1])
    return StringMatcher(exact=value)


def _peer(matcher: StringMatcher) -> Principal:
    return Principal(filter_state=FilterStateMatcher(key=PEER_PRINCIPAL, string_match=matcher))


def _any_of_principals(ids: list[Principal]) -> Principal:
    return ids[0] if len(ids) == 1 else Principal(or_ids=PrincipalSet(ids=ids))


def _any_of_permissions(rules: list[Permission]) -> Permission:
    return rules[0] if len(rules) == 1 else Permission(or_rules=PermissionSet(rules=rules))


def _principal(rule: PolicyRule) -> Principal:
    parts: list[Principal] = []
    if rule.principals:
        parts.append(_any_of_principals([_peer(_string(p, spiffe=True)) for p in rule.principals]))
    if rule.not_principals:
        parts.append(
            Principal(not_id=_any_of_principals([_peer(_string(p, spiffe=True)) for p in rule.not_principals]))
        )
    namespace = lambda ns: _peer(StringMatcher(safe_regex=RegexMatcher(regex=f"spiffe://[^/]+/ns/{re.escape(ns)}/.*")))  # noqa: E731
    if rule.namespaces:
        parts.append(_any_of_principals([namespace(ns) for ns in rule.namespaces]))
    if rule.not_namespaces:
        parts.append(Principal(not_id=_any_of_principals([namespace(ns) for ns in rule.not_namespaces])))
    if not parts:
        return Principal(any=True)
    return parts[0] if len(parts) == 1 else Principal(and_ids=PrincipalSet(ids=parts))


def _permission(rule: PolicyRule, *, http: bool) -> Permission | None:
    """None when the rule can never match here (HTTP conditions on a TCP chain)."""
    if not http and rule.has_l7:
        return None
    parts: list[Permission] = []
    if rule.ports:
        parts.append(_any_of_permissions([Permission(destination_port=p) for p in rule.ports]))
    if rule.not_ports:
        parts.append(Permission(not_rule=_any_of_permissions([Permission(destination_port=p) for p in rule.not_ports])))
    method = lambda m: Permission(header=HeaderMatcher(name=":method", string_match=StringMatcher(exact=m)))  # noqa: E731
    path = lambda p: Permission(url_path=PathMatcher(path=_string(p)))  # noqa: E731
    if rule.methods:
        parts.append(_any_of_permissions([method(m) for m in rule.methods]))
    if rule.not_methods:
        parts.append(Permission(not_rule=_any_of_permissions([method(m) for m in rule.not_methods])))
    if rule.paths:
        parts.append(_any_of_permissions([path(p) for p in rule.paths]))
    if rule.not_paths:
        parts.append(Permission(not_rule=_any_of_permissions([path(p) for p in rule.not_paths])))
    if not parts:
        return Permission(any=True)
    return parts[0] if len(parts) == 1 else Permission(and_rules=PermissionSet(rules=parts))


def _rbac(policies: tuple[AuthorizationPolicy, ...], action: PolicyAction, *, http: bool) -> Rbac | None:
    chosen = [p for p in policies if p.action is action]
    if not chosen:
        return None
    entries: dict[str, Policy] = {}
    for policy in chosen:
        for index, rule in enumerate(policy.rules):
            permission = _permission(rule, http=http)
            if permission is None and action is PolicyAction.ALLOW:
                continue  # an HTTP-only ALLOW rule allows nothing on TCP
            if permission is None:
                # A DENY with HTTP conditions on TCP denies at L4, the stricter reading (as Istio does).
                permission = _permission(PolicyRule(ports=rule.ports, not_ports=rule.not_ports), http=http)
            assert permission is not None  # a rule reduced to its L4 part always yields one
            entries[f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"] = Policy(
                permissions=[permission], principals=[_principal(rule)]
            )
    # An ALLOW policy without rules allows nothing; with no entries Envoy's ALLOW RBAC denies all.
    return Rbac(action=RbacAction.DENY if action is PolicyAction.DENY else RbacAction.ALLOW, policies=entries)


def http_rbac_filters(policies: tuple[AuthorizationPolicy, ...]) -> list[HttpFilter]:
    out = []
    for action, name in (
        (PolicyAction.DENY, "envoy.filters.http.rbac.deny"),
        (PolicyAction.ALLOW, "envoy.filters.http.rbac"),
    ):
        rules = _rbac(policies, action, http=True)
        if rules is not None:
            out.append(HttpFilter(name=name, typed_config=pack(HttpRbac(rules=rules))))
    return out


def network_rbac_filters(policies: tuple[AuthorizationPolicy, ...], stat_prefix: str) -> list[Filter]:
    out = []
    for action, name in (
        (PolicyAction.DENY, "envoy.filters.network.rbac.deny"),
        (PolicyAction.ALLOW, "envoy.filters.network.rbac"),
    ):
        rules = _rbac(policies, action, http=False)
        if rules is not None:
            out.append(Filter(name=name, typed_config=pack(NetworkRbac(stat_prefix=stat_prefix, rules=rules))))
    return out
