"""Fuzz targets: one function per parser, bytes in, and the properties every input must keep.

- `pump_frames`: the HTTP/2 frame reader of `_core.TunnelPump`, the Cython core and its pure-Python twin fed the
  same TLS-decrypted bytes in the same chunks: no exception, and both cores agree on everything they hand on
  (control frames to the owner, stream bytes to the plain sockets, what they send back, whether they closed).
- `h2streams`: `ztunnel.h2streams.StreamFrames` (client and server side) with `h2` behind it for the connection
  frames, as `HboneConnection` wires them: no exception other than h2's `ProtocolError`, the header block being
  reassembled stays within its limit, and a server never tracks more streams than it advertises.
- `socks5`: `ztunnel.socks5.SocksParser`: only `SocksError`; the result does not depend on how the bytes were
  chunked; the buffer stays within one greeting + one request.
- `ztunnel_config`, `mesh_objects`, `mesh_file`: `ztunnel.config.parse_config`, `xds.mesh.objects.mesh_from_objects`
  and `xds.mesh.files.read_file` on structured input (objects built from the fuzzer's bytes over a vocabulary of the
  fields these loaders read): only `ConfigError`, no exception at all (every problem is a reported ModelError), and
  only `FileProblem`, respectively.

A violated property raises; `tests/hardening/fuzz.py` runs these under atheris (coverage-guided), and
`test_fuzz.py` replays every input that ever failed (inline) plus a short bounded run of each.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import atheris
import h2.config
import h2.connection
import h2.exceptions

import _core
import _core._reference as reference
from xds.ca import CertificateAuthority
from xds.mesh.files import FileProblem, read_file
from xds.mesh.objects import mesh_from_objects
from ztunnel import h2streams as h2s
from ztunnel.config import parse_config
from ztunnel.errors import ConfigError
from ztunnel.socks5 import SocksError, SocksParser

PREFACE = h2s.PREFACE


def _chunks(fdp: atheris.FuzzedDataProvider, data: bytes) -> list[bytes]:
    """Split `data` at points the fuzzer picks (the same split for every implementation fed)."""
    out, pos = [], 0
    while pos < len(data):
        n = fdp.ConsumeIntInRange(1, max(1, len(data) - pos)) if fdp.remaining_bytes() else len(data) - pos
        out.append(data[pos : pos + n])
        pos += n
    return out


# ------------------------------------------------------------------------------------------ pump_frames
class _Transport:
    """An asyncio transport stand-in that records what was written and asked of it."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.events.append("close")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.events.append("eof")

    def abort(self) -> None:
        self.events.append("abort")

    def pause_reading(self) -> None:
        self.events.append("pause")

    def resume_reading(self) -> None:
        self.events.append("resume")


class _Owner:
    """Records the pump's callbacks, as `HboneConnection` would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.pump: Any = None

    def pump_error(self, sid: int, code: int, reason: str, detail: str) -> None:
        """As `HboneConnection`: a stream error forgets the stream, a connection error closes the connection."""
        self.calls.append(("error", sid, code, reason))
        if sid:
            self.pump.close_stream(sid)
        else:
            self.pump.close()

    def pump_handshake_done(self) -> None:
        self.calls.append(("handshake",))

    def pump_control(self, data: bytes) -> None:
        self.calls.append(("control", bytes(data)))

    def pump_stream_drained(self, sid: int) -> None:
        self.calls.append(("drained", sid))

    def pump_stream_lost(self, sid: int, exc: BaseException | None) -> None:
        self.calls.append(("lost", sid))

    def pump_closed(self, exc: BaseException | None) -> None:
        self.calls.append(("closed", type(exc).__name__ if exc else None))


_CONTEXTS: tuple[ssl.SSLContext, ssl.SSLContext] | None = None


def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    global _CONTEXTS
    if _CONTEXTS is None:
        ca = CertificateAuthority()
        with tempfile.TemporaryDirectory() as tmp:
            sc, sk, root = ca.issue("spiffe://cluster.local/ns/default/sa/echo").write(Path(tmp), "server")
            cc, ck, _ = ca.issue("spiffe://cluster.local/ns/default/sa/sleep").write(Path(tmp), "client")
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.verify_mode = ssl.CERT_REQUIRED
            server.load_verify_locations(str(root))
            server.load_cert_chain(str(sc), str(sk))
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname = False
            client.load_verify_locations(str(root))
            client.load_cert_chain(str(cc), str(ck))
        _CONTEXTS = (server, client)
    return _CONTEXTS


def _pump_run(impl: ModuleType, chunks: list[bytes], window: int) -> dict[str, Any]:
    """One server-side pump over in-memory TLS, streams 1 and 3 open (3 attached to a plain socket), fed
    the preface and then `chunks`, each chunk encrypted and delivered as one read."""
    server_ctx, client_ctx = _contexts()
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    owner, tls, plain = _Owner(), _Transport(), _Transport()
    pump = impl.TunnelPump(server_ctx.wrap_bio(s_in, s_out, server_side=True), s_in, s_out, owner, True, window, window)
    owner.pump = pump
    pump.connection_made(tls)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    for _ in range(4):  # TLS 1.3: ClientHello → server flight → client Finished
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        if c_out.pending:
            pump.data_received(c_out.read())
        if tls.written:
            c_in.write(bytes(tls.written))
            tls.written.clear()
    assert pump.handshake_done, "in-memory TLS handshake did not complete"
    pump.open_stream(1)
    pump.open_stream(3)
    pump.attach(3, plain)
    fed = 0
    for chunk in [PREFACE, *chunks]:
        if pump.closed:
            break
        client.write(chunk)
        fed += len(chunk)
        pump.data_received(c_out.read())
    c_in.write(bytes(tls.written))
    sent = bytearray()
    try:
        while chunk := client.read(65536):  # b"" once the pump's close_notify is read
            sent += chunk
    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
        pass
    assert len(plain.written) <= fed, "more bytes reached the plain socket than were received"
    return {
        "owner": owner.calls,
        "plain": bytes(plain.written),
        "plain_events": plain.events,
        "sent": bytes(sent),
        "closed": pump.closed,
        "streams": [pump.has_stream(1), pump.has_stream(3)],
    }


def pump_frames(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    window = fdp.PickValueInList([16, 65535, 4 << 20])
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    chunks = _chunks(fdp, body)
    ours = _pump_run(_core, chunks, window)
    twin = _pump_run(reference, chunks, window)
    assert ours == twin, f"the cores disagree:\ncython {ours}\npython {twin}"


# ------------------------------------------------------------------------------------------ h2streams
def _h2streams_run(server_side: bool, chunks: list[bytes]) -> None:
    known: dict[int, bool] = {}
    frames = h2s.StreamFrames(server_side=server_side, known=known, max_streams=4, max_header_list=16384)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=not server_side, header_encoding="utf-8"))
    conn.initiate_connection()
    if not server_side:
        for _ in range(3):
            sid = frames.next_stream_id()
            known[sid] = True
    for chunk in chunks:
        for ev in frames.receive(chunk):
            kind = ev[0]
            if kind == h2s.EV_H2:
                try:
                    conn.receive_data(ev[1])
                except h2.exceptions.ProtocolError:
                    return  # h2 queued a GOAWAY; the connection closes
            elif kind == h2s.EV_HEADERS and server_side and ev[1] not in known:
                known[ev[1]] = True
            elif kind in (h2s.EV_RESET, h2s.EV_REJECT):
                known.pop(ev[1], None)
            elif kind == h2s.EV_ERROR:
                assert isinstance(ev[1], int) and isinstance(ev[2], str)
                return
            assert frames._block_len <= h2s.MAX_HEADER_BLOCK, "header block reassembly beyond its limit"
            assert len(known) <= frames.max_streams or not server_side, "more streams than advertised"


def h2streams(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    server_side = fdp.ConsumeBool()
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    chunks = _chunks(fdp, (PREFACE if server_side else b"") + body)
    _h2streams_run(server_side, chunks)


# ------------------------------------------------------------------------------------------ socks5
_SOCKS_BUFFER_BOUND = 2 + 255 + 22  # a greeting with every method, then the longest request (IPv6)


def _socks_run(chunks: list[bytes]) -> tuple[bytes, Any, bytes, str]:
    parser = SocksParser()
    replies, leftover = b"", b""
    try:
        for chunk in chunks:
            if parser.state == 2:
                leftover += chunk  # once done, the rest is the client's payload
                continue
            out, rest = parser.feed(chunk)
            replies += out
            leftover += rest
            assert len(parser.buf) <= _SOCKS_BUFFER_BOUND + len(chunk), "SOCKS5 buffer beyond one handshake"
    except SocksError as e:
        return replies + e.reply, None, b"", f"error: {e}"
    return replies, parser.dst, leftover, f"state {parser.state}"


def socks5(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    chunked = _socks_run(_chunks(fdp, body))
    whole = _socks_run([body] if body else [])
    assert chunked == whole, f"chunking changed the outcome: {chunked} vs {whole}"


# ------------------------------------------------------------------------------------------ structured input
_KEYS = (
    # Kubernetes objects (xds.mesh.objects)
    "apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations", "uid", "creationTimestamp",
    "spec", "status", "ports", "port", "targetPort", "protocol", "appProtocol", "clusterIP", "clusterIPs",
    "selector", "matchLabels", "podIP", "nodeName", "serviceAccountName", "conditions", "type", "gatewayClassName",
    "listeners", "allowedRoutes", "namespaces", "from", "addresses", "value", "parentRefs", "group", "rules",
    "matches", "path", "backendRefs", "weight", "action", "to", "source", "operation", "principals",
    "notPrincipals", "ipBlocks", "notPorts", "methods", "paths", "hosts", "targetRef", "targetRefs", "mtls",
    "mode", "endpoints", "ready", "targetRef", "items", "istio.io/use-waypoint", "istio.io/waypoint-for",
    "istio.io/dataplane-mode", "kubernetes.io/service-name", "gateway.istio.io/service-account",
    # ztunnel config (ztunnel.config)
    "proxy", "node", "bindIp", "workloads", "services", "policies", "workloadIps", "serviceAccount",
    "trustDomain", "waypoint", "destination", "hboneMtlsPort", "vips", "hostname", "scope", "Exact",
    "Prefix", "Suffix", "Presence", "canonicalName", "canonicalRevision", "workloadName", "network",
    "outbound", "socks5", "admin", "metrics", "readiness", "hbonePort", "inboundPort", "plaintextPort",
    "poolMaxStreams", "keepaliveInterval", "keepaliveTimeout", "handshakeTimeout", "connectTimeout", "workload",
    "certificates", "cert", "key", "rootCert", "xds", "healthStatus", "notNamespaces", "sourceIps", "destinationIps",
    "destinationPorts", "notDestinationPorts",
)  # fmt: skip
_STRINGS = (
    "", "a", "default", "Service", "Pod", "Namespace", "Gateway", "HTTPRoute", "AuthorizationPolicy",
    "PeerAuthentication", "EndpointSlice", "List", "ServiceList", "istio-waypoint", "HBONE", "TCP", "UDP", "http",
    "ALLOW", "DENY", "STRICT", "PERMISSIVE", "All", "Same", "PathPrefix", "Exact", "RegularExpression", "/",
    "127.0.0.1", "10.96.0.10", "::1", "/10.96.0.10", "default/echo.default.svc.cluster.local", "10.0.0.0/8",
    "1.2.3.4/33", "not-an-ip", "80", "8080", "²", "-1", "99999", "1e3", "service", "workload", "all", "none",
    "ambient", "Healthy", "Unhealthy", "Global", "Namespace", "cluster.local", "spiffe://cluster.local/ns/a/sa/b",
    "127.0.0.1:15001", "127.0.0.1:x", "[::1]:80", "True", "IPAddress", "Hostname", "x" * 300, "\u00e9", "\x00",
)  # fmt: skip


def structured(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """A JSON-like value drawn from the fuzzer's bytes: maps keyed from `_KEYS`, strings from `_STRINGS`, and
    numbers, booleans, nulls and lists — the shapes a YAML file can hold."""
    choice = fdp.ConsumeIntInRange(0, 9 if depth < 6 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return fdp.ConsumeBool()
    if choice == 2:
        return fdp.PickValueInList([0, 1, 80, 8080, 15008, 65535, 65536, -1, 2**31, 2**64])
    if choice == 3:
        return fdp.ConsumeFloat()
    if choice in (4, 5):
        return fdp.PickValueInList(list(_STRINGS))
    if choice in (6, 7):
        return {
            (fdp.PickValueInList(list(_KEYS)) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 99)): (
                structured(fdp, depth + 1)
            )
            for _ in range(fdp.ConsumeIntInRange(0, 6))
        }
    return [structured(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]


_KINDS = ("Namespace", "Service", "Pod", "EndpointSlice", "Gateway", "HTTPRoute", "AuthorizationPolicy",
          "PeerAuthentication", "ServiceList", "Other")  # fmt: skip


def _kube_object(fdp: atheris.FuzzedDataProvider) -> Any:
    """Mostly the skeleton of a Kubernetes object (kind, metadata), with fuzzed spec and status."""
    if not fdp.ConsumeIntInRange(0, 7):
        return structured(fdp, 1)
    obj: dict[str, Any] = {"kind": fdp.PickValueInList(list(_KINDS))}
    obj["metadata"] = {"name": fdp.PickValueInList(list(_STRINGS[:4])), "namespace": "default"}
    if fdp.ConsumeBool():
        obj["metadata"]["labels"] = structured(fdp, 3)
    for key in ("spec", "status", "endpoints", "items"):
        if fdp.ConsumeBool():
            obj[key] = structured(fdp, 1)
    return obj


def _ztunnel_document(fdp: atheris.FuzzedDataProvider) -> Any:
    """Mostly the skeleton of a ztunnel config file, with fuzzed sections."""
    if not fdp.ConsumeIntInRange(0, 7):
        return structured(fdp)
    doc: dict[str, Any] = {}
    for key in ("proxy", "workloads", "services", "policies"):
        if fdp.ConsumeBool():
            doc[key] = [structured(fdp, 2) for _ in range(fdp.ConsumeIntInRange(0, 3))] if key != "proxy" else (
                structured(fdp, 2)
            )
    return doc


def ztunnel_config(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    value = _ztunnel_document(fdp)
    with tempfile.TemporaryDirectory() as base:  # certificate paths resolve here: nothing to read
        try:
            parse_config(value, "fuzz.yaml", Path(base))
        except ConfigError:
            pass


def mesh_objects(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    objects = [_kube_object(fdp) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    mesh_from_objects([o for o in objects if isinstance(o, dict)])


def mesh_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fdp = atheris.FuzzedDataProvider(data)
        path = Path(tmp) / fdp.PickValueInList(["mesh.yaml", "mesh.json"])
        path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
        try:
            objects = read_file(path)
        except FileProblem:
            return
        mesh_from_objects(objects)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pump_frames": pump_frames,
    "h2streams": h2streams,
    "socks5": socks5,
    "ztunnel_config": ztunnel_config,
    "mesh_objects": mesh_objects,
    "mesh_file": mesh_file,
}
