"""xDS type URLs, in the order a server answers them (clusters before endpoints before listeners)."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
# Istio's ztunnel API (workload discovery and L4 policy).
ADDRESS = "type.googleapis.com/istio.workload.Address"
AUTHORIZATION = "type.googleapis.com/istio.security.Authorization"

# Push order: CDS before EDS, LDS before RDS, secrets first so TLS contexts warm at once.
ORDER = (SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE, ADDRESS, AUTHORIZATION)

SHORT_NAMES = {
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    LISTENER: "LDS",
    ROUTE: "RDS",
    SECRET: "SDS",
    ADDRESS: "WDS",
    AUTHORIZATION: "WADS",
}

# Types a client gets every resource of when it names none (wildcard), per the xDS protocol.
WILDCARD_BY_DEFAULT = frozenset({CLUSTER, LISTENER, ADDRESS, AUTHORIZATION})


def short(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit("/", 1)[-1])
