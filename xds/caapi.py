"""Istio's certificate API (`istio.v1.auth`, Istio's `security/v1alpha1/ca.proto`) as betterproto2 messages.

Hand-declared like `xds.workloadapi` (same package, message names and field numbers, so the bytes
are what istiod and Istio's ztunnel/pilot-agent send): protoc-generated Python for these protos is
not packaged on PyPI for betterproto2, and two messages do not justify a protoc build step.

    service IstioCertificateService {
      rpc CreateCertificate(IstioCertificateRequest) returns (IstioCertificateResponse);
    }
"""

from __future__ import annotations

from typing import Any

import betterproto2
from envoy_data_plane.google import protobuf as pb
from envoy_data_plane.message_pool import default_message_pool
from pydantic.dataclasses import dataclass

SERVICE = "istio.v1.auth.IstioCertificateService"
CREATE_CERTIFICATE_METHOD = f"/{SERVICE}/CreateCertificate"
# Request metadata key (in IstioCertificateRequest.metadata) a node proxy sets to ask for another
# identity; Istio's `security.ImpersonatedIdentity`.
IMPERSONATED_IDENTITY = "ImpersonatedIdentity"

_CFG: Any = {"extra": "forbid"}


@dataclass(eq=False, repr=False, config=_CFG)
class IstioCertificateRequest(betterproto2.Message):
    csr: str = betterproto2.field(1, betterproto2.TYPE_STRING)  # PEM PKCS#10
    validity_duration: int = betterproto2.field(3, betterproto2.TYPE_INT64)  # seconds; 0 = the CA's default
    metadata: pb.Struct | None = betterproto2.field(4, betterproto2.TYPE_MESSAGE, optional=True)


@dataclass(eq=False, repr=False, config=_CFG)
class IstioCertificateResponse(betterproto2.Message):
    cert_chain: list[str] = betterproto2.field(1, betterproto2.TYPE_STRING, repeated=True)  # leaf first, root last


for _name, _cls in (
    ("IstioCertificateRequest", IstioCertificateRequest),
    ("IstioCertificateResponse", IstioCertificateResponse),
):
    if _cls not in default_message_pool.type_to_url:  # idempotent under importlib.reload
        default_message_pool.register_message("istio.v1.auth", _name, _cls)


def impersonated_identity(request: IstioCertificateRequest) -> str | None:
    """The identity a node proxy asks for on behalf of a workload, if any."""
    if request.metadata is None:
        return None
    value = request.metadata.fields.get(IMPERSONATED_IDENTITY)
    return value.string_value if value is not None and value.string_value else None
