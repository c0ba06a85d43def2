"""The AuthorizationPolicy table: one row per field × action (× enforcement point), plus the fail-closed cases.

A row is one policy on the destination (`authz/backend`) and requests with what each should get. The
ztunnel test evaluates rows against the ztunnel's RBAC on what the control plane sends it; the waypoint
test applies every row at once (one Service per row, the policy attached to it) to a real Envoy waypoint
and sends real requests. Placeholders: `{dst_ip}` (the pod IP at a ztunnel, the Service VIP at the
waypoint), `{port}`/`{alt_port}` (the target ports 8080/8081 at a ztunnel, service ports 80/81 at the
waypoint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

ZTUNNEL = "ztunnel"
WAYPOINT = "waypoint"
BOTH = (ZTUNNEL, WAYPOINT)

NAMESPACE = "authz"
POD_IP = "127.0.13.11"
PORT, ALT_PORT = 8080, 8081  # target ports (the backend listens on both)
SERVICE_PORT, ALT_SERVICE_PORT = 80, 81


@dataclass(frozen=True)
class Req:
    """A client request; the HTTP parts only matter where an HTTP proxy looks at them."""

    namespace: str = "clients"
    service_account: str = "sleep"
    src_ip: str = "127.0.5.1"
    alt_port: bool = False
    method: str = "GET"
    path: str = "/"
    host: str = "web.authz"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def identity(self) -> str:
        return f"spiffe://cluster.local/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        port = "alt" if self.alt_port else "main"
        extra = "".join(f" {k}={v}" for k, v in self.headers)
        return (
            f"{self.namespace}/{self.service_account}@{self.src_ip} port={port} "
            f"{self.method} {self.host}{self.path}{extra}"
        )


SLEEP = Req()
NOTSLEEP = Req(service_account="notsleep")
OTHER_NS = Req(namespace="other")
ELSEWHERE = Req(src_ip="127.0.6.1")
ALT = Req(alt_port=True)
POST = Req(method="POST")


@dataclass(frozen=True)
class Row:
    name: str
    action: str
    rules: list[dict[str, Any]] | None  # None: the policy has no `rules`
    checks: tuple[tuple[Req, bool], ...]  # (request, allowed?)
    points: tuple[str, ...] = BOTH
    tcp: bool = False  # at the waypoint: a TCP service (network RBAC) instead of HTTP
    spec: dict[str, Any] = field(default_factory=dict)  # more spec fields (provider)

    def id(self, point: str) -> str:
        return f"{point}-{self.action}-{self.name}"

    def policy_spec(self, *, dst_ip: str, port: int, alt_port: int) -> dict[str, Any]:
        spec: dict[str, Any] = {"action": self.action, **self.spec}
        if self.rules is not None:
            text = json.dumps(self.rules)
            for key, value in (("{dst_ip}", dst_ip), ("{port}", str(port)), ("{alt_port}", str(alt_port))):
                text = text.replace(key, value)
            spec["rules"] = json.loads(text)
        return spec


def _pair(name: str, action: str, rule: dict[str, Any], match: Req, other: Req, points: tuple[str, ...]) -> Row:
    """A field row: ALLOW lets the matching request in and not the other; DENY the reverse."""
    allow = action == "ALLOW"
    return Row(name, action, [rule], ((match, allow), (other, not allow)), points)


def _both_actions(name: str, rule: dict[str, Any], match: Req, other: Req, points: tuple[str, ...]) -> list[Row]:
    return [_pair(name, action, rule, match, other, points) for action in ("ALLOW", "DENY")]


def _src(**fields: list[str]) -> dict[str, Any]:
    return {"from": [{"source": fields}]}


def _op(**fields: list[str]) -> dict[str, Any]:
    return {"to": [{"operation": fields}]}


def _when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"key": key}
    if values is not None:
        cond["values"] = values
    if not_values is not None:
        cond["notValues"] = not_values
    return {"when": [cond]}


SLEEP_ID = "cluster.local/ns/clients/sa/sleep"

# Fields both enforcement points see (L4).
L4_FIELDS: list[tuple[str, dict[str, Any], Req, Req]] = [
    ("principals", _src(principals=[SLEEP_ID]), SLEEP, NOTSLEEP),
    ("principals_prefix_wildcard", _src(principals=["cluster.local/ns/clients/*"]), NOTSLEEP, OTHER_NS),
    ("principals_suffix_wildcard", _src(principals=["*/sa/notsleep"]), NOTSLEEP, SLEEP),
    ("notPrincipals", _src(notPrincipals=[SLEEP_ID]), NOTSLEEP, SLEEP),
    ("namespaces", _src(namespaces=["clients"]), SLEEP, OTHER_NS),
    ("namespaces_wildcard", _src(namespaces=["cli*"]), SLEEP, OTHER_NS),
    ("notNamespaces", _src(notNamespaces=["clients"]), OTHER_NS, SLEEP),
    ("ipBlocks_cidr", _src(ipBlocks=["127.0.5.0/24"]), SLEEP, ELSEWHERE),
    ("ipBlocks_single_address", _src(ipBlocks=["127.0.6.1"]), ELSEWHERE, SLEEP),
    ("notIpBlocks", _src(notIpBlocks=["127.0.5.0/24"]), ELSEWHERE, SLEEP),
    ("ports", _op(ports=["{port}"]), SLEEP, ALT),
    ("notPorts", _op(notPorts=["{port}"]), ALT, SLEEP),
    ("when_source.ip", _when("source.ip", ["127.0.5.0/24"]), SLEEP, ELSEWHERE),
    ("when_source.ip_notValues", _when("source.ip", not_values=["127.0.5.0/24"]), ELSEWHERE, SLEEP),
    ("when_source.namespace", _when("source.namespace", ["clients"]), SLEEP, OTHER_NS),
    ("when_source.namespace_notValues", _when("source.namespace", not_values=["clients"]), OTHER_NS, SLEEP),
    ("when_source.principal", _when("source.principal", [SLEEP_ID]), SLEEP, NOTSLEEP),
    ("when_source.principal_notValues", _when("source.principal", not_values=[SLEEP_ID]), NOTSLEEP, SLEEP),
    ("when_destination.port", _when("destination.port", ["{port}"]), SLEEP, ALT),
    ("when_destination.port_notValues", _when("destination.port", not_values=["{port}"]), ALT, SLEEP),
    (
        "from_entries_are_ORed",
        {"from": [{"source": {"principals": [SLEEP_ID]}}, {"source": {"namespaces": ["other"]}}]},
        OTHER_NS,
        NOTSLEEP,
    ),
    ("from_and_to_are_ANDed", {**_src(principals=[SLEEP_ID]), **_op(ports=["{port}"])}, SLEEP, ALT),
    (
        "fields_of_one_source_are_ANDed",
        _src(principals=[SLEEP_ID], ipBlocks=["127.0.5.0/24"]),
        SLEEP,
        Req(src_ip="127.0.6.1"),
    ),
]

# destination.ip: every request goes to the same destination, so one row matches and one does not.
DESTINATION_IP_ROWS = [
    Row("when_destination.ip_matches", "ALLOW", [_when("destination.ip", ["{dst_ip}"])], ((SLEEP, True),)),
    Row("when_destination.ip_other", "ALLOW", [_when("destination.ip", ["203.0.113.0/24"])], ((SLEEP, False),)),
    Row("when_destination.ip_matches", "DENY", [_when("destination.ip", ["{dst_ip}"])], ((SLEEP, False),)),
    Row("when_destination.ip_notValues", "DENY", [_when("destination.ip", not_values=["{dst_ip}"])], ((SLEEP, True),)),
]

# Fields only an HTTP proxy sees: rows for the waypoint (the ztunnel's fail-closed rows are below).
L7_FIELDS: list[tuple[str, dict[str, Any], Req, Req]] = [
    ("hosts", _op(hosts=["web.authz"]), SLEEP, Req(host="db.authz")),
    (
        "hosts_case_insensitive_with_port",
        _op(hosts=["web.authz"]),
        Req(host="WEB.Authz:80"),
        Req(host="web.authz.evil"),
    ),
    ("hosts_suffix_wildcard", _op(hosts=["*.authz"]), SLEEP, Req(host="web.other")),
    ("notHosts", _op(notHosts=["web.authz"]), Req(host="db.authz"), SLEEP),
    ("methods", _op(methods=["GET"]), SLEEP, POST),
    ("notMethods", _op(notMethods=["GET"]), POST, SLEEP),
    ("paths_exact", _op(paths=["/api"]), Req(path="/api"), Req(path="/api/x")),
    ("paths_prefix", _op(paths=["/api/*"]), Req(path="/api/x?q=1"), Req(path="/admin")),
    ("paths_suffix", _op(paths=["*.json"]), Req(path="/a/b.json"), Req(path="/a/b.html")),
    ("paths_normalized", _op(paths=["/admin/*"]), Req(path="/api/../admin/users"), Req(path="/api/admin/users")),
    ("notPaths", _op(notPaths=["/api/*"]), Req(path="/admin"), Req(path="/api/x")),
    ("remoteIpBlocks", _src(remoteIpBlocks=["10.9.0.0/16"]), Req(headers=(("x-forwarded-for", "10.9.1.1"),)), SLEEP),
    (
        "notRemoteIpBlocks",
        _src(notRemoteIpBlocks=["10.9.0.0/16"]),
        SLEEP,
        Req(headers=(("x-forwarded-for", "10.9.1.1"),)),
    ),
    ("when_remote.ip", _when("remote.ip", ["10.9.0.0/16"]), Req(headers=(("x-forwarded-for", "10.9.1.1"),)), SLEEP),
    (
        "when_request.headers",
        _when("request.headers[x-user]", ["alice"]),
        Req(headers=(("x-user", "alice"),)),
        Req(headers=(("x-user", "bob"),)),
    ),
    (
        "when_request.headers_prefix",
        _when("request.headers[x-user]", ["ali*"]),
        Req(headers=(("x-user", "alice"),)),
        SLEEP,
    ),
    (
        "when_request.headers_notValues",
        _when("request.headers[x-user]", not_values=["bob"]),
        Req(headers=(("x-user", "alice"),)),
        Req(headers=(("x-user", "bob"),)),
    ),
    (
        "to_entries_are_ORed",
        {"to": [{"operation": {"methods": ["POST"]}}, {"operation": {"paths": ["/api"]}}]},
        POST,
        Req(path="/x"),
    ),
    (
        "when_and_from_are_ANDed",
        {**_src(principals=[SLEEP_ID]), **_when("request.headers[x-user]", ["alice"])},
        Req(headers=(("x-user", "alice"),)),
        SLEEP,
    ),
]


def _fail_closed() -> list[Row]:
    """Policies that need what the enforcement point cannot see, and the other fail-closed cases."""
    get_alice = Req(headers=(("x-user", "alice"),))
    return [
        # ztunnel: an ALLOW rule with HTTP attributes is omitted; the policy still exists, so it denies.
        Row("methods_rule_omitted", "ALLOW", [_op(methods=["GET"])], ((SLEEP, False), (POST, False)), (ZTUNNEL,)),
        Row(
            "principals_and_methods_omitted",
            "ALLOW",
            [{**_src(principals=[SLEEP_ID]), **_op(methods=["GET"])}],
            ((SLEEP, False),),
            (ZTUNNEL,),
        ),
        Row(
            "only_the_http_rule_omitted",
            "ALLOW",
            [_op(paths=["/api"]), _src(principals=["cluster.local/ns/clients/sa/notsleep"])],
            ((SLEEP, False), (NOTSLEEP, True)),
            (ZTUNNEL,),
        ),
        Row("remoteIpBlocks_omitted", "ALLOW", [_src(remoteIpBlocks=["127.0.0.0/8"])], ((SLEEP, False),), (ZTUNNEL,)),
        Row("requestPrincipals_omitted", "ALLOW", [_src(requestPrincipals=["*"])], ((SLEEP, False),), (ZTUNNEL,)),
        Row(
            "when_request.headers_omitted",
            "ALLOW",
            [_when("request.headers[x-user]", ["alice"])],
            ((get_alice, False),),
            (ZTUNNEL,),
        ),
        Row("when_connection.sni_omitted", "ALLOW", [_when("connection.sni", ["web.authz"])], ((SLEEP, False),), BOTH),
        Row("hosts_omitted", "ALLOW", [_op(hosts=["*"])], ((SLEEP, False),), (ZTUNNEL,)),
        # ztunnel: a DENY rule is enforced without its HTTP parts, so it denies more.
        Row(
            "methods_dropped_denies_everything",
            "DENY",
            [_op(methods=["POST"])],
            ((SLEEP, False), (POST, False)),
            (ZTUNNEL,),
        ),
        Row(
            "methods_dropped_principals_kept",
            "DENY",
            [{**_src(principals=[SLEEP_ID]), **_op(methods=["POST"])}],
            ((SLEEP, False), (NOTSLEEP, True)),
            (ZTUNNEL,),
        ),
        Row(
            "methods_dropped_ports_kept",
            "DENY",
            [_op(methods=["POST"], ports=["{port}"])],
            ((SLEEP, False), (ALT, True)),
            (ZTUNNEL,),
        ),
        Row(
            "requestPrincipals_alternative_matches_any_source",
            "DENY",
            [
                {
                    "from": [
                        {"source": {"requestPrincipals": ["*"]}},
                        {"source": {"principals": ["cluster.local/ns/x/sa/y"]}},
                    ]
                }
            ],
            ((SLEEP, False), (NOTSLEEP, False)),
            (ZTUNNEL,),
        ),
        Row(
            "when_request.headers_dropped",
            "DENY",
            [_when("request.headers[x-user]", ["alice"])],
            ((SLEEP, False),),
            (ZTUNNEL,),
        ),
        Row(
            "when_connection.sni_dropped",
            "DENY",
            [{**_src(principals=[SLEEP_ID]), **_when("connection.sni", ["x"])}],
            ((SLEEP, False), (NOTSLEEP, True)),
            BOTH,
        ),
        # waypoint: JWT attributes with no validated token (jwt_authn wrote no payload): ALLOW never matches.
        Row(
            "requestPrincipals_without_token",
            "ALLOW",
            [_src(requestPrincipals=["https://issuer.example/alice"])],
            ((SLEEP, False),),
            (WAYPOINT,),
        ),
        Row(
            "issue_probe_claims_and_GET_is_not_any_GET",
            "ALLOW",
            [{**_op(methods=["GET"]), **_when("request.auth.claims[groups]", ["admin"])}],
            ((SLEEP, False),),
            BOTH,
        ),
        Row(
            "notRequestPrincipals_any_denies_requests_without_token",
            "DENY",
            [_src(notRequestPrincipals=["*"])],
            ((SLEEP, False),),
            (WAYPOINT,),
        ),
        Row(
            "when_request.auth.audiences_without_token",
            "ALLOW",
            [_when("request.auth.audiences", ["web"])],
            ((SLEEP, False),),
            (WAYPOINT,),
        ),
        # waypoint TCP chain: an ALLOW rule with HTTP attributes allows nothing; DENY drops them.
        Row(
            "tcp_chain_methods_rule_omitted", "ALLOW", [_op(methods=["GET"])], ((SLEEP, False),), (WAYPOINT,), tcp=True
        ),
        Row(
            "tcp_chain_methods_dropped",
            "DENY",
            [{**_src(principals=[SLEEP_ID]), **_op(methods=["POST"])}],
            ((SLEEP, False), (NOTSLEEP, True)),
            (WAYPOINT,),
            tcp=True,
        ),
        Row(
            "tcp_chain_principals",
            "ALLOW",
            [_src(principals=[SLEEP_ID])],
            ((SLEEP, True), (NOTSLEEP, False)),
            (WAYPOINT,),
            tcp=True,
        ),
        Row(
            "tcp_chain_ipBlocks",
            "ALLOW",
            [_src(ipBlocks=["127.0.5.0/24"])],
            ((SLEEP, True), (ELSEWHERE, False)),
            (WAYPOINT,),
            tcp=True,
        ),
        # Actions.
        Row("audit_never_decides", "AUDIT", [_src(principals=[SLEEP_ID])], ((SLEEP, True), (NOTSLEEP, True)), BOTH),
        Row(
            "custom_without_provider_denies_what_it_matches",
            "CUSTOM",
            [_src(principals=[SLEEP_ID])],
            ((SLEEP, False), (NOTSLEEP, True)),
            (WAYPOINT,),
            spec={"provider": {"name": "ext-authz"}},
        ),
        Row(
            "custom_is_not_a_ztunnel_action",
            "CUSTOM",
            [_src(principals=[SLEEP_ID])],
            ((SLEEP, True), (NOTSLEEP, True)),
            (ZTUNNEL,),
            spec={"provider": {"name": "ext-authz"}},
        ),
        # Empty rules.
        Row("no_rules_allows_nothing", "ALLOW", None, ((SLEEP, False), (NOTSLEEP, False))),
        Row("one_empty_rule_allows_everything", "ALLOW", [{}], ((SLEEP, True), (NOTSLEEP, True))),
        Row("no_rules_denies_nothing", "DENY", None, ((SLEEP, True), (NOTSLEEP, True))),
        Row("one_empty_rule_denies_everything", "DENY", [{}], ((SLEEP, False), (NOTSLEEP, False))),
        # The probes: ipBlocks are enforced, not widened to "any".
        Row("issue_probe_ipBlocks", "ALLOW", [_src(ipBlocks=["10.1.0.0/16"])], ((SLEEP, False),)),
        Row(
            "issue_probe_ipBlocks_client_192.168.9.9",
            "ALLOW",
            [_src(ipBlocks=["10.1.0.0/16"])],
            ((Req(src_ip="192.168.9.9"), False), (Req(src_ip="10.1.2.3"), True)),
            (ZTUNNEL,),
        ),
    ]


def rows() -> list[Row]:
    out: list[Row] = []
    for name, rule, match, other in L4_FIELDS:
        out += _both_actions(name, rule, match, other, BOTH)
    out += DESTINATION_IP_ROWS
    for name, rule, match, other in L7_FIELDS:
        out += _both_actions(name, rule, match, other, (WAYPOINT,))
    out += _fail_closed()
    return out


ROWS = rows()


def cases(point: str) -> list[tuple[Row, Req, bool]]:
    return [(row, req, allowed) for row in ROWS if point in row.points for req, allowed in row.checks]


def row_ids(point: str) -> list[str]:
    out = []
    for row in ROWS:
        if point in row.points:
            for i, (_req, allowed) in enumerate(row.checks):
                out.append(f"{row.id(point)}-{'allowed' if allowed else 'denied'}-{i}")
    return out


__all__ = ["ROWS", "Row", "Req", "cases", "row_ids", "replace"]
