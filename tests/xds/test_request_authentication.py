"""RequestAuthentication: the model (every field read or refused) and the `jwt_authn` filter a waypoint gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness.meshes import shop_mesh
from xds.envoy.waypoint import build_waypoint
from xds.mesh.model import ClaimToHeader, JwksUri, JwtHeader, Mesh
from xds.mesh.objects import mesh_from_objects

pytestmark = pytest.mark.policy

JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "AA", "y": "AA"}]})
WEB_CHAIN = "inbound-vip|80|http|web.shop.svc.cluster.local"
DB_CHAIN = "inbound-vip|5432|tcp|db.shop.svc.cluster.local"


def request_authentication(
    name: str = "jwt",
    namespace: str = "shop",
    rules: list[dict[str, Any]] | None = None,
    target: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRefs": [target or {"group": "", "kind": "Service", "name": "web"}],
        "jwtRules": rules if rules is not None else [{"issuer": "https://issuer.example", "jwks": JWKS}],
    }
    body.update(spec)
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def test_every_field_is_read() -> None:
    rule = {
        "issuer": "https://issuer.example",
        "audiences": ["web", "api"],
        "jwksUri": "https://keys.example.com/jwks",
        "fromHeaders": [{"name": "x-token", "prefix": "Bearer "}],
        "fromParams": ["token"],
        "fromCookies": ["session"],
        "outputPayloadToHeader": "x-jwt-payload",
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
        "forwardOriginalToken": True,
        "timeout": "1.5s",
        "spaceDelimitedClaims": ["roles"],
    }
    mesh = mesh_from_objects([request_authentication(rules=[rule])])
    assert mesh.errors == ()
    (policy,) = mesh.request_authentications
    assert policy.target_refs == (("Service", "web"),)
    (parsed,) = policy.jwt_rules
    assert parsed.issuer == "https://issuer.example" and parsed.audiences == ("web", "api")
    assert parsed.jwks_uri == JwksUri("https://keys.example.com/jwks", "https", "keys.example.com", 443)
    assert parsed.from_headers == (JwtHeader("x-token", "Bearer "),)
    assert parsed.from_params == ("token",) and parsed.from_cookies == ("session",)
    assert parsed.output_payload_to_header == "x-jwt-payload"
    assert parsed.output_claim_to_headers == (ClaimToHeader("x-sub", "sub"),)
    assert parsed.forward_original_token is True and parsed.timeout == 1.5
    assert parsed.space_delimited_claims == ("roles",)


GOOD = {"issuer": "https://issuer.example", "jwks": JWKS}

# (scenario, the object, the field its ModelError names)
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("selector_and_target_refs", request_authentication(selector={"matchLabels": {"app": "web"}}), "spec.targetRefs"),
    (
        "selector_alone_is_for_sidecars",
        {**request_authentication(), "spec": {"selector": {"matchLabels": {"app": "web"}}, "jwtRules": [GOOD]}},
        "spec.selector",
    ),
    (
        "namespace_wide_policy_is_for_sidecars",
        {**request_authentication(), "spec": {"jwtRules": [GOOD]}},
        "spec.targetRefs",
    ),
    (
        "target_ref_and_target_refs",
        request_authentication(targetRef={"group": "", "kind": "Service", "name": "web"}),
        "spec.targetRefs",
    ),
    ("unknown_spec_field", request_authentication(action="ALLOW"), "spec.action"),
    (
        "service_entry_target",
        request_authentication(target={"group": "networking.istio.io", "kind": "ServiceEntry", "name": "x"}),
        "spec.targetRefs[0]",
    ),
    (
        "target_in_another_namespace",
        request_authentication(target={"group": "", "kind": "Service", "name": "web", "namespace": "other"}),
        "spec.targetRefs[0].namespace",
    ),
    ("target_without_name", request_authentication(target={"group": "", "kind": "Service"}), "spec.targetRefs[0].name"),
    (
        "gateway_class_outside_root_namespace",
        request_authentication(
            target={"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}
        ),
        "spec.targetRefs[0]",
    ),
    ("no_issuer_no_jwks_uri", request_authentication(rules=[{"jwks": JWKS}]), "spec.jwtRules[0].issuer"),
    ("no_jwks_at_all", request_authentication(rules=[{"issuer": "i"}]), "spec.jwtRules[0].jwksUri"),
    (
        "jwks_and_jwks_uri",
        request_authentication(rules=[{**GOOD, "jwksUri": "http://127.0.0.1/jwks"}]),
        "spec.jwtRules[0].jwksUri",
    ),
    ("jwks_not_json", request_authentication(rules=[{"issuer": "i", "jwks": "{"}]), "spec.jwtRules[0].jwks"),
    ("jwks_without_keys", request_authentication(rules=[{"issuer": "i", "jwks": "{}"}]), "spec.jwtRules[0].jwks"),
    (
        "jwks_uri_ftp",
        request_authentication(rules=[{"issuer": "i", "jwksUri": "ftp://h/jwks"}]),
        "spec.jwtRules[0].jwksUri",
    ),
    (
        "jwks_uri_bad_port",
        request_authentication(rules=[{"issuer": "i", "jwksUri": "http://h:99999/jwks"}]),
        "spec.jwtRules[0].jwksUri",
    ),
    (
        "jwks_uri_inside_the_mesh",
        request_authentication(rules=[{"issuer": "i", "jwksUri": "http://keys.shop.svc.cluster.local/jwks"}]),
        "spec.jwtRules[0].jwksUri",
    ),
    ("empty_audience", request_authentication(rules=[{**GOOD, "audiences": [""]}]), "spec.jwtRules[0].audiences[0]"),
    (
        "header_without_name",
        request_authentication(rules=[{**GOOD, "fromHeaders": [{"prefix": "Bearer "}]}]),
        "spec.jwtRules[0].fromHeaders[0].name",
    ),
    (
        "header_unknown_field",
        request_authentication(rules=[{**GOOD, "fromHeaders": [{"name": "a", "suffix": "x"}]}]),
        "spec.jwtRules[0].fromHeaders[0].suffix",
    ),
    ("empty_param", request_authentication(rules=[{**GOOD, "fromParams": [""]}]), "spec.jwtRules[0].fromParams[0]"),
    ("empty_cookie", request_authentication(rules=[{**GOOD, "fromCookies": [""]}]), "spec.jwtRules[0].fromCookies[0]"),
    (
        "claim_header_empty_claim",
        request_authentication(rules=[{**GOOD, "outputClaimToHeaders": [{"header": "x-a", "claim": ""}]}]),
        "spec.jwtRules[0].outputClaimToHeaders[0]",
    ),
    (
        "claim_header_bad_name",
        request_authentication(rules=[{**GOOD, "outputClaimToHeaders": [{"header": "x a", "claim": "sub"}]}]),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
    ),
    (
        "payload_header_bad_name",
        request_authentication(rules=[{**GOOD, "outputPayloadToHeader": "x:y"}]),
        "spec.jwtRules[0].outputPayloadToHeader",
    ),
    (
        "forward_not_bool",
        request_authentication(rules=[{**GOOD, "forwardOriginalToken": "yes"}]),
        "spec.jwtRules[0].forwardOriginalToken",
    ),
    (
        "timeout_not_duration",
        request_authentication(rules=[{**GOOD, "timeout": "5 minutes"}]),
        "spec.jwtRules[0].timeout",
    ),
    (
        "timeout_below_ms_precision",
        request_authentication(rules=[{**GOOD, "timeout": "0.0005s"}]),
        "spec.jwtRules[0].timeout",
    ),
    (
        "headers_not_a_list",
        request_authentication(rules=[{**GOOD, "fromHeaders": {"name": "a"}}]),
        "spec.jwtRules[0].fromHeaders",
    ),
    ("rules_not_a_list", request_authentication(rules={"issuer": "i"}), "spec.jwtRules"),  # type: ignore[arg-type]
    (
        "jwks_key_without_members",
        request_authentication(rules=[{"issuer": "i", "jwks": json.dumps({"keys": [{"kty": "RSA", "n": "AQAB"}]})}]),
        "spec.jwtRules[0].jwks",
    ),
    (
        "jwks_key_of_unknown_type",
        request_authentication(rules=[{"issuer": "i", "jwks": json.dumps({"keys": [{"kty": "XYZ"}]})}]),
        "spec.jwtRules[0].jwks",
    ),
    ("unknown_rule_field", request_authentication(rules=[{**GOOD, "fromBody": True}]), "spec.jwtRules[0].fromBody"),
]


@pytest.mark.parametrize(("scenario", "obj", "field"), REFUSED, ids=[r[0] for r in REFUSED])
def test_unusable_request_authentication_is_refused_naming_the_field(
    scenario: str, obj: dict[str, Any], field: str
) -> None:
    mesh = mesh_from_objects([obj])
    assert mesh.request_authentications == ()
    # One error, naming the field (a value of the wrong shape may be named by the path beneath it, where the
    # model's field table finds what it does not know).
    assert len(mesh.errors) == 1 and mesh.errors[0].field.startswith(field), mesh.errors
    assert mesh.errors[0].ref.kind == "RequestAuthentication"


def _chains(mesh: Mesh, name: str = "waypoint") -> dict[str, dict[str, Any]]:
    waypoint = mesh.waypoint("shop", name)
    assert waypoint is not None
    listener = build_waypoint(mesh, waypoint).listeners[1].to_dict()
    return {chain["name"]: chain for chain in listener["filterChains"]}


def _http_filters(chain: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in chain["filters"] if f["name"].endswith("http_connection_manager")][0]["typedConfig"][
        "httpFilters"
    ]


def _jwt_config(chain: dict[str, Any]) -> dict[str, Any] | None:
    found = [f["typedConfig"] for f in _http_filters(chain) if f["name"] == "envoy.filters.http.jwt_authn"]
    return found[0] if found else None


def test_one_provider_lets_a_missing_token_through_and_writes_the_payload_for_rbac() -> None:
    rule = {**GOOD, "fromHeaders": [{"name": "x-token", "prefix": "Bearer "}], "fromParams": ["t"], "audiences": ["a"]}
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(rules=[rule])])
    config = _jwt_config(_chains(mesh)[WEB_CHAIN])
    assert config is not None
    assert config["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {"requiresAny": {"requirements": [{"providerName": "origins-0"}, {"allowMissing": {}}]}},
        }
    ]
    assert config["bypassCorsPreflight"] is True
    provider = config["providers"]["origins-0"]
    assert provider["payloadInMetadata"] == "payload"
    assert provider["issuer"] == "https://issuer.example" and provider["audiences"] == ["a"]
    assert provider["localJwks"] == {"inlineString": JWKS}
    assert provider["fromHeaders"] == [{"name": "x-token", "valuePrefix": "Bearer "}]
    assert provider["fromParams"] == ["t"]
    assert provider["normalizePayloadInMetadata"] == {"spaceDelimitedClaims": ["permission", "scope"]}


def test_several_providers_any_valid_one_or_all_valid_if_present() -> None:
    rules = [
        {"issuer": "https://b.example", "jwks": JWKS},
        {"issuer": "https://a.example", "jwksUri": "http://127.0.0.5:8000/jwks", "timeout": "2s"},
    ]
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(rules=rules)])
    config = _jwt_config(_chains(mesh)[WEB_CHAIN])
    assert config is not None
    # Sorted by issuer, as Istio does.
    assert config["providers"]["origins-0"]["issuer"] == "https://a.example"
    assert config["providers"]["origins-1"]["issuer"] == "https://b.example"
    either = [
        {"requiresAny": {"requirements": [{"providerName": f"origins-{i}"}, {"allowMissing": {}}]}} for i in (0, 1)
    ]
    assert config["rules"][0]["requires"] == {
        "requiresAny": {
            "requirements": [
                {"providerName": "origins-0"},
                {"providerName": "origins-1"},
                {"requiresAll": {"requirements": either}},
            ]
        }
    }
    assert config["providers"]["origins-0"]["remoteJwks"] == {
        "httpUri": {"uri": "http://127.0.0.5:8000/jwks", "cluster": "outbound|8000||127.0.0.5", "timeout": "2s"},
        "cacheDuration": "300s",
    }


def test_outputs_and_forwarding() -> None:
    rule = {
        **GOOD,
        "outputPayloadToHeader": "x-jwt-payload",
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
        "forwardOriginalToken": True,
        "spaceDelimitedClaims": ["roles", "scope"],
    }
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(rules=[rule])])
    provider = (_jwt_config(_chains(mesh)[WEB_CHAIN]) or {})["providers"]["origins-0"]
    assert provider["forward"] is True
    assert provider["forwardPayloadHeader"] == "x-jwt-payload"
    assert provider["claimToHeaders"] == [{"headerName": "x-sub", "claimName": "sub"}]
    assert provider["normalizePayloadInMetadata"] == {"spaceDelimitedClaims": ["permission", "roles", "scope"]}


def test_jwt_filter_runs_before_the_rbac_filters() -> None:
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}], "rules": [{}]},
    }
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(), policy])
    names = [f["name"] for f in _http_filters(_chains(mesh)[WEB_CHAIN])]
    assert names[0] == "envoy.filters.http.jwt_authn"
    assert names[-1] == "envoy.filters.http.router"
    assert "envoy.filters.http.rbac" in names


def test_service_target_applies_to_that_service_only() -> None:
    mesh = mesh_from_objects([*shop_mesh(), request_authentication()])
    chains = _chains(mesh)
    assert _jwt_config(chains[WEB_CHAIN]) is not None
    assert _jwt_config(chains["inbound-vip|80|http|web-v1.shop.svc.cluster.local"]) is None


def test_gateway_target_applies_to_every_http_chain_of_that_waypoint_only() -> None:
    gateway = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(target=gateway)])
    chains = _chains(mesh)
    http = [name for name in chains if "|http|" in name]
    assert http and all(_jwt_config(chains[name]) is not None for name in http)
    assert all(f["name"] != "envoy.filters.http.jwt_authn" for f in chains[DB_CHAIN]["filters"])
    reviews = _chains(mesh, "reviews-waypoint")
    assert all(_jwt_config(c) is None for name, c in reviews.items() if "|http|" in name)


def test_waypoint_gateway_class_from_the_root_namespace_applies_to_every_waypoint() -> None:
    target = {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(namespace="istio-system", target=target)])
    assert mesh.errors == ()
    for name in ("waypoint", "reviews-waypoint"):
        chains = _chains(mesh, name)
        assert any(_jwt_config(c) is not None for n, c in chains.items() if "|http|" in n)


def _clusters(mesh: Mesh) -> dict[str, dict[str, Any]]:
    waypoint = mesh.waypoint("shop", "waypoint")
    assert waypoint is not None
    return {c.name: c.to_dict() for c in build_waypoint(mesh, waypoint).clusters}


def test_jwks_uri_gets_one_cluster_per_host_and_port() -> None:
    rules = [
        {"issuer": "a", "jwksUri": "http://127.0.0.5:8000/a"},
        {"issuer": "b", "jwksUri": "http://127.0.0.5:8000/b"},
        {"issuer": "c", "jwksUri": "https://keys.example.com/jwks"},
    ]
    mesh = mesh_from_objects([*shop_mesh(), request_authentication(rules=rules)])
    clusters = _clusters(mesh)
    plain = clusters["outbound|8000||127.0.0.5"]
    assert plain["type"] == "STATIC" and "transportSocket" not in plain
    address = plain["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
    assert address == {"address": "127.0.0.5", "portValue": 8000}
    tls = clusters["outbound|443||keys.example.com"]
    assert tls["type"] == "STRICT_DNS"
    context = tls["transportSocket"]["typedConfig"]
    assert context["sni"] == "keys.example.com"
    validation = context["commonTlsContext"]["validationContext"]
    assert validation["trustedCa"] == {"filename": "/etc/ssl/certs/ca-certificates.crt"}
    assert validation["matchTypedSubjectAltNames"] == [{"sanType": "DNS", "matcher": {"exact": "keys.example.com"}}]


def test_no_request_authentication_no_filter_no_cluster() -> None:
    mesh = mesh_from_objects(shop_mesh())
    assert all(_jwt_config(c) is None for n, c in _chains(mesh).items() if "|http|" in n)
    assert not any(name.startswith("outbound|") for name in _clusters(mesh))
