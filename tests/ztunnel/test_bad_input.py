"""Issue 4 item 6: bad input on 15008 closes only that stream/connection (and is logged) while other traffic
keeps flowing; fds and RSS return to baseline after 10k connections."""

from __future__ import annotations

import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h2.config
import h2.connection
import h2.events
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

pytestmark = pytest.mark.ztunnel


def _tls(m: Mesh, cert: dict[str, str], root: Path) -> ssl.SSLSocket:
    raw = socket.create_connection((m.ip(3), 15008), timeout=10)
    return hbone_client_context(cert, root).wrap_socket(raw)


def _connect_status(m: Mesh, cert: dict[str, str], root: Path, authority: str, method: str = "CONNECT") -> int:
    s = _tls(m, cert, root)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    hdrs = [(":method", method), (":authority", authority)]
    if method != "CONNECT":
        hdrs += [(":scheme", "https"), (":path", "/")]
    c.send_headers(1, hdrs, end_stream=method != "CONNECT")
    s.sendall(c.data_to_send())
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return -1
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    return int(dict(ev.headers or [])[":status"])  # type: ignore[index]
            s.sendall(c.data_to_send())
    finally:
        s.close()


def _works(m: Mesh) -> None:
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(s, b"ok") == b"echo-1:ok"
    s.close()


def _is_closed(s: socket.socket, timeout: float = 8.0) -> bool:
    """Drain until EOF (True) or until nothing more arrives within the timeout (False)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):
        return True


def test_bad_input_is_closed_and_logged_while_others_keep_flowing(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    ca = CertificateAuthority()
    m = build_mesh(tmp_path, ca, "127.0.70", procs, backends)
    assert m.node_b is not None
    root = tmp_path / "certs" / "root.crt"
    sleep = issue(ca, tmp_path / "certs", "default", "sleep")
    live = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))  # must survive everything below
    assert roundtrip(live, b"a") == b"echo-1:a"

    # a CONNECT with a bad authority → 400; an authority that is not the local IP → 400; GET → 400
    assert _connect_status(m, sleep, root, "not-an-authority") == 400
    assert _connect_status(m, sleep, root, f"{m.ip(9)}:8080") == 400
    assert _connect_status(m, sleep, root, f"{m.ip(3)}:8080", method="GET") == 400
    # nothing listens upstream → 503 (only after trying the upstream connect)
    assert _connect_status(m, sleep, root, f"{m.ip(3)}:9") == 503
    m.node_b.wait_log("invalid authority 'not-an-authority'")

    # malformed HTTP/2: a valid TLS session carrying garbage after the preface
    s = _tls(m, sleep, root)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x04\x00\x00\x00\x00\x00" + b"\xff" * 64)
    assert _is_closed(s)
    s.close()
    m.node_b.wait_log("http2 protocol error")

    # plaintext on 15008
    p = socket.create_connection((m.ip(3), 15008), timeout=10)
    p.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _is_closed(p)
    p.close()
    m.node_b.wait_log("tls handshake")

    # a client certificate from the right root but the wrong trust domain
    ca.trust_domain = "evil.local"
    evil = ca.issue("spiffe://evil.local/ns/default/sa/sleep")
    ca.trust_domain = "cluster.local"
    ec, ek, _ = evil.write(tmp_path / "evil", stem="evil")
    with pytest.raises((ssl.SSLError, OSError)):
        s = _tls(m, {"cert": str(ec), "key": str(ek)}, root)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        if _is_closed(s):
            raise ConnectionResetError("closed")
    m.node_b.wait_log("error=\"tls: client trust domain 'evil.local' is not 'cluster.local'\"")

    # a handshake that never finishes: closed after the handshake timeout (2 s in these tests)
    t0 = time.monotonic()
    h = socket.create_connection((m.ip(3), 15008), timeout=10)
    h.sendall(b"\x16\x03\x01\x00\x10")  # the start of a ClientHello, then silence
    assert _is_closed(h)
    assert 1.5 < time.monotonic() - t0 < 8
    h.close()
    m.node_b.wait_log("tls handshake timed out")

    assert roundtrip(live, b"b") == b"echo-1:b"
    live.close()
    _works(m)


def test_fds_and_rss_return_to_baseline_after_10k_connections(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.71", procs, backends)
    assert m.node_a is not None and m.node_b is not None
    pids = [m.node_a.proc.pid, m.node_b.proc.pid]

    def one(i: int) -> None:
        s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
        try:
            assert roundtrip(s, b"%d" % i) == b"echo-1:%d" % i
        finally:
            s.close()

    def burst(n: int) -> None:
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(n)))

    burst(1000)  # warm up: pools, caches, allocator arenas
    time.sleep(1.0)
    fds0 = [open_fds(p) for p in pids]
    rss0 = [resident_kb(p) for p in pids]
    t0 = time.monotonic()
    burst(10_000)
    elapsed = time.monotonic() - t0
    deadline = time.time() + 10
    while time.time() < deadline and [open_fds(p) for p in pids] != fds0:
        time.sleep(0.2)
    assert [open_fds(p) for p in pids] == fds0
    rss1 = [resident_kb(p) for p in pids]
    for before, after in zip(rss0, rss1, strict=True):
        assert after - before < 16 * 1024, f"RSS grew {before} → {after} kB"
    assert elapsed < 120
