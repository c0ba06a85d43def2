"""AuthorizationPolicy in the model: Istio's validation (a ModelError naming the field), which workloads a
ztunnel policy attaches to, and the status conditions both modes derive from the mesh."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.harness.meshes import ambient_namespace, pod, service, waypoint
from xds import resources
from xds.controlplane import ControlPlane
from xds.mesh.model import PolicyAction
from xds.mesh.objects import mesh_from_objects
from xds.mesh.policy_status import WAYPOINT_ACCEPTED, ZTUNNEL_ACCEPTED
from xds.workloadapi import Address, Authorization, AuthzScope
from xds.ztunnel_state import ztunnel_resources

pytestmark = pytest.mark.policy


def _policy(spec: dict[str, Any], name: str = "p", namespace: str = "a", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": spec,
    }


def _rule(**parts: Any) -> dict[str, Any]:
    return {"rules": [parts]}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_action", {"action": "LOG"}, "spec.action"),
    (
        "selector_with_targetRefs",
        {"selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"group": "", "kind": "Service", "name": "s"}]},
        "spec.selector",
    ),
    (
        "targetRef_and_targetRefs",
        {"targetRef": {"group": "", "kind": "Service", "name": "s"}, "targetRefs": []},
        "spec.targetRef",
    ),
    (
        "targetRef_unsupported_kind",
        {"targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "s"}]},
        "spec.targetRefs[0].kind",
    ),
    (
        "targetRef_wrong_group",
        {"targetRefs": [{"group": "", "kind": "Gateway", "name": "w"}]},
        "spec.targetRefs[0].group",
    ),
    (
        "targetRef_other_namespace",
        {"targetRefs": [{"group": "", "kind": "Service", "name": "s", "namespace": "b"}]},
        "spec.targetRefs[0].namespace",
    ),
    ("custom_without_provider", {"action": "CUSTOM"}, "spec.provider.name"),
    ("provider_without_custom", {"action": "DENY", "provider": {"name": "x"}}, "spec.provider"),
    ("unknown_spec_field", {"rulez": []}, "spec.rulez"),
    (
        "unknown_source_field",
        _rule(**{"from": [{"source": {"serviceAccounts": ["x"]}}]}),
        "spec.rules[0].from[0].source.serviceAccounts",
    ),
    ("unknown_rule_field", {"rules": [{"form": []}]}, "spec.rules[0].form"),
    ("empty_from", _rule(**{"from": []}), "spec.rules[0].from"),
    ("empty_source", _rule(**{"from": [{"source": {}}]}), "spec.rules[0].from[0].source"),
    ("empty_operation", _rule(to=[{"operation": {}}]), "spec.rules[0].to[0].operation"),
    (
        "empty_value",
        _rule(**{"from": [{"source": {"principals": [""]}}]}),
        "spec.rules[0].from[0].source.principals[0]",
    ),
    (
        "principal_with_spiffe_scheme",
        _rule(**{"from": [{"source": {"notPrincipals": ["spiffe://cluster.local/ns/a/sa/b"]}}]}),
        "spec.rules[0].from[0].source.notPrincipals[0]",
    ),
    (
        "when_principal_with_spiffe_scheme",
        _rule(when=[{"key": "source.principal", "values": ["spiffe://cluster.local/ns/a/sa/b"]}]),
        "spec.rules[0].when[0].values[0]",
    ),
    (
        "invalid_ipBlock",
        _rule(**{"from": [{"source": {"ipBlocks": ["10.1.0.0/33"]}}]}),
        "spec.rules[0].from[0].source.ipBlocks[0]",
    ),
    (
        "invalid_notIpBlock",
        _rule(**{"from": [{"source": {"notIpBlocks": ["nope"]}}]}),
        "spec.rules[0].from[0].source.notIpBlocks[0]",
    ),
    (
        "invalid_remoteIpBlock",
        _rule(**{"from": [{"source": {"remoteIpBlocks": ["1.2.3"]}}]}),
        "spec.rules[0].from[0].source.remoteIpBlocks[0]",
    ),
    ("invalid_port", _rule(to=[{"operation": {"ports": ["http"]}}]), "spec.rules[0].to[0].operation.ports[0]"),
    (
        "port_out_of_range",
        _rule(to=[{"operation": {"notPorts": ["70000"]}}]),
        "spec.rules[0].to[0].operation.notPorts[0]",
    ),
    ("path_template", _rule(to=[{"operation": {"paths": ["/a/{*}"]}}]), "spec.rules[0].to[0].operation.paths[0]"),
    ("unknown_when_key", _rule(when=[{"key": "request.method", "values": ["GET"]}]), "spec.rules[0].when[0].key"),
    (
        "when_header_without_name",
        _rule(when=[{"key": "request.headers[]", "values": ["x"]}]),
        "spec.rules[0].when[0].key",
    ),
    ("when_without_values", _rule(when=[{"key": "source.ip"}]), "spec.rules[0].when[0]"),
    ("when_invalid_ip", _rule(when=[{"key": "destination.ip", "values": ["x"]}]), "spec.rules[0].when[0].values[0]"),
    (
        "when_invalid_port",
        _rule(when=[{"key": "destination.port", "notValues": ["x"]}]),
        "spec.rules[0].when[0].notValues[0]",
    ),
]


@pytest.mark.parametrize(("name", "spec", "field"), REFUSED, ids=[r[0] for r in REFUSED])
def test_invalid_policy_is_refused_naming_the_field(name: str, spec: dict[str, Any], field: str) -> None:
    mesh = mesh_from_objects([_policy(spec), pod("a", "p-0", "127.0.1.1", {"app": "x"})])
    assert [(str(e.ref), e.field) for e in mesh.errors] == [("AuthorizationPolicy a/p", field)]
    assert mesh.policies == (), "a refused policy is not half-applied"
    assert len(mesh.workloads) == 1


def test_dry_run_annotation_is_refused() -> None:
    mesh = mesh_from_objects([_policy({}, annotations={"istio.io/dry-run": "true"})])
    assert [e.field for e in mesh.errors] == ["metadata.annotations[istio.io/dry-run]"]


def test_rules_keep_istio_structure() -> None:
    spec = {
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"principals": ["a"]}}, {"source": {"ipBlocks": ["10.0.0.0/8"]}}],
                "to": [{"operation": {"methods": ["GET"], "ports": ["80"]}}],
                "when": [{"key": "request.auth.claims[groups]", "values": ["admin"], "notValues": ["guest"]}],
            }
        ],
    }
    (policy,) = mesh_from_objects([_policy(spec)]).policies
    assert policy.action is PolicyAction.DENY
    (rule,) = policy.rules
    assert [s.principals for s in rule.sources] == [("a",), ()]
    assert rule.sources[1].ip_blocks == ("10.0.0.0/8",)
    assert rule.operations[0].methods == ("GET",) and rule.operations[0].ports == (80,)
    assert rule.conditions[0].values == ("admin",) and rule.conditions[0].not_values == ("guest",)
    assert rule.http_fields == ("methods", "request.auth.claims[groups]")


def _attached(objs: list[dict[str, Any]]) -> dict[str, list[str]]:
    snap = ztunnel_resources(mesh_from_objects(objs))
    out = {}
    for res in snap.of_type(resources.ADDRESS).values():
        address = res.any.unpack()
        assert isinstance(address, Address)
        if address.workload is not None:
            out[address.workload.name] = list(address.workload.authorization_policies)
    return out


def test_selector_policies_attach_in_their_namespace_and_from_the_root_namespace() -> None:
    objs = [
        ambient_namespace("a"),
        ambient_namespace("b"),
        pod("a", "web-0", "127.0.1.1", {"app": "web"}),
        pod("b", "web-0b", "127.0.1.2", {"app": "web"}),
        pod("a", "db-0", "127.0.1.3", {"app": "db"}),
        _policy({"selector": {"matchLabels": {"app": "web"}}}, name="local", namespace="a"),
        _policy({"selector": {"matchLabels": {"app": "web"}}}, name="mesh-web", namespace="istio-system"),
        _policy({"selector": {}}, name="all-of-a", namespace="a"),
        _policy({"action": "AUDIT", "selector": {"matchLabels": {"app": "web"}}}, name="audit", namespace="a"),
    ]
    attached = _attached(objs)
    assert attached["web-0"] == ["a/all-of-a", "a/local", "istio-system/mesh-web"]
    assert attached["web-0b"] == ["istio-system/mesh-web"]
    assert attached["db-0"] == ["a/all-of-a"], "an empty selector selects every workload of its namespace"


def _authorization(res: Any) -> Authorization:
    value = res.any.unpack()
    assert isinstance(value, Authorization)
    return value


def test_scopes_global_namespace_selector() -> None:
    objs = [
        _policy({}, name="mesh", namespace="istio-system"),
        _policy({}, name="ns", namespace="a"),
        _policy({"selector": {"matchLabels": {"x": "y"}}}, name="sel", namespace="a"),
        _policy({"targetRefs": [{"group": "", "kind": "Service", "name": "s"}]}, name="wp", namespace="a"),
    ]
    snap = ztunnel_resources(mesh_from_objects(objs))
    scopes = {name: _authorization(res).scope for name, res in snap.of_type(resources.AUTHORIZATION).items()}
    assert scopes == {
        "istio-system/mesh": AuthzScope.GLOBAL,
        "a/ns": AuthzScope.NAMESPACE,
        "a/sel": AuthzScope.WORKLOAD_SELECTOR,
    }, "targetRefs policies are the waypoints', never sent to ztunnels"


def test_root_namespace_is_a_model_setting() -> None:
    objs = [_policy({}, name="mesh", namespace="mesh-root")]
    snap = ztunnel_resources(mesh_from_objects(objs, root_namespace="mesh-root"))
    (res,) = snap.of_type(resources.AUTHORIZATION).values()
    assert _authorization(res).scope is AuthzScope.GLOBAL


def _conditions(objs: list[dict[str, Any]], key: str) -> list[tuple[str, bool, str, str]]:
    return [(c.type, c.status, c.reason, c.message) for c in mesh_from_objects(objs).policy_status[key]]


STATUS: list[tuple[str, list[dict[str, Any]], str, list[tuple[str, bool, str, str]]]] = [
    (
        "ztunnel_l4_accepted",
        [_policy(_rule(**{"from": [{"source": {"namespaces": ["a"]}}]}))],
        "a/p",
        [(ZTUNNEL_ACCEPTED, True, "Accepted", "attached to ztunnel")],
    ),
    (
        "ztunnel_allow_with_http",
        [_policy(_rule(to=[{"operation": {"methods": ["GET"], "hosts": ["x"]}}]))],
        "a/p",
        [
            (
                ZTUNNEL_ACCEPTED,
                True,
                "UnsupportedValue",
                "ztunnel does not support HTTP attributes (found: hosts, methods). In ambient mode you must use a "
                "waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are "
                "omitted. This will be more restrictive than requested.",
            )
        ],
    ),
    (
        "ztunnel_deny_with_http",
        [_policy({"action": "DENY", **_rule(when=[{"key": "request.headers[x]", "values": ["y"]}])})],
        "a/p",
        [
            (
                ZTUNNEL_ACCEPTED,
                True,
                "UnsupportedValue",
                "ztunnel does not support HTTP attributes (found: request.headers[x]). In ambient mode you must use "
                "a waypoint proxy to enforce HTTP rules. DENY policy with HTTP attributes is enforced without the "
                "HTTP rules. This will be more restrictive than requested.",
            )
        ],
    ),
    (
        "ztunnel_audit",
        [_policy({"action": "AUDIT"})],
        "a/p",
        [(ZTUNNEL_ACCEPTED, False, "UnsupportedValue", "ztunnel does not support the AUDIT action")],
    ),
    (
        "waypoint_service_bound",
        [
            ambient_namespace("a"),
            waypoint("a"),
            service("a", "s", "127.96.0.1", [("http", 80, 80)], {"app": "s"}),
            _policy({"targetRefs": [{"group": "", "kind": "Service", "name": "s"}]}),
        ],
        "a/p",
        [(WAYPOINT_ACCEPTED, True, "Accepted", "bound to a/waypoint")],
    ),
    (
        "waypoint_service_missing",
        [_policy({"targetRefs": [{"group": "", "kind": "Service", "name": "s"}]})],
        "a/p",
        [(WAYPOINT_ACCEPTED, False, "TargetNotFound", "Service a/s was not found")],
    ),
    (
        "waypoint_service_not_bound",
        [
            service("a", "s", "127.96.0.1", [("http", 80, 80)], {"app": "s"}),
            _policy({"targetRefs": [{"group": "", "kind": "Service", "name": "s"}]}),
        ],
        "a/p",
        [(WAYPOINT_ACCEPTED, False, "AncestorNotBound", "Service a/s is not bound to a waypoint")],
    ),
    (
        "waypoint_gateway",
        [
            waypoint("a"),
            _policy({"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}]}),
        ],
        "a/p",
        [(WAYPOINT_ACCEPTED, True, "Accepted", "bound to a/waypoint")],
    ),
    (
        "waypoint_class_outside_root",
        [
            _policy(
                {
                    "targetRefs": [
                        {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}
                    ]
                }
            )
        ],
        "a/p",
        [
            (
                WAYPOINT_ACCEPTED,
                False,
                "Invalid",
                "AuthorizationPolicy must be in the root namespace `istio-system` when referencing a GatewayClass",
            )
        ],
    ),
    (
        "waypoint_custom_fails_closed",
        [
            waypoint("a"),
            _policy(
                {
                    "action": "CUSTOM",
                    "provider": {"name": "opa"},
                    "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}],
                }
            ),
        ],
        "a/p",
        [
            (
                WAYPOINT_ACCEPTED,
                False,
                "Invalid",
                "CUSTOM provider 'opa' is not configured (no extension "
                "providers): requests matching this policy are denied",
            )
        ],
    ),
]


@pytest.mark.parametrize(("name", "objs", "key", "expected"), STATUS, ids=[s[0] for s in STATUS])
def test_status_conditions(
    name: str, objs: list[dict[str, Any]], key: str, expected: list[tuple[str, bool, str, str]]
) -> None:
    assert _conditions(objs, key) == expected


def test_local_mode_logs_conditions_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    control = ControlPlane()
    l7 = _policy({"selector": {"matchLabels": {"app": "x"}}, **_rule(to=[{"operation": {"paths": ["/a"]}}])})
    with caplog.at_level(logging.INFO, logger="pyambient.controlplane"):
        control.update(mesh_from_objects([l7]))
        control.update(mesh_from_objects([l7]))
        control.update(mesh_from_objects([_policy({"selector": {"matchLabels": {"app": "x"}}})]))
    lines = [r.getMessage() for r in caplog.records if "AuthorizationPolicy a/p" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "ZtunnelAccepted=True reason=UnsupportedValue" in lines[0] and "found: paths" in lines[0]
    assert "reason=Accepted: attached to ztunnel" in lines[1]
