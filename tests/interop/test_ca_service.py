"""Istio's CA API on our secure port: who gets which certificate, and every refusal's status and log line."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from cryptography import x509

from pyambient.runtime.controlplane import ControlPlaneThread
from tests.harness.meshes import pod, shop_mesh
from xds.ca import spiffe_id
from xds.caapi import CREATE_CERTIFICATE_METHOD, IstioCertificateRequest, IstioCertificateResponse
from xds.caclient import CaClient, certificate_request, new_key_and_csr
from xds.tokens import LocalTokenIssuer

pytestmark = pytest.mark.interop

ZTUNNEL_A = ("istio-system", "ztunnel", "ztunnel-a", "node-a")


@dataclass
class SecureControlPlane:
    control: ControlPlaneThread
    tokens: LocalTokenIssuer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.control.secure_port}"

    @property
    def root(self) -> bytes:
        return self.control.control_plane.ca.root_pem

    def create(
        self, request: IstioCertificateRequest, token: str | None, cluster_id: str | None = None
    ) -> IstioCertificateResponse:
        metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token is not None else ()
        if cluster_id is not None:
            metadata += (("clusterid", cluster_id),)
        with grpc.secure_channel(self.address, grpc.ssl_channel_credentials(self.root)) as channel:
            call = channel.unary_unary(
                CREATE_CERTIFICATE_METHOD,
                request_serializer=IstioCertificateRequest.SerializeToString,
                response_deserializer=IstioCertificateResponse.FromString,
            )
            response: IstioCertificateResponse = call(request, metadata=metadata, timeout=30)
            return response


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureControlPlane]:
    tokens = LocalTokenIssuer()
    objects = [*shop_mesh(), pod("shop", "far-0", "127.0.11.31", {"app": "far"}, "far", node="node-b")]
    control = ControlPlaneThread(objects).start(secure_address="127.0.0.1:0", authenticator=tokens)
    try:
        yield SecureControlPlane(control, tokens)
    finally:
        control.stop()


def request_for(identity: str, ttl: int = 3600, impersonate: bool = False) -> IstioCertificateRequest:
    _, csr = new_key_and_csr(identity)
    return certificate_request(csr, ttl, identity if impersonate else None)


def leaf_of(response: IstioCertificateResponse) -> x509.Certificate:
    return x509.load_pem_x509_certificate(response.cert_chain[0].encode())


def test_caller_gets_its_own_identity_signed_for_its_own_key(secure: SecureControlPlane) -> None:
    async def fetch() -> None:
        client = CaClient(secure.address, secure.root, lambda: secure.tokens.issue("shop", "web"))
        try:
            cert = await client.fetch(spiffe_id("shop", "web"), ttl_seconds=7200)
        finally:
            await client.close()
        assert cert.root_pem == secure.root
        assert cert.not_after - cert.not_before == datetime.timedelta(seconds=7200 + 300)  # 5 min clock skew
        leaf = x509.load_pem_x509_certificate(cert.cert_chain_pem)
        root = x509.load_pem_x509_certificate(secure.root)
        leaf.verify_directly_issued_by(root)

    asyncio.run(fetch())


def test_requested_ttl_is_honoured_and_zero_means_the_default(secure: SecureControlPlane) -> None:
    token = secure.tokens.issue("shop", "web")
    short = leaf_of(secure.create(request_for(spiffe_id("shop", "web"), ttl=600), token))
    default = leaf_of(secure.create(request_for(spiffe_id("shop", "web"), ttl=0), token))
    assert short.not_valid_after_utc - short.not_valid_before_utc == datetime.timedelta(minutes=15)  # 10 min + 5 skew
    assert default.not_valid_after_utc - default.not_valid_before_utc == datetime.timedelta(hours=24, minutes=5)


def test_ztunnel_gets_identities_of_pods_on_its_own_node(secure: SecureControlPlane) -> None:
    ns, sa, pod_name, node = ZTUNNEL_A
    token = secure.tokens.issue(ns, sa, pod=pod_name, node=node)
    response = secure.create(request_for(spiffe_id("shop", "db"), impersonate=True), token)
    sans = leaf_of(response).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe_id("shop", "db")]


REFUSALS = {
    "no token": (None, spiffe_id("shop", "web"), False, grpc.StatusCode.UNAUTHENTICATED, "no bearer token"),
    "wrong audience": (
        ("shop", "web", "", "", "kubernetes"),
        spiffe_id("shop", "web"),
        False,
        grpc.StatusCode.UNAUTHENTICATED,
        "audience",
    ),
    "token of another issuer": (
        "foreign",
        spiffe_id("shop", "web"),
        False,
        grpc.StatusCode.UNAUTHENTICATED,
        "signature",
    ),
    "another service account's identity": (
        ("shop", "web", "", "", "istio-ca"),
        spiffe_id("shop", "db"),
        False,
        grpc.StatusCode.PERMISSION_DENIED,
        "may get only spiffe://cluster.local/ns/shop/sa/web",
    ),
    "workload impersonating": (
        ("shop", "web", "web-v1-0", "node-a", "istio-ca"),
        spiffe_id("shop", "db"),
        True,
        grpc.StatusCode.PERMISSION_DENIED,
        "not a node proxy",
    ),
    "ztunnel impersonating a pod of another node": (
        ("istio-system", "ztunnel", "ztunnel-a", "node-a", "istio-ca"),
        spiffe_id("shop", "far"),
        True,
        grpc.StatusCode.PERMISSION_DENIED,
        "no such pod on its node",
    ),
    "ztunnel asking for a workload without impersonation": (
        ("istio-system", "ztunnel", "ztunnel-a", "node-a", "istio-ca"),
        spiffe_id("shop", "db"),
        False,
        grpc.StatusCode.PERMISSION_DENIED,
        "may get only spiffe://cluster.local/ns/istio-system/sa/ztunnel",
    ),
}


@pytest.mark.parametrize("scenario", sorted(REFUSALS))
def test_refused_with_status_and_one_log_line(
    secure: SecureControlPlane, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    who, identity, impersonate, code, detail = REFUSALS[scenario]
    if who is None:
        token = None
    elif who == "foreign":
        token = LocalTokenIssuer().issue("shop", "web")
    else:
        assert isinstance(who, tuple)
        ns, sa, pod_name, node, audience = who
        token = secure.tokens.issue(ns, sa, pod=pod_name, node=node, audience=audience)
    caplog.set_level(logging.WARNING)
    with pytest.raises(grpc.RpcError) as raised:
        secure.create(request_for(identity, impersonate=impersonate), token)
    assert raised.value.code() == code, raised.value.details()
    assert detail in raised.value.details()
    lines = [r for r in caplog.records if "refused" in r.getMessage() and code.name in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]


def test_ttl_above_the_maximum_is_refused_not_shortened(secure: SecureControlPlane) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        secure.create(request_for(spiffe_id("shop", "web"), ttl=91 * 86400), secure.tokens.issue("shop", "web"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max allowed TTL" in raised.value.details()


def test_serving_certificate_names_istiod_and_speaks_tls13_h2(secure: SecureControlPlane) -> None:
    import socket
    import ssl

    ctx = ssl.create_default_context(cadata=secure.root.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", secure.control.secure_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="istiod.istio-system.svc") as tls:
            assert tls.version() == "TLSv1.3"
            assert tls.selected_alpn_protocol() == "h2"


def test_cluster_id_header_must_name_our_cluster(secure: SecureControlPlane) -> None:
    token = secure.tokens.issue("shop", "web")
    assert secure.create(request_for(spiffe_id("shop", "web")), token, cluster_id="Kubernetes").cert_chain
    with pytest.raises(grpc.RpcError) as raised:
        secure.create(request_for(spiffe_id("shop", "web")), token, cluster_id="cluster2")
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "cluster 'cluster2'" in raised.value.details()
