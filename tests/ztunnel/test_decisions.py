"""Pure decisions, table-driven, one test per scenario: outbound routing, inbound validation, L4 RBAC."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

import _core._reference as reference
from ztunnel.errors import BadRequest, Denied, NoHealthyUpstream, SelfCall, Unavailable
from ztunnel.identity import Identity
from ztunnel.inbound import decide_connect, decide_plaintext, parse_authority
from ztunnel.lb import LoadBalancers
from ztunnel.outbound import Pick, Request, RequestType, build_request, plan_request, resolve
from ztunnel.rbac import ConnInfo, authorize
from ztunnel.state import (
    Action,
    Match,
    Policy,
    Protocol,
    ProxyState,
    Scope,
    Service,
    StringMatch,
    Waypoint,
    Workload,
)

ip = ipaddress.ip_address
SVC = "default/echo.default.svc.cluster.local"


def wl(
    name: str,
    addr: str,
    node: str = "node-b",
    *,
    proto: Protocol = Protocol.HBONE,
    sa: str | None = None,
    services: dict[str, dict[int, int]] | None = None,
    **kw: Any,
) -> Workload:
    return Workload(
        uid=f"c//{name}",
        name=name,
        namespace=kw.pop("ns", "default"),
        ips=(ip(addr),),
        service_account=sa or name,
        protocol=proto,
        node=node,
        services=services or {},
        **kw,
    )


SLEEP = wl("sleep", "10.0.0.1", "node-a")
ECHO1 = wl("echo-1", "10.0.1.1", services={SVC: {80: 8080}})
ECHO2 = wl("echo-2", "10.0.1.2", services={SVC: {80: 8080}})
PLAIN = wl("legacy", "10.0.2.1", proto=Protocol.TCP, services={"default/legacy.default.svc.cluster.local": {}})
WAYPOINT = wl("waypoint", "10.0.9.1", "node-c", services={"default/waypoint.default.svc.cluster.local": {}})
LOCAL = wl("local-echo", "10.0.3.1", "node-a", services={"default/local.default.svc.cluster.local": {}})
ECHO_SVC = Service("echo", "default", "echo.default.svc.cluster.local", (ip("10.96.0.10"),), {80: 8080})
WP_SVC = Service("waypoint", "default", "waypoint.default.svc.cluster.local", (ip("10.96.0.99"),), {15008: 15008})
WAYPOINTED_SVC = Service(
    "reviews",
    "default",
    "reviews.default.svc.cluster.local",
    (ip("10.96.0.20"),),
    {9080: 9080},
    waypoint=Waypoint(address=ip("10.96.0.99")),
)
WAYPOINTED_POD = wl("ratings", "10.0.4.1", waypoint=Waypoint(hostname="default/waypoint.default.svc.cluster.local"))
UNHEALTHY = wl("echo-3", "10.0.1.3", services={SVC: {80: 8080}}, healthy=False)


def state(*extra: Workload, services: tuple[Service, ...] = ()) -> ProxyState:
    return ProxyState(
        [SLEEP, ECHO1, ECHO2, PLAIN, WAYPOINT, LOCAL, WAYPOINTED_POD, *extra],
        [ECHO_SVC, WP_SVC, WAYPOINTED_SVC, *services],
    )


def outbound(
    dst: str, port: int, st: ProxyState | None = None, source: Workload = SLEEP, lbs: LoadBalancers | None = None
) -> Request:
    st = st or state()
    return build_request(
        st,
        lbs or LoadBalancers(reference.RoundRobin),
        source,
        (ip(dst), port),
        local_node="node-a",
        listener_addrs=frozenset({(ip("10.0.0.1"), 15001)}),
    )


# ------------------------------------------------------------------------------------------------ outbound
def test_outbound_vip_with_waypoint_goes_to_waypoint() -> None:
    r = outbound("10.96.0.20", 9080)
    assert (r.protocol, r.request_type) == (Protocol.HBONE, RequestType.TO_SERVER_WAYPOINT)
    assert r.gateway == (ip("10.0.9.1"), 15008)
    assert r.authority == "10.96.0.20:9080"  # the VIP, not a pod
    assert "spiffe://cluster.local/ns/default/sa/waypoint" in r.upstream_sans
    assert r.log_line() == "proxying to 10.96.0.20:9080 using HBONE via 10.0.9.1:15008 type ToServerWaypoint"


def test_outbound_vip_without_waypoint_round_robins_ready_endpoints_over_hbone() -> None:
    lbs = LoadBalancers(reference.RoundRobin)
    st = state(UNHEALTHY)
    got = [outbound("10.96.0.10", 80, st, lbs=lbs) for _ in range(4)]
    assert [r.destination for r in got] == [(ip("10.0.1.1"), 8080), (ip("10.0.1.2"), 8080)] * 2
    assert all(r.request_type is RequestType.DIRECT and r.gateway[1] == 15008 for r in got)
    assert got[0].upstream_sans == ("spiffe://cluster.local/ns/default/sa/echo-1",)
    assert got[0].log_line() == "proxying to 10.0.1.1:8080 using HBONE via 10.0.1.1:15008 type Direct"


def test_outbound_vip_endpoint_not_captured_goes_plain_tcp() -> None:
    legacy = Service("legacy", "default", "legacy.default.svc.cluster.local", (ip("10.96.0.30"),), {80: 8080})
    r = outbound("10.96.0.30", 80, state(services=(legacy,)))
    assert (r.protocol, r.gateway, r.destination) == (Protocol.TCP, (ip("10.0.2.1"), 8080), (ip("10.0.2.1"), 8080))


def test_outbound_pod_ip_with_waypoint_goes_to_waypoint() -> None:
    r = outbound("10.0.4.1", 9080)
    assert r.request_type is RequestType.TO_SERVER_WAYPOINT
    assert r.gateway == (ip("10.0.9.1"), 15008) and r.authority == "10.0.4.1:9080"


def test_outbound_from_the_waypoint_itself_goes_direct() -> None:
    r = outbound("10.0.4.1", 9080, source=WAYPOINT)
    assert r.request_type is RequestType.DIRECT and r.gateway == (ip("10.0.4.1"), 15008)


def test_outbound_same_node_destination_takes_the_local_fast_path() -> None:
    r = outbound("10.0.3.1", 8080)
    assert r.request_type is RequestType.DIRECT_LOCAL and r.destination == (ip("10.0.3.1"), 8080)


def test_outbound_pod_ip_goes_direct_with_same_port() -> None:
    r = outbound("10.0.1.2", 7777)
    assert r.authority == "10.0.1.2:7777" and r.gateway == (ip("10.0.1.2"), 15008)


def test_outbound_unknown_ip_is_passthrough() -> None:
    r = outbound("192.0.2.1", 443)
    assert (r.protocol, r.request_type, r.gateway) == (Protocol.TCP, RequestType.PASSTHROUGH, (ip("192.0.2.1"), 443))


def test_outbound_service_port_not_declared_has_no_upstream() -> None:
    with pytest.raises(NoHealthyUpstream):
        outbound("10.96.0.10", 81)


def test_outbound_service_without_ready_endpoints_has_no_upstream() -> None:
    empty = Service("empty", "default", "empty.default.svc.cluster.local", (ip("10.96.0.40"),), {80: 80})
    with pytest.raises(NoHealthyUpstream):
        outbound("10.96.0.40", 80, state(services=(empty,)))


def test_outbound_to_our_own_listener_is_a_self_call() -> None:
    with pytest.raises(SelfCall):
        outbound("10.0.0.1", 15001)


def test_outbound_round_robin_is_fair_under_concurrency_and_survives_a_push() -> None:
    lbs = LoadBalancers(reference.RoundRobin)
    st = state()
    picks = [outbound("10.96.0.10", 80, st, lbs=lbs).destination[0] for _ in range(100)]
    assert picks.count(ip("10.0.1.1")) == picks.count(ip("10.0.1.2")) == 50
    st2 = ProxyState([w for w in st.workloads.values() if w.name != "echo-2"], st.services.values())
    picks = [outbound("10.96.0.10", 80, st2, lbs=lbs).destination[0] for _ in range(10)]
    assert set(picks) == {ip("10.0.1.1")}



@pytest.mark.parametrize(
    ("dst", "port", "picks"),
    [
        pytest.param("10.96.0.10", 80, "echo.default.svc.cluster.local", id="service_vip_picks_an_endpoint"),
        pytest.param("10.96.0.20", 9080, "waypoint.default.svc.cluster.local", id="waypoint_service_picks_a_replica"),
        pytest.param("10.0.1.1", 8080, None, id="pod_ip_needs_no_pick"),
        pytest.param("10.0.4.1", 9080, "waypoint.default.svc.cluster.local", id="pod_waypoint_service_picks_a_replica"),
        pytest.param("192.0.2.1", 80, None, id="passthrough_needs_no_pick"),
    ],
)
def test_plan_leaves_only_the_round_robin_pick_per_connection(dst: str, port: int, picks: str | None) -> None:
    """The cacheable part of a decision, and the per-connection pick, give what build_request gives."""
    st = state()
    plan = plan_request(st, SLEEP, (ip(dst), port), local_node="node-a")
    if picks is None:
        assert isinstance(plan, Request)
    else:
        assert isinstance(plan, Pick) and plan.service.hostname == picks
    assert resolve(plan, st, LoadBalancers(reference.RoundRobin)) == outbound(dst, port, st)


def test_plan_for_a_service_without_endpoints_fails_at_the_pick() -> None:
    st = ProxyState([SLEEP], [ECHO_SVC])
    plan = plan_request(st, SLEEP, (ip("10.96.0.10"), 80), local_node="node-a")
    with pytest.raises(NoHealthyUpstream):
        resolve(plan, st, LoadBalancers(reference.RoundRobin))

# ------------------------------------------------------------------------------------------------ inbound
SLEEP_ID = Identity("cluster.local", "default", "sleep")


@pytest.mark.parametrize(
    ("authority", "expected"),
    [("10.0.1.1:8080", (ip("10.0.1.1"), 8080)), ("[fd00::5]:80", (ip("fd00::5"), 80))],
)
def test_inbound_authority_parses_ip_port(authority: str, expected: tuple[Any, int]) -> None:
    assert parse_authority(authority) == expected


@pytest.mark.parametrize("authority", ["", "10.0.1.1", "10.0.1.1:0", "10.0.1.1:99999", "host:80", "[::1:80"])
def test_inbound_bad_authority_is_400(authority: str) -> None:
    with pytest.raises(BadRequest):
        parse_authority(authority)


def _connect(
    authority: str,
    local: str = "10.0.1.1",
    method: str = "CONNECT",
    st: ProxyState | None = None,
    src: Identity | None = SLEEP_ID,
) -> Any:
    return decide_connect(
        st or state(), method=method, authority=authority, local_ip=ip(local), src_ip=ip("10.0.0.1"), src_identity=src
    )


def test_inbound_connect_to_local_workload_is_allowed_without_policy() -> None:
    d = _connect("10.0.1.1:8080")
    assert d.workload.name == "echo-1" and d.upstream == (ip("10.0.1.1"), 8080)


def test_inbound_non_connect_method_is_400() -> None:
    with pytest.raises(BadRequest):
        _connect("10.0.1.1:8080", method="GET")


def test_inbound_authority_not_the_local_ip_is_400() -> None:
    with pytest.raises(BadRequest):
        _connect("10.0.1.2:8080")


def test_inbound_unknown_local_workload_is_503() -> None:
    with pytest.raises(Unavailable):
        _connect("10.9.9.9:8080", local="10.9.9.9")


def test_inbound_illegal_target_port_is_503() -> None:
    with pytest.raises(SelfCall):
        _connect("10.0.1.1:15008")


def test_inbound_waypoint_enabled_destination_not_from_its_waypoint_is_hairpinned() -> None:
    assert _connect("10.0.4.1:9080", local="10.0.4.1").hairpin_waypoint
    wp_id = Identity("cluster.local", "default", "waypoint")
    assert not _connect("10.0.4.1:9080", local="10.0.4.1", src=wp_id).hairpin_waypoint


STRICT = Policy(
    "istio_converted_static_strict",
    "istio-system",
    Scope.GLOBAL,
    Action.DENY,
    (((Match(not_principals=(StringMatch("presence"),)),),),),
)


def test_inbound_plaintext_under_strict_is_denied() -> None:
    st = ProxyState(state().workloads.values(), state().services.values(), [STRICT])
    with pytest.raises(Denied, match="explicitly denied by: istio-system/istio_converted_static_strict"):
        decide_plaintext(st, dst=(ip("10.0.1.1"), 8080), src_ip=ip("10.0.0.9"))
    assert _connect("10.0.1.1:8080", st=st).upstream == (ip("10.0.1.1"), 8080)  # mTLS passes STRICT


def test_inbound_plaintext_without_policy_is_allowed() -> None:
    assert decide_plaintext(state(), dst=(ip("10.0.1.1"), 8080), src_ip=ip("10.0.0.9")).workload.name == "echo-1"


# ------------------------------------------------------------------------------------------------ rbac
def P(
    name: str,
    action: Action,
    *matches: Match,
    scope: Scope = Scope.NAMESPACE,
    ns: str = "default",
    dry_run: bool = False,
) -> Policy:
    return Policy(name, ns, scope, action, ((tuple(matches),),), dry_run)


def conn(sa: str | None = "sleep", ns: str = "default", port: int = 8080, src: str = "10.0.0.1") -> ConnInfo:
    return ConnInfo(ip(src), ip("10.0.1.1"), port, Identity("cluster.local", ns, sa) if sa else None)


PRINCIPAL_SLEEP = Match(principals=(StringMatch("exact", "cluster.local/ns/default/sa/sleep"),))
RBAC_CASES = {
    "no_policy_allows": ([], conn(), True),
    "allow_principal_matches": ([P("a", Action.ALLOW, PRINCIPAL_SLEEP)], conn(), True),
    "allow_principal_other_sa_denied": ([P("a", Action.ALLOW, PRINCIPAL_SLEEP)], conn("notsleep"), False),
    "deny_wins_over_allow": (
        [P("a", Action.ALLOW, PRINCIPAL_SLEEP), P("d", Action.DENY, PRINCIPAL_SLEEP)],
        conn(),
        False,
    ),
    "allow_namespace": (
        [P("a", Action.ALLOW, Match(namespaces=(StringMatch("exact", "default"),)))],
        conn(ns="other"),
        False,
    ),
    "allow_namespace_prefix": ([P("a", Action.ALLOW, Match(namespaces=(StringMatch("prefix", "def"),)))], conn(), True),
    "allow_port": ([P("a", Action.ALLOW, Match(destination_ports=(8080,)))], conn(port=9090), False),
    "deny_not_port": ([P("d", Action.DENY, Match(not_destination_ports=(8080,)))], conn(port=9090), False),
    "deny_not_port_matching_port_allowed": ([P("d", Action.DENY, Match(not_destination_ports=(8080,)))], conn(), True),
    "deny_source_cidr": (
        [P("d", Action.DENY, Match(source_ips=(ipaddress.ip_network("10.0.0.0/24"),)))],
        conn(),
        False,
    ),
    "service_account_match": ([P("a", Action.ALLOW, Match(service_accounts=(("default", "sleep"),)))], conn(), True),
    "dry_run_deny_is_ignored": ([P("d", Action.DENY, PRINCIPAL_SLEEP, dry_run=True)], conn(), True),
    "empty_rules_never_match": ([Policy("a", "default", Scope.NAMESPACE, Action.ALLOW, ())], conn(), False),
    # ztunnel rbac.rs: empty matches are skipped, so a clause of only empty matches matches nothing, while a
    # rule without clauses matches anything.
    "deny_clause_of_only_empty_matches_matches_nothing": ([P("d", Action.DENY, Match())], conn(), True),
    "allow_clause_of_only_empty_matches_matches_nothing": ([P("a", Action.ALLOW, Match())], conn(), False),
    "empty_match_skipped_beside_a_real_one": ([P("a", Action.ALLOW, Match(), PRINCIPAL_SLEEP)], conn(), True),
    "rule_without_clauses_matches_anything": (
        [Policy("d", "default", Scope.NAMESPACE, Action.DENY, ((),))],
        conn(),
        False,
    ),
    "not_source_cidr": (
        [P("a", Action.ALLOW, Match(not_source_ips=(ipaddress.ip_network("10.0.0.0/24"),)))],
        conn(),
        False,
    ),
    "destination_cidr": (
        [P("a", Action.ALLOW, Match(destination_ips=(ipaddress.ip_network("10.0.1.0/24"),)))],
        conn(),
        True,
    ),
    "not_destination_cidr": (
        [P("d", Action.DENY, Match(not_destination_ips=(ipaddress.ip_network("10.0.1.0/24"),)))],
        conn(),
        True,
    ),
    "not_service_account": (
        [P("a", Action.ALLOW, Match(not_service_accounts=(("default", "sleep"),)))],
        conn(),
        False,
    ),
    "not_principal_without_identity_matches": (
        [P("d", Action.DENY, Match(not_principals=(StringMatch("presence"),)))],
        conn(sa=None),
        False,
    ),
    "strict_denies_no_identity": ([STRICT], conn(sa=None), False),
    "strict_allows_mtls": ([STRICT], conn(), True),
}


@pytest.mark.parametrize("case", sorted(RBAC_CASES))
def test_rbac(case: str) -> None:
    policies, c, allowed = RBAC_CASES[case]
    assert authorize(policies, c).allowed is allowed


def test_rbac_policy_scopes_select_policies_for_a_workload() -> None:
    glob = P("g", Action.ALLOW, PRINCIPAL_SLEEP, scope=Scope.GLOBAL, ns="istio-system")
    other_ns = P("o", Action.DENY, PRINCIPAL_SLEEP, ns="other")
    selector = P("s", Action.DENY, PRINCIPAL_SLEEP, scope=Scope.WORKLOAD_SELECTOR)
    w = wl("echo-9", "10.0.1.9", authorization_policies=("default/s",))
    st = ProxyState([w, ECHO1], [], [glob, other_ns, selector])
    assert {p.key for p in st.policies_for(w)} == {"istio-system/g", "default/s"}
    assert {p.key for p in st.policies_for(ECHO1)} == {"istio-system/g"}


# ------------------------------------------------------------------------------ named targetPort (per workload)
NAMED_SVC_KEY = "default/named.default.svc.cluster.local"
# istiod's encoding of `targetPort: http` (80) next to a numeric `targetPort: 9090` (90): the service says 0 for
# the named one, each workload says what it is on that pod; a pod without the name has no entry for 80.
NAMED_SVC = Service("named", "default", "named.default.svc.cluster.local", (ip("10.96.0.40"),), {80: 0, 90: 9090})
NAMED_A = wl("named-a", "10.0.5.1", services={NAMED_SVC_KEY: {80: 8080, 90: 9090}})
NAMED_B = wl("named-b", "10.0.5.2", services={NAMED_SVC_KEY: {80: 8081, 90: 9090}})
NAMED_NONE = wl("named-c", "10.0.5.3", services={NAMED_SVC_KEY: {90: 9090}})


@pytest.mark.parametrize(
    ("endpoints", "port", "expected"),
    [
        pytest.param(
            (NAMED_A, NAMED_B), 80, [("10.0.5.1", 8080), ("10.0.5.2", 8081)] * 2,
            id="named_target_port_resolves_per_pod",
        ),
        pytest.param(
            (NAMED_A, NAMED_NONE, NAMED_B), 80, [("10.0.5.1", 8080), ("10.0.5.2", 8081)] * 2,
            id="pod_without_the_named_port_is_not_an_endpoint_for_it",
        ),
        pytest.param(
            (NAMED_A, NAMED_NONE), 90, [("10.0.5.1", 9090), ("10.0.5.3", 9090)] * 2,
            id="numeric_target_port_uses_every_endpoint",
        ),
        pytest.param((NAMED_NONE,), 80, NoHealthyUpstream, id="no_pod_declares_the_named_port"),
    ],
)
def test_outbound_named_target_port(endpoints: tuple[Workload, ...], port: int, expected: Any) -> None:
    st = ProxyState([SLEEP, *endpoints], [NAMED_SVC])
    lbs = LoadBalancers(reference.RoundRobin)
    if expected is NoHealthyUpstream:
        with pytest.raises(NoHealthyUpstream):
            outbound("10.96.0.40", port, st, lbs=lbs)
        return
    got = [outbound("10.96.0.40", port, st, lbs=lbs).destination for _ in range(4)]
    assert got == [(ip(a), p) for a, p in expected]
