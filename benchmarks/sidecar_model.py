"""A model of what Istio sends each *sidecar* of the same mesh, built from the same Envoy messages.

Only for the config-size comparison: per pod, an outbound cluster + endpoints for every service
port in the mesh (no Sidecar resource scoping, Istio's default), a virtualOutbound listener with a
chain per service port, one route config per HTTP port holding a virtual host per service, and the
pod's inbound listener/cluster. Names follow Istio's (`outbound|80||h`, `inbound|8080||`).
"""

from __future__ import annotations

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType, ClusterEdsClusterConfig
from envoy_data_plane.envoy.config.core.v3 import CidrRange, TransportSocket
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, FilterChainMatch, Listener
from envoy_data_plane.envoy.config.route.v3 import Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpConnectionManager, Rds
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import UpstreamTlsContext

from xds import resources
from xds.envoy.common import ads, mtls_context, pack, seconds, socket_address
from xds.mesh.model import Mesh, Workload
from xds.snapshot import Snapshot

Named = list[tuple[str, betterproto2.Message]]


def _shared(mesh: Mesh) -> dict[str, Named]:
    clusters: Named = []
    endpoints: Named = []
    chains: list[FilterChain] = []
    routes: dict[str, RouteConfiguration] = {}
    tls = TransportSocket(
        name="tls", typed_config=pack(UpstreamTlsContext(common_tls_context=mtls_context(mesh.trust_domain)))
    )
    for svc in mesh.services:
        eps = [LbEndpoint(endpoint=Endpoint(address=socket_address(w.ip, 0))) for w in mesh.endpoints(svc)]
        for port in svc.ports:
            name = f"outbound|{port.port}||{svc.hostname}"
            clusters.append(
                (
                    name,
                    Cluster(
                        name=name,
                        type=ClusterDiscoveryType.EDS,
                        connect_timeout=seconds(10),
                        eds_cluster_config=ClusterEdsClusterConfig(service_name=name, eds_config=ads()),
                        transport_socket=tls,
                    ),
                )
            )
            for ep in eps:
                assert ep.endpoint is not None and ep.endpoint.address is not None
                assert ep.endpoint.address.socket_address is not None
                ep.endpoint.address.socket_address.port_value = port.target_port
            endpoints.append(
                (name, ClusterLoadAssignment(cluster_name=name, endpoints=[LocalityLbEndpoints(lb_endpoints=eps)]))
            )
            match = FilterChainMatch(
                prefix_ranges=[CidrRange(address_prefix=v, prefix_len=32) for v in svc.vips], destination_port=port.port
            )
            if port.protocol.is_http:
                rc = routes.setdefault(str(port.port), RouteConfiguration(name=str(port.port), virtual_hosts=[]))
                rc.virtual_hosts.append(
                    VirtualHost(
                        name=f"{svc.hostname}:{port.port}",
                        domains=[
                            svc.hostname,
                            f"{svc.hostname}:{port.port}",
                            svc.name,
                            f"{svc.name}.{svc.namespace}",
                            *svc.vips,
                        ],
                        routes=[
                            Route(match=RouteMatch(prefix="/"), route=RouteAction(cluster=name, timeout=seconds(0)))
                        ],
                    )
                )
                hcm = HttpConnectionManager(
                    stat_prefix=name, rds=Rds(route_config_name=str(port.port), config_source=ads())
                )
                chains.append(
                    FilterChain(
                        filter_chain_match=match,
                        filters=[Filter(name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm))],
                    )
                )
            else:
                chains.append(
                    FilterChain(
                        filter_chain_match=match,
                        filters=[
                            Filter(
                                name="envoy.filters.network.tcp_proxy",
                                typed_config=pack(TcpProxy(stat_prefix=name, cluster=name)),
                            )
                        ],
                    )
                )
    outbound = Listener(name="virtualOutbound", address=socket_address("0.0.0.0", 15001), filter_chains=chains)
    return {
        "clusters": clusters,
        "endpoints": endpoints,
        "listeners": [("virtualOutbound", outbound)],
        "routes": list(routes.items()),
    }


def sidecar_snapshot(mesh: Mesh, pod: Workload, shared: dict[str, Named] | None = None) -> Snapshot:
    shared = shared or _shared(mesh)
    inbound = Listener(
        name="virtualInbound",
        address=socket_address("0.0.0.0", 15006),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.tcp_proxy",
                        typed_config=pack(TcpProxy(stat_prefix="inbound|8080||", cluster="inbound|8080||")),
                    )
                ]
            )
        ],
    )
    return Snapshot.build(
        {
            resources.CLUSTER: shared["clusters"] + [("inbound|8080||", Cluster(name="inbound|8080||"))],
            resources.ENDPOINT: shared["endpoints"],
            resources.LISTENER: shared["listeners"] + [("virtualInbound", inbound)],
            resources.ROUTE: shared["routes"],
        }
    )


def shared_sidecar_parts(mesh: Mesh) -> dict[str, Named]:
    return _shared(mesh)
