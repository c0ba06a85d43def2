"""Who may have what: pure decisions for the secure port (certificates and xDS node ids).

Istio's rules, as istiod applies them:
- a caller gets a certificate for its own identity only (`spiffe://<td>/ns/<ns>/sa/<sa>` of its token);
- a node proxy account (Istio's `CA_TRUSTED_NODE_ACCOUNTS`, by default `istio-system/ztunnel`) may ask
  for another identity through the request metadata `ImpersonatedIdentity`, and gets it only when a pod
  running as that identity is scheduled on the caller's own node (istiod's NodeAuthorizer);
- an xDS node id must belong to its token: a waypoint node names a waypoint whose service account the
  token is, a ztunnel node is a node proxy account, any other node is in the token's namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from xds.ca import DEFAULT_TRUST_DOMAIN
from xds.mesh.model import Mesh, Workload
from xds.tokens import Caller

TRUSTED_NODE_ACCOUNTS: frozenset[tuple[str, str]] = frozenset({("istio-system", "ztunnel")})


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: a gRPC status code name and a message naming what was wrong."""

    code: str  # "PERMISSION_DENIED" | "INVALID_ARGUMENT" | "UNAUTHENTICATED"
    message: str


@dataclass(frozen=True)
class Granted:
    identity: str


def csr_identities(csr_pem: str) -> list[str]:
    """The URI SANs a PEM CSR asks for; ValueError when it is not a well-signed CSR."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    if not csr.is_signature_valid:
        raise ValueError("CSR signature does not verify")
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def certificate_decision(
    caller: Caller,
    requested: list[str],
    impersonated: str | None,
    caller_node: str,
    workloads: Iterable[Workload],
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    node_accounts: frozenset[tuple[str, str]] = TRUSTED_NODE_ACCOUNTS,
) -> Granted | Refusal:
    """Which identity to sign for `caller`, whose CSR asks for `requested` URI SANs."""
    own = caller.identity(trust_domain)
    identity = own
    if impersonated and impersonated != own:
        if (caller.namespace, caller.service_account) not in node_accounts:
            return Refusal("PERMISSION_DENIED", f"{caller} may not impersonate {impersonated} (not a node proxy)")
        if not caller_node:
            return Refusal("PERMISSION_DENIED", f"{caller} impersonating {impersonated}: its node is unknown")
        on_node = {w.identity for w in workloads if w.node == caller_node}
        if impersonated not in on_node:
            return Refusal(
                "PERMISSION_DENIED",
                f"{caller} on node {caller_node!r} may not impersonate {impersonated}: no such pod on its node",
            )
        identity = impersonated
    if requested != [identity]:
        return Refusal(
            "PERMISSION_DENIED", f"CSR asks for {requested or 'no URI SAN'}; {caller} may get only {identity}"
        )
    return Granted(identity)


def node_decision(caller: Caller, node_id: str, mesh: Mesh, waypoint: tuple[str, str] | None) -> Refusal | None:
    """None when `caller` may receive the config of xDS node `node_id`; `waypoint` = its (namespace, name)."""
    if waypoint is not None:
        namespace, name = waypoint
        known = mesh.waypoint(namespace, name)
        account = (known.service_account or known.name) if known is not None else name
        if (caller.namespace, caller.service_account) != (namespace, account):
            return Refusal(
                "PERMISSION_DENIED",
                f"{caller} may not receive the config of waypoint {namespace}/{name} (its account is {account})",
            )
        return None
    if node_id.startswith("ztunnel~"):
        if (caller.namespace, caller.service_account) not in TRUSTED_NODE_ACCOUNTS:
            return Refusal("PERMISSION_DENIED", f"{caller} may not receive ztunnel config (not a node proxy)")
        return None
    # <type>~<ip>~<pod>.<ns>~<ns>.svc.<domain>
    parts = node_id.split("~")
    namespace = parts[3].split(".")[0] if len(parts) == 4 else ""
    if namespace != caller.namespace:
        return Refusal("PERMISSION_DENIED", f"{caller} may not receive the config of node {node_id!r}")
    return None
