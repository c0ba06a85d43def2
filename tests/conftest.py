"""Shared fixtures."""

from __future__ import annotations

import pytest

from xds.ca import CertificateAuthority


@pytest.fixture(scope="session")
def mesh_ca() -> CertificateAuthority:
    return CertificateAuthority()
