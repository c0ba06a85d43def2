"""What goes over xDS: no private key for any node type on any port, and config only for its owner.

Responses are captured as raw bytes from real gRPC streams (SotW and delta, plaintext 15010 and
TLS 15012) and searched for PEM private keys and the CA root key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest

from pyambient.runtime.controlplane import ControlPlaneThread
from tests.harness.meshes import shop_mesh
from xds import resources
from xds.envoy.bootstrap import WaypointNode

pytestmark = pytest.mark.interop

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
WAYPOINT = WaypointNode("waypoint", "shop", "127.0.12.1").to_node()
ZTUNNEL = Node(id="ztunnel~127.0.0.2~ztunnel-a.istio-system~istio-system.svc.cluster.local")
SIDECAR = Node(id="sidecar~127.0.11.11~web-v1-0.shop~shop.svc.cluster.local")
# node -> (namespace, service account) of the token it owns, and the types it asks for
NODES = {
    "waypoint": (WAYPOINT, ("shop", "waypoint"), (resources.CLUSTER, resources.LISTENER, resources.SECRET)),
    "ztunnel": (ZTUNNEL, ("istio-system", "ztunnel"), (resources.ADDRESS, resources.AUTHORIZATION, resources.SECRET)),
    "other": (SIDECAR, ("shop", "web"), (resources.CLUSTER, resources.SECRET)),
}


@pytest.fixture(scope="module")
def control() -> Iterator[ControlPlaneThread]:
    control = ControlPlaneThread(shop_mesh()).start()
    try:
        yield control
    finally:
        control.stop()


def _channel(control: ControlPlaneThread, secure: bool) -> grpc.Channel:
    if not secure:
        return grpc.insecure_channel(f"127.0.0.1:{control.port}")
    credentials = grpc.ssl_channel_credentials(control.control_plane.ca.root_pem)
    options = [("grpc.ssl_target_name_override", "istiod.istio-system.svc")]
    return grpc.secure_channel(f"127.0.0.1:{control.secure_port}", credentials, options=options)


def _capture(
    control: ControlPlaneThread, node: Node, types: tuple[str, ...], *, secure: bool, delta: bool, token: str | None
) -> tuple[list[bytes], grpc.RpcError | None]:
    """Raw response bytes of one stream (until every type answered, or the stream ends)."""
    if delta:
        first: list[object] = [DeltaDiscoveryRequest(node=node, type_url=t) for t in types]
        method, serialize = ADS + "DeltaAggregatedResources", DeltaDiscoveryRequest.SerializeToString
    else:
        names = {resources.SECRET: ["default", "ROOTCA"]}
        first = [DiscoveryRequest(node=node, type_url=t, resource_names=names.get(t, [])) for t in types]
        method, serialize = ADS + "StreamAggregatedResources", DiscoveryRequest.SerializeToString
    done = threading.Event()

    def requests() -> Iterator[object]:
        yield from first
        done.wait(30)

    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    raw: list[bytes] = []
    error: grpc.RpcError | None = None
    with _channel(control, secure) as channel:
        call = channel.stream_stream(method, request_serializer=serialize, response_deserializer=None)
        responses = call(requests(), metadata=metadata, timeout=30)
        expected = len([t for t in types if t != resources.SECRET])
        try:
            for response in responses:
                raw.append(response)
                if len(raw) >= expected:
                    break
        except grpc.RpcError as exc:
            error = exc
        done.set()
        responses.cancel()
    return raw, error


@pytest.mark.parametrize("kind", sorted(NODES))
@pytest.mark.parametrize("secure", [False, True], ids=["15010", "15012"])
@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
def test_no_private_key_in_any_xds_response(control: ControlPlaneThread, kind: str, secure: bool, delta: bool) -> None:
    node, (ns, sa), types = NODES[kind]
    token = control.tokens.issue(ns, sa) if secure else None
    raw, error = _capture(control, node, types, secure=secure, delta=delta, token=token)
    assert error is None, error
    assert raw, "the node got its config"
    wire = b"".join(raw)
    root_key = control.control_plane.ca._signing_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert b"PRIVATE KEY" not in wire
    assert root_key not in wire
    assert resources.SECRET.encode() not in wire, "no SDS resource is ever served by the control plane"


REFUSED = {
    "no token on the secure port": (WAYPOINT, None, grpc.StatusCode.UNAUTHENTICATED),
    "wrong audience": (WAYPOINT, ("shop", "waypoint", "kubernetes"), grpc.StatusCode.UNAUTHENTICATED),
    "another service account asks for a waypoint's config": (
        WAYPOINT,
        ("shop", "web", "istio-ca"),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "same account, other namespace's waypoint": (
        WaypointNode("waypoint", "other").to_node(),
        ("shop", "waypoint", "istio-ca"),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "a workload asks for ztunnel config": (ZTUNNEL, ("shop", "web", "istio-ca"), grpc.StatusCode.PERMISSION_DENIED),
    "a workload asks for another namespace's node": (
        SIDECAR,
        ("other", "echo", "istio-ca"),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
}


@pytest.mark.parametrize("scenario", sorted(REFUSED))
def test_config_only_for_the_owner_of_the_node(
    control: ControlPlaneThread, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    node, who, code = REFUSED[scenario]
    token = control.tokens.issue(who[0], who[1], audience=who[2]) if who else None
    caplog.set_level(logging.WARNING)
    raw, error = _capture(control, node, (resources.CLUSTER,), secure=True, delta=True, token=token)
    assert raw == [], "nothing was served before the refusal"
    assert error is not None and error.code() == code, error
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage() and code.name in r.getMessage()]
    assert len(lines) == 1, lines
