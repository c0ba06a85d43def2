"""PeerAuthentication: inheritance (workload > namespace > mesh, UNSET inherits, oldest wins), the converted
`istio.security.Authorization` resources ztunnels receive, and what our ztunnel then decides for plaintext
(no identity) and mTLS (an identity) on each port. One row per scenario."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.harness.meshes import ambient_namespace, pod, service
from xds import resources
from xds.mesh.objects import mesh_from_objects
from xds.workloadapi import Address, Authorization, AuthzAction, AuthzScope
from xds.ztunnel_state import ztunnel_resources
from ztunnel.errors import Denied
from ztunnel.identity import Identity
from ztunnel.inbound import decide_connect, decide_plaintext
from ztunnel.state import ProxyState
from ztunnel.xdsfeed import policy_from_xds, workload_from_xds

pytestmark = pytest.mark.policy

STATIC = "istio-system/istio_converted_static_strict"
CONVERTED = "ns/converted_peer_authentication_web"
WEB_IP = "127.0.1.1"


def pa(
    ns: str,
    name: str,
    mode: str | None = None,
    *,
    selector: dict[str, str] | None = None,
    ports: dict[int, str] | None = None,
    created: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports is not None:
        spec["portLevelMtls"] = {str(p): {"mode": m} for p, m in ports.items()}
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": meta, "spec": spec}


def web_mesh(*policies: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        ambient_namespace("ns"),
        service("ns", "web", "127.96.0.1", [("http", 80, 8080)], {"app": "web"}),
        pod("ns", "web-0", WEB_IP, {"app": "web"}, "web"),
        *policies,
    ]


@dataclass(frozen=True)
class Case:
    name: str
    policies: list[dict[str, Any]]
    keys: list[str]  # the workload's authorization_policies
    plaintext_denied: frozenset[int] = frozenset()  # of ports 8080 and 9090
    converted: bool = False  # a converted_peer_authentication_* resource is pushed
    extra: list[str] = field(default_factory=list)


BOTH = frozenset({8080, 9090})
MESH_STRICT = pa("istio-system", "default", "STRICT")
WEB = {"app": "web"}

CASES = [
    Case("no_peer_authentication_accepts_plaintext", [], []),
    Case("mesh_wide_strict_refuses_plaintext_everywhere", [MESH_STRICT], [STATIC], BOTH),
    Case("mesh_wide_permissive_accepts_plaintext", [pa("istio-system", "default", "PERMISSIVE")], []),
    Case("mesh_wide_without_mtls_is_unset_so_permissive", [pa("istio-system", "default")], []),
    Case(
        "namespace_permissive_overrides_mesh_strict",
        [MESH_STRICT, pa("ns", "ns-wide", "PERMISSIVE")],
        [],
    ),
    Case("namespace_unset_inherits_mesh_strict", [MESH_STRICT, pa("ns", "ns-wide", "UNSET")], [STATIC], BOTH),
    Case("namespace_disable_is_not_strict_in_ambient", [MESH_STRICT, pa("ns", "ns-wide", "DISABLE")], []),
    Case("namespace_strict_over_mesh_permissive", [pa("istio-system", "d", "PERMISSIVE"), pa("ns", "n", "STRICT")],
         [STATIC], BOTH),
    Case("other_namespace_policy_does_not_apply", [pa("other", "n", "STRICT")], []),
    Case("workload_permissive_overrides_namespace_strict",
         [pa("ns", "n", "STRICT"), pa("ns", "web", "PERMISSIVE", selector=WEB)], []),
    Case("workload_strict_over_namespace_permissive",
         [pa("ns", "n", "PERMISSIVE"), pa("ns", "web", "STRICT", selector=WEB)], [STATIC], BOTH),
    Case("workload_unset_inherits_namespace_strict",
         [pa("ns", "n", "STRICT"), pa("ns", "web", None, selector=WEB)], [STATIC], BOTH),
    Case("selector_not_matching_leaves_namespace_mode",
         [pa("ns", "n", "STRICT"), pa("ns", "db", "PERMISSIVE", selector={"app": "db"})], [STATIC], BOTH),
    Case("selector_policy_in_root_namespace_applies_to_nothing",
         [pa("istio-system", "web", "STRICT", selector=WEB)], []),
    Case(
        "oldest_namespace_policy_wins_strict_first",
        [pa("ns", "b-new", "PERMISSIVE", created="2026-01-02T00:00:00Z"),
         pa("ns", "z-old", "STRICT", created="2026-01-01T00:00:00Z")],
        [STATIC],
        BOTH,
    ),
    Case(
        "oldest_namespace_policy_wins_permissive_first",
        [pa("ns", "a-new", "STRICT", created="2026-01-02T00:00:00Z"),
         pa("ns", "z-old", "PERMISSIVE", created="2026-01-01T00:00:00Z")],
        [],
    ),
    Case(
        "oldest_workload_policy_wins",
        [pa("ns", "a-new", "PERMISSIVE", selector=WEB, created="2026-01-02T00:00:00Z"),
         pa("ns", "z-old", "STRICT", selector=WEB, created="2026-01-01T00:00:00Z")],
        [STATIC],
        BOTH,
    ),
    Case(
        "workload_strict_with_permissive_port_refuses_plaintext_elsewhere",
        [pa("ns", "web", "STRICT", selector=WEB, ports={8080: "PERMISSIVE"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        "mesh_strict_workload_unset_with_permissive_port",
        [MESH_STRICT, pa("ns", "web", None, selector=WEB, ports={8080: "PERMISSIVE"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        "namespace_strict_workload_unset_with_permissive_port",
        [pa("ns", "n", "STRICT"), pa("ns", "web", "UNSET", selector=WEB, ports={8080: "PERMISSIVE"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        "mesh_strict_namespace_unset_workload_unset_with_permissive_port",
        [MESH_STRICT, pa("ns", "n", "UNSET"), pa("ns", "web", None, selector=WEB, ports={8080: "PERMISSIVE"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        # istiod references the converted policy only for a PERMISSIVE port here: a DISABLE port stays STRICT
        "mesh_strict_workload_unset_with_disable_port_stays_strict_as_in_istio",
        [MESH_STRICT, pa("ns", "web", None, selector=WEB, ports={8080: "DISABLE"})],
        [STATIC],
        BOTH,
        converted=True,
    ),
    Case(
        "workload_permissive_with_strict_port",
        [MESH_STRICT, pa("ns", "web", "PERMISSIVE", selector=WEB, ports={9090: "STRICT"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        "namespace_strict_workload_disable_with_strict_port",
        [pa("ns", "n", "STRICT"), pa("ns", "web", "DISABLE", selector=WEB, ports={9090: "STRICT"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        "no_parent_workload_unset_with_strict_port",
        [pa("ns", "web", None, selector=WEB, ports={9090: "STRICT"})],
        [CONVERTED],
        frozenset({9090}),
        converted=True,
    ),
    Case(
        "workload_strict_with_only_strict_ports_is_plain_strict",
        [pa("ns", "web", "STRICT", selector=WEB, ports={8080: "STRICT"})],
        [STATIC],
        BOTH,
    ),
    Case(
        "mesh_strict_workload_unset_with_strict_port_is_plain_strict",
        [MESH_STRICT, pa("ns", "web", None, selector=WEB, ports={9090: "STRICT"})],
        [STATIC],
        BOTH,
    ),
]


def _ztunnel_view(objects: list[dict[str, Any]]) -> tuple[ProxyState, dict[str, Authorization], list[str]]:
    mesh = mesh_from_objects(objects)
    assert not mesh.errors, mesh.errors
    snap = ztunnel_resources(mesh)
    addresses: dict[str, Address] = {}
    for n, r in snap.of_type(resources.ADDRESS).items():
        address = r.any.unpack()
        assert isinstance(address, Address)
        addresses[n] = address
    policies: dict[str, Authorization] = {}
    for n, r in snap.of_type(resources.AUTHORIZATION).items():
        policy = r.any.unpack()
        assert isinstance(policy, Authorization)
        policies[n] = policy
    workloads = [workload_from_xds(a.workload, n) for n, a in addresses.items() if a.workload]
    web = next(a.workload for a in addresses.values() if a.workload and a.workload.name == "web-0")
    state = ProxyState(workloads, (), [policy_from_xds(p, n) for n, p in policies.items()])
    return state, policies, list(web.authorization_policies)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_peer_authentication(case: Case) -> None:
    state, policies, keys = _ztunnel_view(web_mesh(*case.policies))
    assert keys == case.keys
    assert (CONVERTED in policies) is case.converted
    if case.policies:
        static = policies[STATIC]
        assert (static.scope, static.action) == (AuthzScope.WORKLOAD_SELECTOR, AuthzAction.DENY)
    else:
        assert policies == {}  # no PeerAuthentication: nothing pushed at all
    ip = ipaddress.ip_address(WEB_IP)
    client = ipaddress.ip_address("127.0.1.9")
    for port in (8080, 9090):
        if port in case.plaintext_denied:
            with pytest.raises(Denied, match="explicitly denied by"):
                decide_plaintext(state, dst=(ip, port), src_ip=client)
        else:
            assert decide_plaintext(state, dst=(ip, port), src_ip=client).upstream == (ip, port)
        # a connection with a peer identity (HBONE mTLS) is never refused by PeerAuthentication
        decision = decide_connect(
            state,
            method="CONNECT",
            authority=f"{WEB_IP}:{port}",
            local_ip=ip,
            src_ip=client,
            src_identity=Identity("cluster.local", "ns", "sleep"),
        )
        assert decision.upstream == (ip, port)


def test_converted_policy_shape_matches_istiod() -> None:
    """STRICT with a PERMISSIVE port: one DENY rule = (no principal) AND (port is not 8080), as istiod writes it."""
    _, policies, _ = _ztunnel_view(web_mesh(pa("ns", "web", "STRICT", selector=WEB, ports={8080: "PERMISSIVE"})))
    converted = policies[CONVERTED]
    assert (converted.name, converted.namespace) == ("converted_peer_authentication_web", "ns")
    assert (converted.scope, converted.action) == (AuthzScope.WORKLOAD_SELECTOR, AuthzAction.DENY)
    [rule] = converted.rules
    assert [len(c.matches) for c in rule.clauses] == [1, 1]
    assert rule.clauses[0].matches[0].not_principals[0].presence is not None
    assert rule.clauses[1].matches[0].not_destination_ports == [8080]


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}, "spec.portLevelMtls",
         "mesh/namespace-wide PeerAuthentication cannot have portLevelMtls"),
        ({"mtls": {"mode": "MUTUAL"}}, "spec.mtls.mode", "unsupported mode 'MUTUAL'"),
        ({"selector": {"matchLabels": WEB}, "portLevelMtls": {"0": {"mode": "STRICT"}}}, "spec.portLevelMtls[0]",
         "must be 1-65535"),
        ({"selector": {"matchLabels": WEB}, "portLevelMtls": {"http": {"mode": "STRICT"}}},
         "spec.portLevelMtls[http]", "must be 1-65535"),
        # Fields outside the v1 API are refused by the model's field table (xds/mesh/fields.py) first.
        ({"mtls": {"mode": "STRICT"}, "targetRef": {"kind": "Service", "name": "web"}}, "spec.targetRef",
         "not implemented"),
        ({"mtls": {"mode": "STRICT", "sni": "x"}}, "spec.mtls.sni", "not implemented"),
        ({"selector": {"matchExpressions": []}}, "spec.selector.matchExpressions", "only matchLabels"),
    ],
    ids=["port_level_without_selector", "unknown_mode", "port_zero", "named_port", "target_ref", "unknown_mtls_field",
         "match_expressions"],
)
def test_invalid_peer_authentication_is_refused(spec: dict[str, Any], field: str, message: str) -> None:
    obj = pa("ns", "bad")
    obj["spec"] = spec
    mesh = mesh_from_objects(web_mesh(obj))
    [error] = mesh.errors
    assert (str(error.ref), error.field) == ("PeerAuthentication ns/bad", field)
    assert message in error.message
    assert mesh.peer_authentications == ()  # refused: it does not half-apply


def test_mesh_wide_strict_probe_reaches_the_ztunnel() -> None:
    """Issue 9's probe: a mesh-wide STRICT in the root namespace is no longer parsed and dropped."""
    state, policies, keys = _ztunnel_view(web_mesh(MESH_STRICT))
    assert STATIC in policies and keys == [STATIC]
    with pytest.raises(Denied, match=f"explicitly denied by: {STATIC}"):
        decide_plaintext(state, dst=(ipaddress.ip_address(WEB_IP), 8080), src_ip=ipaddress.ip_address("127.0.1.9"))


def test_cluster_mode_watches_peer_authentication_with_deploy_rbac() -> None:
    """Issue 9's probe: the controller's mesh watches and deploy/'s ClusterRole both cover PeerAuthentication."""
    from pathlib import Path

    import yaml

    from waypoint.controller import MESH_RESOURCES

    assert "PeerAuthentication" in {r.kind for r in MESH_RESOURCES}
    rbac = Path(__file__).resolve().parents[2] / "deploy" / "10-controller-rbac.yaml"
    role = next(d for d in yaml.safe_load_all(rbac.read_text()) if d and d["kind"] == "ClusterRole")
    rules = [
        r for r in role["rules"] if "security.istio.io" in r["apiGroups"] and "peerauthentications" in r["resources"]
    ]
    assert rules and {"get", "list", "watch"} <= set(rules[0]["verbs"])


def test_waypoint_takes_only_mtls_so_peer_authentication_changes_nothing_there() -> None:
    """Istio's waypoints accept traffic only as HBONE mTLS on 15008 (PeerAuthentication does not apply to them):
    ours has one socket listener, it requires a client certificate, and STRICT leaves the config unchanged."""
    from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import DownstreamTlsContext

    from tests.harness.meshes import waypoint
    from xds.envoy.waypoint import build_waypoint

    def resources(*policies: dict[str, Any]) -> Any:
        mesh = mesh_from_objects([*web_mesh(*policies), waypoint("ns", "wp")])
        return build_waypoint(mesh, mesh.waypoints[0])

    strict = resources(MESH_STRICT, pa("ns", "web", "PERMISSIVE", selector=WEB, ports={8080: "DISABLE"}))
    assert strict == resources()
    sockets = [lst for lst in strict.listeners if lst.address and lst.address.socket_address]
    assert [lst.name for lst in sockets] == ["connect_terminate"]
    for chain in sockets[0].filter_chains:
        assert chain.transport_socket is not None and chain.transport_socket.typed_config is not None
        tls = chain.transport_socket.typed_config.unpack()
        assert isinstance(tls, DownstreamTlsContext) and tls.require_client_certificate


def test_refused_peer_authentication_is_logged_by_the_control_plane(caplog: pytest.LogCaptureFixture) -> None:
    from xds.controlplane import ControlPlane

    bad = pa("istio-system", "default", "STRICT", ports={8080: "PERMISSIVE"})
    with caplog.at_level("WARNING", logger="xds.controlplane"):
        ControlPlane().update(mesh_from_objects(web_mesh(bad)))
    assert (
        "mesh input rejected: PeerAuthentication istio-system/default: spec.portLevelMtls: "
        "mesh/namespace-wide PeerAuthentication cannot have portLevelMtls"
    ) in caplog.text
