"""The mesh certificate authority: a root CA and short-lived SPIFFE leaf certificates.

Leaves carry one URI SAN (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`) and are usable for both TLS
client and server auth, as Istio's workload certificates are. Keys are ECDSA P-256, like istiod's.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "cluster.local"


def spiffe_id(namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate with its key and the chain up to (excluding) the root, all PEM."""

    identity: str
    cert_pem: bytes
    key_pem: bytes
    root_pem: bytes
    not_after: datetime.datetime
    not_before: datetime.datetime

    def write(self, directory: Path, stem: str = "workload") -> tuple[Path, Path, Path]:
        """Write `<stem>.crt`, `<stem>.key` and `root.crt` into directory; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key, root = directory / f"{stem}.crt", directory / f"{stem}.key", directory / "root.crt"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)
        root.write_bytes(self.root_pem)
        return cert, key, root


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    """A self-signed root that issues SPIFFE leaves; `rotate_root()` replaces the root in place."""

    def __init__(
        self,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        *,
        leaf_ttl: datetime.timedelta = datetime.timedelta(hours=24),
        root_ttl: datetime.timedelta = datetime.timedelta(days=365),
    ) -> None:
        self.trust_domain = trust_domain
        self.leaf_ttl = leaf_ttl
        self.root_ttl = root_ttl
        self._lock = threading.Lock()
        self._root_key, self._root_cert = self._new_root()
        self._serial = 1

    def _new_root(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, f"pyambient root CA {_now().isoformat()}"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + self.root_ttl)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    @classmethod
    def load_or_create(cls, directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> CertificateAuthority:
        """A CA whose root survives restarts: `root.crt`/`root.key` in directory, created on first use.

        Without this every control-plane restart would mint a new root, and every identity issued
        before it would stop verifying.
        """
        ca = cls(trust_domain)
        cert_path, key_path = directory / "root.crt", directory / "root.key"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC private key")
            ca._root_key, ca._root_cert = key, x509.load_pem_x509_certificate(cert_path.read_bytes())
        else:
            directory.mkdir(parents=True, exist_ok=True)
            key_path.touch(mode=0o600)
            key_path.write_bytes(_key_pem(ca._root_key))
            cert_path.write_bytes(ca.root_pem)
        return ca

    @property
    def root_pem(self) -> bytes:
        with self._lock:
            return self._root_cert.public_bytes(serialization.Encoding.PEM)

    def rotate_root(self) -> None:
        """Replace the root key and certificate; leaves issued before no longer verify against it."""
        with self._lock:
            self._root_key, self._root_cert = self._new_root()

    def issue(self, identity: str, *, ttl: datetime.timedelta | None = None) -> IssuedCertificate:
        """Issue a leaf (and its key) whose only SAN is the URI `identity` (a `spiffe://` id of this trust domain).

        Only for in-process use (the demo's fixed ztunnel files, tests): keys that travel must be made
        where they are used and signed through `sign_csr`.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cert_pem, root_pem, not_before, not_after = self._sign(
            key.public_key(), [x509.UniformResourceIdentifier(self._check_identity(identity))], ttl
        )
        return IssuedCertificate(identity, cert_pem, _key_pem(key), root_pem, not_after, not_before)

    def sign_csr(self, csr: x509.CertificateSigningRequest, identity: str, ttl: datetime.timedelta) -> bytes:
        """A PEM leaf for the CSR's public key with the URI SAN `identity` (whatever else the CSR asked for)."""
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError("CSR key is neither EC nor RSA")
        cert_pem, _, _, _ = self._sign(
            public_key, [x509.UniformResourceIdentifier(self._check_identity(identity))], ttl
        )
        return cert_pem

    def issue_server(
        self, dns_names: list[str], ips: list[str], *, ttl: datetime.timedelta | None = None
    ) -> IssuedCertificate:
        """The control plane's own serving certificate (istiod's: DNS names of its Services, its addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        cert_pem, root_pem, not_before, not_after = self._sign(key.public_key(), sans, ttl)
        return IssuedCertificate(
            dns_names[0] if dns_names else ips[0], cert_pem, _key_pem(key), root_pem, not_after, not_before
        )

    def _check_identity(self, identity: str) -> str:
        if not identity.startswith(f"spiffe://{self.trust_domain}/"):
            raise ValueError(f"identity {identity!r} is not in trust domain {self.trust_domain!r}")
        return identity

    def _sign(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        sans: list[x509.GeneralName],
        ttl: datetime.timedelta | None,
    ) -> tuple[bytes, bytes, datetime.datetime, datetime.datetime]:
        now = _now()
        not_after = now + (ttl or self.leaf_ttl)
        with self._lock:
            root_key, root_cert = self._root_key, self._root_cert
            self._serial += 1
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)]))
            .issuer_name(root_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            root_cert.public_bytes(serialization.Encoding.PEM),
            now,
            not_after,
        )


def uri_sans(cert_pem: bytes) -> list[str]:
    """The URI SANs of a PEM certificate (the SPIFFE identities it asserts)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))
