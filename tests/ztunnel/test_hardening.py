"""Issue 10: hostile HTTP/2 and SOCKS5 clients against real ztunnel processes.

Each attack runs from a client holding a valid certificate against node B's HBONE listener (15008) (or node A's
SOCKS5 listener), while a well-behaved client keeps sending through node A → node B and must keep being
served; node B's (or A's) open fds and RSS are sampled before, during (peak) and after the attack and must
stay bounded. The attacker must get the answer Envoy gives: GOAWAY with the RFC 9113 error code, then the
connection closed; the log gets one line per connection closed, never one per frame.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ztunnel.conftest import (
    Backend,
    ZtunnelProc,
    hbone_client_context,
    issue,
    open_fds,
    resident_kb,
    roundtrip,
    socks_connect,
)
from tests.ztunnel.mesh import Mesh, build_mesh
from xds.ca import CertificateAuthority
from ztunnel import h2streams as h2s

pytestmark = [pytest.mark.ztunnel, pytest.mark.hardening]

PREFACE = h2s.PREFACE
SETTINGS = h2s.frame(h2s.SETTINGS, 0, 0)
PING = h2s.frame(h2s.PING, 0, 0, b"12345678")
MiB = 1 << 20
BIG_DATA = b"\xff\xff\xff" + bytes((h2s.DATA, 0)) + (1).to_bytes(4, "big")  # a 16 MiB DATA frame header


def _connect_block(m: Mesh) -> bytes:
    return h2s.encode_block([(":method", "CONNECT"), (":authority", f"{m.ip(3)}:8080")])


def _window_update(sid: int, inc: int) -> bytes:
    return h2s.frame(h2s.WINDOW_UPDATE, 0, sid, inc.to_bytes(4, "big"))


class Attacker:
    """A raw HTTP/2 client on a valid mTLS session to node B's 15008: writes bytes, reads frames back."""

    def __init__(self, target: Target, *, settings: bool = True) -> None:
        ctx = hbone_client_context(target.cert, target.root)
        self.sock = ctx.wrap_socket(socket.create_connection((target.mesh.ip(3), 15008), timeout=20))
        self.buf = b""
        if settings:
            self.sock.sendall(PREFACE + SETTINGS)

    def send(self, data: bytes) -> bool:
        """False once the server has closed (a write into a closed connection fails)."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def frames(self, timeout: float = 20.0) -> list[tuple[int, int, int, bytes]]:
        """Every frame until the server closes: (type, flags, stream id, payload)."""
        self.sock.settimeout(timeout)
        try:
            while chunk := self.sock.recv(1 << 16):
                self.buf += chunk
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        out, pos = [], 0
        while pos + 9 <= len(self.buf):
            hi, lo, ftype, flags, sid = struct.unpack_from(">BHBBL", self.buf, pos)
            length = (hi << 16) | lo
            out.append((ftype, flags, sid & 0x7FFFFFFF, self.buf[pos + 9 : pos + 9 + length]))
            pos += 9 + length
        return out

    def goaway(self, timeout: float = 20.0) -> int | None:
        """The error code of the server's GOAWAY, once it has closed the connection."""
        codes = [int.from_bytes(p[4:8], "big") for t, _, _, p in self.frames(timeout) if t == h2s.GOAWAY]
        return codes[-1] if codes else None

    def closed_by_server(self, timeout: float = 20.0) -> bool:
        """Read (and drop) until the server closes or resets the connection: True, or False on a timeout."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(1 << 16):
                pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            pass
        return True

    def close(self) -> None:
        self.sock.close()


@dataclass
class Usage:
    """Open fds and RSS of one process: before the attack, the peak while it ran, and after."""

    pid: int
    fds: list[int] = field(default_factory=list)  # before, peak, after
    rss_kb: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return f"fds {self.fds} rss {[r // 1024 for r in self.rss_kb]} MiB"


@dataclass
class Bystander:
    """A well-behaved client beside the attack: SOCKS5 → node A → HBONE → node B → echo, over and over."""

    served: int = 0
    failures: list[str] = field(default_factory=list)
    worst: float = 0.0


@dataclass
class Target:
    """A two-node mesh whose node B (15008) or node A (SOCKS5) is attacked, and the attacker's certificate."""

    mesh: Mesh
    node_a: ZtunnelProc
    node_b: ZtunnelProc
    cert: dict[str, str]
    root: Path

    def goaway_for(self, wire: bytes) -> int | None:
        """A new connection that sends `wire`: the error code of the GOAWAY the server closes it with."""
        a = Attacker(self)
        a.send(wire)
        code = a.goaway()
        a.close()
        return code


@contextmanager
def under_attack(m: Mesh, proc: ZtunnelProc, *, settle: float = 3.0) -> Iterator[tuple[Usage, Bystander]]:
    """Samples `proc` and runs a bystander while the body attacks; once the body is done (and raised nothing), the
    bystander must have been served throughout and `proc`'s open fds must be back where they were."""
    warm = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))  # the A → B pooled connection exists
    assert roundtrip(warm, b"warm") == b"echo-1:warm"
    warm.close()
    time.sleep(0.5)
    usage = Usage(proc.proc.pid)
    usage.fds.append(open_fds(usage.pid))
    usage.rss_kb.append(resident_kb(usage.pid))
    peak = [usage.fds[0], usage.rss_kb[0]]
    by = Bystander()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], open_fds(usage.pid))
            peak[1] = max(peak[1], resident_kb(usage.pid))
            time.sleep(0.02)

    def serve() -> None:
        live = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2), timeout=15)
        i = 0
        try:
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    got = roundtrip(live, b"<%d>" % i)
                except OSError as e:
                    by.failures.append(f"roundtrip {i}: {e}")
                    return
                by.worst = max(by.worst, time.monotonic() - t0)
                if got != b"echo-1:<%d>" % i:
                    by.failures.append(f"roundtrip {i}: {got!r}")
                    return
                by.served += 1
                # a new connection too, so fresh streams and handshakes are served under attack as well
                if i % 10 == 0:
                    fresh = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2), timeout=15)
                    if roundtrip(fresh, b"new") != b"echo-1:new":
                        by.failures.append("fresh connection")
                    fresh.close()
                time.sleep(0.02)
        finally:
            live.close()

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=serve, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield usage, by
    finally:
        time.sleep(0.5)  # the bystander keeps going a little after the attack
        stop.set()
        for t in threads:
            t.join(30)
        usage.fds.append(peak[0])
        usage.rss_kb.append(peak[1])
        # after: fds back to where they were, RSS measured once the process has let go
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and open_fds(usage.pid) > usage.fds[0]:
            time.sleep(0.1)
        time.sleep(settle)
        usage.fds.append(open_fds(usage.pid))
        usage.rss_kb.append(resident_kb(usage.pid))
        print(f"\n{usage}; bystander: {by.served} round trips, slowest {by.worst * 1000:.0f} ms")  # for the docs
    assert not by.failures, by.failures
    assert by.served > 0
    assert usage.fds[2] <= usage.fds[0], usage


def _target(tmp_path: Path, net: str, procs: list[ZtunnelProc], backends: list[Backend]) -> Target:
    ca = CertificateAuthority()
    m = build_mesh(tmp_path, ca, net, procs, backends)
    assert m.node_a is not None and m.node_b is not None
    cert = issue(ca, tmp_path / "certs", "default", "sleep")
    return Target(m, m.node_a, m.node_b, cert, tmp_path / "certs" / "root.crt")


def _log_lines(proc: ZtunnelProc, needle: str) -> int:
    return sum(needle in line for line in proc.log().splitlines())


# ----------------------------------------------------------------------------------------------------- frames
def test_frames_over_the_advertised_max_frame_size_are_refused_not_buffered(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.141", procs, backends)
    with under_attack(t.mesh, t.node_b) as (usage, _):
        # what Envoy answers: GOAWAY FRAME_SIZE_ERROR at once
        assert t.goaway_for(BIG_DATA + b"x" * 1000) == h2s.FRAME_SIZE_ERROR
        assert t.goaway_for(b"\xff" * 64) == h2s.FRAME_SIZE_ERROR  # read as a 16 MiB frame header
        # the memory attack: 12 connections, each a 16 MiB DATA frame it keeps writing
        attackers = [Attacker(t) for _ in range(12)]
        for a in attackers:
            a.send(BIG_DATA)
        for _ in range(16):
            alive = [a for a in attackers if a.send(b"\0" * MiB)]
            if not alive:
                break
        for a in attackers:
            a.close()
    assert usage.rss_kb[1] - usage.rss_kb[0] < 48 * 1024, f"peak: {usage}"  # was +227 MiB for 12 connections
    assert usage.rss_kb[2] - usage.rss_kb[0] < 16 * 1024, f"after: {usage}"
    t.node_b.wait_log("reason=frame_size")


def test_max_concurrent_streams_counts_a_burst_of_connects(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.142", procs, backends)
    block = _connect_block(t.mesh)
    with under_attack(t.mesh, t.node_b) as (usage, _):
        a = Attacker(t)
        a.send(b"".join(h2s.headers_frames(sid, block, False, 16384) for sid in range(1, 2001, 2)))
        time.sleep(3)  # let the accepted streams connect upstream
        usage_during = open_fds(usage.pid)
        frames = a.frames(timeout=3)  # the answers so far (the accepted streams stay open)
        a.close()
    ok = {sid for kind, _, sid, p in frames if kind == h2s.HEADERS and b"200" in p}
    refused = {
        sid for kind, _, sid, p in frames if kind == h2s.RST_STREAM and int.from_bytes(p, "big") == h2s.REFUSED_STREAM
    }
    assert len(ok) <= 200, len(ok)
    assert len(refused) >= 800, len(refused)
    # one upstream socket per accepted stream at most (was one per CONNECT: 1000)
    assert usage.fds[1] - usage.fds[0] <= 200 + 20, (usage, usage_during)
    assert _log_lines(t.node_b, "stream failed") <= 1, "refused streams are counted, not logged one by one"


@pytest.mark.parametrize("flood", ["PING", "SETTINGS"])
def test_a_flood_of_control_frames_from_a_client_that_never_reads_is_closed(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend], flood: str
) -> None:
    t = _target(tmp_path, "127.0.143" if flood == "PING" else "127.0.144", procs, backends)
    one = PING if flood == "PING" else SETTINGS
    batch = one * 10_000
    with under_attack(t.mesh, t.node_b) as (usage, _):
        a = Attacker(t)
        a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never reads
        sent = 0
        while sent < 500_000 and a.send(batch):
            sent += 10_000
        closed = a.closed_by_server()  # reading now only to see the end: the server closed (or reset) it
        a.close()
    assert closed, "the flooder was never closed"
    assert usage.rss_kb[1] - usage.rss_kb[0] < 64 * 1024, f"peak: {usage}"
    assert usage.rss_kb[2] - usage.rss_kb[0] < 16 * 1024, f"after: {usage}"
    t.node_b.wait_log("reason=outbound_control_flood")
    assert _log_lines(t.node_b, "outbound_control_flood") == 1


def test_rapid_reset_is_closed_with_one_log_line(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.145", procs, backends)
    block = _connect_block(t.mesh)
    with under_attack(t.mesh, t.node_b) as (usage, _):
        a = Attacker(t)
        for start in range(1, 20_001, 200):
            wire = b"".join(
                h2s.headers_frames(sid, block, False, 16384) + h2s.rst_stream(sid, h2s.CANCEL)
                for sid in range(start, start + 200, 2)
            )
            if not a.send(wire):
                break
        code = a.goaway()
        a.close()
    assert code == h2s.ENHANCE_YOUR_CALM
    assert usage.fds[1] - usage.fds[0] < 50, f"streams reset before their task ran connect nothing: {usage}"
    t.node_b.wait_log("reason=premature_resets")
    assert _log_lines(t.node_b, "stream failed") <= 1
    assert _log_lines(t.node_b, "reason=premature_resets") == 1


def test_a_peer_that_grants_huge_windows_but_never_reads_gets_back_pressure(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    """It sends 128 MiB through a CONNECT stream to the echo backend and reads nothing back: once our socket to it
    stops draining, the backend's socket stops being read, so what node B holds is bounded by socket buffers and
    windows, not by the 128 MiB (nor by the 2^31-1 windows the peer grants); with no WINDOW_UPDATE coming any more,
    a peer that keeps sending overruns our window and is closed with FLOW_CONTROL_ERROR."""
    t = _target(tmp_path, "127.0.150", procs, backends)
    settings = h2s.frame(h2s.SETTINGS, 0, 0, (4).to_bytes(2, "big") + (2**31 - 1).to_bytes(4, "big"))
    with under_attack(t.mesh, t.node_b) as (usage, _):
        a = Attacker(t, settings=False)
        a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.send(PREFACE + settings + _window_update(0, 2**31 - 1 - 65535))
        a.send(h2s.headers_frames(1, _connect_block(t.mesh), False, 16384))
        chunk = h2s.frame(h2s.DATA, 0, 1, b"z" * 16384)
        a.sock.settimeout(5)
        sent = 0
        try:
            for _ in range(128 * MiB // 16384):
                a.sock.sendall(chunk)
                sent += len(chunk)
        except (OSError, ssl.SSLError):
            pass  # the server stopped taking our bytes (its window) or closed us (we overran it)
        print(f"\nsent {sent >> 20} MiB into the stream, read nothing")
        time.sleep(2)
        a.close()
    assert usage.rss_kb[1] - usage.rss_kb[0] < 32 * 1024, f"peak: {usage}"
    t.node_b.wait_log("reason=flow_control")


# -------------------------------------------------------------------------------------------- RFC 9113 rows
@dataclass
class Violation:
    name: str
    wire: bytes
    code: int


def _violations(m: Mesh) -> list[Violation]:
    block = _connect_block(m)
    open1 = h2s.headers_frames(1, block, False, 16384)
    return [
        Violation("window_update_increment_0_on_the_connection", _window_update(0, 0), h2s.PROTOCOL_ERROR),
        Violation("window_update_increment_0_on_a_stream", open1 + _window_update(1, 0), h2s.PROTOCOL_ERROR),
        Violation("connection_window_above_2^31-1", _window_update(0, 2**31 - 1), h2s.FLOW_CONTROL_ERROR),
        Violation("window_update_on_an_idle_stream", _window_update(7, 1), h2s.PROTOCOL_ERROR),
        Violation("priority_of_length_4", h2s.frame(h2s.PRIORITY, 0, 1, b"\0\0\0\0"), h2s.FRAME_SIZE_ERROR),
        Violation("stream_depends_on_itself", h2s.frame(h2s.PRIORITY, 0, 3, b"\0\0\0\3\x10"), h2s.PROTOCOL_ERROR),
        Violation(
            "stream_id_lower_than_the_previous_one",
            h2s.headers_frames(5, block, False, 16384) + h2s.headers_frames(3, block, False, 16384),
            h2s.PROTOCOL_ERROR,
        ),
        Violation(
            "settings_frame_over_our_1MiB_max",
            b"\x10\x00\x01\x04\x00\x00\x00\x00\x00" + b"\0" * 600,
            h2s.FRAME_SIZE_ERROR,
        ),
        Violation("two_empty_data_frames", open1 + h2s.frame(h2s.DATA, 0, 1) * 2, h2s.ENHANCE_YOUR_CALM),
    ]


def test_rfc9113_connection_errors_are_goaway_with_the_code_then_closed(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.146", procs, backends)
    with under_attack(t.mesh, t.node_b, settle=0.5):
        got = {v.name: t.goaway_for(v.wire) for v in _violations(t.mesh)}
    assert got == {v.name: v.code for v in _violations(t.mesh)}


def test_stream_window_above_2_31_is_a_stream_error(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.147", procs, backends)
    a = Attacker(t)
    a.send(h2s.headers_frames(1, _connect_block(t.mesh), False, 16384))
    time.sleep(1)  # the stream is open (its upstream connected)
    a.send(_window_update(1, 2**31 - 1))
    frames = a.frames(timeout=3)
    a.close()
    resets = [int.from_bytes(p, "big") for kind, _, sid, p in frames if kind == h2s.RST_STREAM and sid == 1]
    assert resets == [h2s.FLOW_CONTROL_ERROR]


# --------------------------------------------------------------------------------------------------- SOCKS5
def test_socks5_handshakes_that_stall_are_closed(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.148", procs, backends)
    with under_attack(t.mesh, t.node_a):
        stalled = []
        for _ in range(300):
            s = socket.create_connection(t.mesh.socks, timeout=20)
            s.sendall(b"\x05")  # one byte of the greeting, then nothing
            stalled.append(s)
        closed = 0
        for s in stalled:  # handshakeTimeout is 2 s in these tests
            try:
                closed += s.recv(10) == b""
            except OSError:
                closed += 1
            s.close()
    assert closed == 300
    t.node_a.wait_log("socks5: handshake timed out")


def test_hbone_connections_that_never_send_the_preface_are_closed(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    t = _target(tmp_path, "127.0.149", procs, backends)
    with under_attack(t.mesh, t.node_b):
        silent = [Attacker(t, settings=False) for _ in range(50)]  # TLS done, then nothing
        closed = sum(a.closed_by_server(timeout=20) for a in silent)  # handshakeTimeout is 2 s in these tests
        for a in silent:
            a.close()
    assert closed == 50
    t.node_b.wait_log("http2 preface timed out")
