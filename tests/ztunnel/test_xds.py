"""The Istio config API types (wire-compatible field numbers), the sans-IO delta client, and a ztunnel fed
by delta xDS from a real gRPC server (pushes hot-reload; a bad resource is NACKed naming it)."""

from __future__ import annotations

import ipaddress
import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import betterproto2
import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    Resource,
)
from envoy_data_plane.google.protobuf import Any as AnyMsg
from envoy_data_plane.google.protobuf import Empty

from tests.ztunnel.conftest import Backend, ZtunnelProc, issue, proxy_section, roundtrip, socks_connect, write_yaml
from xds import workloadapi as w
from xds.ca import CertificateAuthority
from xds.client import DeltaClient
from ztunnel.xdsfeed import XdsStore

pytestmark = pytest.mark.ztunnel


# --------------------------------------------------------------------------------------- wire compatibility
def _fields(data: bytes) -> list[int]:
    """Top-level field numbers of a protobuf message, in order (a tiny wire-format reader)."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        shift = v = 0
        while True:
            b = data[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while i < len(data):
        key = varint()
        out.append(key >> 3)
        wt = key & 7
        if wt == 0:
            varint()
        elif wt == 2:
            n = varint()
            i += n
        elif wt == 5:
            i += 4
        elif wt == 1:
            i += 8
    return out


def test_workload_field_numbers_match_istio_workload_proto() -> None:
    gw = w.GatewayAddress(address=w.NetworkAddress(address=b"\x0a\0\0\x09"), hbone_mtls_port=15008)
    m = w.Workload(
        name="n",
        namespace="ns",
        addresses=[b"\x0a\0\0\x01"],
        network="net",
        tunnel_protocol=w.TunnelProtocol.HBONE,
        trust_domain="td",
        service_account="sa",
        waypoint=gw,
        node="node",
        canonical_name="cn",
        canonical_revision="cr",
        workload_type=w.WorkloadType.POD,
        workload_name="wn",
        native_tunnel=True,
        authorization_policies=["ns/p"],
        status=w.WorkloadStatus.UNHEALTHY,
        cluster_id="c",
        network_gateway=gw,
        uid="u",
        hostname="h",
        services={"ns/h": w.PortList(ports=[w.Port(service_port=80, target_port=8080)])},
        application_tunnel=w.ApplicationTunnel(protocol=w.ApplicationTunnelProtocol.PROXY, port=15088),
        locality=w.Locality(region="r"),
        network_mode=w.NetworkMode.HOST_NETWORK,
        capacity=3,
    )
    assert sorted(set(_fields(bytes(m)))) == [*range(1, 15), *range(16, 26), 27]
    back = w.Workload.parse(bytes(m))
    assert back.capacity == 3 and back.services["ns/h"].ports[0].target_port == 8080
    assert back.waypoint is not None and back.waypoint.hbone_mtls_port == 15008


def test_service_and_authorization_field_numbers_and_type_urls() -> None:
    s = w.Service(
        name="n",
        namespace="ns",
        hostname="h",
        addresses=[w.NetworkAddress(network="", address=b"\x0a\0\0\x0a")],
        ports=[w.Port(service_port=80, target_port=8080)],
        subject_alt_names=["x"],
        waypoint=w.GatewayAddress(hostname=w.NamespacedHostname(namespace="ns", hostname="wp"), hbone_mtls_port=15008),
        load_balancing=w.LoadBalancing(
            routing_preference=[w.LoadBalancingScope.ZONE], mode=w.LoadBalancingMode.FAILOVER
        ),
        ip_families=w.IPFamilies.DUAL,
        canonical=True,
        ingress_use_waypoint=True,
        visibility=w.ServiceVisibility.NAMESPACE,
    )
    assert sorted(set(_fields(bytes(s)))) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14]
    match = w.Match(
        namespaces=[w.StringMatch(exact="a")],
        not_namespaces=[w.StringMatch(prefix="b")],
        principals=[w.StringMatch(suffix="c")],
        not_principals=[w.StringMatch(presence=Empty())],
        source_ips=[w.AuthzAddress(address=b"\x0a\0\0\0", length=8)],
        not_source_ips=[w.AuthzAddress()],
        destination_ips=[w.AuthzAddress()],
        not_destination_ips=[w.AuthzAddress()],
        destination_ports=[1],
        not_destination_ports=[2],
        service_accounts=[w.ServiceAccountMatch(namespace="a", service_account="b")],
        not_service_accounts=[w.ServiceAccountMatch(namespace="c")],
    )
    assert sorted(set(_fields(bytes(match)))) == list(range(1, 13))
    az = w.Authorization(
        name="n",
        namespace="ns",
        scope=w.AuthzScope.WORKLOAD_SELECTOR,
        action=w.AuthzAction.DENY,
        rules=[w.Rule(clauses=[w.Clause(matches=[match])])],
        dry_run=True,
    )
    assert sorted(set(_fields(bytes(az)))) == [1, 2, 3, 4, 5, 6]
    assert _fields(bytes(w.Clause(matches=[match]))) == [2]
    assert AnyMsg.pack(w.Address(service=s)).type_url == "type.googleapis.com/istio.workload.Address"
    assert AnyMsg.pack(az).type_url == "type.googleapis.com/istio.security.Authorization"
    assert _fields(bytes(w.Address(workload=w.Workload(uid="u")))) == [1]
    assert _fields(bytes(w.Address(service=w.Service(name="s")))) == [2]
    back = w.Authorization.parse(bytes(az))
    kind, _ = betterproto2.which_one_of(back.rules[0].clauses[0].matches[0].not_principals[0], "match_type")
    assert kind == "presence"


# --------------------------------------------------------------------------------------- sans-IO client
def _wl(uid: str, ip: str, node: str, sa: str, services: dict[str, int] | None = None) -> w.Address:
    return w.Address(
        workload=w.Workload(
            uid=uid,
            name=uid.rsplit("/", 1)[-1],
            namespace="default",
            addresses=[ipaddress.ip_address(ip).packed],
            tunnel_protocol=w.TunnelProtocol.HBONE,
            trust_domain="cluster.local",
            service_account=sa,
            node=node,
            services={
                k: w.PortList(ports=[w.Port(service_port=80, target_port=v)]) for k, v in (services or {}).items()
            },
        )
    )


def _svc(vip: str) -> w.Address:
    return w.Address(
        service=w.Service(
            name="echo",
            namespace="default",
            hostname="echo.default.svc.cluster.local",
            addresses=[w.NetworkAddress(address=ipaddress.ip_address(vip).packed)],
            ports=[w.Port(service_port=80, target_port=8080)],
        )
    )


def _resp(
    nonce: str, resources: dict[str, Any], removed: list[str] | None = None, type_url: str = w.ADDRESS_TYPE_URL
) -> DeltaDiscoveryResponse:
    return DeltaDiscoveryResponse(
        type_url=type_url,
        nonce=nonce,
        removed_resources=removed or [],
        resources=[Resource(name=n, version="v" + nonce, resource=AnyMsg.pack(m)) for n, m in resources.items()],
    )


def test_delta_client_subscribes_acks_tracks_versions_and_nacks_bad_resources() -> None:
    c = DeltaClient(Node(id="ztunnel~x"))
    first = c.initial_requests()
    assert [r.type_url for r in first] == [w.ADDRESS_TYPE_URL, w.AUTHORIZATION_TYPE_URL]
    assert all(not r.resource_names_subscribe and not r.initial_resource_versions for r in first)  # wildcard
    up = c.receive(_resp("1", {"default/echo.default.svc.cluster.local": _svc("10.96.0.10")}))
    assert up.error is None and isinstance(up.updated["default/echo.default.svc.cluster.local"], w.Address)
    ack = c.ack(up)
    assert ack.response_nonce == "1" and ack.error_detail is None
    assert c.initial_requests()[0].initial_resource_versions == {"default/echo.default.svc.cluster.local": "v1"}
    bad = _resp("2", {})
    bad.resources.append(
        Resource(name="junk", version="x", resource=AnyMsg(type_url=w.ADDRESS_TYPE_URL, value=b"\x0a\x10ab"))
    )
    up2 = c.receive(bad)
    assert up2.error is not None and "junk" in up2.error
    nack = c.nack(up2, up2.error)
    assert nack.response_nonce == "2" and nack.error_detail is not None and "junk" in nack.error_detail.message
    up3 = c.receive(_resp("3", {}, removed=["default/echo.default.svc.cluster.local"]))
    c.ack(up3)
    assert c.initial_requests()[0].initial_resource_versions == {}


def test_xds_store_rejects_a_bad_address_naming_it_and_keeps_state() -> None:
    store = XdsStore()
    c = DeltaClient(Node(id="x"))
    store.apply(c.receive(_resp("1", {"c//a": _wl("c//a", "10.0.0.1", "n", "a")})))
    bad = w.Address(workload=w.Workload(uid="c//b", addresses=[b"\x01\x02"]))
    with pytest.raises(ValueError, match="c//b"):
        store.apply(c.receive(_resp("2", {"c//b": bad})))
    assert list(store.workloads) == ["c//a"]


# --------------------------------------------------------------------------------------- real gRPC server
class AdsServer:
    """A tiny delta ADS server on real gRPC: `push()` sends to every connected stream; requests are recorded."""

    def __init__(self, address: str) -> None:
        self.streams: list[queue.Queue[DeltaDiscoveryResponse | None]] = []
        self.requests: list[DeltaDiscoveryRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=DeltaDiscoveryRequest.parse, response_serializer=bytes
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "envoy.service.discovery.v3.AggregatedDiscoveryService", {"DeltaAggregatedResources": handler}
                ),
            )
        )
        self.server.add_insecure_port(address)
        self.server.start()

    def _stream(self, requests: Iterator[DeltaDiscoveryRequest], context: Any) -> Iterator[DeltaDiscoveryResponse]:
        q: queue.Queue[DeltaDiscoveryResponse | None] = queue.Queue()

        def reader() -> None:
            try:
                for r in requests:
                    self.requests.append(r)
            except grpc.RpcError:
                pass

        threading.Thread(target=reader, daemon=True).start()
        self.streams.append(q)
        while context.is_active():
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                return
            yield item

    def push(self, resp: DeltaDiscoveryResponse) -> None:
        for q in self.streams:
            q.put(resp)

    def wait_streams(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while len(self.streams) < n and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.streams) >= n

    def wait_request(self, pred: Any, timeout: float = 10.0, count: int = 1) -> DeltaDiscoveryRequest:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hits = [r for r in list(self.requests) if pred(r)]
            if len(hits) >= count:
                return hits[0]
            time.sleep(0.05)
        raise AssertionError(f"no matching request in {self.requests}")

    def stop(self) -> None:
        self.push(None)  # type: ignore[arg-type]
        self.server.stop(0)


def test_ztunnel_fed_by_delta_xds_routes_traffic_and_nacks_bad_pushes(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    net = "127.0.80"
    ads = AdsServer(f"{net}.1:15010")
    try:
        certdir = tmp_path / "certs"
        root = certdir / "root.crt"
        backends.append(Backend(f"{net}.3", 8080, "echo"))
        cfg_a = {
            "proxy": proxy_section(
                f"{net}.2", "node-a", [issue(ca, certdir, "default", "sleep")], root, xds=f"{net}.1:15010"
            )
        }
        cfg_b = {
            "proxy": proxy_section(
                f"{net}.3", "node-b", [issue(ca, certdir, "default", "echo")], root, xds=f"{net}.1:15010"
            )
        }
        a = ZtunnelProc(write_yaml(tmp_path / "a.yaml", cfg_a), f"{net}.2", tmp_path / "a.log")
        b = ZtunnelProc(write_yaml(tmp_path / "b.yaml", cfg_b), f"{net}.3", tmp_path / "b.log")
        procs += [a, b]
        a.wait_ready()
        b.wait_ready()
        ads.wait_streams(2)
        resources = {
            "c//sleep": _wl("c//sleep", f"{net}.2", "node-a", "sleep"),
            "c//echo": _wl("c//echo", f"{net}.3", "node-b", "echo", {"default/echo.default.svc.cluster.local": 8080}),
            "default/echo.default.svc.cluster.local": _svc("10.96.0.10"),
        }
        ads.push(_resp("1", resources))
        ads.wait_request(lambda r: r.response_nonce == "1" and r.error_detail is None, count=2)
        b.wait_log(f"listener established address={net}.3:15008")
        deadline = time.time() + 10
        while "ready\n" != a.http(15021, "/healthz/ready") and time.time() < deadline:
            time.sleep(0.05)
        s = socks_connect((f"{net}.2", 15080), ("10.96.0.10", 80), src_ip=f"{net}.2")
        assert roundtrip(s, b"via-xds") == b"echo:via-xds"
        s.close()
        bad = w.Address(workload=w.Workload(uid="c//bad", name="bad", addresses=[b"\x01\x02\x03"]))
        ads.push(_resp("2", {"c//bad": bad}))
        nack = ads.wait_request(lambda r: r.response_nonce == "2")
        assert nack.error_detail is not None and "c//bad" in nack.error_detail.message
    finally:
        ads.stop()
