"""AuthorizationPolicies a waypoint enforces, as Envoy RBAC filters (pure).

Which policies: those attached with `targetRefs` to the waypoint's Gateway, to the `istio-waypoint`
GatewayClass (from the root namespace), or to a Service the waypoint serves (for that service's chains),
as in Istio ≥ 1.22. Filters, in evaluation order: CUSTOM (no extension provider can be configured here, so
as istiod does with an unknown provider the policy's rules become a DENY — fail closed), AUDIT (Envoy's
LOG action: never decides), DENY, then ALLOW (once any ALLOW policy exists, a request matching none of
them is refused).

Each rule becomes one Envoy policy, as Istio builds it: one permission per `to[]` entry (AND of its
fields and of the permission-side `when` conditions), one principal per `from[]` entry (AND of its
fields and the principal-side conditions); Envoy ORs permissions and ORs principals.

Where the attributes come from at `main_internal` chains:
- the peer identity: filter state `io.istio.peer_principal` that `connect_terminate` shared from the
  client certificate (principals, namespaces, source.principal, source.namespace);
- the client address: `connect_terminate` shares `%DOWNSTREAM_REMOTE_ADDRESS%` as the original_dst
  remote address; ipBlocks and source.ip match that filter state object (see `_direct_ip`), and
  `remote_ip` is the HCM's view: the last x-forwarded-for entry (`use_remote_address: false`), else the
  restored client address (remoteIpBlocks, remote.ip);
- the destination: the VIP and service port the original_dst filter restored (ports, destination.*);
- JWT: dynamic metadata `envoy.filters.http.jwt_authn` → `payload` written by jwt_authn (placed before
  RBAC, `payload_in_metadata: payload`) for requestPrincipals and `request.auth.*`.

On TCP chains HTTP attributes cannot be seen: as Istio's builder, an ALLOW rule using one is skipped
(allows less) and a DENY/AUDIT/CUSTOM rule is built without it (denies more). `connection.sni` is never
seen (main_internal runs no tls_inspector) and is handled the same way on every chain.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

from envoy_data_plane.envoy.config.core.v3 import CidrRange
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
from envoy_data_plane.envoy.type.matcher.v3 import (
    AddressMatcher,
    FilterStateMatcher,
    ListMatcher,
    MetadataMatcher,
    MetadataMatcherPathSegment,
    OrMatcher,
    PathMatcher,
    RegexMatcher,
    StringMatcher,
    ValueMatcher,
)
from envoy_data_plane.xds.core.v3 import CidrRange as XdsCidrRange

from xds.envoy.common import pack
from xds.mesh.model import (
    WAYPOINT_CLASS,
    AuthorizationPolicy,
    Condition,
    Mesh,
    Operation,
    PolicyAction,
    PolicyRule,
    Service,
    Source,
    Waypoint,
)

PEER_PRINCIPAL = "io.istio.peer_principal"
ORIGINAL_DST_REMOTE_IP = "envoy.filters.listener.original_dst.remote_ip"
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"


class HttpOnly(Exception):
    """An attribute a TCP chain cannot see."""


def policies_for(mesh: Mesh, waypoint: Waypoint, service: Service | None) -> tuple[AuthorizationPolicy, ...]:
    """Policies targeting the waypoint's Gateway or class, or (for its chains) the given service."""
    out = []
    for policy in mesh.policies:
        for ref in policy.target_refs:
            on_class = (
                ref.kind == "GatewayClass" and ref.name == WAYPOINT_CLASS and policy.namespace == mesh.root_namespace
            )
            on_gateway = ref.kind == "Gateway" and policy.namespace == waypoint.namespace and ref.name == waypoint.name
            on_service = (
                service is not None
                and ref.kind == "Service"
                and policy.namespace == service.namespace
                and ref.name == service.name
            )
            if on_class or on_gateway or on_service:
                out.append(policy)
                break
    return tuple(out)


# ------------------------------------------------------------------------------------------ values


def string_matcher(value: str, *, prefix: str = "", ignore_case: bool = False) -> StringMatcher:
    """Istio's value syntax: `*` (present), `*suffix`, `prefix*`, else exact; `prefix` is prepended."""
    if value == "*":
        return StringMatcher(safe_regex=RegexMatcher(regex=".+"))
    if value.startswith("*"):
        return StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _spiffe(value: str) -> StringMatcher:
    return string_matcher(value, prefix="spiffe://")  # the parser refuses values written with the scheme


def _namespace_regex(value: str) -> StringMatcher:
    """The namespace inside the peer's SPIFFE id `spiffe://<td>/ns/<ns>/sa/<sa>`, with Istio's wildcards."""
    if value == "*":
        pattern = "[^/]+"
    elif value.startswith("*"):
        pattern = "[^/]*" + re.escape(value[1:])
    elif value.endswith("*"):
        pattern = re.escape(value[:-1]) + "[^/]*"
    else:
        pattern = re.escape(value)
    return StringMatcher(safe_regex=RegexMatcher(regex=f"spiffe://[^/]+/ns/{pattern}/.*"))


def _host_header(value: str) -> HeaderMatcher:
    """Istio's host match on `:authority`: case-insensitive, an exact host also matches it with a port."""
    if value == "*":
        return HeaderMatcher(name=":authority", present_match=True)
    if value.startswith("*") or value.endswith("*"):
        return HeaderMatcher(name=":authority", string_match=string_matcher(value, ignore_case=True))
    regex = f"(?i){re.escape(value)}(:[0-9]{{1,5}})?"
    return HeaderMatcher(name=":authority", string_match=StringMatcher(safe_regex=RegexMatcher(regex=regex)))


def _header(name: str, value: str) -> HeaderMatcher:
    if value == "*":
        return HeaderMatcher(name=name, present_match=True)
    return HeaderMatcher(name=name, string_match=string_matcher(value))


def _cidr(value: str) -> CidrRange:
    net = ipaddress.ip_network(value, strict=False)  # validated by the parser
    return CidrRange(address_prefix=str(net.network_address), prefix_len=net.prefixlen)


def _xds_cidr(value: str) -> XdsCidrRange:
    net = ipaddress.ip_network(value, strict=False)
    return XdsCidrRange(address_prefix=str(net.network_address), prefix_len=net.prefixlen)


def _payload(path: list[str], value: ValueMatcher) -> Principal:
    segments = [MetadataMatcherPathSegment(key=k) for k in [JWT_PAYLOAD, *path]]
    return Principal(metadata=MetadataMatcher(filter=JWT_FILTER, path=segments, value=value))


def _claim(path: list[str], value: str) -> Principal:
    """A claim may be a string or a list of strings (e.g. `aud`, `groups`): either matches."""
    string = ValueMatcher(string_match=string_matcher(value))
    in_list = ValueMatcher(list_match=ListMatcher(one_of=string))
    either = ValueMatcher(or_match=OrMatcher(value_matchers=[string, in_list]))
    return _payload(path, either)


def _request_principal(value: str) -> Principal:
    """`iss/sub` matched on the payload's iss and sub claims exactly as Istio matches the joined string.

    The joined string can split at any `/` (issuers are URLs), so each reading is one alternative.
    """
    iss = lambda m: _payload(["iss"], ValueMatcher(string_match=m))  # noqa: E731
    sub = lambda m: _payload(["sub"], ValueMatcher(string_match=m))  # noqa: E731
    both = lambda a, b: Principal(and_ids=PrincipalSet(ids=[a, b]))  # noqa: E731
    if value == "*":
        return iss(StringMatcher(safe_regex=RegexMatcher(regex=".+")))
    slashes = [i for i, c in enumerate(value) if c == "/"]
    options: list[Principal] = []
    if value.startswith("*"):
        body = value[1:]
        options.append(sub(StringMatcher(suffix=body)))
        for i in (i for i in slashes if i > 0):
            head = body[: i - 1]
            lead = StringMatcher(suffix=head) if head else StringMatcher(safe_regex=RegexMatcher(regex=".*"))
            options.append(both(iss(lead), sub(StringMatcher(exact=body[i:]))))
    elif value.endswith("*"):
        body = value[:-1]
        options.append(iss(StringMatcher(prefix=body) if body else StringMatcher(safe_regex=RegexMatcher(regex=".+"))))
        for i in (i for i in slashes if i < len(body)):
            rest = body[i + 1 :]
            tail = StringMatcher(prefix=rest) if rest else StringMatcher(safe_regex=RegexMatcher(regex=".*"))
            options.append(both(iss(StringMatcher(exact=body[:i])), sub(tail)))
    else:
        for i in slashes:
            options.append(both(iss(StringMatcher(exact=value[:i])), sub(StringMatcher(exact=value[i + 1 :]))))
    if not options:
        # No `/`: no iss/sub pair can join to this string, so it matches no token.
        return Principal(not_id=Principal(any=True))
    return _any_principal(options)


# ------------------------------------------------------------------------------------------ combinators


def _any_principal(ids: list[Principal]) -> Principal:
    return ids[0] if len(ids) == 1 else Principal(or_ids=PrincipalSet(ids=ids))


def _all_principals(ids: list[Principal]) -> Principal:
    if not ids:
        return Principal(any=True)
    return ids[0] if len(ids) == 1 else Principal(and_ids=PrincipalSet(ids=ids))


def _any_permission(rules: list[Permission]) -> Permission:
    return rules[0] if len(rules) == 1 else Permission(or_rules=PermissionSet(rules=rules))


def _all_permissions(rules: list[Permission]) -> Permission:
    if not rules:
        return Permission(any=True)
    return rules[0] if len(rules) == 1 else Permission(and_rules=PermissionSet(rules=rules))


def _principal_pair(
    values: Iterable[str], not_values: Iterable[str], make: Callable[[str], Principal]
) -> list[Principal]:
    out, pos, neg = [], list(values), list(not_values)
    if pos:
        out.append(_any_principal([make(v) for v in pos]))
    if neg:
        out.append(Principal(not_id=_any_principal([make(v) for v in neg])))
    return out


def _permission_pair(
    values: Iterable[str], not_values: Iterable[str], make: Callable[[str], Permission]
) -> list[Permission]:
    out, pos, neg = [], list(values), list(not_values)
    if pos:
        out.append(_any_permission([make(v) for v in pos]))
    if neg:
        out.append(Permission(not_rule=_any_permission([make(v) for v in neg])))
    return out


# ------------------------------------------------------------------------------------------ attributes


def _peer(value: str) -> Principal:
    return Principal(filter_state=FilterStateMatcher(key=PEER_PRINCIPAL, string_match=_spiffe(value)))


def _peer_namespace(value: str) -> Principal:
    return Principal(filter_state=FilterStateMatcher(key=PEER_PRINCIPAL, string_match=_namespace_regex(value)))


def _direct_ip(value: str) -> Principal:
    """The client's own address. At internal chains Envoy's `direct_remote_ip` is the internal listener's
    peer (`envoy://internal_client_address/`), not an IP, so match the address `connect_terminate` took
    from the TCP peer and shared (the original_dst remote address object; not spoofable by headers)."""
    addresses = AddressMatcher(ranges=[_xds_cidr(value)])
    return Principal(filter_state=FilterStateMatcher(key=ORIGINAL_DST_REMOTE_IP, address_match=addresses))


def _remote_ip(value: str) -> Principal:
    return Principal(remote_ip=_cidr(value))


def _http_only(http: bool, what: str) -> None:
    if not http:
        raise HttpOnly(what)


def _source_principals(src: Source, http: bool, lenient: bool) -> list[Principal]:
    """AND-parts of one `from` entry. `lenient`: drop HTTP-only fields on TCP instead of failing."""
    parts = _principal_pair(src.principals, src.not_principals, _peer)
    parts += _principal_pair(src.namespaces, src.not_namespaces, _peer_namespace)
    parts += _principal_pair(src.ip_blocks, src.not_ip_blocks, _direct_ip)
    parts += _principal_pair(src.remote_ip_blocks, src.not_remote_ip_blocks, _remote_ip)
    if src.request_principals or src.not_request_principals:
        if http:
            parts += _principal_pair(src.request_principals, src.not_request_principals, _request_principal)
        elif not lenient:
            raise HttpOnly("requestPrincipals")
    return parts


def _operation_permissions(op: Operation, http: bool, lenient: bool) -> list[Permission]:
    parts = _permission_pair(map(str, op.ports), map(str, op.not_ports), lambda p: Permission(destination_port=int(p)))
    for values, not_values, make in (
        (op.hosts, op.not_hosts, lambda v: Permission(header=_host_header(v))),
        (op.methods, op.not_methods, lambda v: Permission(header=_header(":method", v))),
        (op.paths, op.not_paths, lambda v: Permission(url_path=PathMatcher(path=string_matcher(v)))),
    ):
        if not (values or not_values):
            continue
        if http:
            parts += _permission_pair(values, not_values, make)
        elif not lenient:
            raise HttpOnly("operation")
    return parts


def _bracketed(key: str, prefix: str) -> list[str]:
    """`request.auth.claims[a][b]` → ["a", "b"] (nested claims), `request.headers[x]` → ["x"]."""
    return key[len(prefix) + 1 : -1].split("][")


def _condition(cond: Condition, http: bool, lenient: bool) -> tuple[list[Principal], list[Permission]]:
    key, pos, neg = cond.key, cond.values, cond.not_values
    if key == "source.ip":
        return _principal_pair(pos, neg, _direct_ip), []
    if key == "remote.ip":
        return _principal_pair(pos, neg, _remote_ip), []
    if key == "source.namespace":
        return _principal_pair(pos, neg, _peer_namespace), []
    if key == "source.principal":
        return _principal_pair(pos, neg, _peer), []
    if key == "destination.ip":
        return [], _permission_pair(pos, neg, lambda v: Permission(destination_ip=_cidr(v)))
    if key == "destination.port":
        return [], _permission_pair(pos, neg, lambda v: Permission(destination_port=int(v)))
    if key == "connection.sni":
        # main_internal has no tls_inspector, so the SNI is never known here: fail closed like an attribute
        # the chain cannot see (the status condition says so).
        if lenient:
            return [], []
        raise HttpOnly(key)
    # The rest are request attributes (headers, JWT).
    if not http:
        if lenient:
            return [], []
        raise HttpOnly(key)
    if key.startswith("request.headers["):
        name = _bracketed(key, "request.headers")[0]
        return _principal_pair(pos, neg, lambda v: Principal(header=_header(name, v))), []
    if key == "request.auth.principal":
        return _principal_pair(pos, neg, _request_principal), []
    if key == "request.auth.audiences":
        return _principal_pair(pos, neg, lambda v: _claim(["aud"], v)), []
    if key == "request.auth.presenter":
        return _principal_pair(pos, neg, lambda v: _claim(["azp"], v)), []
    path = _bracketed(key, "request.auth.claims")
    return _principal_pair(pos, neg, lambda v: _claim(path, v)), []


def envoy_policy(rule: PolicyRule, *, http: bool, action: PolicyAction) -> Policy | None:
    """One rule as an Envoy policy; None when it can never match here (an ALLOW rule with HTTP on TCP)."""
    lenient = action is not PolicyAction.ALLOW  # DENY/AUDIT/CUSTOM: drop what TCP can't see, matching more
    try:
        base_principals: list[Principal] = []
        base_permissions: list[Permission] = []
        for cond in rule.conditions:
            principals, permissions = _condition(cond, http, lenient)
            base_principals += principals
            base_permissions += permissions
        principal_alternatives = [
            _all_principals(_source_principals(src, http, lenient) + base_principals) for src in rule.sources
        ] or [_all_principals(base_principals)]
        permission_alternatives = [
            _all_permissions(_operation_permissions(op, http, lenient) + base_permissions) for op in rule.operations
        ] or [_all_permissions(base_permissions)]
    except HttpOnly:
        return None
    return Policy(permissions=permission_alternatives, principals=principal_alternatives)


_RBAC_ACTION = {
    PolicyAction.CUSTOM: RbacAction.DENY,  # no provider can exist: fail closed (see module doc)
    PolicyAction.AUDIT: RbacAction.LOG,
    PolicyAction.DENY: RbacAction.DENY,
    PolicyAction.ALLOW: RbacAction.ALLOW,
}
_ORDER = (PolicyAction.CUSTOM, PolicyAction.AUDIT, PolicyAction.DENY, PolicyAction.ALLOW)
_SUFFIX = {
    PolicyAction.CUSTOM: ".custom",
    PolicyAction.AUDIT: ".audit",
    PolicyAction.DENY: ".deny",
    PolicyAction.ALLOW: "",
}


def rbac(policies: tuple[AuthorizationPolicy, ...], action: PolicyAction, *, http: bool) -> Rbac | None:
    """The RBAC config for one action; None when no policy has that action."""
    chosen = [p for p in policies if p.action is action]
    if not chosen:
        return None
    entries: dict[str, Policy] = {}
    for policy in chosen:
        for index, rule in enumerate(policy.rules):
            built = envoy_policy(rule, http=http, action=action)
            if built is not None:
                entries[f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"] = built
    # An ALLOW policy without (usable) rules allows nothing: Envoy's ALLOW RBAC with no entries denies all.
    return Rbac(action=_RBAC_ACTION[action], policies=entries)


def http_rbac_filters(policies: tuple[AuthorizationPolicy, ...]) -> list[HttpFilter]:
    out = []
    for action in _ORDER:
        rules = rbac(policies, action, http=True)
        if rules is not None:
            name = f"envoy.filters.http.rbac{_SUFFIX[action]}"
            out.append(HttpFilter(name=name, typed_config=pack(HttpRbac(rules=rules))))
    return out


def network_rbac_filters(policies: tuple[AuthorizationPolicy, ...], stat_prefix: str) -> list[Filter]:
    out = []
    for action in _ORDER:
        rules = rbac(policies, action, http=False)
        if rules is not None:
            name = f"envoy.filters.network.rbac{_SUFFIX[action]}"
            out.append(Filter(name=name, typed_config=pack(NetworkRbac(stat_prefix=stat_prefix, rules=rules))))
    return out
