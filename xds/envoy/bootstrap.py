"""The bootstrap of a waypoint Envoy: who it is, where its xDS server is, and static plumbing.

Listeners, clusters and endpoints arrive over one ADS stream; secrets come from the pod's agent
over the `sds-grpc` cluster, a Unix socket (as Istio's bootstrap does), never from the control plane.
By default the ADS stream too goes to the agent (`xds-grpc` is a pipe to its socket, as in Istio),
which relays it to the control plane's secure port with the pod's token; a host:port instead is
the plaintext port, for local tools only.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from envoy_data_plane.envoy.config.bootstrap.v3 import (
    Admin,
    Bootstrap,
    BootstrapDynamicResources,
    BootstrapStaticResources,
)
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import Address as CoreAddress
from envoy_data_plane.envoy.config.core.v3 import (
    ApiConfigSource,
    ApiConfigSourceApiType,
    ApiVersion,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http2ProtocolOptions,
    Node,
    Pipe,
    TypedExtensionConfig,
)
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.bootstrap.internal_listener.v3 import InternalListener
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Struct, Value

from xds.envoy.common import SDS_CLUSTER, ads, pack, seconds, socket_address, upstream_http2_options

XDS_CLUSTER = "xds-grpc"
ADMIN_CLUSTER = "admin"
READINESS_PORT = 15021
PROMETHEUS_PORT = 15090
# Where Istio's agent serves SDS inside a pod (a shared emptyDir between agent and Envoy).
DEFAULT_SDS_SOCKET = "/var/run/secrets/workload-spiffe-uds/socket"
# Where the agent serves Envoy's xDS (Istio's bootstrap: `./etc/istio/proxy/XDS`).
DEFAULT_XDS_SOCKET = "/etc/istio/proxy/XDS"


@dataclass(frozen=True)
class WaypointNode:
    """Identity of a waypoint Envoy as the control plane sees it (from its bootstrap node)."""

    name: str
    namespace: str
    listen_address: str = "0.0.0.0"

    @property
    def node_id(self) -> str:
        # Istio's sidecar/waypoint node id: <type>~<ip>~<pod>.<ns>~<ns>.svc.<domain>
        return f"waypoint~{self.listen_address}~{self.name}.{self.namespace}~{self.namespace}.svc.cluster.local"

    def to_node(self) -> Node:
        return Node(
            id=self.node_id,
            cluster=f"{self.name}.{self.namespace}",
            metadata=Struct(
                fields={
                    "NAMESPACE": Value(string_value=self.namespace),
                    "WAYPOINT_NAME": Value(string_value=self.name),
                    "LISTEN_ADDRESS": Value(string_value=self.listen_address),
                }
            ),
        )

    @staticmethod
    def from_node(node: Node) -> WaypointNode | None:
        if not node.id.startswith("waypoint~") or node.metadata is None:
            return None
        fields = node.metadata.fields

        def get(key: str, default: str = "") -> str:
            value = fields.get(key)
            return value.string_value if value is not None and value.string_value else default

        name, namespace = get("WAYPOINT_NAME"), get("NAMESPACE")
        if not name or not namespace:
            return None
        return WaypointNode(name, namespace, get("LISTEN_ADDRESS", "0.0.0.0"))


def _static_cluster(name: str, host: str, port: int, *, http2: bool) -> Cluster:
    # An IP literal is a STATIC endpoint; a name (the in-cluster default
    # pyambient-controller.istio-system.svc) must be resolved, which Envoy refuses to do for STATIC.
    try:
        ipaddress.ip_address(host)
        discovery_type = ClusterDiscoveryType.STATIC
    except ValueError:
        discovery_type = ClusterDiscoveryType.STRICT_DNS
    return Cluster(
        name=name,
        type=discovery_type,
        connect_timeout=seconds(5),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=socket_address(host, port)))])
            ],
        ),
        typed_extension_protocol_options=upstream_http2_options(3600, Http2ProtocolOptions()) if http2 else {},
    )


def _pipe_cluster(name: str, socket_path: str) -> Cluster:
    """A gRPC cluster to the pod's agent over a Unix socket."""
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=seconds(1),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=CoreAddress(pipe=Pipe(path=socket_path))))]
                )
            ],
        ),
        typed_extension_protocol_options=upstream_http2_options(3600, Http2ProtocolOptions()),
    )


def _admin_proxy_listener(name: str, address: str, port: int, path: str, rewrite: str) -> Listener:
    """Expose one admin path (readiness, Prometheus stats) on a pod port, as Istio's agent does."""
    hcm = HttpConnectionManager(
        stat_prefix=name,
        route_config=RouteConfiguration(
            name=name,
            virtual_hosts=[
                VirtualHost(
                    name=name,
                    domains=["*"],
                    routes=[
                        Route(
                            match=RouteMatch(path=path),
                            route=RouteAction(cluster=ADMIN_CLUSTER, prefix_rewrite=rewrite),
                        )
                    ],
                )
            ],
        ),
        http_filters=[HttpFilter(name="envoy.filters.http.router", typed_config=pack(Router()))],
    )
    return Listener(
        name=name,
        address=socket_address(address, port),
        filter_chains=[
            FilterChain(filters=[Filter(name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm))])
        ],
    )


def waypoint_bootstrap(
    node: WaypointNode,
    xds_host: str | None = None,
    xds_port: int | None = None,
    *,
    admin_port: int = 15000,
    readiness_port: int | None = READINESS_PORT,
    prometheus_port: int | None = PROMETHEUS_PORT,
    delta: bool = True,
    sds_socket: str = DEFAULT_SDS_SOCKET,
    xds_socket: str = DEFAULT_XDS_SOCKET,
) -> Bootstrap:
    """`xds_host`/`xds_port` (the plaintext port, local tools) or, by default, the agent's `xds_socket`."""
    if (xds_host is None) != (xds_port is None):
        raise ValueError("give both xds_host and xds_port (plaintext xDS) or neither (xDS through the agent)")
    xds_cluster = (
        _pipe_cluster(XDS_CLUSTER, xds_socket)
        if xds_host is None or xds_port is None
        else _static_cluster(XDS_CLUSTER, xds_host, xds_port, http2=True)
    )
    api = ApiConfigSource(
        api_type=ApiConfigSourceApiType.DELTA_GRPC if delta else ApiConfigSourceApiType.GRPC,
        transport_api_version=ApiVersion.V3,
        grpc_services=[GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=XDS_CLUSTER))],
        set_node_on_first_message_only=True,
    )
    # The kubelet probes the pod IP: readiness and stats bind where the HBONE listener does.
    listen = node.listen_address
    static_listeners = []
    if readiness_port:
        static_listeners.append(_admin_proxy_listener("readiness", listen, readiness_port, "/healthz/ready", "/ready"))
    if prometheus_port:
        static_listeners.append(
            _admin_proxy_listener("prometheus", listen, prometheus_port, "/stats/prometheus", "/stats/prometheus")
        )
    return Bootstrap(
        node=node.to_node(),
        admin=Admin(address=socket_address("127.0.0.1", admin_port)),
        static_resources=BootstrapStaticResources(
            clusters=[
                xds_cluster,
                _static_cluster(ADMIN_CLUSTER, "127.0.0.1", admin_port, http2=False),
                _pipe_cluster(SDS_CLUSTER, sds_socket),
            ],
            listeners=static_listeners,
        ),
        dynamic_resources=BootstrapDynamicResources(ads_config=api, cds_config=ads(), lds_config=ads()),
        bootstrap_extensions=[
            TypedExtensionConfig(
                name="envoy.bootstrap.internal_listener", typed_config=pack(InternalListener(buffer_size_kb=64))
            )
        ],
    )


def bootstrap_json(bootstrap: Bootstrap) -> str:
    """Envoy reads proto3 JSON (`envoy -c file.json`)."""
    return json.dumps(bootstrap.to_dict(), indent=2, sort_keys=False) + "\n"
