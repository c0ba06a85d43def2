"""A real Envoy waypoint, configured by our control plane, carrying real HBONE traffic."""

from __future__ import annotations

import collections
import functools
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyambient.runtime.backends import NamedHttpBackend
from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.harness.hbone import HboneClient, HboneTerminator, http_get
from tests.harness.meshes import http_route, shop_mesh
from xds import resources
from xds.ca import CertificateAuthority, spiffe_id
from xds.envoy.bootstrap import WaypointNode

pytestmark = pytest.mark.envoy

SHOP_WAYPOINT = WaypointNode("waypoint", "shop", "127.0.12.1")
REVIEWS_WAYPOINT = WaypointNode("reviews-waypoint", "shop", "127.0.12.2")
OTHER_WAYPOINT = WaypointNode("waypoint", "other", "127.0.12.3")
PODS = {
    "127.0.11.11": "web-v1",
    "127.0.11.12": "web-v2",
    "127.0.11.13": "db",
    "127.0.11.14": "reviews",
    "127.0.11.21": "echo",
}
ALL_TYPES = (resources.LISTENER, resources.CLUSTER, resources.ENDPOINT)


@dataclass
class Mesh:
    control: ControlPlaneThread
    envoys: dict[str, EnvoyProcess]
    terminators: dict[str, HboneTerminator]
    ca: CertificateAuthority

    def client(self, node: WaypointNode, identity: str = spiffe_id("shop", "sleep")) -> HboneClient:
        return HboneClient((node.listen_address, 15008), self.ca.issue(identity))

    def acked_everything(self, envoy: EnvoyProcess, since_version: dict[str, str] | None = None) -> bool:
        cp = self.control.control_plane
        snapshot = cp.snapshot_for(envoy.node.to_node())
        acked = all(cp.acks.get((envoy.node.node_id, t)) == snapshot.version(t) for t in ALL_TYPES)
        return acked and envoy.serving()  # serving: the agent's certificate is loaded too


@pytest.fixture(scope="module", params=["delta", "sotw"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    ca = CertificateAuthority()
    control = ControlPlaneThread(shop_mesh(), ca=ca).start()
    workdir: Path = tmp_path_factory.mktemp(f"envoy-{request.param}")
    node_identity = ca.issue(spiffe_id("istio-system", "ztunnel"))
    terminators = {ip: HboneTerminator(ip, node_identity) for ip in PODS}
    backends = [NamedHttpBackend(ip, 8080, name) for ip, name in PODS.items()]
    envoys = {
        n.node_id: EnvoyProcess(
            workdir, n, credentials=control.waypoint_credentials(n), delta=request.param == "delta"
        )
        for n in (SHOP_WAYPOINT, REVIEWS_WAYPOINT, OTHER_WAYPOINT)
    }
    m = Mesh(control, envoys, terminators, ca)
    try:
        for pod in envoys.values():  # the agents start side by side, then each Envoy once its agent serves
            pod.start_agent()
        for pod in envoys.values():
            pod.start()
        for envoy in envoys.values():
            wait_until(
                functools.partial(m.acked_everything, envoy), timeout=60, what=f"{envoy.node.node_id} ACKs every type"
            )
        yield m
    finally:
        for envoy in envoys.values():
            envoy.stop()
        for t in terminators.values():
            t.close()
        for b in backends:
            b.close()
        control.stop()


def envoy_of(mesh: Mesh, node: WaypointNode) -> EnvoyProcess:
    return mesh.envoys[node.node_id]


def test_envoy_acks_every_resource_and_dump_has_istio_names(mesh: Mesh) -> None:
    assert len(mesh.control.control_plane.nacks) == 0
    shop = envoy_of(mesh, SHOP_WAYPOINT)
    assert shop.dynamic_names("listeners") == {"connect_terminate", "main_internal", "connect_originate"}
    clusters = shop.dynamic_names("clusters")
    assert {"main_internal", "encap", "connect_originate"} <= clusters
    assert "inbound-vip|80|http|web.shop.svc.cluster.local" in clusters
    assert "inbound-vip|80|http|web-v1.shop.svc.cluster.local" in clusters
    assert "inbound-vip|5432|tcp|db.shop.svc.cluster.local" in clusters
    dump = json.dumps(shop.config_dump())
    assert "envoy://connect_originate/127.0.11.11:8080" in dump or '"endpoint_id": "127.0.11.11:8080"' in dump
    assert "%DOWNSTREAM_LOCAL_ADDRESS%" in dump


def test_service_account_waypoint_wins_for_its_account(mesh: Mesh) -> None:
    reviews = envoy_of(mesh, REVIEWS_WAYPOINT).dynamic_names("clusters")
    shop = envoy_of(mesh, SHOP_WAYPOINT).dynamic_names("clusters")
    assert "inbound-vip|9080|http|reviews.shop.svc.cluster.local" in reviews
    assert "inbound-vip|9080|http|reviews.shop.svc.cluster.local" not in shop
    assert not any("web" in c for c in reviews)


def test_namespace_waypoint_has_nothing_of_other_namespaces(mesh: Mesh) -> None:
    shop = envoy_of(mesh, SHOP_WAYPOINT)
    assert not any(".other.svc" in c for c in shop.dynamic_names("clusters"))
    assert "127.96.1.10" not in json.dumps(shop.config_dump())
    other = envoy_of(mesh, OTHER_WAYPOINT).dynamic_names("clusters")
    assert "inbound-vip|80|http|echo.other.svc.cluster.local" in other
    assert not any(".shop.svc" in c for c in other)


def test_hbone_through_waypoint_reaches_pod_with_waypoint_identity(mesh: Mesh) -> None:
    terminator = mesh.terminators["127.0.11.13"]
    before = len(terminator.records)
    with mesh.client(SHOP_WAYPOINT) as client:
        assert client.peer_identity == spiffe_id("shop", "waypoint")
        result = client.exchange("127.96.0.13:5432", http_get())
    assert result.status == 200
    assert result.body.endswith(b"db")
    record = terminator.records[before]
    assert record.peer_identity == spiffe_id("shop", "waypoint")
    assert record.authority == "127.0.11.13:8080"


def _split(mesh: Mesh, n: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    with mesh.client(SHOP_WAYPOINT) as client:
        for _ in range(n):
            result = client.exchange("127.96.0.10:80", http_get("web.shop"))
            assert result.status == 200, result
            counts[result.body.rsplit(b"\r\n", 1)[-1].decode()] += 1
    return counts


WEB_CHAIN = "inbound-vip|80|http|web.shop.svc.cluster.local"


# Envoy picks a weighted cluster per request at random. Over 1000 requests σ of a 90/10 share is 0.95 %, so the
# issue's ±5 % is 5σ (over the minimum of 400 it would be 3.3σ: about one CI run in a thousand fails by chance).
SPLIT_REQUESTS = 1000


def test_httproute_split_applies_and_changes_live(mesh: Mesh) -> None:
    counts = _split(mesh, SPLIT_REQUESTS)
    assert set(counts) == {"web-v1", "web-v2"}
    assert 0.85 <= counts["web-v1"] / SPLIT_REQUESTS <= 0.95, counts
    envoy = envoy_of(mesh, SHOP_WAYPOINT)
    pid = envoy.process.pid if envoy.process else None
    mesh.control.apply(shop_mesh(50, 50))
    wait_until(lambda: envoy.route_weights(WEB_CHAIN) == [50, 50], what="50/50 weights in envoy")
    counts = _split(mesh, SPLIT_REQUESTS)
    # σ of a 50/50 share over 1000 is 1.6 %: ±8 % is 5σ (the issue's ±5 % is for the 90/10 split).
    assert 0.42 <= counts["web-v1"] / SPLIT_REQUESTS <= 0.58, counts
    assert envoy.process is not None and envoy.process.pid == pid and envoy.alive()
    mesh.control.apply(shop_mesh())
    wait_until(lambda: envoy.route_weights(WEB_CHAIN) == [90, 10], what="weights restored")


def test_connect_terminate_refuses_bad_peers_and_keeps_serving(mesh: Mesh) -> None:
    # A certificate from another trust domain (another CA): the handshake fails.
    foreign = CertificateAuthority("evil.example").issue("spiffe://evil.example/ns/shop/sa/sleep")
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        HboneClient(("127.0.12.1", 15008), foreign).exchange("127.96.0.13:5432", http_get())
    # Plaintext on 15008: the connection is closed without an HTTP answer.
    with socket.create_connection(("127.0.12.1", 15008), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"HTTP/1.1 200" not in plain.recv(4096)
    # A valid peer sending something other than CONNECT: refused (no route).
    with mesh.client(SHOP_WAYPOINT) as client:
        result = client.exchange("127.96.0.13:5432", b"", method="GET")
        assert result.status == 404
    # Others keep being served.
    with mesh.client(SHOP_WAYPOINT) as client:
        assert client.exchange("127.96.0.13:5432", http_get()).status == 200
    assert envoy_of(mesh, SHOP_WAYPOINT).alive()


def test_invalid_resource_is_nacked_and_last_good_config_keeps_serving(mesh: Mesh) -> None:
    cp = mesh.control.control_plane
    nacks_before = len(cp.nacks)
    bad = [o for o in shop_mesh() if o["kind"] != "HTTPRoute"] + [
        # RE2 cannot compile this: our model passes it through, Envoy must reject the listener.
        http_route("shop", "web-split", "web", 80, [("web-v1", 90), ("web-v2", 10)], path=("RegularExpression", "(["))
    ]
    mesh.control.apply(bad)
    wait_until(lambda: len(cp.nacks) > nacks_before, what="a NACK")
    nack = cp.nacks[-1]
    assert nack.type_url == resources.LISTENER
    assert nack.message, "the NACK carries Envoy's error detail"
    assert cp.nack_counter.labels(type="LDS")._value.get() >= 1
    counts = _split(mesh, 40)  # the previous (90/10) config still routes
    assert set(counts) <= {"web-v1", "web-v2"} and sum(counts.values()) == 40
    mesh.control.apply(shop_mesh())
    envoy = envoy_of(mesh, SHOP_WAYPOINT)
    wait_until(lambda: mesh.acked_everything(envoy), what="the fixed config is ACKed")


def _policy(name: str, action: str, rule: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}], "action": action, "rules": [rule]},
    }


def _status(mesh: Mesh, identity: str, method: str = "GET", path: str = "/") -> int:
    with mesh.client(SHOP_WAYPOINT, identity) as client:
        result = client.exchange("127.96.0.10:80", http_get("web.shop", method=method, path=path))
    return int(result.body.split(b" ", 2)[1]) if result.body.startswith(b"HTTP/1.1") else 0


def test_waypoint_enforces_l7_authorization_policy_attached_to_a_service(mesh: Mesh) -> None:
    policies = [
        _policy(
            "web-allow-sleep-get",
            "ALLOW",
            {
                "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/sleep"]}}],
                "to": [{"operation": {"methods": ["GET"]}}],
            },
        ),
        _policy("web-deny-admin", "DENY", {"to": [{"operation": {"paths": ["/admin*"]}}]}),
    ]
    envoy = envoy_of(mesh, SHOP_WAYPOINT)
    mesh.control.apply(shop_mesh() + policies)
    try:
        wait_until(
            lambda: "envoy.filters.http.rbac.deny" in json.dumps(envoy.active_listener("main_internal")),
            what="RBAC in envoy",
        )
        assert _status(mesh, spiffe_id("shop", "sleep")) == 200
        assert _status(mesh, spiffe_id("shop", "notsleep")) == 403
        assert _status(mesh, spiffe_id("shop", "sleep"), method="POST") == 403
        assert _status(mesh, spiffe_id("shop", "sleep"), path="/admin/users") == 403
        # The policy targets `web` only: db (another chain of the same waypoint) is untouched.
        with mesh.client(SHOP_WAYPOINT, spiffe_id("shop", "notsleep")) as client:
            assert client.exchange("127.96.0.13:5432", http_get()).status == 200
    finally:
        mesh.control.apply(shop_mesh())
        wait_until(
            lambda: "envoy.filters.http.rbac" not in json.dumps(envoy.active_listener("main_internal")),
            what="RBAC removed",
        )
