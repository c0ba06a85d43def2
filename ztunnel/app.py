"""The ztunnel process: listeners (the I/O shell around the pure decisions), config reload, xDS, admin.

Listeners: outbound 15001 (SO_ORIGINAL_DST), SOCKS5 15080, inbound HBONE 15008 and inbound plaintext 15006
on every local workload IP, admin 15000 (`/config_dump`), metrics 15020 (`/metrics`, `/stats/prometheus`),
readiness 15021 (`/healthz/ready`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import json
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpack import NeverIndexedHeaderTuple
from prometheus_client import generate_latest

from ztunnel import tls
from ztunnel.admin import serve_http
from ztunnel.certs import CaCertificates
from ztunnel.config import LoadedConfig, ProxySettings, load_config, settings_from_flags
from ztunnel.errors import ConfigError, Denied, MissingCertificate, ProxyError, UnknownSource
from ztunnel.hbone import HboneConnection, HttpStatusError, StreamCtx
from ztunnel.identity import Identity
from ztunnel.inbound import check_rbac, decide_connect, decide_plaintext
from ztunnel.inpod.pods import EnrolmentServer, InpodPods
from ztunnel.lb import LoadBalancers
from ztunnel.outbound import Pick, Plan, Request, RequestType, plan_request
from ztunnel.pool import HbonePool, PoolKey
from ztunnel.rbac import ConnInfo
from ztunnel.socks5 import SocksError, SocksParser
from ztunnel.state import IPAddr, Protocol, ProxyState, Service, Workload
from ztunnel.telemetry import Metrics, traffic_labels

log_out = logging.getLogger("proxy::outbound")
log_in = logging.getLogger("proxy::inbound")
log_access = logging.getLogger("access")
log = logging.getLogger("ztunnel")

# Peer and destination addresses repeat across connections: parse each text/packed address once.
_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)


@functools.lru_cache(maxsize=4096)
def _host(ip: IPAddr) -> str:
    """An address as it stands before `:port` (formatting an ipaddress object is slow, and they repeat)."""
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _fmt(addr: tuple[Any, int]) -> str:
    ip = addr[0]
    if isinstance(ip, str):  # a socket's own text: IPv6 has colons, and no brackets yet
        return f"[{ip}]:{addr[1]}" if ":" in ip else f"{ip}:{addr[1]}"
    return f"{_host(ip)}:{addr[1]}"


def _never_indexed(name: str, value: str) -> tuple[str, str]:
    """A header HPACK must not add to its dynamic table (unique per connection, e.g. traceparent)."""
    return NeverIndexedHeaderTuple(name, value)  # type: ignore[return-value]


_BAGGAGE: dict[int, tuple[Workload, str]] = {}


def baggage(w: Workload | None) -> str:
    """The baggage header for a workload; computed once per (immutable) workload object."""
    if w is None:
        return ""
    hit = _BAGGAGE.get(id(w))
    if hit is not None and hit[0] is w:
        return hit[1]
    if len(_BAGGAGE) >= 4096:
        _BAGGAGE.clear()
    b = _baggage(w)
    _BAGGAGE[id(w)] = (w, b)
    return b


def _baggage(w: Workload) -> str:
    parts = [
        ("k8s.cluster.name", w.cluster_id),
        ("k8s.namespace.name", w.namespace),
        (f"k8s.{w.workload_type or 'deployment'}.name", w.workload_name or w.name),
        ("service.name", w.canonical_name),
        ("service.version", w.canonical_revision),
    ]
    return ",".join(f"{k}={v}" for k, v in parts if v)


class _Held(asyncio.Protocol):
    """Holds a socket while the proxy decides; keeps any bytes that already arrived.

    It keeps reading (up to `HIGH_WATER`, then it pauses): the client's first bytes, usually sent right after
    connect, are then ready to go out as soon as the stream is open, and the socket needs no epoll change to
    pause it and another to resume it on every connection."""

    HIGH_WATER = 256 * 1024

    def __init__(self, on_made: Callable[[_Held], None] | None = None) -> None:
        self.buf = bytearray()
        self.transport: Any = None
        self.eof = False
        self.lost = False
        self._on_made = on_made

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= self.HIGH_WATER:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True


def _accepted_destination(held: _Held, original_dst: Callable[[int], tuple[bytes, int] | None]) -> tuple[IPAddr, int]:
    """Where a captured connection was going: netfilter's SO_ORIGINAL_DST if it was redirected (`original_dst`
    from the core), else the local address."""
    sock = held.transport.get_extra_info("socket")
    redirected = original_dst(sock.fileno()) if sock is not None else None
    if redirected is not None:
        return _ip(redirected[0]), redirected[1]
    ip, port = held.transport.get_extra_info("sockname")[:2]
    return _ip(ip), port


class _Socks(_Held):
    def __init__(self, app: Ztunnel) -> None:
        super().__init__()
        self.app = app
        self.parser = SocksParser()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        # the greeting and the request within handshakeTimeout, as for HBONE (a client that sends one byte
        # and waits would otherwise hold its socket forever)
        self._deadline = asyncio.get_running_loop().call_later(self.app.settings.handshake_timeout, self._too_slow)

    def _too_slow(self) -> None:
        if self.parser.state == 2 or self.transport.is_closing():
            return
        log_out.warning(
            'connection failed src.addr=%s error="socks5: handshake timed out"',
            _fmt(self.transport.get_extra_info("peername")),
        )
        self.app.closed_for("socks5_handshake_timeout")
        self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.parser.state == 2:
            self.buf += data
            return
        try:
            reply, rest = self.parser.feed(data)
        except SocksError as e:
            if e.reply:
                self.transport.write(e.reply)
            log_out.warning(
                'connection failed src.addr=%s error="socks5: %s"',
                _fmt(self.transport.get_extra_info("peername")),
                e,
            )
            self.transport.close()
            return
        if reply:
            self.transport.write(reply)
        if self.parser.state == 2 and self.parser.dst is not None:
            self.transport.pause_reading()
            self.buf += rest
            self.app.outbound(self, self.parser.dst)


class _PipeEnd(asyncio.Protocol):
    def __init__(self, relay: _Relay, side: int) -> None:
        self.relay = relay
        self.side = side

    def data_received(self, data: bytes) -> None:
        self.relay.counts[self.side] += len(data)
        self.relay.ends[1 - self.side].write(data)

    def eof_received(self) -> bool:
        self.relay.half_close(self.side)
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.relay.lost(self.side, exc)

    def pause_writing(self) -> None:
        self.relay.ends[1 - self.side].pause_reading()

    def resume_writing(self) -> None:
        self.relay.ends[1 - self.side].resume_reading()


class _Relay:
    """Plain TCP ↔ plain TCP (passthrough, plaintext inbound, local fast path). counts[0] = a→b bytes."""

    def __init__(self, a: _Held, b: _Held, on_done: Callable[[int, int, BaseException | None], None]) -> None:
        self.ends = [a.transport, b.transport]
        self.counts = [0, 0]
        self.eofs = [False, False]
        self.on_done: Callable[[int, int, BaseException | None], None] | None = on_done
        for side in (0, 1):
            self.ends[side].set_protocol(_PipeEnd(self, side))
        for side, held in ((0, a), (1, b)):
            if held.buf:
                self.counts[side] += len(held.buf)
                self.ends[1 - side].write(bytes(held.buf))
            if held.eof:
                self.half_close(side)
            if held.lost:
                self.lost(side, None)
        for t in self.ends:
            if not t.is_closing():
                t.resume_reading()

    def half_close(self, side: int) -> None:
        self.eofs[side] = True
        other = self.ends[1 - side]
        if all(self.eofs):
            for t in self.ends:
                t.close()
        elif other.can_write_eof() and not other.is_closing():
            other.write_eof()

    def lost(self, side: int, exc: BaseException | None) -> None:
        other = self.ends[1 - side]
        if exc is not None:
            other.abort()
        else:
            other.close()
        if self.on_done is not None:
            cb, self.on_done = self.on_done, None
            cb(self.counts[0], self.counts[1], exc)

    def close(self) -> None:
        for t in self.ends:
            t.abort()


class _Refused(asyncio.Protocol):
    """An accepted connection closed at once: the workload has no certificate of its own yet."""

    def connection_made(self, transport: Any) -> None:
        transport.abort()


@dataclass(frozen=True)
class XdsChannel:
    """xDS over TLS to the secure port (Istio's XDS_ROOT_CA), with the ztunnel's token on every stream."""

    root_pem: bytes
    token: Callable[[], str]
    server_name: str | None = None


@dataclass(frozen=True)
class _Route:
    """What connections from one client IP to one destination (and endpoint) share: derived once per state."""

    source: Workload
    req: Request
    labels: dict[str, str]
    hbone: bool
    pool_key: PoolKey


@dataclass
class _Live:
    """A live inbound connection, re-checked when policies change."""

    workload_uid: str
    conn: ConnInfo
    close: Callable[[], None]
    desc: str


class Ztunnel:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        config_path: Path | None = None,
        impl: Any = None,
        xds: str | None = None,
        ca: CaCertificates | None = None,
        xds_channel: XdsChannel | None = None,
    ) -> None:
        if impl is None:
            import _core

            impl = _core
        self.impl = impl
        self.settings: ProxySettings = loaded.proxy
        self.static = loaded.state
        self.raw_config = loaded.raw
        self.config_path = config_path
        self.state = loaded.state
        self.lbs = LoadBalancers(impl.RoundRobin)
        self.lbs.update(self.state)
        self._routes_state: ProxyState | None = None  # the state (and listeners) the two caches below are for
        self._routes_listeners: frozenset[tuple[IPAddr, int]] | None = None
        self._plans: dict[tuple[str, tuple[IPAddr, int]], tuple[Workload, Plan]] = {}
        self._routes: dict[tuple[int, str], _Route] = {}
        self.metrics = Metrics()
        self._trim_handle: asyncio.TimerHandle | None = None
        self.pool = HbonePool(self._dial, self.settings.pool_max_streams)
        self.xds_target = xds or self.settings.xds
        self.xds_store: Any = None
        self.xds_synced = self.xds_target is None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self._inbound: dict[IPAddr, list[asyncio.Server]] = {}
        self._listener_addrs: frozenset[tuple[IPAddr, int]] = frozenset()
        self._live: dict[int, _Live] = {}
        self._live_seq = 0
        self._certs: dict[Identity, tls.WorkloadCert] = {}
        self._client_ctx: dict[Identity, ssl.SSLContext] = {}
        self._server_ctx: dict[Identity, ssl.SSLContext] = {}
        self.ca = ca
        self.xds_channel = xds_channel
        if ca is not None:
            ca.on_renewed = self._forget_contexts
        self._load_certs(self.settings)
        self._mtime = self._config_mtime()
        self.started = 0.0
        self.inpod: InpodPods | None = None  # in-pod mode: enrolled pods' netns, rules, listeners
        self._enrolment: EnrolmentServer | None = None

    # --------------------------------------------------------------------------- certificates
    def _load_certs(self, s: ProxySettings) -> None:
        if self.ca is not None and not s.certificates:
            return  # every certificate comes from the CA, on demand
        if self.config_path is None and s.root_cert is None and not s.certificates:
            # Started from flags alone (settings_from_flags) and no CA client: Ready, configured over xDS, but
            # with no identity it refuses HBONE (no inbound listeners; _cert_for raises) instead of borrowing one.
            log.warning("no certificates: HBONE is refused until this ztunnel has an identity")
            self._certs = {}
            return
        if s.root_cert is None or not s.certificates:
            raise ConfigError(
                str(self.config_path or "config"),
                "proxy.certificates",
                "rootCert and certificates are required",
            )
        certs = {}
        for i, pair in enumerate(s.certificates):
            for p, what in ((pair.cert, "cert"), (pair.key, "key")):
                if not p.exists():
                    raise ConfigError(
                        str(self.config_path or "config"),
                        f"proxy.certificates[{i}].{what}",
                        f"{p} does not exist",
                    )
            ident = tls.cert_identity(pair.cert)
            certs[ident] = tls.WorkloadCert(ident, pair.cert, pair.key)
        self._certs = certs
        self._client_ctx.clear()
        self._server_ctx.clear()

    def _cert_for(self, ident: Identity | None) -> tls.WorkloadCert:
        """The workload's own certificate; never another workload's (MissingCertificate instead)."""
        if ident is not None:
            wc = self._certs.get(ident)
            if wc is None and self.ca is not None:
                wc = self.ca.get(ident)  # None while it is being fetched
            if wc is not None:
                return wc
        raise MissingCertificate(f"no certificate for identity {ident}; not proxying under another identity")

    def _root_path(self) -> Path:
        root = self.settings.root_cert or (self.ca.root_path if self.ca is not None else None)
        assert root is not None
        return root

    def _prefetch_certificates(self) -> None:
        """Ask the CA for each local workload's certificate before its first connection needs it."""
        if self.ca is not None:
            for w in self.served_workloads():
                if w.identity is not None:
                    self.ca.want(w.identity)

    def _forget_contexts(self, ident: Identity) -> None:
        """A renewed certificate: new handshakes load it; live connections keep theirs."""
        self._client_ctx.pop(ident, None)
        self._server_ctx.pop(ident, None)

    def client_ctx(self, ident: Identity | None) -> ssl.SSLContext:
        wc = self._cert_for(ident)
        ctx = self._client_ctx.get(wc.identity)
        if ctx is None:
            ctx = self._client_ctx[wc.identity] = tls.client_context(self._root_path(), wc)
        return ctx

    def server_ctx(self, ident: Identity | None) -> tuple[ssl.SSLContext, Identity]:
        wc = self._cert_for(ident)
        ctx = self._server_ctx.get(wc.identity)
        if ctx is None:
            ctx = self._server_ctx[wc.identity] = tls.server_context(self._root_path(), wc)
        return ctx, wc.identity

    # --------------------------------------------------------------------------- lifecycle
    def closed_for(self, reason: str) -> None:
        """A connection was closed for an error, abuse or a handshake deadline: count it, and soon give the
        memory its buffers held back to the kernel (at most once per TRIM_INTERVAL, however many closed)."""
        self.metrics.connection_closed_for(reason)
        if self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(TRIM_INTERVAL, self._trim)

    def _trim(self) -> None:
        self._trim_handle = None
        release_free_memory()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def local_workloads(self, state: ProxyState | None = None) -> list[Workload]:
        st = state or self.state
        return [w for w in st.workloads.values() if w.node == self.settings.node and self.settings.node]

    def served_workloads(self) -> list[Workload]:
        """The local workloads this ztunnel proxies for: in in-pod mode only the pods enrolled with it (the node's
        other pods — hostNetwork, opted out, not ambient — are never served, nor their identities fetched)."""
        local = self.local_workloads()
        if self.settings.inpod_socket is None:
            return local
        return [w for w in local if self.inpod is not None and any(self.inpod.owns(ip) for ip in w.ips)]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        self._prefetch_certificates()
        addrs: set[tuple[IPAddr, int]] = set()
        if s.outbound:
            srv = await loop.create_server(self._captured_factory, s.outbound[0], s.outbound[1], reuse_address=True)
            self._servers.append(srv)
            addrs.add((ipaddress.ip_address(s.outbound[0]), s.outbound[1]))
            log.info('listener established address=%s component="outbound" transparent=false', _fmt(s.outbound))
        if s.socks5:
            srv = await loop.create_server(lambda: _Socks(self), s.socks5[0], s.socks5[1], reuse_address=True)
            self._servers.append(srv)
            addrs.add((ipaddress.ip_address(s.socks5[0]), s.socks5[1]))
            log.info('listener established address=%s component="socks5"', _fmt(s.socks5))
        for addr, handler in (
            (s.admin, self._admin),
            (s.metrics, self._metrics_http),
            (s.readiness, self._ready_http),
        ):
            if addr:
                self._servers.append(await serve_http(addr[0], addr[1], handler))
        self._static_addrs = frozenset(addrs)
        if s.inpod_socket is not None:
            self.inpod = InpodPods(self)
            self._enrolment = EnrolmentServer(s.inpod_socket, self.inpod)
            await self._enrolment.start()
        await self._sync_inbound_listeners()
        if self.config_path is not None:
            self.spawn(self._watch_config())
        if self.xds_target:
            self.spawn(self._run_xds(self.xds_target))
        self.started = time.time()

    async def stop(self) -> None:
        for srv in self._servers:
            srv.close()
        for servers in self._inbound.values():
            for srv in servers:
                srv.close()
        self._inbound.clear()
        for t in list(self._tasks):
            t.cancel()
        self.pool.close()
        for live in list(self._live.values()):
            live.close()
        if self.ca is not None:
            await self.ca.close()
        if self._enrolment is not None:
            self._enrolment.close()
        if self.inpod is not None:
            self.inpod.close()

    async def _sync_inbound_listeners(self) -> None:
        loop = asyncio.get_running_loop()
        inpod_ips = self.inpod.ips() if self.inpod is not None else set()
        want = {ip for w in self.local_workloads() for ip in w.ips} - inpod_ips  # enrolled pods: in their netns
        if self.settings.inpod_socket is not None:
            want = set()  # in-pod mode: every served pod has its listeners in its own netns, none here
        if not self._certs and self.ca is None:
            want = set()  # no identity at all (flags-only start without a CA): no HBONE to terminate
        for ip in list(self._inbound):
            if ip not in want:
                for srv in self._inbound.pop(ip):
                    srv.close()  # live connections are kept; only the listening sockets go
        for ip in sorted(want - set(self._inbound), key=str):
            servers = []
            try:
                for factory, port, component in (
                    (self._hbone_factory, self.settings.inbound_port, 'component="inbound" transparent=false'),
                    (self._plaintext_factory, self.settings.plaintext_port, 'component="inbound plaintext"'),
                ):
                    servers.append(
                        await loop.create_server(functools.partial(factory, ip), str(ip), port, reuse_address=True)
                    )
                    log.info("listener established address=%s %s", _fmt((ip, port)), component)
            except OSError as e:
                log.error("cannot listen on %s: %s", ip, e)
            self._inbound[ip] = servers
        addrs = set(self._static_addrs)
        for ip in [*self._inbound, *inpod_ips]:
            addrs.add((ip, self.settings.inbound_port))
            addrs.add((ip, self.settings.plaintext_port))
        self._listener_addrs = frozenset(addrs)

    # --------------------------------------------------------------------------- config updates
    def _config_mtime(self) -> float:
        try:
            return os.stat(self.config_path).st_mtime_ns if self.config_path else 0.0
        except OSError:
            return 0.0

    async def _watch_config(self) -> None:
        assert self.config_path is not None
        while True:
            await asyncio.sleep(0.2)
            m = self._config_mtime()
            if m == self._mtime:
                continue
            self._mtime = m
            await self.reload()

    async def reload(self) -> bool:
        """Re-read the config file; on error keep the running config and log the file and field."""
        assert self.config_path is not None
        try:
            loaded = load_config(self.config_path)
            if (
                loaded.proxy.certificates != self.settings.certificates
                or loaded.proxy.root_cert != self.settings.root_cert
            ):
                self._load_certs(loaded.proxy)
        except ConfigError as e:
            log.error("config rejected, keeping the previous one: %s", e)
            return False
        self.settings = loaded.proxy
        self.pool.max_streams = loaded.proxy.pool_max_streams
        self.static = loaded.state
        self.raw_config = loaded.raw
        await self.apply_state(self.xds_store.merge(loaded.state) if self.xds_store else loaded.state)
        log.info("config reloaded from %s", self.config_path)
        return True

    async def apply_state(self, state: ProxyState) -> None:
        old = self.state
        self.state = state
        self.lbs.update(state)
        self._prefetch_certificates()
        await self._sync_inbound_listeners()
        if old.policies != state.policies or old.workloads != state.workloads:
            self._recheck_live()

    def _recheck_live(self) -> None:
        for key, live in list(self._live.items()):
            wl = self.state.workloads.get(live.workload_uid)
            try:
                if wl is None:
                    raise Denied("workload removed")
                check_rbac(self.state, wl, live.conn)
            except Denied:
                log_in.info("connection %s closed because it's no longer allowed after a policy update", live.desc)
                self._live.pop(key, None)
                live.close()

    def _track(self, wl: Workload, conn: ConnInfo, close: Callable[[], None], desc: str) -> int:
        self._live_seq += 1
        self._live[self._live_seq] = _Live(wl.uid, conn, close, desc)
        return self._live_seq

    async def _run_xds(self, target: str) -> None:
        from envoy_data_plane.envoy.config.core.v3 import Node

        from xds.client import DeltaClient, Update, run_delta_ads
        from ztunnel.xdsfeed import XdsStore

        store = self.xds_store = XdsStore()
        node = Node(
            id=f"ztunnel~{self.settings.node}~ztunnel.istio-system~istio-system.svc.cluster.local",
            cluster="ztunnel",
        )
        client = DeltaClient(node)

        async def handle(update: Update) -> str | None:
            try:
                store.apply(update)
            except ConfigError as e:
                return str(e)
            await self.apply_state(store.merge(self.static))
            self.xds_synced = True
            return None

        if self.xds_channel is not None:
            await run_delta_ads(
                target,
                client,
                handle,
                root_pem=self.xds_channel.root_pem,
                token=self.xds_channel.token,
                server_name=self.xds_channel.server_name,
            )
        else:
            await run_delta_ads(target, client, handle)

    # --------------------------------------------------------------------------- outbound
    def _captured_factory(self) -> asyncio.Protocol:
        def made(held: _Held) -> None:
            self.outbound(held, _accepted_destination(held, self.impl.original_dst))

        return _Held(made)

    def source_workload(self, ip: IPAddr) -> Workload | None:
        wl = self.state.find_workload(ip)
        if wl is not None and wl.node == self.settings.node:
            return wl
        if self.inpod is not None and self.inpod.owns(ip):
            return None  # an enrolled pod acts only as its own workload: unknown until the state has it
        if self.settings.workload:
            ns, _, name = self.settings.workload.partition("/")
            for w in self.state.workloads.values():
                if w.namespace == ns and w.name == name:
                    return w
        local = self.local_workloads()
        return local[0] if local else None

    def outbound(self, held: _Held, dst: tuple[IPAddr, int]) -> None:
        """A captured (or SOCKS5) connection: decide, then proxy. Runs in the accepting callback: with a pooled
        HBONE connection ready, the CONNECT is on the wire before the event loop turns (no task per connection);
        dials, plain TCP and the same-node path continue in a task."""
        try:
            self._outbound(held, dst)
        except Exception:  # noqa: BLE001 - one bad connection must not take the listener down
            log_out.exception("connection failed dst.addr=%s: internal error", _fmt(dst))
            held.transport.abort()

    def _route(self, peer_ip: str, src_ip: IPAddr, dst: tuple[IPAddr, int]) -> _Route:
        """The decision for one captured connection, from caches that live as long as the state: the pure part
        (`plan_request`) once per (client IP, destination), the derived labels and pool key once per endpoint;
        only the round-robin pick runs per connection. Raises ProxyError (never cached)."""
        state = self.state
        if self._routes_state is not state or self._routes_listeners is not self._listener_addrs:
            self._plans.clear()
            self._routes.clear()
            self._routes_state, self._routes_listeners = state, self._listener_addrs
        key = (peer_ip, dst)
        hit = self._plans.get(key)
        if hit is None:
            source = self.source_workload(src_ip)
            if source is None:
                raise UnknownSource("unknown source workload")
            plan = plan_request(
                state,
                source,
                dst,
                # In-pod mode has no node-local fast path (upstream removed it after 1.21): every HBONE hop is a
                # real TCP+TLS connection to the destination pod's 15008, even on this node. The node-level mode
                # (loopback mesh, the ≤1.21 design) keeps it.
                local_node=self.settings.node if self.inpod is None else "",
                listener_addrs=self._listener_addrs,
                hbone_port=self.settings.hbone_port,
            )
            if len(self._plans) >= 4096:
                self._plans.clear()
                self._routes.clear()
            hit = self._plans[key] = (source, plan)
        source, plan = hit
        if isinstance(plan, Pick):
            endpoint = self.lbs.pick(state, plan.service, plan.port)
            rkey = (id(plan), endpoint.uid if endpoint is not None else "")
        else:
            endpoint, rkey = None, (id(plan), "")
        route = self._routes.get(rkey)
        if route is None:
            req = plan.finish(endpoint) if isinstance(plan, Pick) else plan
            route = self._routes[rkey] = self._derive_route(source, req)
        return route

    def _derive_route(self, source: Workload, req: Request) -> _Route:
        hbone = req.protocol is Protocol.HBONE
        labels = traffic_labels(
            reporter="source",
            src=source,
            src_identity=source.identity if hbone else None,
            dst=req.dst_workload,
            dst_identity=req.dst_workload.identity if (hbone and req.dst_workload) else None,
            service=req.dst_service,
            mtls=hbone,
        )
        # inpod mode dials from inside the pod's netns, so the HBONE connection's source is the pod IP:
        # on loopback we bind to the source workload's IP to get the same picture.
        src_ip = (
            source.ips[0]
            if source.ips
            else ipaddress.ip_address(self.settings.outbound[0] if self.settings.outbound else "127.0.0.1")
        )
        pool_key: PoolKey = (str(source.identity), req.upstream_sans, req.gateway, src_ip)
        return _Route(source, req, labels, hbone, pool_key)

    def _outbound(self, held: _Held, dst: tuple[IPAddr, int]) -> None:
        t = held.transport
        peer = t.get_extra_info("peername")
        src = (_ip(peer[0]), peer[1])
        try:
            route = self._route(peer[0], src[0], dst)
        except UnknownSource:
            log_out.warning(
                'connection failed src.addr=%s dst.addr=%s direction="outbound" error="unknown source workload"',
                _fmt(src),
                _fmt(dst),
            )
            t.abort()
            return
        except ProxyError as e:
            log_out.warning(
                'connection failed src.addr=%s dst.addr=%s direction="outbound" error="%s"',
                _fmt(src),
                _fmt(dst),
                e,
            )
            self.metrics.conn_failed(
                traffic_labels(
                    reporter="source",
                    src=self.source_workload(src[0]),
                    src_identity=None,
                    dst=None,
                    dst_identity=None,
                    service=None,
                    flags=e.flag,
                )
            )
            t.abort()
            return
        source, req, labels = route.source, route.req, route.labels
        if log_out.isEnabledFor(logging.INFO):
            log_out.info(req.log_line())
        self.metrics.conn_opened(labels)
        started = time.monotonic()

        def finish(received: int, sent: int, error: str | None) -> None:
            self.metrics.conn_closed(labels, received, sent)
            self._access("outbound", src, req.gateway, req, source, received, sent, started, error)

        if route.hbone and req.request_type is not RequestType.DIRECT_LOCAL:
            self._outbound_hbone(held, src, route, finish)
        elif route.hbone:
            self.spawn(self._outbound_local(held, src, source, req, labels, finish))
        else:
            self.spawn(self._outbound_tcp(held, req.destination, labels, finish, src[0]))

    def _hbone_headers(self, src: tuple[IPAddr, int], source: Workload, req: Request) -> list[tuple[str, str]]:
        fwd = f'for="{_fmt(src)}"'
        if req.dst_service is not None:
            fwd += f";host={req.dst_service.hostname}"
        # trace id (16 bytes) + span id (8 bytes): random, not secret, so no getrandom call per connection
        rnd = f"{random.getrandbits(192):048x}"
        # unique per connection: never indexed, so they do not churn the HPACK dynamic table
        hdrs: list[tuple[str, str]] = [
            _never_indexed("forwarded", fwd),
            _never_indexed("traceparent", f"00-{rnd[:32]}-{rnd[32:]}-00"),
        ]
        b = baggage(source)
        if b:
            hdrs.insert(0, ("baggage", b))
        return hdrs

    async def _dial(self, key: PoolKey) -> HboneConnection:
        src_id, sans, (ip, port), src_ip = key
        loop = asyncio.get_running_loop()
        conn = HboneConnection(
            self.client_ctx(Identity.parse(src_id)),
            server_side=False,
            impl=self.impl,
            expected_sans=sans,
            on_closed=lambda c, exc: self.pool.remove(c),
            keepalive=(self.settings.keepalive_interval, self.settings.keepalive_timeout),
            peer=_fmt((ip, port)),
            on_abuse=self.closed_for,
        )
        pod_sock = self.inpod.socket_for(src_ip) if self.inpod is not None else None
        try:
            if pod_sock is not None:  # in-pod: dial from inside the source pod's netns, marked
                await asyncio.wait_for(
                    self._connect_sock(pod_sock, (ip, port), lambda: conn.pump), self.settings.connect_timeout
                )
            else:
                await asyncio.wait_for(
                    loop.create_connection(lambda: conn.pump, str(ip), port, local_addr=(str(src_ip), 0)),
                    self.settings.connect_timeout,
                )
            await asyncio.wait_for(asyncio.shield(conn.ready), self.settings.handshake_timeout)
        except TimeoutError:
            conn.close()
            raise TimeoutError(f"connection timed out, maybe a NetworkPolicy is blocking HBONE port {port}") from None
        except BaseException:
            conn.close()
            raise
        sock = conn.pump.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _outbound_hbone(
        self, held: _Held, src: tuple[IPAddr, int], route: _Route, finish: Callable[[int, int, str | None], None]
    ) -> None:
        conn = self.pool.take(route.pool_key)
        if conn is None:
            self.spawn(self._dial_then_connect(held, src, route, finish))
        else:
            self._connect_stream(conn, held, src, route, finish)

    async def _dial_then_connect(
        self, held: _Held, src: tuple[IPAddr, int], route: _Route, finish: Callable[[int, int, str | None], None]
    ) -> None:
        try:
            conn = await self.pool.checkout(route.pool_key)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
            self._fail_out(held.transport, route.labels, "CONNECT", finish, str(e))
            return
        self._connect_stream(conn, held, src, route, finish)

    def _connect_stream(
        self,
        conn: HboneConnection,
        held: _Held,
        src: tuple[IPAddr, int],
        route: _Route,
        finish: Callable[[int, int, str | None], None],
    ) -> None:
        """Send the CONNECT on a checked-out connection; the response (or its failure) attaches the client."""
        t, req, labels = held.transport, route.req, route.labels

        def done(ctx: StreamCtx, exc: BaseException | None) -> None:
            self.pool.release(conn)
            finish(ctx.bytes_out, ctx.bytes_in, None)

        def on_response(sid: int, exc: BaseException | None) -> None:
            if exc is not None:
                self.pool.release(conn)
                denied = isinstance(exc, HttpStatusError) and exc.status == 401
                self._fail_out(t, labels, "DENY" if denied else "CONNECT", finish, str(exc))
                return
            if held.lost:
                conn.attach_plain(sid, t, b"", done)
                return
            conn.attach_plain(sid, t, bytes(held.buf), done)
            if held.eof:
                conn.pump.end_stream(sid)

        try:
            conn.start_stream(
                req.authority, self._hbone_headers(src, route.source, req), self.settings.connect_timeout, on_response
            )
        except ConnectionError as e:
            self.pool.release(conn)
            self._fail_out(t, labels, "CONNECT", finish, str(e))

    def _fail_out(
        self,
        t: Any,
        labels: dict[str, str],
        flag: str,
        finish: Callable[[int, int, str | None], None],
        error: str,
    ) -> None:
        t.abort()
        self.metrics.conn_failed({**labels, "response_flags": flag})
        finish(0, 0, error)

    async def _connect_sock(self, sock: socket.socket, dst: tuple[IPAddr, int], factory: Callable[[], Any]) -> Any:
        """Connect a socket made in a pod's netns, then hand it to the event loop like any other."""
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, (str(dst[0]), dst[1]))
            _t, proto = await loop.create_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        return proto

    def _pod_socket(self, dst: IPAddr, src: IPAddr | None) -> socket.socket | None:
        """In-pod mode: to an enrolled pod, from inside its netns with the client's IP as source (the app sees
        who called); from an enrolled pod, from inside the source pod's netns. Else None: a plain socket here."""
        if self.inpod is None:
            return None
        if src is not None and self.inpod.owns(dst):
            sock = self.inpod.socket_for(dst, transparent=True)
            if sock is not None and src != dst:
                try:
                    sock.bind((str(src), 0))
                except OSError:
                    sock.close()
                    raise
            return sock
        return self.inpod.socket_for(src) if src is not None else None

    async def _connect_plain(self, dst: tuple[IPAddr, int], src: IPAddr | None = None) -> _Held:
        """Connect with the connect timeout (TimeoutError), as `asyncio.timeout` would, with less per-call work."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = loop.call_later(self.settings.connect_timeout, expire)
        try:
            pod_sock = self._pod_socket(dst[0], src)
            if pod_sock is not None:
                held = await self._connect_sock(pod_sock, dst, _Held)
            else:
                _t, held = await loop.create_connection(_Held, str(dst[0]), dst[1])
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()
        return held  # asyncio and uvloop both set TCP_NODELAY on TCP transports

    async def _outbound_tcp(
        self,
        held: _Held,
        dst: tuple[IPAddr, int],
        labels: dict[str, str],
        finish: Callable[[int, int, str | None], None],
        src_ip: IPAddr | None = None,
    ) -> None:
        try:
            up = await self._connect_plain(dst, src_ip)
        except (OSError, TimeoutError) as e:
            self._fail_out(held.transport, labels, "CONNECT", finish, str(e))
            return
        _Relay(held, up, lambda a, b, exc: finish(a, b, None))

    async def _outbound_local(
        self,
        held: _Held,
        src: tuple[IPAddr, int],
        source: Workload,
        req: Request,
        labels: dict[str, str],
        finish: Callable[[int, int, str | None], None],
    ) -> None:
        """Same-node fast path: the inbound checks run in-process, then a plain local connection."""
        try:
            dec = decide_connect(
                self.state,
                method="CONNECT",
                authority=req.authority,
                local_ip=req.destination[0],
                src_ip=src[0],
                src_identity=source.identity,
            )
        except Denied as e:
            log_in.info("RBAC rejected conn=%s(%s)->%s: %s", src[0], source.identity, req.authority, e)
            self._fail_out(held.transport, labels, "DENY", finish, f"http status: 401 Unauthorized ({e})")
            return
        except ProxyError as e:
            self._fail_out(held.transport, labels, e.flag, finish, str(e))
            return
        try:
            up = await self._connect_plain(dec.upstream, src[0])
        except (OSError, TimeoutError) as e:
            self._fail_out(held.transport, labels, "CONNECT", finish, str(e))
            return
        info = ConnInfo(src[0], dec.upstream[0], dec.upstream[1], source.identity)
        relay: _Relay | None = None
        key = self._track(
            dec.workload,
            info,
            lambda: relay.close() if relay else None,
            f"{src[0]}({source.identity})->{req.authority}",
        )

        def done(a: int, b: int, exc: BaseException | None) -> None:
            self._live.pop(key, None)
            finish(a, b, None)

        relay = _Relay(held, up, done)

    def _access(
        self,
        direction: str,
        src: tuple[IPAddr, int],
        dst: tuple[IPAddr, int],
        req: Request | None,
        source: Workload | None,
        received: int,
        sent: int,
        started: float,
        error: str | None,
        src_identity: Identity | None = None,
        dst_workload: Workload | None = None,
        hbone_addr: str | None = None,
    ) -> None:
        if not log_access.isEnabledFor(logging.ERROR if error else logging.INFO):
            return
        dw = req.dst_workload if req else dst_workload
        fields = [f"src.addr={_fmt(src)}"]
        if source is not None:
            fields += [f'src.workload="{source.name}"', f'src.namespace="{source.namespace}"']
        sid = src_identity or (source.identity if source and req and req.protocol is Protocol.HBONE else None)
        if sid is not None:
            fields.append(f'src.identity="{sid}"')
        fields.append(f"dst.addr={_fmt(dst)}")
        if req is not None and req.protocol is Protocol.HBONE:
            fields.append(f"dst.hbone_addr={req.authority}")
        elif hbone_addr:
            fields.append(f"dst.hbone_addr={hbone_addr}")
        if req is not None and req.dst_service is not None:
            fields.append(f'dst.service="{req.dst_service.hostname}"')
        if dw is not None:
            fields += [f'dst.workload="{dw.name}"', f'dst.namespace="{dw.namespace}"']
            if (req is None) or req.protocol is Protocol.HBONE:
                fields.append(f'dst.identity="{dw.identity}"')
        ms = int((time.monotonic() - started) * 1000)
        fields += [
            f'direction="{direction}"',
            f"bytes_sent={sent}",
            f"bytes_recv={received}",
            f'duration="{ms}ms"',
        ]
        if error:
            fields.append(f'error="{error}"')
            log_access.error("connection complete\t%s", " ".join(fields))
        else:
            log_access.info("connection complete\t%s", " ".join(fields))

    # --------------------------------------------------------------------------- inbound HBONE (15008)
    def _hbone_factory(self, ip: IPAddr) -> Any:
        wl = self.state.find_workload(ip)
        try:
            ctx, ident = self.server_ctx(wl.identity if wl else None)
        except MissingCertificate as e:
            log_in.warning('connection refused dst.addr=%s direction="inbound" error="%s"', _fmt((ip, 15008)), e)
            return _Refused()
        conn = HboneConnection(
            ctx,
            server_side=True,
            impl=self.impl,
            trust_domain=ident.trust_domain,
            on_request=lambda c, sid, hdrs: self.spawn(self._serve_connect(c, ip, sid, hdrs)),
            keepalive=(self.settings.keepalive_interval, self.settings.keepalive_timeout),
            on_abuse=self.closed_for,
        )

        def handshake_deadline() -> None:
            # the TLS handshake, the client preface and its first SETTINGS all within handshakeTimeout
            if conn.closed or conn.settings_received:
                return
            what = "http2 preface" if conn.pump.handshake_done else "tls handshake"
            log_in.warning('connection failed peer=%s error="%s timed out"', conn.peer, what)
            self.closed_for("handshake_timeout")
            conn.close()
            t = conn.pump.transport
            if t is not None:
                t.abort()  # a peer that sends nothing may read nothing either

        loop = asyncio.get_running_loop()
        loop.call_later(self.settings.handshake_timeout, handshake_deadline)
        return conn.pump

    async def _serve_connect(
        self, conn: HboneConnection, local_ip: IPAddr, sid: int, headers: list[tuple[str, str]]
    ) -> None:
        if sid not in conn.streams:  # reset (or the connection closed) before this task ran: no upstream connect
            return
        hd = dict(headers)
        method = hd.get(":method", "")
        authority = hd.get(":authority", "")
        src = conn.peer_addr
        if src is None:  # the same for every stream of this connection
            peer = conn.pump.transport.get_extra_info("peername") if conn.pump.transport else ("0.0.0.0", 0)
            src = (_ip(peer[0]), peer[1])
            if conn.pump.transport is not None:
                conn.peer_addr = src
        started = time.monotonic()
        state = self.state
        src_wl = state.find_workload(src[0])
        try:
            dec = decide_connect(
                state,
                method=method,
                authority=authority,
                local_ip=local_ip,
                src_ip=src[0],
                src_identity=conn.peer_identity,
            )
        except ProxyError as e:
            if isinstance(e, Denied):
                log_in.info("RBAC rejected conn=%s(%s)->%s: %s", src[0], conn.peer_identity, authority, e)
            else:
                log_in.warning(
                    'connection failed src.addr=%s dst.addr=%s direction="inbound" error="%s"',
                    _fmt(src),
                    _fmt((local_ip, self.settings.inbound_port)),
                    e,
                )
            dst_wl = state.find_workload(local_ip)
            self.metrics.conn_failed(
                traffic_labels(
                    reporter="destination",
                    src=src_wl,
                    src_identity=conn.peer_identity,
                    dst=dst_wl,
                    dst_identity=dst_wl.identity if dst_wl else None,
                    service=None,
                    flags=e.flag,
                )
            )
            conn.respond(sid, e.status, end=True)
            return
        if dec.hairpin_waypoint and dec.workload.waypoint is not None:
            await self._hairpin(conn, sid, dec.workload, authority, src, hd.get("forwarded", ""))
            return
        svc = self._inbound_service(hd.get("forwarded", ""), dec.workload, dec.upstream[1])
        labels = traffic_labels(
            reporter="destination",
            src=src_wl,
            src_identity=conn.peer_identity,
            dst=dec.workload,
            dst_identity=dec.workload.identity,
            service=svc,
        )
        try:
            up = await self._connect_plain(dec.upstream, src[0])
        except (OSError, TimeoutError) as e:
            log_in.warning(
                'connection failed src.addr=%s dst.addr=%s direction="inbound" error="%s"',
                _fmt(src),
                _fmt(dec.upstream),
                e,
            )
            self.metrics.conn_failed({**labels, "response_flags": "CONNECT"})
            conn.respond(sid, 503, end=True)
            return
        self.metrics.conn_opened(labels)
        info = ConnInfo(src[0], dec.upstream[0], dec.upstream[1], conn.peer_identity)
        desc = f"{src[0]}({conn.peer_identity})->{authority}"

        def close_live() -> None:
            conn._reset(sid)
            ctx = conn.streams.get(sid)
            if ctx is not None and ctx.transport is not None:
                ctx.transport.abort()

        key = self._track(dec.workload, info, close_live, desc)

        def done(ctx: StreamCtx, exc: BaseException | None) -> None:
            self._live.pop(key, None)
            self.metrics.conn_closed(labels, ctx.bytes_in, ctx.bytes_out)
            self._access(
                "inbound",
                src,
                (local_ip, self.settings.inbound_port),
                None,
                src_wl,
                ctx.bytes_in,
                ctx.bytes_out,
                started,
                None,
                src_identity=conn.peer_identity,
                dst_workload=dec.workload,
                hbone_addr=authority,
            )

        bag = baggage(dec.workload)
        resp = [("baggage", bag)] if bag else []
        conn.respond(sid, 200, resp)
        conn.attach_plain(sid, up.transport, bytes(up.buf), done)
        if up.eof:
            conn.pump.end_stream(sid)

    async def _hairpin(
        self, conn: HboneConnection, sid: int, wl: Workload, authority: str, src: tuple[IPAddr, int], fwd: str
    ) -> None:
        """The destination has a waypoint and the caller is not it: send the stream to the waypoint, which
        sends it back to us (then from the waypoint's identity, so it goes straight through)."""
        assert wl.waypoint is not None
        state = self.state
        wsvc, wwl = state.resolve_waypoint(wl.waypoint, wl.namespace)
        if wsvc is not None:
            wwl = self.lbs.pick(state, wsvc)
        if wwl is None or not wwl.ips:
            log_in.warning(
                'connection failed src.addr=%s dst.addr=%s direction="inbound" error="no waypoint %s"',
                _fmt(src),
                authority,
                wl.waypoint,
            )
            conn.respond(sid, 503, end=True)
            return
        sans = tuple(dict.fromkeys([*(wsvc.subject_alt_names if wsvc else ()), str(wwl.identity)]))
        gateway = (wwl.ips[0], wl.waypoint.hbone_port)
        log_in.info(
            "proxying to %s using HBONE via %s type ToServerWaypoint (hairpin from %s)",
            authority,
            _fmt(gateway),
            conn.peer_identity,
        )
        key: PoolKey = (str(wl.identity), sans, gateway, wl.ips[0])
        headers = [_never_indexed("forwarded", fwd or f'for="{_fmt(src)}"')]
        try:
            out = await self.pool.checkout(key)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
            log_in.warning('connection failed dst.addr=%s direction="inbound" error="waypoint: %s"', _fmt(gateway), e)
            conn.respond(sid, 503, end=True)
            return
        try:
            out_sid = await out.open_stream(authority, headers, self.settings.connect_timeout)
        except (HttpStatusError, OSError, TimeoutError, ConnectionError) as e:
            self.pool.release(out)
            log_in.warning('connection failed dst.addr=%s direction="inbound" error="waypoint: %s"', _fmt(gateway), e)
            conn.respond(sid, e.status if isinstance(e, HttpStatusError) else 503, end=True)
            return
        # splice the two HBONE streams through a socketpair: each side is a plain socket to its pump
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        ta, _ = await loop.connect_accepted_socket(_Held, sock=a)
        tb, _ = await loop.connect_accepted_socket(_Held, sock=b)
        conn.respond(sid, 200)
        conn.attach_plain(sid, ta, b"", lambda ctx, exc: None)
        out.attach_plain(out_sid, tb, b"", lambda ctx, exc: self.pool.release(out))

    def _inbound_service(self, forwarded: str, wl: Workload, port: int) -> Service | None:
        for part in forwarded.split(";"):
            if part.strip().startswith("host="):
                host = part.strip()[5:]
                for s in self.state.services.values():
                    if s.hostname == host:
                        return s
        for skey, pm in wl.services.items():
            svc = self.state.services.get(skey)
            if svc is not None and port in set(pm.values()) | set(svc.ports.values()):
                return svc
        return None

    # --------------------------------------------------------------------------- inbound plaintext (15006)
    def _plaintext_factory(self, ip: IPAddr) -> asyncio.Protocol:
        def made(held: _Held) -> None:
            self.spawn(self._serve_plaintext(held, _accepted_destination(held, self.impl.original_dst)))

        return _Held(made)

    async def _serve_plaintext(self, held: _Held, dst: tuple[IPAddr, int]) -> None:
        peer = held.transport.get_extra_info("peername")
        src = (_ip(peer[0]), peer[1])
        state = self.state
        try:
            dec = decide_plaintext(state, dst=dst, src_ip=src[0])
        except ProxyError as e:
            if isinstance(e, Denied):
                log_in.info("RBAC rejected conn=%s(none)->%s: %s", src[0], _fmt(dst), e)
            else:
                log_in.warning(
                    'connection failed src.addr=%s dst.addr=%s direction="inbound" error="%s"',
                    _fmt(src),
                    _fmt(dst),
                    e,
                )
            held.transport.abort()
            return
        labels = traffic_labels(
            reporter="destination",
            src=state.find_workload(src[0]),
            src_identity=None,
            dst=dec.workload,
            dst_identity=None,
            service=None,
            mtls=False,
        )
        try:
            up = await self._connect_plain(dst, src[0])
        except (OSError, TimeoutError):
            self.metrics.conn_failed({**labels, "response_flags": "CONNECT"})
            held.transport.abort()
            return
        self.metrics.conn_opened(labels)
        relay: _Relay | None = None
        key = self._track(
            dec.workload,
            ConnInfo(src[0], dst[0], dst[1], None),
            lambda: relay.close() if relay else None,
            f"{src[0]}->{_fmt(dst)}",
        )

        def done(a: int, b: int, exc: BaseException | None) -> None:
            self._live.pop(key, None)
            self.metrics.conn_closed(labels, a, b)

        relay = _Relay(held, up, done)

    # --------------------------------------------------------------------------- admin
    async def _ready_http(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path.split("?")[0] != "/healthz/ready":
            return 404, "text/plain", b"not found\n"
        if not self.xds_synced:
            return 500, "text/plain", b"not ready, pending: xds\n"
        return 200, "text/plain", b"ready\n"

    async def _metrics_http(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path.split("?")[0] not in ("/metrics", "/stats/prometheus"):
            return 404, "text/plain", b"not found\n"
        return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.metrics.registry)

    async def _admin(self, method: str, path: str) -> tuple[int, str, bytes]:
        p = path.split("?")[0]
        if p == "/config_dump":
            return 200, "application/json", json.dumps(self.config_dump(), indent=2).encode()
        if p == "/quitquitquit" and method == "POST":
            asyncio.get_running_loop().call_later(0.05, lambda: os.kill(os.getpid(), 15))
            return 200, "text/plain", b"OK\n"
        if p in ("/metrics", "/stats/prometheus"):
            return await self._metrics_http(method, p)
        if p == "/healthz/ready":
            return await self._ready_http(method, p)
        if p == "/":
            return 200, "text/html", b"<html><body>/config_dump /metrics /quitquitquit</body></html>\n"
        return 404, "text/plain", b"not found\n"

    def config_dump(self) -> dict[str, Any]:
        """ztunnel's `ProxyStateSerialization` shape (camelCase; default-valued fields omitted)."""

        def wl(w: Workload) -> dict[str, Any]:
            d: dict[str, Any] = {
                "uid": w.uid,
                "workloadIps": [str(i) for i in w.ips],
                "protocol": w.protocol.value,
                "name": w.name,
                "namespace": w.namespace,
                "trustDomain": w.trust_domain,
                "serviceAccount": w.service_account,
                "node": w.node,
                "status": "Healthy" if w.healthy else "Unhealthy",
                "clusterId": w.cluster_id,
                "capacity": 1,
            }
            if w.network:
                d["network"] = w.network
            if w.canonical_name:
                d["canonicalName"] = w.canonical_name
            if w.canonical_revision:
                d["canonicalRevision"] = w.canonical_revision
            if w.workload_name:
                d["workloadName"] = w.workload_name
                d["workloadType"] = w.workload_type
            if w.waypoint:
                d["waypoint"] = {"destination": str(w.waypoint), "hboneMtlsPort": w.waypoint.hbone_port}
            if w.authorization_policies:
                d["authorizationPolicies"] = list(w.authorization_policies)
            if w.services:
                d["services"] = sorted(w.services)
            return d

        def svc(s: Service) -> dict[str, Any]:
            eps = {
                e.workload.uid: {
                    "workloadUid": e.workload.uid,
                    "port": {str(k): v for k, v in s.ports.items()},
                    "status": "Healthy" if e.workload.healthy else "Unhealthy",
                }
                for e in self.state.endpoints.get(s.key, [])
            }
            d: dict[str, Any] = {
                "name": s.name,
                "namespace": s.namespace,
                "hostname": s.hostname,
                "vips": [f"/{v}" for v in s.vips],
                "ports": {str(k): v for k, v in s.ports.items()},
                "endpoints": eps,
            }
            if s.subject_alt_names:
                d["subjectAltNames"] = list(s.subject_alt_names)
            if s.waypoint:
                d["waypoint"] = {"destination": str(s.waypoint), "hboneMtlsPort": s.waypoint.hbone_port}
            return d

        def cert(wc: tls.WorkloadCert) -> dict[str, Any]:
            from cryptography import x509

            c = x509.load_pem_x509_certificate(wc.cert.read_bytes())
            return {
                "identity": str(wc.identity),
                "state": "Available",
                "certChain": [
                    {
                        "pem": base64.b64encode(wc.cert.read_bytes()).decode(),
                        "serialNumber": str(c.serial_number),
                        "validFrom": c.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
                        "expirationTime": c.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
                    }
                ],
                "rootCerts": [],
            }

        s = self.settings
        return {
            "workloads": [wl(w) for w in sorted(self.state.workloads.values(), key=lambda w: w.uid)],
            "services": [svc(x) for x in sorted(self.state.services.values(), key=lambda x: x.key)],
            "policies": [
                {
                    "name": p.name,
                    "namespace": p.namespace,
                    "scope": p.scope.value,
                    "action": p.action.value,
                    "rules": [[[_match_json(m) for m in cl] for cl in r] for r in p.rules],
                    "dryRun": p.dry_run,
                }
                for p in sorted(self.state.policies.values(), key=lambda p: p.key)
            ],
            "stagedServices": {},
            "staticConfig": {k: v for k, v in self.raw_config.items() if k != "proxy"},
            "version": {
                "version": "0.1.0",
                "gitRevision": "unknown",
                "rustVersion": "n/a (CPython + Cython)",
                "buildProfile": "release",
                "buildStatus": "Clean",
                "istioVersion": "pyambient",
                "cryptoProvider": f"openssl ({ssl.OPENSSL_VERSION})",
            },
            "config": {
                "proxyMode": "Shared",
                "localNode": s.node,
                "hboneBuffer": 262144,
                "inboundAddr": f"[::]:{s.inbound_port}",
                "inboundPlaintextAddr": f"[::]:{s.plaintext_port}",
                "outboundAddr": _fmt(s.outbound) if s.outbound else None,
                "socks5Addr": _fmt(s.socks5) if s.socks5 else None,
                "adminAddr": _fmt(s.admin) if s.admin else None,
                "statsAddr": _fmt(s.metrics) if s.metrics else None,
                "readinessAddr": _fmt(s.readiness) if s.readiness else None,
                "xdsAddress": self.xds_target,
                "poolMaxStreamsPerConn": s.pool_max_streams,
                "http2Config": {
                    "windowSize": 4194304,
                    "connectionWindowSize": 16777216,
                    "frameSize": 1048576,
                },
                "coreImpl": getattr(self.impl, "__name__", str(self.impl)),
            },
            "certificates": [cert(wc) for wc in {**self._certs, **(self.ca.certs if self.ca else {})}.values()],
        }


def _match_json(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in m.__dataclass_fields__:
        v = getattr(m, f)
        if v:
            camel = f.split("_")[0] + "".join(x.title() for x in f.split("_")[1:])
            out[camel] = [
                ({x.kind.title(): x.value} if hasattr(x, "kind") else str(x) if not isinstance(x, int | tuple) else x)
                for x in v
            ]
    return out


TRIM_INTERVAL = 1.0  # seconds between an abusive connection closing and the heap being trimmed
_malloc_trim: Any = None


def tune_malloc() -> None:
    """Keep glibc from returning the heap to the kernel after every burst: the data path allocates and frees
    256 KiB buffers at line rate, and with the default dynamic thresholds each free can shrink the heap
    (`brk`) only for the next read to grow it again. ztunnel gets the same effect from jemalloc.

    The thresholds are sized to one connection's bounded buffers (a 1 MiB frame + a 256 KiB read), not to a
    peer's whims: blocks above 4 MiB are mmapped (and unmapped on free), and free heap above 32 MiB is given
    back. What hostile connections leave behind is returned by `release_free_memory` once they are closed
    (docs/ztunnel.md has the numbers)."""
    global _malloc_trim
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        _malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return  # not glibc
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 4 << 20)
    mallopt(m_trim_threshold, 32 << 20)
    mallopt(m_top_pad, 16 << 20)


def release_free_memory() -> None:
    """glibc's malloc_trim(0): return free pages anywhere in the heap (not only at its top) to the kernel."""
    if _malloc_trim is not None:
        _malloc_trim(0)


async def run(
    config: Path | None,
    xds: str | None,
    *,
    impl_name: str = "cython",
    ca: Callable[[], CaCertificates] | None = None,
    xds_channel: XdsChannel | None = None,
    inpod_socket: Path | None = None,
) -> None:
    import signal

    if config is None:
        if xds is None:
            raise ConfigError("(command line)", "--xds", "--xds is required without --config")
        loaded = settings_from_flags(xds=xds, node=os.environ.get("NODE_NAME", ""), inpod_socket=inpod_socket)
    else:
        if inpod_socket is not None:
            raise ConfigError("(command line)", "--inpod-socket", "with --config, set proxy.inpodSocket instead")
        loaded = load_config(config)
    tune_malloc()
    impl: Any
    if impl_name == "python":
        import _core._reference as impl
    else:
        import _core as impl
    zt = Ztunnel(loaded, config_path=config, impl=impl, xds=xds, ca=ca() if ca else None, xds_channel=xds_channel)
    await zt.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("ztunnel ready node=%s core=%s", zt.settings.node, impl_name)
    await stop.wait()
    await zt.stop()
