"""The Envoy configuration of a waypoint proxy: a pure function of the mesh and one waypoint.

Shape and names follow Istio 1.24+ (see README "Waypoint configuration"):

    HBONE :15008 ─► connect_terminate ─► main_internal ─► inbound-vip|P|http|H ─► connect_originate ─► HBONE podIP:15008
      (mTLS, CONNECT)   (internal; dispatch on the       (HCM routes / tcp_proxy)   (internal; tcp_proxy tunnelling)
                         original VIP:port / pod IP)

A waypoint only receives what it serves: chains and clusters for its bound services and workloads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
    ClusterLbPolicy,
    ClusterOriginalDstLbConfig,
)
from envoy_data_plane.envoy.config.core.v3 import DataSource as CoreDataSource
from envoy_data_plane.envoy.config.core.v3 import (
    HealthStatus,
    Http2ProtocolOptions,
    Metadata,
    SubstitutionFormatString,
    TrafficDirection,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    Listener,
    ListenerConnectionBalanceConfig,
    ListenerConnectionBalanceConfigExactBalance,
    ListenerFilter,
    ListenerFilterChainMatchPredicate,
    ListenerFilterChainMatchPredicateMatchSet,
    ListenerInternalListenerConfig,
)
from envoy_data_plane.envoy.config.route.v3 import (
    Decorator,
    DirectResponseAction,
    RetryPolicy,
    RetryPolicyRetryHostPredicate,
    Route,
    RouteAction,
    RouteActionClusterNotFoundResponseCode,
    RouteActionUpgradeConfig,
    RouteActionUpgradeConfigConnectConfig,
    RouteConfiguration,
    RouteMatch,
    RouteMatchConnectMatcher,
    VirtualHost,
    WeightedCluster,
    WeightedClusterClusterWeight,
)
from envoy_data_plane.envoy.extensions.filters.common.set_filter_state.v3 import (
    FilterStateValue,
    FilterStateValueSharedWithUpstream,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.http.set_filter_state.v3 import Config as HttpSetFilterState
from envoy_data_plane.envoy.extensions.filters.listener.http_inspector.v3 import HttpInspector
from envoy_data_plane.envoy.extensions.filters.listener.original_dst.v3 import OriginalDst
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerForwardClientCertDetails,
    HttpConnectionManagerSetCurrentClientCertDetails,
    HttpConnectionManagerUpgradeConfig,
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.filters.network.set_filter_state.v3 import Config as NetworkSetFilterState
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy, TcpProxyTunnelingConfig
from envoy_data_plane.envoy.extensions.matching.common_inputs.network.v3 import (
    ApplicationProtocolInput,
    DestinationIpInput,
    DestinationPortInput,
)
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import DownstreamTlsContext, UpstreamTlsContext
from envoy_data_plane.envoy.type.metadata.v3 import MetadataKey, MetadataKeyPathSegment
from envoy_data_plane.envoy.type.v3 import Int32Range
from envoy_data_plane.google.protobuf import StringValue, Struct, Value
from envoy_data_plane.xds.core.v3 import TypedExtensionConfig as XdsTypedExtensionConfig
from envoy_data_plane.xds.type.matcher.v3 import (
    Matcher,
    MatcherMatcherTree,
    MatcherMatcherTreeMatchMap,
    MatcherOnMatch,
)

from xds.envoy import jwt, rbac
from xds.envoy import routes as routes_envoy
from xds.envoy.common import (
    ORIGINAL_DST_METADATA,
    ads,
    hbone_http2_options,
    internal_address,
    internal_upstream_transport,
    mtls_context,
    pack,
    seconds,
    socket_address,
    upstream_http2_options,
)
from xds.mesh import binding, route_precedence
from xds.mesh.model import (
    HBONE_PORT,
    AuthorizationPolicy,
    Mesh,
    Protocol,
    Service,
    ServicePort,
    Waypoint,
    Workload,
)

CONNECT_TERMINATE = "connect_terminate"
MAIN_INTERNAL = "main_internal"
CONNECT_ORIGINATE = "connect_originate"
ENCAP = "encap"
DIRECT_TCP = "direct-tcp"
DIRECT_HTTP = "direct-http"
INBOUND_VIP = "inbound-vip"

ORIGINAL_DST_LOCAL_IP = "envoy.filters.listener.original_dst.local_ip"
ORIGINAL_DST_REMOTE_IP = "envoy.filters.listener.original_dst.remote_ip"
CONNECT_TIMEOUT = 10.0
HBONE_IDLE_TIMEOUT = 3600.0
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


@dataclass(frozen=True)
class WaypointResources:
    """Everything one waypoint Envoy receives, by xDS type."""

    listeners: tuple[Listener, ...]
    clusters: tuple[Cluster, ...]
    endpoints: tuple[ClusterLoadAssignment, ...]


@dataclass(frozen=True)
class ClusterTarget:
    """A (service, port, http|tcp) the waypoint sends to: one cluster + one load assignment."""

    name: str
    service: Service
    port: ServicePort
    http: bool


def vip_cluster_name(port: int, kind: str, hostname: str) -> str:
    """Istio's key `dir|port|subset|host`; for waypoints dir is inbound-vip and subset http|tcp."""
    return f"{INBOUND_VIP}|{port}|{kind}|{hostname}"


def outbound_cluster_name(port: int, hostname: str) -> str:
    return f"outbound|{port}||{hostname}"


# ---------------------------------------------------------------------------------------------
# connect_terminate: HBONE in


def _set_filter_state(key: str, fmt: str, *, factory: str = "") -> FilterStateValue:
    return FilterStateValue(
        object_key=key,
        factory_key=factory,
        format_string=SubstitutionFormatString(text_format_source=CoreDataSource(inline_string=fmt)),
        shared_with_upstream=FilterStateValueSharedWithUpstream.ONCE,
    )


def connect_terminate(waypoint: Waypoint, trust_domain: str, bind_ip: str) -> Listener:
    """mTLS + HTTP/2 CONNECT on :15008; the stream's bytes go to `main_internal`."""
    connect_authority = HttpSetFilterState(
        on_request_headers=[
            _set_filter_state(ORIGINAL_DST_LOCAL_IP, "%REQ(:AUTHORITY)%"),
            _set_filter_state("io.istio.connect_authority", "%REQ(:AUTHORITY)%", factory="envoy.string"),
            _set_filter_state(ORIGINAL_DST_REMOTE_IP, "%DOWNSTREAM_REMOTE_ADDRESS%"),
            _set_filter_state("io.istio.peer_principal", "%DOWNSTREAM_PEER_URI_SAN%", factory="envoy.string"),
            _set_filter_state("io.istio.local_principal", "%DOWNSTREAM_LOCAL_URI_SAN%", factory="envoy.string"),
        ]
    )
    hcm = HttpConnectionManager(
        stat_prefix=CONNECT_TERMINATE,
        route_config=RouteConfiguration(
            name="default",
            virtual_hosts=[
                VirtualHost(
                    name="default",
                    domains=["*"],
                    routes=[
                        Route(
                            match=RouteMatch(connect_matcher=RouteMatchConnectMatcher()),
                            route=RouteAction(
                                cluster=MAIN_INTERNAL,
                                upgrade_configs=[
                                    RouteActionUpgradeConfig(
                                        upgrade_type="CONNECT", connect_config=RouteActionUpgradeConfigConnectConfig()
                                    )
                                ],
                            ),
                        )
                    ],
                )
            ],
        ),
        upgrade_configs=[HttpConnectionManagerUpgradeConfig(upgrade_type="CONNECT")],
        http2_protocol_options=hbone_http2_options(keepalive=True, max_streams=100),
        stream_idle_timeout=seconds(0),
        use_remote_address=False,
        forward_client_cert_details=HttpConnectionManagerForwardClientCertDetails.APPEND_FORWARD,
        set_current_client_cert_details=HttpConnectionManagerSetCurrentClientCertDetails(
            subject=True, uri=True, dns=True
        ),
        server_name="istio-envoy",
        http_filters=[
            HttpFilter(name="connect_authority", typed_config=pack(connect_authority)),
            _router_filter(),
        ],
    )
    return Listener(
        name=CONNECT_TERMINATE,
        address=socket_address(bind_ip, HBONE_PORT),
        connection_balance_config=ListenerConnectionBalanceConfig(
            exact_balance=ListenerConnectionBalanceConfigExactBalance()
        ),
        filter_chains=[
            FilterChain(
                name="default",
                transport_socket=TransportSocket(
                    name="tls",
                    typed_config=pack(
                        DownstreamTlsContext(
                            require_client_certificate=True, common_tls_context=mtls_context(trust_domain)
                        )
                    ),
                ),
                filters=[Filter(name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm))],
            )
        ],
    )


# ---------------------------------------------------------------------------------------------
# main_internal: dispatch on the original destination


@functools.cache
def _router_filter() -> HttpFilter:
    return HttpFilter(name="envoy.filters.http.router", typed_config=pack(Router()))


def _action(chain: str) -> MatcherOnMatch:
    return MatcherOnMatch(action=XdsTypedExtensionConfig(name=chain, typed_config=pack(StringValue(value=chain))))


def _app_protocol_matcher(http_chain: str, tcp_chain: str) -> Matcher:
    """Sniffed ports: HTTP/1.1 or h2c (per http_inspector) → the http chain, anything else → tcp."""
    return Matcher(
        matcher_tree=MatcherMatcherTree(
            input=XdsTypedExtensionConfig(name="application-protocol", typed_config=pack(ApplicationProtocolInput())),
            exact_match_map=MatcherMatcherTreeMatchMap(
                map={"'h2c'": _action(http_chain), "'http/1.1'": _action(http_chain)}
            ),
        ),
        on_no_match=_action(tcp_chain),
    )


def _port_matcher(service: Service) -> Matcher:
    entries: dict[str, MatcherOnMatch] = {}
    for port in _served_ports(service):
        http = vip_cluster_name(port.port, "http", service.hostname)
        tcp = vip_cluster_name(port.port, "tcp", service.hostname)
        if port.protocol is Protocol.UNKNOWN:
            entries[str(port.port)] = MatcherOnMatch(matcher=_app_protocol_matcher(http, tcp))
        else:
            entries[str(port.port)] = _action(http if port.protocol.is_http else tcp)
    return Matcher(
        matcher_tree=MatcherMatcherTree(
            input=XdsTypedExtensionConfig(name="port", typed_config=pack(DestinationPortInput())),
            exact_match_map=MatcherMatcherTreeMatchMap(map=entries),
        )
    )


def _served_ports(service: Service) -> tuple[ServicePort, ...]:
    return tuple(p for p in service.ports if p.protocol is not Protocol.UDP)


@functools.cache
def _default_retry_policy() -> RetryPolicy:
    return RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=2,
        retry_host_predicate=[
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts", typed_config=pack(PreviousHostsPredicate())
            )
        ],
        host_selection_retry_max_attempts=5,
    )


def _routes_for(
    mesh: Mesh,
    service: Service,
    port: ServicePort,
    owned: frozenset[tuple[str, str]],
    targets: dict[str, ClusterTarget],
) -> list[Route]:
    """The HTTPRoutes whose parent is this service (and port), in Istio's precedence order; else the default.

    As in Istio's `waypointInboundRoute`, attached routes replace the default route: a request no
    rule matches gets 404 (Envoy "no route"), it is not sent to the service anyway.
    """
    default_cluster = vip_cluster_name(port.port, "http", service.hostname)
    decorator = Decorator(operation=f"{service.hostname}:{port.port}/*")
    entries = route_precedence.ordered_entries(
        route_precedence.attached_routes(mesh.routes, service.namespace, service.name, port.port)
    )
    if not entries:
        return [
            Route(
                name="default",
                match=RouteMatch(prefix="/"),
                decorator=decorator,
                route=RouteAction(cluster=default_cluster, timeout=seconds(0), retry_policy=_default_retry_policy()),
            )
        ]
    routes: list[Route] = []
    for entry in entries:
        clusters: list[WeightedClusterClusterWeight] = []
        for backend in entry.rule.backends:
            target = _backend_target(mesh, backend.namespace, backend.name, backend.port, port, owned)
            if target is None:
                clusters.append(WeightedClusterClusterWeight(name="UnknownService", weight=backend.weight))
                continue
            targets.setdefault(target.name, target)
            if backend.weight > 0:
                clusters.append(WeightedClusterClusterWeight(name=target.name, weight=backend.weight))
        route = Route(name=entry.name, match=routes_envoy.route_match(entry.match), decorator=decorator)
        routes_envoy.apply_header_filters(route, entry.rule.request_headers, entry.rule.response_headers)
        if not clusters and entry.rule.backends:
            # Gateway API: every backend weighted 0 → 500.
            route.direct_response = DirectResponseAction(status=500)
        else:
            route.route = _route_action(
                default_cluster if not entry.rule.backends else clusters[0].name if len(clusters) == 1 else None,
                clusters,
                entry.rule.timeout or 0.0,
            )
        routes.append(route)
    return routes


def _route_action(cluster: str | None, clusters: list[WeightedClusterClusterWeight], timeout: float) -> RouteAction:
    """An HTTPRoute rule's action as Istio's `TranslateRoute` writes it (gateway route semantics).

    `max_grpc_timeout` follows the route timeout (so a client's grpc-timeout header is honoured up to
    it), and a backend that does not resolve (`UnknownService`) answers 500, as the Gateway API asks.
    """
    action = RouteAction(
        timeout=seconds(timeout),
        max_grpc_timeout=seconds(timeout),
        cluster_not_found_response_code=RouteActionClusterNotFoundResponseCode.INTERNAL_SERVER_ERROR,
        retry_policy=_default_retry_policy(),
    )
    if cluster is None:
        action.weighted_clusters = WeightedCluster(clusters=clusters)
    else:
        action.cluster = cluster
    return action


def _backend_target(
    mesh: Mesh,
    namespace: str,
    name: str,
    port: int | None,
    listener_port: ServicePort,
    owned: frozenset[tuple[str, str]],
) -> ClusterTarget | None:
    service = mesh.service(namespace, name)
    if service is None:
        return None
    chosen = (
        service.port(port)
        if port is not None
        else (service.ports[0] if len(service.ports) == 1 else service.port(listener_port.port))
    )
    if chosen is None:
        return None
    if (namespace, name) in owned:
        return ClusterTarget(vip_cluster_name(chosen.port, "http", service.hostname), service, chosen, True)
    return ClusterTarget(outbound_cluster_name(chosen.port, service.hostname), service, chosen, True)


def _http_chain(name: str, routes: list[Route], port: ServicePort, authz: list[HttpFilter]) -> FilterChain:
    hcm = HttpConnectionManager(
        stat_prefix=name,
        route_config=RouteConfiguration(
            name=name,
            validate_clusters=False,
            virtual_hosts=[VirtualHost(name=f"inbound|http|{port.port}", domains=["*"], routes=routes)],
        ),
        use_remote_address=False,
        normalize_path=True,  # meshConfig.pathNormalization BASE, Istio's default: policies see RFC 3986 paths
        server_name="istio-envoy",
        http2_protocol_options=Http2ProtocolOptions() if port.protocol.is_http2 else None,
        http_filters=[*authz, _router_filter()],
    )
    return FilterChain(
        name=name, filters=[Filter(name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm))]
    )


def _tcp_chain(name: str, cluster: str, authz: list[Filter]) -> FilterChain:
    return FilterChain(
        name=name,
        filters=[
            *authz,
            Filter(
                name="envoy.filters.network.tcp_proxy",
                typed_config=pack(TcpProxy(stat_prefix=cluster, cluster=cluster)),
            ),
        ],
    )


def _restore_original_dst() -> Filter:
    """direct-* chains: re-share the original destination so `connect_originate` dials the pod."""
    return Filter(
        name="connect_authority",
        typed_config=pack(
            NetworkSetFilterState(
                on_new_connection=[
                    _set_filter_state(ORIGINAL_DST_LOCAL_IP, f"%FILTER_STATE({ORIGINAL_DST_LOCAL_IP}:PLAIN)%")
                ]
            )
        ),
    )


def _direct_chains(policies: tuple[AuthorizationPolicy, ...], authn: list[HttpFilter]) -> list[FilterChain]:
    tcp = FilterChain(
        name=DIRECT_TCP,
        filters=[
            _restore_original_dst(),
            *rbac.network_rbac_filters(policies, DIRECT_TCP),
            Filter(
                name="envoy.filters.network.tcp_proxy", typed_config=pack(TcpProxy(stat_prefix=ENCAP, cluster=ENCAP))
            ),
        ],
    )
    hcm = HttpConnectionManager(
        stat_prefix=DIRECT_HTTP,
        route_config=RouteConfiguration(
            name=DIRECT_HTTP,
            virtual_hosts=[
                VirtualHost(
                    name=DIRECT_HTTP,
                    domains=["*"],
                    routes=[
                        Route(
                            name="default",
                            match=RouteMatch(prefix="/"),
                            route=RouteAction(cluster=ENCAP, timeout=seconds(0), retry_policy=_default_retry_policy()),
                        )
                    ],
                )
            ],
        ),
        use_remote_address=False,
        normalize_path=True,  # as the service chains
        server_name="istio-envoy",
        http_filters=[*authn, *rbac.http_rbac_filters(policies), _router_filter()],
    )
    http = FilterChain(
        name=DIRECT_HTTP,
        filters=[
            _restore_original_dst(),
            Filter(name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm)),
        ],
    )
    return [tcp, http]


def _authn_filters(mesh: Mesh, waypoint: Waypoint, service: Service | None) -> list[HttpFilter]:
    """The `jwt_authn` filter of the RequestAuthentications that apply; it runs before the RBAC filters."""
    found = jwt.jwt_authn_filter(jwt.jwt_rules(jwt.request_authentications_for(mesh, waypoint, service)))
    return [found] if found is not None else []


def _jwks_clusters(mesh: Mesh, waypoint: Waypoint, services: tuple[Service, ...]) -> tuple[Cluster, ...]:
    """Clusters Envoy fetches `jwksUri`s through, for every RequestAuthentication this waypoint applies."""
    found: dict[str, Cluster] = {}
    for service in (None, *services):
        found.update(jwt.jwks_clusters(jwt.jwt_rules(jwt.request_authentications_for(mesh, waypoint, service))))
    return tuple(found[name] for name in sorted(found))


def main_internal(
    mesh: Mesh,
    waypoint: Waypoint,
    services: tuple[Service, ...],
    workloads: tuple[Workload, ...],
    owned: frozenset[tuple[str, str]],
    targets: dict[str, ClusterTarget],
) -> Listener:
    chains: list[FilterChain] = []
    by_ip: dict[str, MatcherOnMatch] = {}
    sniffed = False
    known_ports: set[int] = set()
    for service in services:
        policies = rbac.policies_for(mesh, waypoint, service)
        for port in _served_ports(service):
            http_name = vip_cluster_name(port.port, "http", service.hostname)
            tcp_name = vip_cluster_name(port.port, "tcp", service.hostname)
            if port.protocol.is_http or port.protocol is Protocol.UNKNOWN:
                targets.setdefault(http_name, ClusterTarget(http_name, service, port, True))
                routes = _routes_for(mesh, service, port, owned, targets)
                authz = [*_authn_filters(mesh, waypoint, service), *rbac.http_rbac_filters(policies)]
                chains.append(_http_chain(http_name, routes, port, authz))
            if not port.protocol.is_http:
                targets.setdefault(tcp_name, ClusterTarget(tcp_name, service, port, False))
                chains.append(_tcp_chain(tcp_name, tcp_name, rbac.network_rbac_filters(policies, tcp_name)))
            if port.protocol is Protocol.UNKNOWN:
                sniffed = True
            else:
                known_ports.add(port.port)
        if _served_ports(service):
            for vip in service.vips:
                by_ip[vip] = MatcherOnMatch(matcher=_port_matcher(service))
    if workloads:
        chains.extend(_direct_chains(rbac.policies_for(mesh, waypoint, None), _authn_filters(mesh, waypoint, None)))
        sniffed = True
        for workload in workloads:
            by_ip[workload.ip] = MatcherOnMatch(matcher=_app_protocol_matcher(DIRECT_HTTP, DIRECT_TCP))
    listener_filters = [ListenerFilter(name="envoy.filters.listener.original_dst", typed_config=pack(OriginalDst()))]
    if sniffed:
        # http_inspector waits for the first bytes: never run it where the protocol is declared.
        disabled = None
        if known_ports and not workloads:
            disabled = ListenerFilterChainMatchPredicate(
                or_match=ListenerFilterChainMatchPredicateMatchSet(
                    rules=[
                        ListenerFilterChainMatchPredicate(destination_port_range=Int32Range(start=p, end=p + 1))
                        for p in sorted(known_ports)
                    ]
                )
            )
        listener_filters.append(
            ListenerFilter(
                name="envoy.filters.listener.http_inspector",
                typed_config=pack(HttpInspector()),
                filter_disabled=disabled,
            )
        )
    return Listener(
        name=MAIN_INTERNAL,
        internal_listener=ListenerInternalListenerConfig(),
        traffic_direction=TrafficDirection.INBOUND,
        use_original_dst=False,
        listener_filters=listener_filters,
        filter_chains=chains,
        filter_chain_matcher=Matcher(
            matcher_tree=MatcherMatcherTree(
                input=XdsTypedExtensionConfig(name="ip", typed_config=pack(DestinationIpInput())),
                exact_match_map=MatcherMatcherTreeMatchMap(map=by_ip),
            )
        )
        if by_ip
        else None,
    )


# ---------------------------------------------------------------------------------------------
# connect_originate: HBONE out


def connect_originate_listener() -> Listener:
    return Listener(
        name=CONNECT_ORIGINATE,
        use_original_dst=False,
        internal_listener=ListenerInternalListenerConfig(),
        listener_filters=[ListenerFilter(name="envoy.filters.listener.original_dst", typed_config=pack(OriginalDst()))],
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.tcp_proxy",
                        typed_config=pack(
                            TcpProxy(
                                stat_prefix=CONNECT_ORIGINATE,
                                cluster=CONNECT_ORIGINATE,
                                tunneling_config=TcpProxyTunnelingConfig(hostname="%DOWNSTREAM_LOCAL_ADDRESS%"),
                            )
                        ),
                    )
                ]
            )
        ],
    )


def connect_originate_cluster(waypoint: Waypoint, trust_domain: str) -> Cluster:
    return Cluster(
        name=CONNECT_ORIGINATE,
        type=ClusterDiscoveryType.ORIGINAL_DST,
        lb_policy=ClusterLbPolicy.CLUSTER_PROVIDED,
        connect_timeout=seconds(CONNECT_TIMEOUT),
        cleanup_interval=seconds(60),
        original_dst_lb_config=ClusterOriginalDstLbConfig(
            upstream_port_override=HBONE_PORT,
            metadata_key=MetadataKey(key=ORIGINAL_DST_METADATA, path=[MetadataKeyPathSegment(key="waypoint")]),
        ),
        typed_extension_protocol_options=upstream_http2_options(HBONE_IDLE_TIMEOUT, hbone_http2_options()),
        transport_socket=TransportSocket(
            name="tls",
            typed_config=pack(
                UpstreamTlsContext(
                    common_tls_context=mtls_context(
                        trust_domain, extra_san_prefixes=(f"spiffe://{trust_domain}/ns/{waypoint.namespace}/sa/",)
                    )
                )
            ),
        ),
    )


def _internal_cluster(name: str, listener: str) -> Cluster:
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT),
        alt_stat_name=f"{name};",
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=internal_address(listener)))])
            ],
        ),
        transport_socket=internal_upstream_transport(),
    )


def _target_cluster(target: ClusterTarget) -> Cluster:
    service = target.service
    return Cluster(
        name=target.name,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(service_name=target.name, eds_config=ads()),
        connect_timeout=seconds(CONNECT_TIMEOUT),
        metadata=Metadata(
            filter_metadata={
                "istio": Struct(
                    fields={
                        "services": Value(
                            struct_value=Struct(
                                fields={
                                    "name": Value(string_value=service.name),
                                    "namespace": Value(string_value=service.namespace),
                                    "host": Value(string_value=service.hostname),
                                }
                            )
                        )
                    }
                )
            }
        ),
        typed_extension_protocol_options=upstream_http2_options(300, Http2ProtocolOptions())
        if target.http and target.port.protocol.is_http2
        else {},
        transport_socket=internal_upstream_transport(),
    )


def _lb_endpoint(workload: Workload, target_port: int, cluster_id: str = "Kubernetes") -> LbEndpoint:
    address = f"{workload.ip}:{target_port}"
    workload_meta = (
        f"{workload.name};{workload.namespace};{workload.canonical_name};{workload.canonical_revision};{cluster_id}"
    )
    if workload.captured:
        # Tunnel: the connect_originate listener CONNECTs to <pod>:15008 with :authority <pod>:<port>.
        return LbEndpoint(
            endpoint=Endpoint(address=internal_address(CONNECT_ORIGINATE, address)),
            health_status=HealthStatus.HEALTHY,
            load_balancing_weight=1,
            metadata=Metadata(
                filter_metadata={
                    ORIGINAL_DST_METADATA: Struct(fields={"local": Value(string_value=address)}),
                    "istio": Struct(fields={"workload": Value(string_value=workload_meta)}),
                }
            ),
        )
    return LbEndpoint(
        endpoint=Endpoint(address=socket_address(workload.ip, target_port)),
        health_status=HealthStatus.HEALTHY,
        load_balancing_weight=1,
        metadata=Metadata(filter_metadata={"istio": Struct(fields={"workload": Value(string_value=workload_meta)})}),
    )


def load_assignment(mesh: Mesh, target: ClusterTarget) -> ClusterLoadAssignment:
    # per pod: a named targetPort resolves to each pod's own container port; pods without it are left out
    endpoints = [_lb_endpoint(w, port) for w, port in mesh.port_endpoints(target.service, target.port)]
    return ClusterLoadAssignment(
        cluster_name=target.name,
        endpoints=[LocalityLbEndpoints(lb_endpoints=endpoints)] if endpoints else [],
    )


def build_waypoint(mesh: Mesh, waypoint: Waypoint, *, bind_ip: str = "0.0.0.0") -> WaypointResources:
    """All resources of one waypoint. Pure: the same mesh gives byte-identical resources."""
    services = binding.services_for_waypoint(mesh, waypoint)
    workloads = binding.workloads_for_waypoint(mesh, waypoint)
    owned = frozenset((s.namespace, s.name) for s in services)
    targets: dict[str, ClusterTarget] = {}
    listeners = (
        connect_terminate(waypoint, mesh.trust_domain, bind_ip),
        main_internal(mesh, waypoint, services, workloads, owned, targets),
        connect_originate_listener(),
    )
    ordered = sorted(targets.values(), key=lambda t: t.name)
    clusters = (
        _internal_cluster(MAIN_INTERNAL, MAIN_INTERNAL),
        _internal_cluster(ENCAP, CONNECT_ORIGINATE),
        connect_originate_cluster(waypoint, mesh.trust_domain),
        *(_target_cluster(t) for t in ordered),
        *_jwks_clusters(mesh, waypoint, services),
    )
    endpoints = tuple(load_assignment(mesh, t) for t in ordered)
    return WaypointResources(listeners=listeners, clusters=clusters, endpoints=endpoints)
