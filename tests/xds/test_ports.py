"""Service ports and endpoints (issue 9 item 4): a named targetPort resolved per pod, Services without a selector
served from their EndpointSlices, and Istio's protocol selection (appProtocol, then the port name). One row per
scenario; the waypoint's EDS and the ztunnel resources must agree."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.meshes import ambient_namespace, pod, service, waypoint
from xds import resources
from xds.envoy.waypoint import build_waypoint
from xds.mesh.model import Mesh, Protocol
from xds.mesh.objects import mesh_from_objects, port_protocol
from xds.workloadapi import Address, AppProtocol
from xds.ztunnel_state import ztunnel_resources

pytestmark = pytest.mark.policy


def named_pod(name: str, ip: str, ports: dict[str, int], protocol: str = "TCP") -> dict[str, Any]:
    obj = pod("ns", name, ip, {"app": "web"}, "web")
    obj["spec"]["containers"] = [
        {"name": "app", "ports": [{"name": n, "containerPort": p, "protocol": protocol} for n, p in ports.items()]}
    ]
    return obj


def named_service(target: Any = "http") -> dict[str, Any]:
    svc = service("ns", "web", "127.96.0.1", [("http", 80, 80)], {"app": "web"})
    svc["spec"]["ports"][0]["targetPort"] = target
    return svc


def _addresses(mesh: Mesh) -> dict[str, Address]:
    out = {}
    for name, res in ztunnel_resources(mesh).of_type(resources.ADDRESS).items():
        address = res.any.unpack()
        assert isinstance(address, Address)
        out[name] = address
    return out


def _workload_ports(mesh: Mesh, svc: str = "ns/web.ns.svc.cluster.local") -> dict[str, dict[int, int]]:
    """pod name -> {service port: target port} as the ztunnels receive it."""
    out = {}
    for address in _addresses(mesh).values():
        if address.workload and svc in address.workload.services:
            out[address.workload.name] = {p.service_port: p.target_port for p in address.workload.services[svc].ports}
    return out


def _waypoint_endpoints(mesh: Mesh, port: int = 80) -> set[str]:
    """ip:port of every endpoint in the waypoint's EDS for the service port."""
    res = build_waypoint(mesh, mesh.waypoints[0])
    out = set()
    for cla in res.endpoints:
        if f"|{port}|" not in cla.cluster_name:
            continue
        for group in cla.endpoints:
            for lb in group.lb_endpoints:
                assert lb.endpoint is not None and lb.endpoint.address is not None
                address = lb.endpoint.address
                if address.envoy_internal_address is not None:
                    out.add(address.envoy_internal_address.endpoint_id)
                else:
                    assert address.socket_address is not None
                    out.add(f"{address.socket_address.address}:{address.socket_address.port_value}")
    return out


def test_named_target_port_resolves_per_pod_at_waypoint_and_ztunnel() -> None:
    """Issue 9's probe: `targetPort: http` with container port 8080 (and 8081 on the other pod) is no longer
    served on the Service port 80."""
    mesh = mesh_from_objects([
        ambient_namespace("ns"),
        named_service("http"),
        named_pod("web-0", "127.0.1.1", {"http": 8080}),
        named_pod("web-1", "127.0.1.2", {"http": 8081, "metrics": 9090}),
        named_pod("web-2", "127.0.1.3", {"metrics": 9090}),  # selected, but has no port named http
        named_pod("web-3", "127.0.1.4", {"http": 8082}, protocol="UDP"),  # a UDP port does not match a TCP one
        waypoint("ns", "wp"),
    ])  # fmt: skip
    assert not mesh.errors
    [svc] = [a.service for a in _addresses(mesh).values() if a.service and a.service.name == "web"]
    assert [(p.service_port, p.target_port) for p in svc.ports] == [(80, 0)]  # istiod: named → 0 in the service
    assert _workload_ports(mesh) == {"web-0": {80: 8080}, "web-1": {80: 8081}, "web-2": {}, "web-3": {}}
    assert _waypoint_endpoints(mesh) == {"127.0.1.1:8080", "127.0.1.2:8081"}


def test_numeric_target_port_is_the_same_on_every_pod() -> None:
    mesh = mesh_from_objects([
        ambient_namespace("ns"), named_service(8080), named_pod("web-0", "127.0.1.1", {}), waypoint("ns", "wp"),
    ])  # fmt: skip
    assert _workload_ports(mesh) == {"web-0": {80: 8080}}
    assert _waypoint_endpoints(mesh) == {"127.0.1.1:8080"}


@pytest.mark.parametrize(
    ("target", "field"),
    [("HTTP", "spec.ports[0].targetPort"), ("8080", "spec.ports[0].targetPort"), ("a-very-long-port-name", None)],
    ids=["uppercase_name", "digits_only_string", "longer_than_15"],
)
def test_invalid_named_target_port_is_refused(target: str, field: str | None) -> None:
    mesh = mesh_from_objects([ambient_namespace("ns"), named_service(target)])
    [error] = mesh.errors
    assert (str(error.ref), error.field) == ("Service ns/web", field or "spec.ports[0].targetPort")
    assert mesh.services == ()


def _slice(name: str, addresses: list[str], ports: list[dict[str, Any]], ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": "ext"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": addresses, "conditions": {"ready": ready}}],
        "ports": ports,
    }


def test_service_without_selector_is_served_from_its_endpoint_slices() -> None:
    ext = service("ns", "ext", "127.96.0.2", [("http", 80, 80), ("grpc", 90, 90)], {})
    mesh = mesh_from_objects([
        ambient_namespace("ns"),
        ext,
        _slice("ext-a", ["127.0.1.7"], [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9000}]),
        _slice("ext-b", ["127.0.1.8"], [{"name": "http", "port": 8081}]),  # serves only the http port
        _slice("ext-c", ["127.0.1.9"], [{"name": "http", "port": 8082}], ready=False),
        waypoint("ns", "wp"),
    ])  # fmt: skip
    assert not mesh.errors
    ports = _workload_ports(mesh, "ns/ext.ns.svc.cluster.local")
    assert ports == {"ext-127.0.1.7": {80: 8080, 90: 9000}, "ext-127.0.1.8": {80: 8081}}
    assert _waypoint_endpoints(mesh, 80) == {"127.0.1.7:8080", "127.0.1.8:8081"}
    assert _waypoint_endpoints(mesh, 90) == {"127.0.1.7:9000"}


@pytest.mark.parametrize(
    ("name", "app_protocol", "l4", "port", "expected"),
    [
        ("http", None, "TCP", 80, Protocol.HTTP),
        ("http-web", None, "TCP", 80, Protocol.HTTP),
        ("HTTP2-x", None, "TCP", 80, Protocol.HTTP2),
        ("grpc", None, "TCP", 80, Protocol.GRPC),
        ("grpc-web", None, "TCP", 80, Protocol.GRPC_WEB),
        ("grpc-web-x", None, "TCP", 80, Protocol.GRPC_WEB),
        ("tcp-db", None, "TCP", 80, Protocol.TCP),
        ("https", None, "TCP", 443, Protocol.TLS),
        ("redis", None, "TCP", 6379, Protocol.TCP),
        ("web", None, "TCP", 80, Protocol.UNKNOWN),
        ("web", None, "TCP", 3306, Protocol.TCP),
        ("http", None, "UDP", 80, Protocol.UDP),
        ("udp-x", None, "TCP", 80, Protocol.UDP),
        ("tcp", "http", "TCP", 80, Protocol.HTTP),
        ("http", "tcp", "TCP", 80, Protocol.TCP),
        ("http", "custom.example/proto", "TCP", 80, Protocol.UNKNOWN),
        ("web", "kubernetes.io/h2c", "TCP", 80, Protocol.HTTP2),
        ("web", "kubernetes.io/ws", "TCP", 80, Protocol.HTTP),
        ("web", "kubernetes.io/wss", "TCP", 80, Protocol.TLS),
        ("web", "HTTP2", "TCP", 80, Protocol.HTTP2),
        ("web", "grpc-web", "TCP", 80, Protocol.GRPC_WEB),
    ],
    ids=[
        "name_http", "name_prefix_before_dash", "name_case_insensitive", "name_grpc", "name_grpc_web",
        "name_grpc_web_prefix", "name_tcp", "name_https_is_tls", "name_redis_is_tcp", "unknown_name_sniffed",
        "unknown_name_on_well_known_port_is_tcp", "udp_by_l4_protocol", "tcp_port_named_udp_is_udp_as_istio",
        "app_protocol_wins_over_name", "app_protocol_tcp_wins_over_http_name", "unknown_app_protocol_ignores_name",
        "kubernetes_h2c", "kubernetes_ws", "kubernetes_wss", "app_protocol_case_insensitive", "app_protocol_grpc_web",
    ],
)
def test_protocol_selection_as_istio(
    name: str, app_protocol: str | None, l4: str, port: int, expected: Protocol
) -> None:
    assert port_protocol(name, app_protocol, l4, port) is expected


def test_app_protocol_reaches_waypoint_and_ztunnel() -> None:
    """`appProtocol: kubernetes.io/h2c` on a port named `web`: an HTTP/2 chain and upstream at the waypoint, and
    HTTP2 in the ztunnel's service."""
    svc = service("ns", "web", "127.96.0.1", [("web", 80, 8080)], {"app": "web"})
    svc["spec"]["ports"][0]["appProtocol"] = "kubernetes.io/h2c"
    mesh = mesh_from_objects([ambient_namespace("ns"), svc, named_pod("web-0", "127.0.1.1", {}), waypoint("ns", "wp")])
    [ztunnel_svc] = [a.service for a in _addresses(mesh).values() if a.service and a.service.name == "web"]
    assert ztunnel_svc.ports[0].app_protocol is AppProtocol.HTTP2
    res = build_waypoint(mesh, mesh.waypoints[0])
    names = {c.name for c in res.clusters}
    assert "inbound-vip|80|http|web.ns.svc.cluster.local" in names
    assert "inbound-vip|80|tcp|web.ns.svc.cluster.local" not in names  # no sniffing: the protocol is declared
    http = next(c for c in res.clusters if c.name == "inbound-vip|80|http|web.ns.svc.cluster.local")
    assert http.typed_extension_protocol_options  # HTTP/2 to the backend
