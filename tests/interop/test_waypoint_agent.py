"""A waypoint pod as Istio runs it: our agent makes the key, gets it signed over 15012, serves Envoy over SDS."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pyambient.runtime.backends import NamedHttpBackend
from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.harness.hbone import HboneClient, HboneTerminator, http_get
from tests.harness.meshes import shop_mesh
from xds import resources
from xds.ca import spiffe_id, uri_sans
from xds.envoy.bootstrap import WaypointNode

pytestmark = [pytest.mark.interop, pytest.mark.envoy]

NODE = WaypointNode("waypoint", "shop", "127.0.12.51")
DB_POD = "127.0.11.13"
TTL_SECONDS = 40  # renewed at half life: a rotation within the test


@dataclass
class Pod:
    control: ControlPlaneThread
    envoy: EnvoyProcess

    def client(self) -> HboneClient:
        cert = self.control.control_plane.ca.issue(spiffe_id("shop", "sleep"))
        return HboneClient((NODE.listen_address, 15008), cert)

    def served_cert(self) -> bytes:
        with self.client() as client:
            der = client.sock.getpeercert(binary_form=True)
        assert der is not None
        return der


def _serving(control: ControlPlaneThread, envoy: EnvoyProcess) -> bool:
    cp = control.control_plane
    snapshot = cp.snapshot_for(NODE.to_node())
    types = (resources.LISTENER, resources.CLUSTER, resources.ENDPOINT)
    return all(cp.acks.get((NODE.node_id, t)) == snapshot.version(t) for t in types) and envoy.serving()


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    control = ControlPlaneThread(shop_mesh()).start()
    ca = control.control_plane.ca
    workdir: Path = tmp_path_factory.mktemp("agent")
    terminator = HboneTerminator(DB_POD, ca.issue(spiffe_id("istio-system", "ztunnel")))
    backend = NamedHttpBackend(DB_POD, 8080, "db")
    credentials = control.waypoint_credentials(NODE, ttl_seconds=TTL_SECONDS)
    envoy = EnvoyProcess(workdir, NODE, credentials=credentials).start()
    try:
        wait_until(functools.partial(_serving, control, envoy), timeout=60, what="waypoint serving with its cert")
        yield Pod(control, envoy)
    finally:
        envoy.stop()
        terminator.close()
        backend.close()
        control.stop()


def test_envoy_serves_the_certificate_the_agent_got_signed_and_carries_traffic(pod: Pod) -> None:
    cert = x509.load_der_x509_certificate(pod.served_cert())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pod.control.control_plane.ca.root_pem))
    assert uri_sans(cert.public_bytes(serialization.Encoding.PEM)) == [spiffe_id("shop", "waypoint")]
    with pod.client() as client:
        assert client.peer_identity == spiffe_id("shop", "waypoint")
        result = client.exchange("127.96.0.13:5432", http_get())
    assert result.status == 200 and b"db" in result.body
    assert "certificate for spiffe://cluster.local/ns/shop/sa/waypoint valid until" in pod.envoy.agent_log()


def test_rotation_at_half_life_keeps_live_connections(pod: Pod) -> None:
    first = pod.served_cert()
    with pod.client() as live:
        assert live.exchange("127.96.0.13:5432", http_get()).status == 200
        wait_until(lambda: pod.served_cert() != first, timeout=90, interval=1.0, what="the agent renewed at half life")
        # The connection made before the rotation still carries new streams.
        result = live.exchange("127.96.0.13:5432", http_get())
        assert result.status == 200 and b"db" in result.body
    assert pod.envoy.alive()
    assert pod.envoy.agent_log().count("valid until") >= 2
