"""The CA's signing bundle: istiod's checks on a CA certificate/key/chain/root (one row per way to get it
wrong), and a plug-in intermediate CA whose leaves and serving certificate chain to the operator's root."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.harness.pki import make_ca, plugin_ca
from xds.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_CHAIN_FILE,
    ROOT_CERT_FILE,
    CaBundleError,
    CertificateAuthority,
    new_self_signed_root,
    spiffe_id,
    uri_sans,
    verify_signing_bundle,
)
from xds.caapi import IstioCertificateRequest, IstioCertificateResponse
from xds.caclient import certificate_from_response, new_key_and_csr
from xds.caservice import create_certificate
from xds.mesh.model import Mesh
from xds.tokens import Caller

Bundle = tuple[bytes, bytes, bytes, bytes]  # ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem


def _self_signed() -> Bundle:
    cert, key = new_self_signed_root()
    return cert, key, b"", cert


def _intermediate() -> Bundle:
    root, inter = plugin_ca()
    return inter.cert_pem, inter.key_pem, inter.cert_pem + root.cert_pem, root.cert_pem


def _rsa_intermediate() -> Bundle:
    root = make_ca("Root CA", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    inter = make_ca("intermediate", root, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return inter.cert_pem, inter.key_pem, inter.cert_pem + root.cert_pem, root.cert_pem


def _two_levels() -> Bundle:
    root, inter = plugin_ca()
    second = make_ca("second intermediate", inter)
    return second.cert_pem, second.key_pem, second.cert_pem + inter.cert_pem + root.cert_pem, root.cert_pem


def _other_key() -> Bundle:
    cert, _, chain, root = _intermediate()
    return cert, make_ca("unrelated").key_pem, chain, root


def _not_a_ca() -> Bundle:
    root = make_ca("Root CA")
    leaf = make_ca("leaf", root, is_ca=False)
    return leaf.cert_pem, leaf.key_pem, leaf.cert_pem, root.cert_pem


def _expired() -> Bundle:
    root = make_ca("Root CA")
    old = make_ca("old", root, valid_from=datetime.timedelta(days=-30), valid_for=datetime.timedelta(days=1))
    return old.cert_pem, old.key_pem, old.cert_pem + root.cert_pem, root.cert_pem


def _intermediate_missing_from_chain() -> Bundle:
    root, inter = plugin_ca()
    second = make_ca("second intermediate", inter)
    return second.cert_pem, second.key_pem, second.cert_pem + root.cert_pem, root.cert_pem


def _another_root() -> Bundle:
    cert, key, chain, _ = _intermediate()
    return cert, key, chain, make_ca("Another Root").cert_pem


def _garbage(part: int) -> Callable[[], Bundle]:
    def bundle() -> Bundle:
        parts = list(_intermediate())
        parts[part] = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        return parts[0], parts[1], parts[2], parts[3]

    return bundle


def _ed25519() -> Bundle:
    root = make_ca("Root CA", key=ed25519.Ed25519PrivateKey.generate())
    return root.cert_pem, root.key_pem, b"", root.cert_pem


ACCEPTED: dict[str, Callable[[], Bundle]] = {
    "self-signed root (istio-ca-secret)": _self_signed,
    "intermediate with cert-chain.pem up to the root": _intermediate,
    "RSA root and intermediate": _rsa_intermediate,
    "two intermediates": _two_levels,
}

REFUSED: dict[str, tuple[Callable[[], Bundle], str, str]] = {
    "key of another certificate": (_other_key, CA_KEY_FILE, "does not match"),
    "end-entity certificate as the CA": (_not_a_ca, CA_CERT_FILE, "not authorized to sign"),
    "expired CA certificate": (_expired, CA_CERT_FILE, "not valid now"),
    "cert-chain.pem lacks an intermediate": (_intermediate_missing_from_chain, ROOT_CERT_FILE, "does not verify"),
    "root-cert.pem is another root": (_another_root, ROOT_CERT_FILE, "does not verify"),
    "ca-cert.pem is not PEM": (_garbage(0), CA_CERT_FILE, "not PEM"),
    "ca-key.pem is not a key": (_garbage(1), CA_KEY_FILE, "not an unencrypted PEM private key"),
    "cert-chain.pem is not PEM": (_garbage(2), CERT_CHAIN_FILE, "not PEM"),
    "root-cert.pem is not PEM": (_garbage(3), ROOT_CERT_FILE, "not PEM"),
    "Ed25519 CA key": (_ed25519, CA_KEY_FILE, "only RSA and ECDSA"),
}


@pytest.mark.parametrize("bundle", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_bundle_accepted(bundle: Callable[[], Bundle]) -> None:
    cert_pem, key_pem, chain_pem, root_pem = bundle()
    key, cert = verify_signing_bundle(cert_pem, key_pem, chain_pem, root_pem)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    assert cert == x509.load_pem_x509_certificate(cert_pem)


@pytest.mark.parametrize(("bundle", "part", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_bundle_refused_naming_the_part(bundle: Callable[[], Bundle], part: str, reason: str) -> None:
    with pytest.raises(CaBundleError) as refused:
        verify_signing_bundle(*bundle())
    assert refused.value.part == part
    assert reason in str(refused.value)


def _plugin_authority() -> tuple[CertificateAuthority, Bundle]:
    bundle = _intermediate()
    return CertificateAuthority.from_pem(*bundle), bundle


def test_plugin_ca_publishes_the_operators_root_and_serves_its_chain() -> None:
    ca, (inter_pem, _, chain_pem, root_pem) = _plugin_authority()
    assert ca.root_pem == root_pem
    assert ca.cert_chain_pem == chain_pem
    leaf = ca.issue(spiffe_id("shop", "web"))
    assert leaf.cert_pem.endswith(chain_pem), "a leaf is served with cert-chain.pem after it"
    first = x509.load_pem_x509_certificates(leaf.cert_pem)[0]
    first.verify_directly_issued_by(x509.load_pem_x509_certificate(inter_pem))
    assert uri_sans(leaf.cert_pem) == [spiffe_id("shop", "web")]


def test_plugin_ca_leaves_verify_with_tls_against_the_root_alone(tmp_path: Path) -> None:
    """Both sides trust root-cert.pem only: each must present its intermediate for the other to verify it."""
    ca, (_, _, _, root_pem) = _plugin_authority()
    crt, key, root = ca.issue(spiffe_id("a", "b")).write(tmp_path / "client")
    server_crt, server_key, _ = ca.issue_server(["localhost"], ["127.0.0.1"]).write(tmp_path / "server")
    assert root.read_bytes() == root_pem
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_crt, server_key)
    server.load_verify_locations(cafile=str(root))
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=str(root))
    client.load_cert_chain(crt, key)
    client_sock, server_sock = socket.socketpair()
    peer: list[object] = []

    def serve() -> None:
        with server.wrap_socket(server_sock, server_side=True) as tls:
            peer.append(tls.getpeercert())
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    with client.wrap_socket(client_sock, server_hostname="localhost") as tls:
        assert tls.recv(2) == b"ok"
    thread.join(timeout=30)
    assert peer and peer[0], "the server verified the client's chain"


def test_create_certificate_answers_leaf_chain_root_as_istiod() -> None:
    ca, (_, _, chain_pem, root_pem) = _plugin_authority()
    key_pem, csr = new_key_and_csr(spiffe_id("shop", "web"))
    response = create_certificate(ca, Mesh(), Caller("shop", "web"), IstioCertificateRequest(csr=csr))
    assert isinstance(response, IstioCertificateResponse), response
    assert list(response.cert_chain[1:]) == [chain_pem.decode(), root_pem.decode()]
    issued = certificate_from_response(spiffe_id("shop", "web"), key_pem, response)
    assert issued.root_pem == root_pem
    assert issued.cert_chain_pem.endswith(chain_pem)


def test_self_signed_answer_is_leaf_then_root() -> None:
    cert, key = new_self_signed_root()
    ca = CertificateAuthority.from_pem(cert, key, b"", cert)
    _, csr = new_key_and_csr(spiffe_id("shop", "web"))
    response = create_certificate(ca, Mesh(), Caller("shop", "web"), IstioCertificateRequest(csr=csr))
    assert isinstance(response, IstioCertificateResponse), response
    assert len(response.cert_chain) == 2 and response.cert_chain[1] == cert.decode()


def test_plugin_root_is_not_rotated() -> None:
    ca, _ = _plugin_authority()
    with pytest.raises(ValueError, match="plug-in"):
        ca.rotate_root()
