"""The waypoint pod's agent (Istio's pilot-agent, identity part): a key that never leaves the pod.

It makes the waypoint's private key itself, gets a CSR for the pod's own identity signed over the
control plane's secure port (`CreateCertificate` with the pod's projected ServiceAccount token), and
serves `default` (chain + key) and `ROOTCA` to Envoy over SDS on a Unix socket (Envoy's bootstrap
cluster `sds-grpc` is a pipe to it). Renewal: a new key and certificate at half the lifetime, pushed
to Envoy over the open SDS stream (Envoy keeps its connections; new handshakes use the new one).

With `xds_socket` it also proxies Envoy's ADS to the control plane's secure port with the same token
(`waypoint.xdsproxy`), so Envoy never dials the plaintext port and the control plane can check that
the pod owns the node it asks config for.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Callable
from pathlib import Path

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node

from waypoint.xdsproxy import XdsProxy
from xds import resources
from xds.caclient import CaClient, WorkloadCertificate
from xds.envoy.secrets import secrets_from_pem
from xds.server import SDS_SERVICE, AdsServer
from xds.snapshot import Snapshot
from xds.stream import Event

log = logging.getLogger("pyambient.agent")

# pilot-agent's defaults inside a pod.
DEFAULT_SDS_SOCKET = Path("/var/run/secrets/workload-spiffe-uds/socket")
DEFAULT_TOKEN_PATH = Path("/var/run/secrets/tokens/istio-token")
DEFAULT_ROOT_CERT = Path("/var/run/secrets/istio/root-cert.pem")
RETRY_INITIAL = 0.5
RETRY_MAX = 30.0


def token_from_file(path: Path) -> Callable[[], str]:
    """Re-read on every call: the kubelet rotates projected tokens in place."""
    return lambda: path.read_text().strip()


class WaypointAgent:
    """Certificate lifecycle of one identity plus the SDS server Envoy reads it from."""

    def __init__(
        self,
        identity: str,
        ca_address: str,
        root_pem: bytes,
        token: Callable[[], str],
        sds_socket: Path,
        *,
        ttl_seconds: int = 86400,
        ca_server_name: str | None = None,
        xds_socket: Path | None = None,
        xds_address: str | None = None,
    ) -> None:
        self.identity = identity
        self.ca_address = ca_address
        self.root_pem = root_pem
        self.token = token
        self.sds_socket = sds_socket
        self.ttl_seconds = ttl_seconds
        self.ca_server_name = ca_server_name
        self.xds_socket = xds_socket
        self.xds_address = xds_address or ca_address  # pilot-agent: discovery and CA on istiod's 15012
        self.xds_proxy: XdsProxy | None = None
        self.current: WorkloadCertificate | None = None
        self._snapshot = Snapshot()
        self._wakers: set[Callable[[], None]] = set()
        self._server: AdsServer | None = None
        self._client: CaClient | None = None
        self._renewal: asyncio.Task[None] | None = None
        self.renewals = 0

    # --- SnapshotSource for the SDS server -------------------------------------------------------
    def snapshot_for(self, node: Node) -> Snapshot:
        return self._snapshot

    def on_event(self, node: Node | None, event: Event) -> None:
        pass

    def register(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._wakers.add(wake)
        return lambda: self._wakers.discard(wake)

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Get the first certificate (retrying until the CA answers), then serve SDS and renew."""
        self._client = CaClient(self.ca_address, self.root_pem, self.token, server_name=self.ca_server_name)
        self._install(await self._fetch_with_retry())
        if self.xds_socket is not None:
            # Before SDS: callers start Envoy once the SDS socket exists, and its xDS must be there too.
            self.xds_proxy = XdsProxy(
                self.xds_address, self.root_pem, self.token, self.xds_socket, server_name=self.ca_server_name
            )
            await self.xds_proxy.start()
        self.sds_socket.parent.mkdir(parents=True, exist_ok=True)
        if self.sds_socket.exists():
            self.sds_socket.unlink()
        self._server = AdsServer(self, serves_secrets=True, service=SDS_SERVICE)
        await self._server.start(f"unix:{self.sds_socket}")
        os.chmod(self.sds_socket, 0o600)  # only the pod's own user (Envoy) may read the key
        self._renewal = asyncio.create_task(self._renew_forever())
        log.info("serving SDS for %s on %s", self.identity, self.sds_socket)

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        if self._server is not None:
            await self._server.stop()
        if self._client is not None:
            await self._client.close()
        if self.xds_proxy is not None:
            await self.xds_proxy.stop()

    async def renew(self) -> None:
        """Fetch a new key and certificate now and push them to Envoy."""
        self._install(await self._fetch_with_retry())
        self.renewals += 1

    def _install(self, cert: WorkloadCertificate) -> None:
        self.current = cert
        secrets = secrets_from_pem(cert.cert_chain_pem, cert.key_pem, cert.root_pem)
        self._snapshot = Snapshot.build({resources.SECRET: [(s.name, s) for s in secrets]})
        log.info("certificate for %s valid until %s", cert.identity, cert.not_after.isoformat())
        for wake in list(self._wakers):
            wake()

    async def _fetch_with_retry(self) -> WorkloadCertificate:
        assert self._client is not None
        delay = RETRY_INITIAL
        while True:
            try:
                return await self._client.fetch(self.identity, self.ttl_seconds)
            except (grpc.aio.AioRpcError, ValueError, OSError) as exc:
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                log.warning("CreateCertificate for %s failed (%s); retrying in %.1fs", self.identity, detail, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _renew_forever(self) -> None:
        while True:
            assert self.current is not None
            wait = (self.current.renew_at - datetime.datetime.now(datetime.UTC)).total_seconds()
            await asyncio.sleep(max(wait, 1.0))
            await self.renew()
