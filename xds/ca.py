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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "cluster.local"


def spiffe_id(namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate and the chain it is served with (`cert_pem`, leaf first), its key, the root; all PEM."""

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


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# The parts of a signing CA, named as istiod names them (the keys of its `cacerts` and `istio-ca-secret`
# Secrets): the signing certificate and its key, the chain from it up to the root that workloads present
# after their own certificate, and the root(s) every workload trusts.
CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_CHAIN_FILE = "cert-chain.pem"
ROOT_CERT_FILE = "root-cert.pem"

# istiod's `CITADEL_SELF_SIGNED_CA_CERT_TTL` default: a self-signed root kept in a Secret lives ten years.
SELF_SIGNED_ROOT_TTL = datetime.timedelta(days=3650)
# Longest chain accepted from a plug-in CA (root → intermediates → signing certificate).
_MAX_CHAIN_DEPTH = 8

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CaBundleError(ValueError):
    """A CA certificate, key, chain or root that cannot be used; `part` names which (e.g. `ca-key.pem`)."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


def _self_signed_root(
    trust_domain: str, ttl: datetime.timedelta
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
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
        .not_valid_after(now + ttl)
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


def new_self_signed_root(
    trust_domain: str = DEFAULT_TRUST_DOMAIN, ttl: datetime.timedelta = SELF_SIGNED_ROOT_TTL
) -> tuple[bytes, bytes]:
    """A fresh self-signed root as PEM (certificate, key): what istiod writes to `istio-ca-secret`."""
    key, cert = _self_signed_root(trust_domain, ttl)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _certificates(pem: bytes, part: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CaBundleError(part, f"not PEM certificates ({exc})") from None


def _same_public_key(key: SigningKey, cert: x509.Certificate) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


def _check_valid_at(cert: x509.Certificate, part: str, now: datetime.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CaBundleError(
            part,
            f"certificate {cert.subject.rfc4514_string()!r} is not valid now (valid "
            f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})",
        )


def _can_sign_certificates(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True  # no KeyUsage: every usage is allowed


def _chains_to_a_root(
    cert: x509.Certificate, intermediates: list[x509.Certificate], roots: list[x509.Certificate],
    now: datetime.datetime,
) -> bool:
    """Whether `cert` is one of `roots` or is signed, through `intermediates`, by one of them.

    Written here because `cryptography.x509.verification` checks leaves against the Web PKI profile
    (a leaf must not be a CA), and what is checked here is a CA certificate, as istiod's
    `KeyCertBundle` verify does with Go's `x509.Verify`.
    """
    current, depth = cert, 0
    while depth <= _MAX_CHAIN_DEPTH:
        if any(current == root for root in roots):
            return True
        issuer = None
        for candidate in [*roots, *intermediates]:
            if candidate.subject != current.issuer or not _can_sign_certificates(candidate):
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = candidate
            break
        if issuer is None or not issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc:
            return False
        current, depth = issuer, depth + 1
    return False


def verify_signing_bundle(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    cert_chain_pem: bytes,
    root_cert_pem: bytes,
    *,
    now: datetime.datetime | None = None,
) -> tuple[SigningKey, x509.Certificate]:
    """The signing key and certificate of a CA bundle, after istiod's checks; else CaBundleError naming the part.

    As istiod's `NewVerifiedKeyCertBundleFromPem` + `NewPluggedCertIstioCAOptions`: the signing
    certificate verifies to a root of `root_cert_pem` through `cert_chain_pem`, the key is its key,
    and it may sign certificates.
    """
    now = now or _now()
    signing = _certificates(ca_cert_pem, CA_CERT_FILE)[0]
    try:
        key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CaBundleError(CA_KEY_FILE, f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, SigningKey):
        raise CaBundleError(CA_KEY_FILE, f"a {type(key).__name__}; only RSA and ECDSA CA keys are supported")
    if not _same_public_key(key, signing):
        raise CaBundleError(CA_KEY_FILE, f"does not match the certificate in {CA_CERT_FILE}")
    if not _can_sign_certificates(signing):
        raise CaBundleError(CA_CERT_FILE, "is not authorized to sign other certificates (not a CA)")
    _check_valid_at(signing, CA_CERT_FILE, now)
    chain = _certificates(cert_chain_pem, CERT_CHAIN_FILE) if cert_chain_pem.strip() else []
    roots = _certificates(root_cert_pem, ROOT_CERT_FILE)
    if not _chains_to_a_root(signing, chain, roots, now):
        raise CaBundleError(
            ROOT_CERT_FILE, f"the certificate in {CA_CERT_FILE} does not verify against it through {CERT_CHAIN_FILE}"
        )
    return key, signing


def _pem_with_newline(pem: bytes) -> bytes:
    return pem if not pem or pem.endswith(b"\n") else pem + b"\n"


class CertificateAuthority:
    """Issues SPIFFE leaves from a signing certificate: a self-signed root, or a plug-in CA's intermediate.

    `root_pem` is what workloads trust (published as `root-cert.pem`); `cert_chain_pem` is what they
    present after their own certificate (empty for a self-signed root, as in istiod).
    """

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
        key, cert = _self_signed_root(trust_domain, root_ttl)
        self._set(key, cert, b"", cert.public_bytes(serialization.Encoding.PEM))

    def _set(self, key: SigningKey, cert: x509.Certificate, chain_pem: bytes, root_pem: bytes) -> None:
        with self._lock:
            self._signing_key, self._signing_cert = key, cert
            self._chain_pem, self._root_pem = _pem_with_newline(chain_pem), _pem_with_newline(root_pem)

    @classmethod
    def from_pem(
        cls,
        ca_cert_pem: bytes,
        ca_key_pem: bytes,
        cert_chain_pem: bytes,
        root_cert_pem: bytes,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> CertificateAuthority:
        """A CA from istiod's four parts, verified (`verify_signing_bundle`; CaBundleError names the bad part)."""
        key, cert = verify_signing_bundle(ca_cert_pem, ca_key_pem, cert_chain_pem, root_cert_pem)
        ca = cls(trust_domain)
        ca._set(key, cert, cert_chain_pem, root_cert_pem)
        return ca

    @classmethod
    def load_or_create(cls, directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> CertificateAuthority:
        """A CA whose root survives restarts: `root.crt`/`root.key` in directory, created on first use.

        Without this every control-plane restart would mint a new root, and every identity issued
        before it would stop verifying.
        """
        ca = cls(trust_domain)
        cert_path, key_path = directory / "root.crt", directory / "root.key"
        if cert_path.exists() and key_path.exists():
            cert_pem = cert_path.read_bytes()
            try:
                return cls.from_pem(cert_pem, key_path.read_bytes(), b"", cert_pem, trust_domain)
            except CaBundleError as exc:
                raise ValueError(f"{directory}: {exc}") from None
        directory.mkdir(parents=True, exist_ok=True)
        key_path.touch(mode=0o600)
        key_path.write_bytes(_key_pem(ca._signing_key))
        cert_path.write_bytes(ca.root_pem)
        return ca

    @property
    def root_pem(self) -> bytes:
        with self._lock:
            return self._root_pem

    @property
    def cert_chain_pem(self) -> bytes:
        """What a leaf is served with after itself: `cert-chain.pem` of a plug-in CA, empty for a self-signed root."""
        with self._lock:
            return self._chain_pem

    def rotate_root(self) -> None:
        """Replace a self-signed root key and certificate; leaves issued before no longer verify against it."""
        with self._lock:
            if self._chain_pem:
                raise ValueError("a plug-in CA's root is not ours to rotate")
        key, cert = _self_signed_root(self.trust_domain, self.root_ttl)
        self._set(key, cert, b"", cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, identity: str, *, ttl: datetime.timedelta | None = None) -> IssuedCertificate:
        """Issue a leaf (and its key) whose only SAN is the URI `identity` (a `spiffe://` id of this trust domain).

        Only for in-process use (the demo's fixed ztunnel files, tests): keys that travel must be made
        where they are used and signed through `sign_csr`.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cert_pem, chain_pem, root_pem, not_before, not_after = self._sign(
            key.public_key(), [x509.UniformResourceIdentifier(self._check_identity(identity))], ttl
        )
        return IssuedCertificate(identity, cert_pem + chain_pem, _key_pem(key), root_pem, not_after, not_before)

    def sign_csr(self, csr: x509.CertificateSigningRequest, identity: str, ttl: datetime.timedelta) -> bytes:
        """A PEM leaf for the CSR's public key with the URI SAN `identity` (whatever else the CSR asked for)."""
        return self.sign_csr_with_chain(csr, identity, ttl)[0]

    def sign_csr_with_chain(
        self, csr: x509.CertificateSigningRequest, identity: str, ttl: datetime.timedelta
    ) -> list[bytes]:
        """istiod's CreateCertificate answer for the CSR: the leaf, `cert-chain.pem` when there is one, the root."""
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError("CSR key is neither EC nor RSA")
        leaf, chain, root, _, _ = self._sign(
            public_key, [x509.UniformResourceIdentifier(self._check_identity(identity))], ttl
        )
        return [leaf, chain, root] if chain else [leaf, root]

    def issue_server(
        self, dns_names: list[str], ips: list[str], *, ttl: datetime.timedelta | None = None
    ) -> IssuedCertificate:
        """The control plane's own serving certificate (istiod's: DNS names of its Services, its addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        cert_pem, chain_pem, root_pem, not_before, not_after = self._sign(key.public_key(), sans, ttl)
        return IssuedCertificate(
            dns_names[0] if dns_names else ips[0],
            cert_pem + chain_pem,
            _key_pem(key),
            root_pem,
            not_after,
            not_before,
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
    ) -> tuple[bytes, bytes, bytes, datetime.datetime, datetime.datetime]:
        """The leaf, the chain it is served with, the root (all PEM), not_before and not_after."""
        now = _now()
        not_after = now + (ttl or self.leaf_ttl)
        with self._lock:
            signing_key, signing_cert = self._signing_key, self._signing_cert
            chain_pem, root_pem = self._chain_pem, self._root_pem
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)]))
            .issuer_name(signing_cert.subject)
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
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False
            )
            .sign(signing_key, hashes.SHA256())
        )
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            chain_pem,
            root_pem,
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
