"""The control plane: the current mesh, the CA, and a per-node snapshot served over ADS.

`update(mesh)` may be called from any thread (file watcher, Kubernetes watches); pushes are
debounced so a burst of edits becomes one push. Snapshots are pure functions of (mesh, node) and
are cached per mesh generation; they never hold a secret (keys are made by the agents that use them
and signed through the CA API on the secure port, `xds.caservice`).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from envoy_data_plane.envoy.config.core.v3 import Node
from prometheus_client import CollectorRegistry, Counter, Gauge

from xds import resources
from xds.authz import Refusal, node_decision
from xds.ca import CertificateAuthority
from xds.caservice import certificate_handler
from xds.envoy.bootstrap import WaypointNode
from xds.envoy.waypoint import build_waypoint
from xds.mesh.model import Mesh, PolicyCondition
from xds.server import AdsServer, SecurePort
from xds.snapshot import Snapshot
from xds.stream import Acked, Event, Nacked
from xds.tokens import Authenticator, Caller
from xds.ztunnel_state import ZTUNNEL_NODE_PREFIX, ztunnel_snapshot

log = logging.getLogger("pyambient.controlplane")

NodeBuilder = Callable[[Mesh, Node, "ControlPlane"], Snapshot | None]
NACK_HISTORY = 1000  # recent NACKs kept for inspection; the counter metric keeps the total
# The names istiod's serving certificate carries, plus ours: what clients dial for port 15012.
CONTROL_PLANE_DNS_NAMES = (
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "pyambient-controller.istio-system.svc",
    "pyambient-controller.istio-system.svc.cluster.local",
    "localhost",
)


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
        self._cache: dict[tuple[int, Hashable], Snapshot] = {}
        self._wakers: set[Callable[[], None]] = set()
        self._policy_status: dict[str, tuple[PolicyCondition, ...]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._server: AdsServer | None = None
        self._secure_server: AdsServer | None = None
        self.secure_port = 0
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

    def _wake_all(self) -> None:
        for wake in list(self._wakers):
            wake()

    # --- what the server asks -------------------------------------------------------------------

    def snapshot_for(self, node: Node) -> Snapshot:
        key = (self._generation, snapshot_key(node))
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

    def authorize_node(self, caller: Caller, node: Node) -> Refusal | None:
        """None when `caller` (from its token) may receive the config of xDS node `node`."""
        waypoint = WaypointNode.from_node(node)
        where = (waypoint.namespace, waypoint.name) if waypoint is not None else None
        if where is None and node.id.startswith("waypoint~"):
            return Refusal("PERMISSION_DENIED", f"waypoint node {node.id!r} does not name its waypoint")
        return node_decision(caller, node.id, self._mesh, where)

    async def start(
        self,
        address: str | None = "127.0.0.1:15010",
        *,
        secure_address: str | None = None,
        authenticator: Authenticator | None = None,
        server_names: tuple[str, ...] = (),
    ) -> int:
        """Start the ADS server(s) on the running loop; returns the plaintext port (or the secure one alone).

        `secure_address` (istiod's 15012) needs `authenticator`; its serving certificate names
        `CONTROL_PLANE_DNS_NAMES`, `server_names` and the address it listens on.
        """
        self._loop = asyncio.get_running_loop()
        port = 0
        if secure_address is not None:
            if authenticator is None:
                raise ValueError("the secure port needs an authenticator for callers' tokens")
            host = secure_address.rsplit(":", 1)[0].strip("[]")
            names = [*CONTROL_PLANE_DNS_NAMES, *server_names]
            ips = ["127.0.0.1"]
            if host and host not in names and host not in ips:
                (ips if _is_ip(host) else names).append(host)
            serving = self.ca.issue_server(names, ips, ttl=datetime.timedelta(days=90))
            holder: list[AdsServer] = []

            async def authenticate(context: object, what: str) -> Caller:
                return await holder[0].authenticate(context, what)  # type: ignore[arg-type]

            secure = SecurePort(
                cert_pem=serving.cert_pem,
                key_pem=serving.key_pem,
                authenticator=authenticator,
                authorize_node=self.authorize_node,
                handlers=(certificate_handler(self.ca, lambda: self._mesh, authenticate),),
            )
            self._secure_server = AdsServer(self, secure=secure)
            holder.append(self._secure_server)
            self.secure_port = port = await self._secure_server.start(secure_address)
        if address is not None:
            self._server = AdsServer(self)
            port = await self._server.start(address)
        return port

    async def stop(self) -> None:
        for server in (self._server, self._secure_server):
            if server is not None:
                await server.stop()
        self._loop = None

    async def serve(self, address: str | None = "127.0.0.1:15010", **secure: object) -> None:
        await self.start(address, **secure)  # type: ignore[arg-type]
        server = self._server or self._secure_server
        assert server is not None and server.server is not None
        await server.server.wait_for_termination()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
    # No secrets: the waypoint's agent makes its key and serves it to Envoy over SDS in the pod.
    return Snapshot.build(
        {
            resources.LISTENER: [(r.name, r) for r in built.listeners],
            resources.CLUSTER: [(r.name, r) for r in built.clusters],
            resources.ENDPOINT: [(r.cluster_name, r) for r in built.endpoints],
        }
    )
