"""HBONE pooling (≤100 streams per connection) and PING keepalive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.ztunnel.conftest import Backend, ZtunnelProc, roundtrip, socks_connect
from tests.ztunnel.mesh import build_mesh, start_nodes
from xds.ca import CertificateAuthority

pytestmark = pytest.mark.ztunnel


def _hbone_conns(ip: str) -> int:
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", "( sport = :15008 )"], capture_output=True, text=True, check=True
    ).stdout
    return sum(1 for line in out.splitlines() if f"{ip}:15008" in line.split()[2])


def test_pool_puts_at_most_100_streams_on_one_hbone_connection(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.110", procs, backends)
    held = []
    for i in range(150):
        s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
        assert roundtrip(s, b"%d" % i) == b"echo-1:%d" % i
        held.append(s)
    assert _hbone_conns(m.ip(3)) == 2  # 100 + 50
    for s in held:
        s.close()


def test_keepalive_ping_drops_a_peer_that_stops_answering(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.111", procs, backends, start=False)
    cfg = json.loads(json.dumps(m.cfg_a))
    cfg["proxy"]["keepaliveInterval"] = 0.3
    cfg["proxy"]["keepaliveTimeout"] = 1.0
    m.push("a", cfg)
    start_nodes(m, procs)
    assert m.node_a is not None and m.node_b is not None
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(s, b"x") == b"echo-1:x"
    time.sleep(1.0)  # several PINGs answered: the connection stays up
    assert roundtrip(s, b"y") == b"echo-1:y"
    os.kill(m.node_b.proc.pid, signal.SIGSTOP)
    try:
        m.node_a.wait_log('error="keepalive timeout"', timeout=10)
    finally:
        os.kill(m.node_b.proc.pid, signal.SIGCONT)
    s.settimeout(5)
    assert s.recv(10) == b""  # the stream went with its connection
    s.close()
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))  # a new connection is dialled
    assert roundtrip(s, b"z") == b"echo-1:z"
    s.close()


def test_connect_without_response_times_out_and_the_pool_recovers(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    """A CONNECT sent on a pooled connection whose peer stops answering: the client is closed after the connect
    timeout with the reason logged, and once the peer is back the same pool serves new connections."""
    m = build_mesh(tmp_path, ca, "127.0.112", procs, backends, start=False)
    cfg = json.loads(json.dumps(m.cfg_a))
    cfg["proxy"]["connectTimeout"] = 1.0
    m.push("a", cfg)
    start_nodes(m, procs)
    assert m.node_a is not None and m.node_b is not None
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(s, b"x") == b"echo-1:x"  # the HBONE connection is now pooled
    s.close()
    os.kill(m.node_b.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
        s.settimeout(10)
        assert s.recv(10) == b""
        assert 0.8 < time.monotonic() - t0 < 5
        m.node_a.wait_log('error="no response to CONNECT"')
        s.close()
    finally:
        os.kill(m.node_b.proc.pid, signal.SIGCONT)
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(s, b"y") == b"echo-1:y"
    s.close()
    assert _hbone_conns(m.ip(3)) == 1, "the same pooled connection kept serving"
