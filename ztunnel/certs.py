"""Workload certificates from the CA, on demand (Istio ztunnel's `SecretManager` with its CA client).

The ztunnel's own ServiceAccount token (istio-system/ztunnel) asks the control plane's secure port
for the identity of each workload on its node (`ImpersonatedIdentity`); the key is made here and
never leaves the node. A certificate is fetched the first time an identity is needed (and prefetched
for every local workload when the state changes); until it has arrived, that workload gets no
traffic at all. Renewal: a new key and certificate at half the lifetime; live connections keep the
old one, new handshakes use the new one.

Keys are written to a private directory (0700, files 0600) because `ssl.SSLContext` loads key
material only from files.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc

from xds.caclient import CaClient, WorkloadCertificate
from ztunnel.identity import Identity
from ztunnel.tls import WorkloadCert

log = logging.getLogger("ztunnel.ca")
RETRY_INITIAL = 0.5
RETRY_MAX = 30.0


class CaCertificates:
    def __init__(
        self,
        ca_address: str,
        root_pem: bytes,
        token: Callable[[], str],
        *,
        server_name: str | None = None,
        ttl_seconds: int = 86400,
        directory: Path | None = None,
    ) -> None:
        self.ca_address = ca_address
        self.root_pem = root_pem
        self.token = token
        self.server_name = server_name
        self.ttl_seconds = ttl_seconds
        self.directory = directory or Path(tempfile.mkdtemp(prefix="ztunnel-certs-"))
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root_path = self.directory / "root-cert.pem"
        self.root_path.write_bytes(root_pem)
        self.certs: dict[Identity, WorkloadCert] = {}
        self.issued: dict[Identity, WorkloadCertificate] = {}
        self.on_renewed: Callable[[Identity], None] = lambda _ident: None
        self._pending: dict[Identity, asyncio.Task[None]] = {}
        self._client: CaClient | None = None

    def get(self, ident: Identity) -> WorkloadCert | None:
        """The certificate of `ident` if it has one; otherwise None, and it is being fetched."""
        cert = self.certs.get(ident)
        if cert is None:
            self.want(ident)
        return cert

    def want(self, ident: Identity) -> None:
        if ident in self.certs or ident in self._pending:
            return
        self._pending[ident] = asyncio.get_running_loop().create_task(self._keep(ident))

    async def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        if self._client is not None:
            await self._client.close()

    async def _keep(self, ident: Identity) -> None:
        """Fetch the certificate of `ident`, then renew it at half life, forever."""
        if self._client is None:
            self._client = CaClient(self.ca_address, self.root_pem, self.token, server_name=self.server_name)
        while True:
            issued = await self._fetch(ident)
            self._install(ident, issued)
            wait = (issued.renew_at - datetime.datetime.now(datetime.UTC)).total_seconds()
            await asyncio.sleep(max(wait, 1.0))

    async def _fetch(self, ident: Identity) -> WorkloadCertificate:
        assert self._client is not None
        delay = RETRY_INITIAL
        while True:
            try:
                return await self._client.fetch(str(ident), self.ttl_seconds, impersonate=True)
            except (grpc.aio.AioRpcError, ValueError, OSError) as exc:
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                log.warning('certificate for %s failed error="%s"; retrying in %.1fs', ident, detail, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _install(self, ident: Identity, issued: WorkloadCertificate) -> None:
        stem = hashlib.sha256(f"{ident}{issued.not_after.isoformat()}".encode()).hexdigest()[:16]
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(issued.key_pem)
        cert_path.write_bytes(issued.cert_chain_pem)
        old = self.certs.get(ident)
        self.certs[ident] = WorkloadCert(ident, cert_path, key_path)
        self.issued[ident] = issued
        log.info("certificate for %s issued by the CA, valid until %s", ident, issued.not_after.isoformat())
        if old is not None:
            self.on_renewed(ident)
            for path in (old.cert, old.key):  # contexts already loaded them; live connections are unaffected
                path.unlink(missing_ok=True)
