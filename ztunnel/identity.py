"""SPIFFE identities: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """The identity as RBAC principals see it: without the `spiffe://` scheme."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @classmethod
    def parse(cls, uri: str) -> Identity | None:
        """Parse `spiffe://TD/ns/NS/sa/SA` (exactly these five segments); None when it is not one."""
        if not uri.startswith("spiffe://"):
            return None
        parts = uri[len("spiffe://") :].split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not all(parts):
            return None
        return cls(parts[0], parts[2], parts[4])


def first_spiffe_identity(uri_sans: list[str]) -> Identity | None:
    """ztunnel's `tls::identity()`: the first URI SAN that parses as a SPIFFE id."""
    for uri in uri_sans:
        ident = Identity.parse(uri)
        if ident is not None:
            return ident
    return None
