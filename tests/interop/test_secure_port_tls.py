"""The secure port's TLS: 1.3 only (a 1.2 client is refused at the handshake), and its own certificate
renewed at half life while a client that connected before keeps working."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import wait_until
from tests.harness.meshes import shop_mesh
from xds import tls13
from xds.ca import spiffe_id
from xds.caapi import CREATE_CERTIFICATE_METHOD, IstioCertificateRequest, IstioCertificateResponse
from xds.caclient import certificate_request, new_key_and_csr
from xds.serving import renewal_due

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SERVING_TTL = datetime.timedelta(seconds=20)  # renewed after 10 s: a rotation within the test


@pytest.fixture(scope="module")
def control() -> Iterator[ControlPlaneThread]:
    control = ControlPlaneThread(shop_mesh()).start(None, serving_ttl=SERVING_TTL)
    try:
        yield control
    finally:
        control.stop()


def handshake(control: ControlPlaneThread, maximum: ssl.TLSVersion) -> ssl.SSLSocket:
    """A plain Python TLS client (not grpc's) capped at `maximum`, trusting our root."""
    context = ssl.create_default_context(cadata=control.control_plane.ca.root_pem.decode())
    context.maximum_version = maximum
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", control.secure_port), timeout=30)
    try:
        return context.wrap_socket(raw, server_hostname="istiod.istio-system.svc")
    except BaseException:
        raw.close()
        raise


def served_certificate(control: ControlPlaneThread) -> x509.Certificate:
    with handshake(control, ssl.TLSVersion.TLSv1_3) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_tls12_only_client_is_refused_at_the_handshake(control: ControlPlaneThread) -> None:
    assert tls13.enforced()
    with pytest.raises(ssl.SSLError):
        handshake(control, ssl.TLSVersion.TLSv1_2).close()


def test_tls13_client_is_served(control: ControlPlaneThread) -> None:
    with handshake(control, ssl.TLSVersion.TLSv1_3) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.selected_alpn_protocol() == "h2"


@pytest.mark.parametrize(
    ("scenario", "first_line", "preset", "reason"),
    [
        ("grpc imported before xds", "import grpc", None, "grpc was imported before xds.tls13"),
        (
            "TLS 1.2 ciphers preset in the environment",
            "",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "GRPC_SSL_CIPHER_SUITES was preset to 'ECDHE-ECDSA-AES128-GCM-SHA256'",
        ),
    ],
)
def test_secure_port_refuses_to_start_when_tls12_cannot_be_turned_off(
    scenario: str, first_line: str, preset: str | None, reason: str
) -> None:
    """Fail closed: no secure port accepting TLS 1.2, and an error saying why."""
    program = (
        f"{first_line}\n"
        "import asyncio\n"
        "from xds.controlplane import ControlPlane\n"
        "from xds.tokens import LocalTokenIssuer\n"
        "asyncio.run(ControlPlane().start(None, secure_address='127.0.0.1:0', authenticator=LocalTokenIssuer()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != tls13.CIPHER_SUITES_VARIABLE}
    if preset is not None:
        env[tls13.CIPHER_SUITES_VARIABLE] = preset
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0, scenario
    assert f"cannot be restricted to TLS 1.3: {reason}" in result.stderr, scenario


@pytest.mark.parametrize(
    ("scenario", "age", "due"),
    [
        ("fresh certificate", datetime.timedelta(0), False),
        ("just before half life", datetime.timedelta(days=44, hours=23), False),
        ("at half life", datetime.timedelta(days=45), True),
        ("expired", datetime.timedelta(days=91), True),
    ],
)
def test_renewal_due_at_half_life(scenario: str, age: datetime.timedelta, due: bool) -> None:
    issued = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert renewal_due(issued, issued + datetime.timedelta(days=90), issued + age) is due, scenario


def test_serving_certificate_rotates_at_half_life_while_a_client_keeps_working(control: ControlPlaneThread) -> None:
    root = control.control_plane.ca.root_pem
    first = served_certificate(control)
    token = control.tokens.issue("shop", "web")
    identity = spiffe_id("shop", "web")
    # One channel, connected before the rotation and used across it.
    with grpc.secure_channel(
        f"127.0.0.1:{control.secure_port}",
        grpc.ssl_channel_credentials(root),
        options=[("grpc.ssl_target_name_override", "istiod.istio-system.svc")],
    ) as channel:
        call = channel.unary_unary(
            CREATE_CERTIFICATE_METHOD,
            request_serializer=IstioCertificateRequest.SerializeToString,
            response_deserializer=IstioCertificateResponse.FromString,
        )

        def sign() -> IstioCertificateResponse:
            _, csr = new_key_and_csr(identity)
            response: IstioCertificateResponse = call(
                certificate_request(csr, 3600), metadata=(("authorization", f"Bearer {token}"),), timeout=30
            )
            return response

        assert len(sign().cert_chain) >= 2
        renewed = wait_until(
            lambda: (cert := served_certificate(control)) != first and cert,
            timeout=120,
            interval=1.0,
            what="the secure port renewed its serving certificate at half life",
        )
        assert len(sign().cert_chain) >= 2  # the client from before the rotation still works
    renewed.verify_directly_issued_by(x509.load_pem_x509_certificate(root))
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert renewed.public_key() != first.public_key()  # a new key, not only a new certificate
    serving = control.control_plane.serving
    assert serving is not None and serving.renewals >= 1
