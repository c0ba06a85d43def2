"""Cluster mode's start-up line: objects of Istio / Gateway API kinds the mesh model does not implement.

The controller watches only the kinds the model reads, so objects of other kinds would otherwise be
silently without effect. At start-up each such kind is listed once (a kind whose CRD is not installed,
or that RBAC does not let us list, is skipped) and one log line names those with objects.
"""

from __future__ import annotations

import logging

from waypoint.kube.api import ApiError, ApiUnavailable, KubeApi, Resource
from xds.mesh.fields import describe_unknown_kinds

log = logging.getLogger(__name__)

_GATEWAY_API = "gateway.networking.k8s.io"
UNIMPLEMENTED_RESOURCES: tuple[Resource, ...] = (
    Resource("GRPCRoute", f"{_GATEWAY_API}/v1", "grpcroutes", True),
    Resource("TCPRoute", f"{_GATEWAY_API}/v1alpha2", "tcproutes", True),
    Resource("TLSRoute", f"{_GATEWAY_API}/v1alpha2", "tlsroutes", True),
    Resource("UDPRoute", f"{_GATEWAY_API}/v1alpha2", "udproutes", True),
    Resource("ReferenceGrant", f"{_GATEWAY_API}/v1beta1", "referencegrants", True),
    Resource("BackendTLSPolicy", f"{_GATEWAY_API}/v1alpha3", "backendtlspolicies", True),
    Resource("VirtualService", "networking.istio.io/v1", "virtualservices", True),
    Resource("DestinationRule", "networking.istio.io/v1", "destinationrules", True),
    Resource("ServiceEntry", "networking.istio.io/v1", "serviceentries", True),
    Resource("WorkloadEntry", "networking.istio.io/v1", "workloadentries", True),
    Resource("WorkloadGroup", "networking.istio.io/v1", "workloadgroups", True),
    Resource("Sidecar", "networking.istio.io/v1", "sidecars", True),
    Resource("Gateway.networking.istio.io", "networking.istio.io/v1", "gateways", True),
    Resource("EnvoyFilter", "networking.istio.io/v1alpha3", "envoyfilters", True),
    Resource("ProxyConfig", "networking.istio.io/v1beta1", "proxyconfigs", True),
    Resource("Telemetry", "telemetry.istio.io/v1", "telemetries", True),
    Resource("WasmPlugin", "extensions.istio.io/v1alpha1", "wasmplugins", True),
)


def count_unimplemented(api: KubeApi, resources: tuple[Resource, ...] = UNIMPLEMENTED_RESOURCES) -> dict[str, int]:
    counts: dict[str, int] = {}
    for resource in resources:
        try:
            items, _ = api.list_objects(resource, page_size=100)
        except (ApiError, ApiUnavailable) as e:
            log.debug("not listing %s: %s", resource.kind, e)  # CRD not installed, or not allowed
            continue
        if items:
            counts[resource.kind] = len(items)
    return counts


def report_unimplemented(api: KubeApi) -> dict[str, int]:
    counts = count_unimplemented(api)
    line = describe_unknown_kinds(counts)
    if line:
        log.warning("%s", line)
    return counts
