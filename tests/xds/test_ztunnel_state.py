"""What a ztunnel receives from the control plane, over a real gRPC delta stream."""

from __future__ import annotations

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import AggregatedDiscoveryServiceSyncStub, DeltaDiscoveryRequest

from pyambient.runtime.controlplane import ControlPlaneThread
from tests.harness.meshes import ambient_namespace, pod, service, shop_mesh, waypoint
from xds import resources
from xds.mesh.objects import mesh_from_objects
from xds.workloadapi import Address, Authorization, AuthzAction, AuthzScope, TunnelProtocol
from xds.ztunnel_state import ztunnel_resources

POLICY = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "only-sleep", "namespace": "shop"},
    "spec": {
        "selector": {"matchLabels": {"app": "db"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/sleep"]}}],
                "to": [{"operation": {"ports": ["8080"]}}],
            }
        ],
    },
}


def _decode(snapshot_items: dict) -> dict:
    return {name: res.any.unpack() for name, res in snapshot_items.items()}


def test_services_carry_their_waypoint_and_workloads_their_tunnel() -> None:
    mesh = mesh_from_objects(shop_mesh() + [POLICY])
    snap = ztunnel_resources(mesh)
    addresses = _decode(dict(snap.of_type(resources.ADDRESS)))
    web = addresses["shop/web.shop.svc.cluster.local"].service
    assert web.waypoint is not None and web.waypoint.hbone_mtls_port == 15008
    db_pod = addresses["Kubernetes//Pod/shop/db-0"].workload
    assert db_pod.tunnel_protocol is TunnelProtocol.HBONE
    assert db_pod.service_account == "db" and db_pod.addresses == [bytes([127, 0, 11, 13])]
    assert "shop/db.shop.svc.cluster.local" in db_pod.services
    assert db_pod.authorization_policies == ["shop/only-sleep"]
    policy = _decode(dict(snap.of_type(resources.AUTHORIZATION)))["shop/only-sleep"]
    assert isinstance(policy, Authorization)
    assert policy.scope is AuthzScope.WORKLOAD_SELECTOR and policy.action is AuthzAction.ALLOW
    (rule,) = policy.rules
    # Istio's order: the `to` clause, then the `from` clause.
    assert rule.clauses[0].matches[0].destination_ports == [8080]
    assert rule.clauses[1].matches[0].principals[0].exact == "cluster.local/ns/shop/sa/sleep"


def test_waypoint_referenced_by_hostname_when_its_service_exists() -> None:
    objs = [
        ambient_namespace("a"),
        waypoint("a", "wp"),
        service("a", "wp", "127.96.9.9", [("mesh", 15008, 15008)], {"gateway.networking.k8s.io/gateway-name": "wp"}),
        service("a", "s", "127.96.0.1", [("http", 80, 80)], {"app": "s"}),
        pod("a", "s-0", "127.0.1.1", {"app": "s"}),
    ]
    addresses = _decode(dict(ztunnel_resources(mesh_from_objects(objs)).of_type(resources.ADDRESS)))
    gateway = addresses["a/s.a.svc.cluster.local"].service.waypoint
    assert gateway.hostname is not None and gateway.hostname.hostname == "wp.a.svc.cluster.local"
    assert addresses["a/wp.a.svc.cluster.local"].service.waypoint is None, "a waypoint's own service has none"


def test_ztunnel_node_gets_addresses_over_delta_grpc() -> None:
    control = ControlPlaneThread(shop_mesh()).start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{control.port}")
        stub = AggregatedDiscoveryServiceSyncStub(channel)
        node = Node(id="ztunnel~127.0.0.2~ztunnel-a.istio-system~istio-system.svc.cluster.local")
        requests = iter([DeltaDiscoveryRequest(node=node, type_url=resources.ADDRESS)])
        responses = stub.delta_aggregated_resources(requests)
        first = next(responses)
        assert first.type_url == resources.ADDRESS
        names = {r.name for r in first.resources}
        assert "shop/web.shop.svc.cluster.local" in names and "Kubernetes//Pod/shop/web-v1-0" in names
        resource = first.resources[0].resource
        assert resource is not None and isinstance(resource.unpack(), Address)
        channel.close()
    finally:
        control.stop()


def test_identical_nodes_share_one_snapshot() -> None:
    from envoy_data_plane.envoy.config.core.v3 import Node

    from xds.controlplane import ControlPlane
    from xds.envoy.bootstrap import WaypointNode

    cp = ControlPlane()
    cp.update(mesh_from_objects(shop_mesh()))
    a, b = Node(id="ztunnel~127.0.0.2~a.x~x.svc.cluster.local"), Node(id="ztunnel~127.0.0.3~b.x~x.svc.cluster.local")
    assert cp.snapshot_for(a) is cp.snapshot_for(b)
    replica = WaypointNode("waypoint", "shop").to_node()
    other_replica = WaypointNode("waypoint", "shop").to_node()
    other_replica.id = other_replica.id.replace("0.0.0.0", "10.0.0.9")
    assert cp.snapshot_for(replica) is cp.snapshot_for(other_replica)
