"""Istio's CA API on the secure port: `istio.v1.auth.IstioCertificateService/CreateCertificate`.

`create_certificate` is the sans-IO decision (caller + request + mesh in, chain or refusal out);
`certificate_handler` is the grpcio shell the secure server mounts.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable

import grpc
from cryptography import x509

from xds.authz import Granted, Refusal, certificate_decision, csr_identities
from xds.ca import CertificateAuthority
from xds.caapi import (
    SERVICE,
    IstioCertificateRequest,
    IstioCertificateResponse,
    impersonated_identity,
)
from xds.mesh.model import Mesh
from xds.tokens import Caller

log = logging.getLogger("pyambient.ca")

# istiod's defaults: `DEFAULT_WORKLOAD_CERT_TTL` 24 h, `MAX_WORKLOAD_CERT_TTL` 90 days; a request above
# the maximum is refused (istiod's TTL error), not silently shortened.
DEFAULT_TTL = datetime.timedelta(hours=24)
MAX_TTL = datetime.timedelta(days=90)


def create_certificate(
    ca: CertificateAuthority,
    mesh: Mesh,
    caller: Caller,
    request: IstioCertificateRequest,
    *,
    max_ttl: datetime.timedelta = MAX_TTL,
    default_ttl: datetime.timedelta = DEFAULT_TTL,
) -> IstioCertificateResponse | Refusal:
    try:
        requested = csr_identities(request.csr)
        csr = x509.load_pem_x509_csr(request.csr.encode())
    except ValueError as exc:
        return Refusal("INVALID_ARGUMENT", f"CSR from {caller} is not a valid PEM certificate request: {exc}")
    if request.validity_duration < 0:
        return Refusal("INVALID_ARGUMENT", f"validity_duration {request.validity_duration} is negative")
    ttl = datetime.timedelta(seconds=request.validity_duration) if request.validity_duration else default_ttl
    if ttl > max_ttl:
        return Refusal("INVALID_ARGUMENT", f"requested TTL {ttl} is greater than the max allowed TTL {max_ttl}")
    node = caller.node or _node_of_pod(mesh, caller)
    decision = certificate_decision(
        caller, requested, impersonated_identity(request), node, mesh.workloads, trust_domain=ca.trust_domain
    )
    if isinstance(decision, Refusal):
        return decision
    assert isinstance(decision, Granted)
    try:
        chain = ca.sign_csr_with_chain(csr, decision.identity, ttl)
    except ValueError as exc:
        return Refusal("INVALID_ARGUMENT", f"cannot sign CSR from {caller}: {exc}")
    # istiod's order: the leaf, then its CA's cert-chain.pem (a plug-in CA's intermediates), then the root.
    return IstioCertificateResponse(cert_chain=[pem.decode() for pem in chain])


def _node_of_pod(mesh: Mesh, caller: Caller) -> str:
    """The node of the pod a token is bound to (istiod looks the pod up the same way)."""
    for w in mesh.workloads:
        if w.namespace == caller.namespace and w.name == caller.pod:
            return w.node
    return ""


Authenticate = Callable[[grpc.aio.ServicerContext, str], Awaitable[Caller]]


def certificate_handler(
    ca: CertificateAuthority, mesh: Callable[[], Mesh], authenticate: Authenticate
) -> grpc.GenericRpcHandler:
    """The grpcio handler for IstioCertificateService; `authenticate` aborts the call when it cannot."""

    async def create(request: IstioCertificateRequest, context: grpc.aio.ServicerContext) -> IstioCertificateResponse:
        caller = await authenticate(context, "CreateCertificate")
        result = create_certificate(ca, mesh(), caller, request)
        if isinstance(result, Refusal):
            log.warning("CreateCertificate refused (%s): %s", result.code, result.message)
            await context.abort(getattr(grpc.StatusCode, result.code), result.message)
        assert isinstance(result, IstioCertificateResponse)
        log.info("CreateCertificate: signed for %s (asked by %s)", _leaf_identity(result), caller)
        return result

    handlers = {
        "CreateCertificate": grpc.unary_unary_rpc_method_handler(
            create,
            request_deserializer=IstioCertificateRequest.FromString,
            response_serializer=IstioCertificateResponse.SerializeToString,
        )
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _leaf_identity(response: IstioCertificateResponse) -> str:
    cert = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ",".join(sans.get_values_for_type(x509.UniformResourceIdentifier))
