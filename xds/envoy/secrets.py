"""SDS secrets for an Envoy: its workload certificate (`default`) and the trust bundle (`ROOTCA`).

Served by the waypoint agent on its Unix socket (the key never leaves the pod), as pilot-agent does.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import DataSource
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    Secret,
    TlsCertificate,
)

from xds.envoy.common import SECRET_DEFAULT, SECRET_ROOTCA


def secrets_from_pem(cert_chain_pem: bytes, key_pem: bytes, root_pem: bytes) -> tuple[Secret, Secret]:
    return (
        Secret(
            name=SECRET_DEFAULT,
            tls_certificate=TlsCertificate(
                certificate_chain=DataSource(inline_bytes=cert_chain_pem),
                private_key=DataSource(inline_bytes=key_pem),
            ),
        ),
        Secret(
            name=SECRET_ROOTCA,
            validation_context=CertificateValidationContext(trusted_ca=DataSource(inline_bytes=root_pem)),
        ),
    )
