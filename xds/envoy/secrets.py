"""SDS secrets for an Envoy: its workload certificate (`default`) and the trust bundle (`ROOTCA`)."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import DataSource
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    Secret,
    TlsCertificate,
)

from xds.ca import IssuedCertificate
from xds.envoy.common import SECRET_DEFAULT, SECRET_ROOTCA


def workload_secrets(cert: IssuedCertificate) -> tuple[Secret, Secret]:
    return (
        Secret(
            name=SECRET_DEFAULT,
            tls_certificate=TlsCertificate(
                certificate_chain=DataSource(inline_bytes=cert.cert_pem),
                private_key=DataSource(inline_bytes=cert.key_pem),
            ),
        ),
        Secret(
            name=SECRET_ROOTCA,
            validation_context=CertificateValidationContext(trusted_ca=DataSource(inline_bytes=cert.root_pem)),
        ),
    )
