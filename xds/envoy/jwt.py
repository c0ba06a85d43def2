"""RequestAuthentications a waypoint enforces, as Envoy's `jwt_authn` HTTP filter (pure).

Which policies: those attached with `targetRefs` to the waypoint's Gateway, to a Service the
waypoint serves (for that service's chains), or to the `istio-waypoint` GatewayClass from the root
namespace — Istio's attachment rules for waypoints (selector and namespace-wide policies are for
sidecars; the model refuses them).

The filter follows Istio's rendering (`convertToEnvoyJwtConfig`):

- one provider `origins-<i>` per jwtRule, the rules of all attached policies sorted by issuer;
- requirement: a token, if present, must be valid; no token passes (RequestAuthentication alone
  never requires one — an AuthorizationPolicy with `requestPrincipals` does). With one provider
  that is `requires_any[provider, allow_missing]`; with several, `requires_any[P1, .., Pn,
  requires_all[any(P1, allow_missing), .., any(Pn, allow_missing)]]` so that providers sharing a
  token location still accept each other's tokens;
- every provider writes the verified payload to dynamic metadata
  `envoy.filters.http.jwt_authn` → `payload`, where the RBAC filters match `requestPrincipals` and
  `request.auth.*` (keep this name: it is the contract with `xds.envoy.rbac`);
- `jwks` inline → `local_jwks`; `jwksUri` → `remote_jwks` (cached 5 minutes) fetched by Envoy
  through a cluster added here, one per host:port (STATIC for an IP, STRICT_DNS for a name, TLS
  checked against the OS trust bundle and the host name for https).
"""

from __future__ import annotations

import ipaddress

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import DataSource, HttpUri, TransportSocket
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.route.v3 import RouteMatch
from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
    JwtAuthentication,
    JwtClaimToHeader,
    JwtHeader,
    JwtProvider,
    JwtProviderNormalizePayload,
    JwtRequirement,
    JwtRequirementAndList,
    JwtRequirementOrList,
    RemoteJwks,
    RequirementRule,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpFilter
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Empty

from xds.envoy.common import pack, seconds, socket_address
from xds.mesh.model import WAYPOINT_CLASS, JwksUri, JwtRule, Mesh, RequestAuthentication, Service, Waypoint

JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
# Dynamic metadata key of the verified payload (Istio's filters.EnvoyJwtFilterPayload); RBAC reads it.
PAYLOAD_IN_METADATA = "payload"
# Claims Istio always splits on spaces in the metadata (so `request.auth.claims[scope]` matches one scope).
DEFAULT_SPACE_DELIMITED_CLAIMS = ("permission", "scope")
JWKS_CACHE_DURATION = 5 * 60.0
JWKS_CONNECT_TIMEOUT = 10.0
# The OS trust bundle an https JWKS server is checked against (Debian/Ubuntu's path, as Istio's proxy images
# use). Envoy's `system_root_certs` is not implemented for TLS sockets, so the file is named; if it is missing
# where the waypoint runs, Envoy NACKs the cluster and no token verifies (fail closed).
SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"


def request_authentications_for(
    mesh: Mesh, waypoint: Waypoint, service: Service | None
) -> tuple[RequestAuthentication, ...]:
    """Policies attached to the waypoint's Gateway (or GatewayClass), or (for its chains) to the service."""
    out = []
    for policy in mesh.request_authentications:
        for kind, name in policy.target_refs:
            on_gateway = kind == "Gateway" and policy.namespace == waypoint.namespace and name == waypoint.name
            on_class = kind == "GatewayClass" and policy.namespace == mesh.root_namespace and name == WAYPOINT_CLASS
            on_service = (
                service is not None
                and kind == "Service"
                and policy.namespace == service.namespace
                and name == service.name
            )
            if on_gateway or on_class or on_service:
                out.append(policy)
                break
    return tuple(out)


def jwt_rules(policies: tuple[RequestAuthentication, ...]) -> tuple[JwtRule, ...]:
    """All rules of the policies, sorted by issuer as Istio does (stable, so equal issuers keep their order)."""
    return tuple(sorted((rule for p in policies for rule in p.jwt_rules), key=lambda r: r.issuer))


def jwks_cluster_name(uri: JwksUri) -> str:
    """Istio's name for the cluster of a JWKS host (`outbound|<port>||<host>`)."""
    return f"outbound|{uri.port}||{uri.host}"


def _space_delimited(rule: JwtRule) -> list[str]:
    return sorted(set(DEFAULT_SPACE_DELIMITED_CLAIMS) | set(rule.space_delimited_claims or ()))


def _provider(rule: JwtRule) -> JwtProvider:
    provider = JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=PAYLOAD_IN_METADATA,
        normalize_payload_in_metadata=JwtProviderNormalizePayload(space_delimited_claims=_space_delimited(rule)),
        claim_to_headers=[
            JwtClaimToHeader(header_name=c.header, claim_name=c.claim) for c in rule.output_claim_to_headers
        ],
        from_headers=[JwtHeader(name=h.name, value_prefix=h.prefix) for h in rule.from_headers],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
    )
    if rule.jwks_uri is not None:
        provider.remote_jwks = RemoteJwks(
            http_uri=HttpUri(
                uri=rule.jwks_uri.uri, cluster=jwks_cluster_name(rule.jwks_uri), timeout=seconds(rule.timeout)
            ),
            cache_duration=seconds(JWKS_CACHE_DURATION),
        )
    else:
        provider.local_jwks = DataSource(inline_string=rule.jwks)
    return provider


def _provider_name(index: int) -> JwtRequirement:
    return JwtRequirement(provider_name=f"origins-{index}")


def jwt_authn_filter(rules: tuple[JwtRule, ...]) -> HttpFilter | None:
    """The `jwt_authn` filter for these rules, or None when there are none."""
    if not rules:
        return None
    providers = {f"origins-{i}": _provider(rule) for i, rule in enumerate(rules)}
    # Per provider: its token, if present, must verify (`allow_missing` lets an absent token through,
    # never an invalid one).
    token_valid_if_present = [
        JwtRequirement(
            requires_any=JwtRequirementOrList(requirements=[_provider_name(i), JwtRequirement(allow_missing=Empty())])
        )
        for i in range(len(rules))
    ]
    if len(rules) == 1:
        requirement = token_valid_if_present[0]
    else:
        requirement = JwtRequirement(
            requires_any=JwtRequirementOrList(
                requirements=[
                    *(_provider_name(i) for i in range(len(rules))),
                    JwtRequirement(requires_all=JwtRequirementAndList(requirements=token_valid_if_present)),
                ]
            )
        )
    config = JwtAuthentication(
        providers=providers,
        rules=[RequirementRule(match=RouteMatch(prefix="/"), requires=requirement)],
        bypass_cors_preflight=True,
    )
    return HttpFilter(name=JWT_AUTHN_FILTER, typed_config=pack(config))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def jwks_cluster(uri: JwksUri) -> Cluster:
    """The cluster Envoy fetches a `jwksUri` through: the URI's host:port, TLS for https."""
    name = jwks_cluster_name(uri)
    ip = _is_ip(uri.host)
    cluster = Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC if ip else ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=seconds(JWKS_CONNECT_TIMEOUT),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=socket_address(uri.host, uri.port)))]
                )
            ],
        ),
    )
    if uri.tls:
        san = SubjectAltNameMatcher(
            san_type=SubjectAltNameMatcherSanType.IP_ADDRESS if ip else SubjectAltNameMatcherSanType.DNS,
            matcher=StringMatcher(exact=uri.host),
        )
        cluster.transport_socket = TransportSocket(
            name="envoy.transport_sockets.tls",
            typed_config=pack(
                UpstreamTlsContext(
                    sni="" if ip else uri.host,
                    common_tls_context=CommonTlsContext(
                        validation_context=CertificateValidationContext(
                            trusted_ca=DataSource(filename=SYSTEM_ROOTS),
                            match_typed_subject_alt_names=[san],
                        )
                    ),
                )
            ),
        )
    return cluster


def jwks_clusters(rules: tuple[JwtRule, ...]) -> dict[str, Cluster]:
    """One cluster per JWKS host:port named by the rules (by name, so several rules share one)."""
    out: dict[str, Cluster] = {}
    for rule in rules:
        if rule.jwks_uri is not None and jwks_cluster_name(rule.jwks_uri) not in out:
            out[jwks_cluster_name(rule.jwks_uri)] = jwks_cluster(rule.jwks_uri)
    return out
