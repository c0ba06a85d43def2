"""The control plane: the current mesh, the CA, and a per-node snapshot served over ADS.

`update(mesh)` may be called from any thread (file watcher, Kubernetes watches); pushes are
debounced so a burst of edits becomes one push. Snapshots are pure functions of (mesh, node,
certificates) and are cached per mesh generation.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from envoy_data_plane.envoy.config.core.v3 import Node
from prometheus_client import CollectorRegistry, Counter, Gauge

from xds import resources
from xds.ca import CertificateAuthority, IssuedCertificate
from xds.envoy.bootstrap import WaypointNode
from xds.envoy.secrets import workload_secrets
from xds.envoy.waypoint import build_waypoint
from xds.mesh.model import Mesh, PolicyCondition
from xds.server import AdsServer
from xds.snapshot import Snapshot
from xds.stream import Acked, Event, Nacked
from xds.ztunnel_state import ZTUNNEL_NODE_PREFIX, ztunnel_snapshot

log = logging.getLogger("pyambient.controlplane")

NodeBuilder = Callable[[Mesh, Node, "ControlPlane"], Snapshot | None]
NACK_HISTORY = 1000  # recent NACKs kept for inspection; the counter metric keeps the total


@dataclass(frozen=True)
class NackRecord:
    node_id: str
    type_url: str
    rejected_version: str
    message: str


class ControlPlane:
    def __init__(
        self,
        *,
        ca: CertificateAuthority | None = None,
        debounce: float = 0.1,
        max_delay: float = 1.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.ca = ca or CertificateAuthority()
        self.debounce = debounce
        self.max_delay = max_delay  # a steady stream of changes is still pushed at least this often
        self._first_pending_at: float | None = None
        self._lock = threading.Lock()
        self._mesh = Mesh()
        self._pending: Mesh | None = None
        self._generation = 0
        self._cert_generation = 0
        self._certs: dict[str, IssuedCertificate] = {}
        self._cache: dict[tuple[int, int, Hashable], Snapshot] = {}
        self._wakers: set[Callable[[], None]] = set()
        self._policy_status: dict[str, tuple[PolicyCondition, ...]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._server: AdsServer | None = None
        self._renewal: asyncio.Future[None] | None = None
        self.builders: list[NodeBuilder] = [waypoint_snapshot, ztunnel_snapshot]
        self.nacks: collections.deque[NackRecord] = collections.deque(maxlen=NACK_HISTORY)
        self.acks: dict[tuple[str, str], str] = {}  # (node id, type) -> acked version
        self.registry = registry or CollectorRegistry()
        self.nack_counter = Counter(
            "pyambient_xds_nacks", "xDS responses a client rejected", ["type"], registry=self.registry
        )
        self.push_counter = Counter("pyambient_xds_pushes", "Mesh generations pushed", registry=self.registry)
        self.connected = Gauge("pyambient_xds_connections", "Open ADS streams", registry=self.registry)

    # --- inputs ---------------------------------------------------------------------------------

    @property
    def mesh(self) -> Mesh:
        return self._mesh

    def update(self, mesh: Mesh) -> None:
        """Take a new mesh; it is pushed after `debounce` seconds without a further update."""
        for error in mesh.errors:
            log.warning("mesh input rejected: %s", error)
        self._log_policy_status(mesh)
        with self._lock:
            self._pending = mesh
        loop = self._loop
        if loop is None:
            self._commit()
        else:
            loop.call_soon_threadsafe(self._schedule_flush)

    def _log_policy_status(self, mesh: Mesh) -> None:
        """Each AuthorizationPolicy's status conditions, logged once per change (cluster mode also writes them)."""
        status = dict(mesh.policy_status)
        for key, conditions in sorted(status.items()):
            if self._policy_status.get(key) == conditions:
                continue
            for c in conditions:
                level = logging.INFO if c.reason == "Accepted" else logging.WARNING
                log.log(
                    level, "AuthorizationPolicy %s: %s=%s reason=%s: %s", key, c.type, c.status, c.reason, c.message
                )
        self._policy_status = status

    def _schedule_flush(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if self._first_pending_at is None:
            self._first_pending_at = now
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        delay = min(self.debounce, max(0.0, self._first_pending_at + self.max_delay - now))
        self._flush_handle = self._loop.call_later(delay, self._commit)

    def _commit(self) -> None:
        self._first_pending_at = None
        with self._lock:
            if self._pending is None:
                return
            self._mesh, self._pending = self._pending, None
            self._generation += 1
            self._cache.clear()
        self.push_counter.inc()
        self._wake_all()

    def rotate_certificates(self, *, root: bool = False) -> None:
        """Re-issue every leaf (and the root first, if asked); pushed over SDS, no restart needed."""
        if root:
            self.ca.rotate_root()
        with self._lock:
            self._certs.clear()
            self._cert_generation += 1
            self._cache.clear()
        self._schedule_wake()

    def leaves_due_for_renewal(self, now: datetime.datetime | None = None) -> bool:
        """True once any issued leaf is past half its lifetime (when istiod's agents renew too)."""
        now = now or datetime.datetime.now(datetime.UTC)
        with self._lock:
            certs = list(self._certs.values())
        return any(now >= c.not_after - (c.not_after - c.not_before) / 2 for c in certs)

    async def _renew_leaves(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.leaves_due_for_renewal():
                log.info("renewing workload certificates past half their lifetime")
                self.rotate_certificates()

    def _schedule_wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for wake in list(self._wakers):
            wake()

    # --- what the server asks -------------------------------------------------------------------

    def certificate(self, identity: str) -> IssuedCertificate:
        with self._lock:
            cert = self._certs.get(identity)
        if cert is None:
            cert = self.ca.issue(identity)
            with self._lock:
                self._certs[identity] = cert
        return cert

    def snapshot_for(self, node: Node) -> Snapshot:
        key = (self._generation, self._cert_generation, snapshot_key(node))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        mesh = self._mesh
        snapshot = Snapshot()
        for builder in self.builders:
            built = builder(mesh, node, self)
            if built is not None:
                snapshot = built
                break
        self._cache[key] = snapshot
        return snapshot

    def register(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._wakers.add(wake)
        self.connected.inc()

        def unregister() -> None:
            self._wakers.discard(wake)
            self.connected.dec()

        return unregister

    def on_event(self, node: Node | None, event: Event) -> None:
        node_id = node.id if node else "?"
        if isinstance(event, Nacked):
            self.nack_counter.labels(type=resources.short(event.type_url)).inc()
            self.nacks.append(NackRecord(node_id, event.type_url, event.rejected_version, event.message))
        elif isinstance(event, Acked):
            self.acks[(node_id, event.type_url)] = event.version

    # --- serving --------------------------------------------------------------------------------

    async def start(self, address: str = "127.0.0.1:15010") -> int:
        """Start the ADS server on the running loop; returns the bound port."""
        self._loop = asyncio.get_running_loop()
        self._server = AdsServer(self)
        port = await self._server.start(address)
        interval = min(60.0, self.ca.leaf_ttl.total_seconds() / 10)
        self._renewal = asyncio.ensure_future(self._renew_leaves(interval))
        return port

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        if self._server is not None:
            await self._server.stop()
        self._loop = None

    async def serve(self, address: str = "127.0.0.1:15010") -> None:
        await self.start(address)
        assert self._server is not None and self._server.server is not None
        await self._server.server.wait_for_termination()


def snapshot_key(node: Node) -> Hashable:
    """What a node's snapshot depends on besides the mesh: equal keys, equal snapshots."""
    waypoint = WaypointNode.from_node(node)
    if waypoint is not None:
        return ("waypoint", waypoint)
    if node.id.startswith(ZTUNNEL_NODE_PREFIX):
        return ("ztunnel",)
    return ("node", node.id)


def waypoint_snapshot(mesh: Mesh, node: Node, control_plane: ControlPlane) -> Snapshot | None:
    """Listeners, clusters, endpoints and secrets for a waypoint Envoy; None for other nodes."""
    who = WaypointNode.from_node(node)
    if who is None:
        return None
    waypoint = mesh.waypoint(who.namespace, who.name)
    if waypoint is None:
        log.warning("node %s names waypoint %s/%s, which the mesh does not have", node.id, who.namespace, who.name)
        return Snapshot.build({resources.LISTENER: [], resources.CLUSTER: [], resources.ENDPOINT: []})
    built = build_waypoint(mesh, waypoint, bind_ip=who.listen_address)
    cert = control_plane.certificate(waypoint.identity)
    return Snapshot.build(
        {
            resources.LISTENER: [(r.name, r) for r in built.listeners],
            resources.CLUSTER: [(r.name, r) for r in built.clusters],
            resources.ENDPOINT: [(r.cluster_name, r) for r in built.endpoints],
            resources.SECRET: [(s.name, s) for s in workload_secrets(cert)],
        }
    )
