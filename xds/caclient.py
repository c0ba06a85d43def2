"""A client of Istio's CA API, as pilot-agent and ztunnel are: the key is made here and never sent.

Sans-IO part: `new_key_and_csr` (ECDSA P-256 key + CSR with the SPIFFE URI SAN), `certificate_request`
(with `ImpersonatedIdentity` when a node proxy asks for a workload) and `certificate_from_response`
(checks the returned leaf is for our key and identity). `CaClient` is the grpc.aio shell: TLS to the
secure port trusting our root, `authorization: Bearer <token>` on every call (the token is re-read
each time: kubelet rotates projected tokens).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy_data_plane.google.protobuf import Struct, Value

from xds.caapi import (
    CREATE_CERTIFICATE_METHOD,
    IMPERSONATED_IDENTITY,
    IstioCertificateRequest,
    IstioCertificateResponse,
)


@dataclass(frozen=True)
class WorkloadCertificate:
    """A key made locally and the chain our CA signed for it (all PEM)."""

    identity: str
    key_pem: bytes
    cert_chain_pem: bytes  # leaf first (then any intermediates)
    root_pem: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime
    received_at: datetime.datetime

    @property
    def renew_at(self) -> datetime.datetime:
        """Half way through the lifetime it was received with, when Istio's agents renew.

        Counted from receipt, not `not_before`: the CA backdates `not_before` for clock skew, which
        would make short-lived certificates look half expired on arrival.
        """
        return self.received_at + (self.not_after - self.received_at) / 2


def new_key_and_csr(identity: str) -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def certificate_request(csr_pem: str, ttl_seconds: int, impersonate: str | None = None) -> IstioCertificateRequest:
    metadata = Struct(fields={IMPERSONATED_IDENTITY: Value(string_value=impersonate)}) if impersonate else None
    return IstioCertificateRequest(csr=csr_pem, validity_duration=ttl_seconds, metadata=metadata)


def certificate_from_response(identity: str, key_pem: bytes, response: IstioCertificateResponse) -> WorkloadCertificate:
    """Check the CA's answer (leaf for our key and identity, a root at the end) and keep it."""
    if len(response.cert_chain) < 2:
        raise ValueError(f"CA returned {len(response.cert_chain)} certificates; expected leaf ... root")
    leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    key = serialization.load_pem_private_key(key_pem, password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, public) != key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise ValueError("CA returned a certificate for another key")
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [identity]:
        raise ValueError(f"CA returned a certificate for {uris}, asked for {identity}")
    return WorkloadCertificate(
        identity=identity,
        key_pem=key_pem,
        cert_chain_pem="".join(_pem_line(c) for c in response.cert_chain[:-1]).encode(),
        root_pem=_pem_line(response.cert_chain[-1]).encode(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        received_at=datetime.datetime.now(datetime.UTC),
    )


def _pem_line(pem: str) -> str:
    return pem if pem.endswith("\n") else pem + "\n"


class CaClient:
    """CreateCertificate over TLS with a bearer token; `server_name` overrides the name checked (ALT_CA_HOSTNAME)."""

    def __init__(
        self, address: str, root_pem: bytes, token: Callable[[], str], *, server_name: str | None = None
    ) -> None:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        self.channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_pem), options=options)
        self.token = token
        self._call = self.channel.unary_unary(
            CREATE_CERTIFICATE_METHOD,
            request_serializer=IstioCertificateRequest.SerializeToString,
            response_deserializer=IstioCertificateResponse.FromString,
        )

    async def fetch(
        self, identity: str, ttl_seconds: int = 86400, *, impersonate: bool = False, timeout: float = 30.0
    ) -> WorkloadCertificate:
        key_pem, csr = new_key_and_csr(identity)
        request = certificate_request(csr, ttl_seconds, identity if impersonate else None)
        metadata = (("authorization", f"Bearer {self.token()}"),)
        response = await self._call(request, metadata=metadata, timeout=timeout)
        return certificate_from_response(identity, key_pem, response)

    async def close(self) -> None:
        await self.channel.close()
