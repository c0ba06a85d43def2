"""Our CA: SPIFFE leaves, trust-domain checks, and a root that survives restarts when persisted."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from xds.ca import CertificateAuthority, spiffe_id, uri_sans


def test_leaf_carries_exactly_its_spiffe_identity() -> None:
    leaf = CertificateAuthority().issue(spiffe_id("shop", "sleep"))
    assert uri_sans(leaf.cert_pem) == ["spiffe://cluster.local/ns/shop/sa/sleep"]
    assert not x509.load_pem_x509_certificate(leaf.cert_pem).extensions.get_extension_for_class(
        x509.BasicConstraints
    ).value.ca


def test_identity_of_another_trust_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="trust domain"):
        CertificateAuthority().issue("spiffe://evil.example/ns/a/sa/b")


def test_leaf_verifies_against_the_root_with_tls(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    crt, key, root = ca.issue(spiffe_id("a", "b")).write(tmp_path)
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.load_cert_chain(crt, key)  # the key matches the certificate
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_persisted_root_is_reloaded_unchanged(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "ca")
    second = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert first.root_pem == second.root_pem
    assert stat.S_IMODE((tmp_path / "ca" / "root.key").stat().st_mode) == 0o600
    leaf = second.issue(spiffe_id("a", "b"))
    issuer = x509.load_pem_x509_certificate(first.root_pem)
    x509.load_pem_x509_certificate(leaf.cert_pem).verify_directly_issued_by(issuer)
