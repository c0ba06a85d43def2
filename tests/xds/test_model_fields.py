"""Every field the model does not implement is reported, and policies and routes carrying one are refused.

Rows are named after the scenario: an HTTPRoute feature that is not implemented (refused, never
served without it), a value the Gateway API forbids, a typo, and the other kinds' fields (reported;
policy kinds refused). Kubernetes' own bookkeeping must stay quiet.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.meshes import shop_mesh
from xds.envoy.waypoint import build_waypoint
from xds.mesh.fields import FIELD_TABLE, REFUSED_WHEN_INCOMPLETE, Handling, unhandled_fields, unknown_kinds
from xds.mesh.files import unknown_kinds_line
from xds.mesh.model import Mesh
from xds.mesh.objects import mesh_from_objects

pytestmark = pytest.mark.policy

Obj = dict[str, Any]


def canary_route(**rule_extra: Any) -> Obj:
    """The issue's probe: x-canary: true → web-v2, everything else → web-v1."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web-canary", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "x-canary", "value": "true"}]}],
                    "backendRefs": [{"name": "web-v2", "port": 80}],
                    **rule_extra,
                },
                {"backendRefs": [{"name": "web-v1", "port": 80}]},
            ],
        },
    }


def with_path(obj: Obj, path: str, value: Any) -> Obj:
    """A copy of `obj` with `value` set at a dotted path (`[n]` indexes lists)."""
    out = copy.deepcopy(obj)
    node: Any = out
    parts = path.replace("[", ".[").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        if last:
            node[key] = value
        else:
            node = node[key] if not isinstance(node, dict) or key in node else node.setdefault(key, {})
    return out


@dataclass(frozen=True)
class RefusalRow:
    scenario: str
    route: Obj
    field: str
    message: str = "not implemented"


ROUTE_REFUSALS = [
    RefusalRow(
        "request_redirect_filter",
        canary_route(filters=[{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]),
        "spec.rules[0].filters[0].type",
        "value 'RequestRedirect' is not implemented",
    ),
    RefusalRow(
        "url_rewrite_filter",
        canary_route(filters=[{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]),
        "spec.rules[0].filters[0].type",
        "value 'URLRewrite' is not implemented",
    ),
    RefusalRow(
        "request_mirror_filter",
        canary_route(filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web-v1"}}}]),
        "spec.rules[0].filters[0].type",
        "value 'RequestMirror' is not implemented",
    ),
    RefusalRow(
        "header_modifier_setting_host",
        canary_route(
            filters=[
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "Host", "value": "x"}]}}
            ]
        ),
        "spec.rules[0].filters[0].requestHeaderModifier.set[0].name",
        "Host is not implemented",
    ),
    RefusalRow(
        "header_modifier_twice_in_a_rule",
        canary_route(
            filters=[
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["a"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["b"]}},
            ]
        ),
        "spec.rules[0].filters[1].type",
        "appears twice",
    ),
    RefusalRow(
        "header_modifier_without_its_configuration",
        canary_route(filters=[{"type": "RequestHeaderModifier"}]),
        "spec.rules[0].filters[0].requestHeaderModifier",
        "is required",
    ),
    RefusalRow(
        "header_modifier_with_the_other_kinds_configuration",
        canary_route(
            filters=[
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"remove": ["a"]},
                    "responseHeaderModifier": {"remove": ["b"]},
                }
            ]
        ),
        "spec.rules[0].filters[0].responseHeaderModifier",
        "must not be set for type RequestHeaderModifier",
    ),
    RefusalRow(
        "header_modifier_value_with_a_line_break",
        canary_route(
            filters=[
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"add": [{"name": "a", "value": "b\r\nc: d"}]},
                }
            ]
        ),
        "spec.rules[0].filters[0].requestHeaderModifier.add[0].value",
        "must not contain CR, LF or NUL",
    ),
    RefusalRow(
        "header_modifier_unknown_field",
        canary_route(
            filters=[
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"replace": [{"name": "a", "value": "b"}]}}
            ]
        ),
        "spec.rules[0].filters[0].requestHeaderModifier.replace",
    ),
    RefusalRow(
        "timeout_not_a_gateway_duration",
        canary_route(timeouts={"request": "1.5s"}),
        "spec.rules[0].timeouts.request",
        "not a Gateway API duration",
    ),
    RefusalRow(
        "backend_timeout_longer_than_request_timeout",
        canary_route(timeouts={"request": "1s", "backendRequest": "2s"}),
        "spec.rules[0].timeouts.backendRequest",
        "must not be longer",
    ),
    RefusalRow("unknown_timeouts_field", canary_route(timeouts={"idle": "1s"}), "spec.rules[0].timeouts.idle"),
    RefusalRow("retry", canary_route(retry={"attempts": 3}), "spec.rules[0].retry"),
    RefusalRow(
        "session_persistence", canary_route(sessionPersistence={"sessionName": "s"}), "spec.rules[0].sessionPersistence"
    ),
    RefusalRow(
        "backend_filters",
        with_path(
            canary_route(),
            "spec.rules[0].backendRefs[0].filters",
            [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "a", "value": "b"}]}}],
        ),
        "spec.rules[0].backendRefs[0].filters",
    ),  # per-backend filters: not implemented (only rule-level header filters are)
    RefusalRow(
        "parent_section_name",
        with_path(canary_route(), "spec.parentRefs[0].sectionName", "http"),
        "spec.parentRefs[0].sectionName",
    ),
    RefusalRow("hostnames", with_path(canary_route(), "spec.hostnames", ["web.example"]), "spec.hostnames"),
    RefusalRow(
        "typo_in_a_field_name",
        with_path(canary_route(), "spec.rules[0].matchs", [{"method": "GET"}]),
        "spec.rules[0].matchs",
    ),
    RefusalRow(
        "typo_in_a_match_field",
        with_path(canary_route(), "spec.rules[0].matches[0].header", [{"name": "a"}]),
        "spec.rules[0].matches[0].header",
    ),
    RefusalRow(
        "backend_in_another_namespace_needs_a_reference_grant",
        with_path(canary_route(), "spec.rules[0].backendRefs[0].namespace", "other"),
        "spec.rules[0].backendRefs[0].namespace",
        "ReferenceGrant",
    ),
    RefusalRow(
        "unsupported_header_match_type",
        with_path(canary_route(), "spec.rules[0].matches[0].headers[0].type", "Prefix"),
        "spec.rules[0].matches[0].headers[0].type",
        "unsupported match type",
    ),
    RefusalRow(
        "unsupported_path_match_type",
        with_path(canary_route(), "spec.rules[0].matches[0].path", {"type": "Suffix", "value": "/x"}),
        "spec.rules[0].matches[0].path.type",
        "unsupported path match type",
    ),
    RefusalRow(
        "unknown_method",
        with_path(canary_route(), "spec.rules[0].matches[0].method", "FETCH"),
        "spec.rules[0].matches[0].method",
        "unsupported method",
    ),
    RefusalRow(
        "relative_path",
        with_path(canary_route(), "spec.rules[0].matches[0].path", {"value": "static"}),
        "spec.rules[0].matches[0].path.value",
        "absolute path",
    ),
    RefusalRow(
        "same_header_twice_in_other_case",
        with_path(
            canary_route(),
            "spec.rules[0].matches[0].headers",
            [{"name": "x-canary", "value": "true"}, {"name": "X-Canary", "value": "false"}],
        ),
        "spec.rules[0].matches[0].headers[1].name",
        "appears twice",
    ),
    RefusalRow(
        "invalid_header_name",
        with_path(canary_route(), "spec.rules[0].matches[0].headers[0].name", "x canary"),
        "spec.rules[0].matches[0].headers[0].name",
        "not a valid header name",
    ),
    RefusalRow(
        "negative_weight",
        with_path(canary_route(), "spec.rules[0].backendRefs[0].weight", -1),
        "spec.rules[0].backendRefs[0].weight",
        "integer",
    ),
]


@pytest.mark.parametrize("row", ROUTE_REFUSALS, ids=[r.scenario for r in ROUTE_REFUSALS])
def test_route_refused_and_not_served_weaker(row: RefusalRow) -> None:
    base = [o for o in shop_mesh() if o["kind"] != "HTTPRoute"]
    mesh = mesh_from_objects([*base, row.route])
    assert {(e.ref.kind, e.ref.name) for e in mesh.errors} == {("HTTPRoute", "web-canary")}, mesh.errors
    error = mesh.errors[0]
    assert error.field == row.field
    assert row.message in error.message
    assert mesh.routes == ()
    # The waypoint serves the service as if the route did not exist: the canary rule never runs without its
    # condition or feature (the probe's failure was `prefix: /` → web-v2 for everyone).
    assert [(r["name"], r["route"]["cluster"]) for r in web_routes(mesh)] == [
        ("default", "inbound-vip|80|http|web.shop.svc.cluster.local")
    ]


def web_routes(mesh: Mesh) -> list[dict[str, Any]]:
    waypoint = next(w for w in mesh.waypoints if (w.namespace, w.name) == ("shop", "waypoint"))
    main = next(lst for lst in build_waypoint(mesh, waypoint).listeners if lst.name == "main_internal")
    chain = next(fc for fc in main.to_dict()["filterChains"] if fc["name"] == WEB_CHAIN)
    return list(chain["filters"][-1]["typedConfig"]["routeConfig"]["virtualHosts"][0]["routes"])


WEB_CHAIN = "inbound-vip|80|http|web.shop.svc.cluster.local"


def test_canary_route_accepted_renders_header_rule_then_default_rule_only() -> None:
    base = [o for o in shop_mesh() if o["kind"] != "HTTPRoute"]
    mesh = mesh_from_objects([*base, canary_route()])
    assert mesh.errors == ()
    assert [(r["name"], r["match"], r["route"]["cluster"]) for r in web_routes(mesh)] == [
        (
            "shop.web-canary.0",
            {"prefix": "/", "headers": [{"name": "x-canary", "stringMatch": {"exact": "true"}}]},
            "inbound-vip|80|http|web-v2.shop.svc.cluster.local",
        ),
        ("shop.web-canary.1", {"prefix": "/"}, "inbound-vip|80|http|web-v1.shop.svc.cluster.local"),
    ]


# --------------------------------------------------------------------------------------------
# Other kinds


def obj(kind: str, spec: Obj, api: str = "v1", **top: Any) -> Obj:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "shop"}, "spec": spec, **top}


AUTHZ_FULL = obj(
    "AuthorizationPolicy",
    {
        "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {
                        "source": {
                            k: ["a"]
                            for k in (
                                "principals",
                                "notPrincipals",
                                "requestPrincipals",
                                "notRequestPrincipals",
                                "namespaces",
                                "notNamespaces",
                                "ipBlocks",
                                "notIpBlocks",
                                "remoteIpBlocks",
                                "notRemoteIpBlocks",
                            )
                        }
                    }
                ],
                "to": [
                    {
                        "operation": {
                            k: ["a"] for k in ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
                        }
                        | {"ports": ["80"], "notPorts": ["81"]}
                    }
                ],
                "when": [{"key": "request.headers[x]", "values": ["a"], "notValues": ["b"]}],
            }
        ],
    },
    "security.istio.io/v1",
)
REQUEST_AUTHN_FULL = obj(
    "RequestAuthentication",
    {
        "selector": {"matchLabels": {"app": "web"}},
        "jwtRules": [
            {
                "issuer": "i",
                "audiences": ["a"],
                "jwks": "{}",
                "jwksUri": "https://x",
                "fromHeaders": [{"name": "h", "prefix": "B "}],
                "fromParams": ["t"],
                "fromCookies": ["c"],
                "outputPayloadToHeader": "p",
                "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
                "forwardOriginalToken": True,
                "timeout": "5s",
                "spaceDelimitedClaims": ["roles"],
            }
        ],
    },
    "security.istio.io/v1",
)
PEER_AUTHN_FULL = obj(
    "PeerAuthentication",
    {
        "selector": {"matchLabels": {"app": "web"}},
        "mtls": {"mode": "STRICT"},
        "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}},
    },
    "security.istio.io/v1",
)
KUBECTL_SERVICE = obj(
    "Service",
    {
        "clusterIP": "10.0.0.1",
        "clusterIPs": ["10.0.0.1"],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
    },
    status={"loadBalancer": {}},
)
KUBECTL_POD = obj(
    "Pod",
    {
        "serviceAccountName": "web",
        "serviceAccount": "web",
        "nodeName": "n1",
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "containers": [
            {
                "name": "app",
                "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "volumeMounts": [{"name": "v", "mountPath": "/v"}],
            }
        ],
        "volumes": [{"name": "v", "emptyDir": {}}],
        "tolerations": [{"key": "k", "operator": "Exists"}],
    },
    status={
        "phase": "Running",
        "podIP": "10.1.0.1",
        "podIPs": [{"ip": "10.1.0.1"}],
        "hostIP": "10.2.0.1",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    },
)


@dataclass(frozen=True)
class FieldRow:
    scenario: str
    obj: Obj
    unhandled: list[str] = field(default_factory=list)


FIELD_ROWS = [
    FieldRow("authorization_policy_whole_v1_api_is_in_the_table", AUTHZ_FULL),
    FieldRow("request_authentication_whole_v1_api_is_in_the_table", REQUEST_AUTHN_FULL),
    FieldRow("peer_authentication_whole_v1_api_is_in_the_table", PEER_AUTHN_FULL),
    FieldRow("kubectl_service_defaults_are_quiet", KUBECTL_SERVICE),
    FieldRow("kubectl_pod_bookkeeping_is_quiet", KUBECTL_POD),
    FieldRow(
        "authorization_policy_typo",
        with_path(AUTHZ_FULL, "spec.rules[0].from[0].source.ipBlock", ["a"]),
        ["spec.rules[0].from[0].source.ipBlock"],
    ),
    FieldRow(
        "authorization_policy_unknown_top_level_field", with_path(AUTHZ_FULL, "spec.priority", 1), ["spec.priority"]
    ),
    FieldRow(
        "peer_authentication_unknown_port_level_field",
        with_path(PEER_AUTHN_FULL, "spec.portLevelMtls", {"8080": {"mode": "STRICT", "tls": "x"}}),
        ["spec.portLevelMtls.8080.tls"],
    ),
    FieldRow(
        "request_authentication_unknown_rule_field",
        with_path(REQUEST_AUTHN_FULL, "spec.jwtRules[0].jwksRefresh", "1m"),
        ["spec.jwtRules[0].jwksRefresh"],
    ),
    FieldRow("service_node_port_type", with_path(KUBECTL_SERVICE, "spec.type", "NodePort"), ["spec.type"]),
    FieldRow(
        "service_client_ip_affinity",
        with_path(KUBECTL_SERVICE, "spec.sessionAffinity", "ClientIP"),
        ["spec.sessionAffinity"],
    ),
    FieldRow(
        "service_node_local_traffic_policy",
        with_path(KUBECTL_SERVICE, "spec.internalTrafficPolicy", "Local"),
        ["spec.internalTrafficPolicy"],
    ),
    FieldRow("service_external_ips", with_path(KUBECTL_SERVICE, "spec.externalIPs", ["1.2.3.4"]), ["spec.externalIPs"]),
    FieldRow("pod_on_the_host_network", with_path(KUBECTL_POD, "spec.hostNetwork", True), ["spec.hostNetwork"]),
    FieldRow(
        "waypoint_listener_hostname",
        obj(
            "Gateway",
            {
                "gatewayClassName": "istio-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE", "hostname": "x"}],
            },
            "gateway.networking.k8s.io/v1",
        ),
        ["spec.listeners[0].hostname"],
    ),
]


@pytest.mark.parametrize("row", FIELD_ROWS, ids=[r.scenario for r in FIELD_ROWS])
def test_unhandled_fields(row: FieldRow) -> None:
    assert [f.path for f in unhandled_fields(row.obj)] == row.unhandled


@pytest.mark.parametrize(
    "row", [r for r in FIELD_ROWS if r.unhandled], ids=[r.scenario for r in FIELD_ROWS if r.unhandled]
)
def test_model_reports_the_field_and_refuses_policy_kinds(row: FieldRow) -> None:
    mesh = mesh_from_objects([row.obj])
    assert [(e.ref.kind, e.ref.name, e.field) for e in mesh.errors] == [(row.obj["kind"], "x", row.unhandled[0])]
    assert "not implemented" in mesh.errors[0].message
    used = {
        "AuthorizationPolicy": len(mesh.policies),
        "PeerAuthentication": len(mesh.peer_authentications),
        "Service": len(mesh.services),
        "Pod": len(mesh.workloads),
        "Gateway": len(mesh.waypoints),
        "RequestAuthentication": 0,
    }[row.obj["kind"]]
    assert used == (0 if row.obj["kind"] in REFUSED_WHEN_INCOMPLETE else 1)


def test_other_controllers_gateways_are_not_checked() -> None:
    gateway = obj(
        "Gateway",
        {
            "gatewayClassName": "istio",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "x", "tls": {}}],
        },
    )
    assert mesh_from_objects([gateway]).errors == ()


def test_every_kind_of_the_model_has_a_table_and_policy_kinds_are_refused_whole() -> None:
    assert {
        "Namespace",
        "Service",
        "Pod",
        "EndpointSlice",
        "Gateway",
        "HTTPRoute",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "PeerAuthentication",
        "ServiceAccount",
    } == set(FIELD_TABLE)
    assert {
        "HTTPRoute",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "PeerAuthentication",
    } == REFUSED_WHEN_INCOMPLETE


def test_unknown_kinds_are_counted_once_per_kind() -> None:
    objects = [
        obj("VirtualService", {}, "networking.istio.io/v1"),
        obj("VirtualService", {}, "networking.istio.io/v1"),
        obj("DestinationRule", {}, "networking.istio.io/v1"),
        KUBECTL_SERVICE,
    ]
    assert unknown_kinds(objects) == {"DestinationRule": 1, "VirtualService": 2}
    assert mesh_from_objects(objects).errors == ()  # listed at start-up, not an error on every update


def test_local_mode_start_up_line_names_unknown_kinds(tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: shop}\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b, namespace: shop}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    )
    (tmp_path / "dr.json").write_text(json.dumps(obj("DestinationRule", {}, "networking.istio.io/v1")))
    assert unknown_kinds_line(tmp_path) == (
        "objects of kinds the mesh model does not implement are ignored (no effect on the mesh): "
        "DestinationRule (1), VirtualService (2)"
    )
    (tmp_path / "vs.yaml").unlink()
    (tmp_path / "dr.json").unlink()
    assert unknown_kinds_line(tmp_path) is None


def test_docs_list_every_ignored_or_value_restricted_field() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "fields.md").read_text()
    for kind, fields in FIELD_TABLE.items():
        for f in fields:
            if (f.handling is Handling.IGNORED or f.values is not None) and f.pattern != "metadata.*":
                assert f"| {kind} | `{f.pattern}` |" in doc, (kind, f.pattern)


def test_header_filters_become_route_header_operations() -> None:
    base = [o for o in shop_mesh() if o["kind"] != "HTTPRoute"]
    route = canary_route(
        filters=[
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {
                    "set": [{"name": "X-Set-B", "value": "2"}, {"name": "x-set-a", "value": "1"}],
                    "add": [{"name": "x-add", "value": "3"}],
                    "remove": ["X-Drop"],
                },
            },
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-resp", "value": "4"}]}},
        ]
    )
    mesh = mesh_from_objects([*base, route])
    assert mesh.errors == ()
    canary, default = web_routes(mesh)
    assert canary["requestHeadersToAdd"] == [
        {"header": {"key": "x-set-a", "value": "1"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-set-b", "value": "2"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "3"}},  # APPEND_IF_EXISTS_OR_ADD, the default
    ]
    assert canary["requestHeadersToRemove"] == ["x-drop"]
    assert canary["responseHeadersToAdd"] == [
        {"header": {"key": "x-resp", "value": "4"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    assert "requestHeadersToAdd" not in default and "responseHeadersToAdd" not in default


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        ({}, "0s"),
        ({"request": "1m30s"}, "90s"),
        ({"request": "0s"}, "0s"),  # zero: no timeout
        ({"request": "10s", "backendRequest": "500ms"}, "0.500s"),  # Istio: backendRequest wins (no retries)
        ({"backendRequest": "2s"}, "2s"),
    ],
    ids=["none", "request", "request_zero", "backend_request_wins", "backend_request_only"],
)
def test_rule_timeouts_become_the_route_timeout(timeouts: dict[str, str], expected: str) -> None:
    base = [o for o in shop_mesh() if o["kind"] != "HTTPRoute"]
    mesh = mesh_from_objects([*base, canary_route(timeouts=timeouts) if timeouts else canary_route()])
    assert mesh.errors == ()
    canary = web_routes(mesh)[0]["route"]
    assert (canary["timeout"], canary["maxGrpcTimeout"], canary["clusterNotFoundResponseCode"]) == (
        expected,
        expected,
        "INTERNAL_SERVER_ERROR",
    )
