"""mTLS for HBONE: `ssl.SSLContext` builders and SPIFFE peer checks (ztunnel `src/tls/`).

TLS 1.3 only, ALPN `h2`, client certificate required, no hostname check and no SNI (the client wraps with
`server_hostname=None`), no session resumption (no session is ever passed back in). Identity = the first
SPIFFE URI SAN. The client accepts a server only if one of its SPIFFE SANs is in the expected set; the server
accepts any client chaining to the root whose trust domain equals its own (RBAC decides the rest).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ztunnel.errors import ConfigError
from ztunnel.identity import Identity, first_spiffe_identity


@dataclass(frozen=True)
class WorkloadCert:
    identity: Identity
    cert: Path
    key: Path


def cert_identity(cert_path: Path) -> Identity:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(str(cert_path), "cert", f"cannot read certificate: {e}") from None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = list(sans.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = []
    ident = first_spiffe_identity(uris)
    if ident is None:
        raise ConfigError(str(cert_path), "subjectAltName", "no spiffe:// URI SAN")
    return ident


def _base(purpose: ssl.Purpose, root: Path, wc: WorkloadCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(root))
    ctx.load_cert_chain(str(wc.cert), str(wc.key))
    ctx.set_alpn_protocols(["h2"])
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def client_context(root: Path, wc: WorkloadCert) -> ssl.SSLContext:
    return _base(ssl.Purpose.SERVER_AUTH, root, wc)


def server_context(root: Path, wc: WorkloadCert) -> ssl.SSLContext:
    return _base(ssl.Purpose.CLIENT_AUTH, root, wc)


def peer_uri_sans(sslobj: ssl.SSLObject) -> list[str]:
    cert = sslobj.getpeercert()
    if not cert:
        return []
    out: list[str] = []
    for entry in cert.get("subjectAltName", ()):
        if entry[0] == "URI":
            out.append(str(entry[1]))
    return out


def peer_identity(sslobj: ssl.SSLObject) -> Identity | None:
    return first_spiffe_identity(peer_uri_sans(sslobj))


def check_server(sslobj: ssl.SSLObject, expected: tuple[str, ...]) -> Identity:
    """Client side: some SPIFFE SAN of the server must be expected; ALPN must be h2."""
    if sslobj.selected_alpn_protocol() != "h2":
        raise ssl.SSLError(f"peer did not negotiate ALPN h2 (got {sslobj.selected_alpn_protocol()!r})")
    sans = [s for s in peer_uri_sans(sslobj) if s.startswith("spiffe://")]
    if expected and not any(s in expected for s in sans):
        raise ssl.SSLError(f"server identity {sans} is not one of {list(expected)}")
    ident = first_spiffe_identity(sans)
    if ident is None:
        raise ssl.SSLError("server certificate has no SPIFFE identity")
    return ident


def check_client(sslobj: ssl.SSLObject, trust_domain: str) -> Identity:
    """Server side: the client's SPIFFE identity must be in our trust domain."""
    ident = peer_identity(sslobj)
    if ident is None:
        raise ssl.SSLError("client certificate has no SPIFFE identity")
    if ident.trust_domain != trust_domain:
        raise ssl.SSLError(f"client trust domain {ident.trust_domain!r} is not {trust_domain!r}")
    return ident
