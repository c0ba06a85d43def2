"""Operator-made CA certificates for tests of the plug-in CA (`cacerts`): a root and an intermediate, as
Istio's `tools/certs` Makefile makes them for `cacerts`, plus the broken variants the checks must refuse."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class TestCa:
    """One CA certificate and its key, PEM."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate
    key: Key


def _pem_key(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(
    name: str,
    issuer: TestCa | None = None,
    *,
    is_ca: bool = True,
    key: Key | None = None,
    valid_from: datetime.timedelta = datetime.timedelta(days=-1),
    valid_for: datetime.timedelta = datetime.timedelta(days=365),
) -> TestCa:
    """A CA certificate `name`, self-signed or signed by `issuer`; `is_ca=False` makes an end-entity one."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid_from)
        .not_valid_after(now + valid_from + valid_for)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=is_ca, crl_sign=is_ca,
                                     content_commitment=False, key_encipherment=not is_ca, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    )
    signer = issuer.key if issuer else key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(signer, algorithm)
    return TestCa(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), cert, key)


def plugin_ca(name: str = "intermediate") -> tuple[TestCa, TestCa]:
    """(root, intermediate signed by it): what an operator puts in `cacerts`."""
    root = make_ca("Root CA")
    return root, make_ca(name, root)
