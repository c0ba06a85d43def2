"""Transparent capture in a network namespace: iptables DNAT to 15001 (outbound, SO_ORIGINAL_DST) and to
15006 (inbound plaintext), where PeerAuthentication STRICT refuses plaintext (issue 4 items 1 and 4)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ztunnel.conftest import Backend, ZtunnelProc, closed_by_peer, roundtrip
from tests.ztunnel.mesh import build_mesh
from tests.ztunnel.netns import NetNS
from xds.ca import CertificateAuthority

pytestmark = pytest.mark.ztunnel

STRICT = {
    "name": "istio_converted_static_strict",
    "namespace": "istio-system",
    "scope": "Global",
    "action": "Deny",
    "rules": [[[{"notPrincipals": [{"Presence": []}]}]]],
}


@pytest.fixture
def netns() -> Iterator[NetNS]:
    ns = NetNS(f"zt-capture-{__import__('os').getpid()}")
    yield ns
    ns.delete()


def _connect(src: str, dst: tuple[str, int]) -> socket.socket:
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(dst)
    return s


def test_redirected_outbound_uses_original_dst_and_strict_blocks_plaintext(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend], netns: NetNS
) -> None:
    net = "127.0.60"
    netns.ex("ip", "addr", "add", "10.96.0.10/32", "dev", "lo")
    # sleep's traffic to the service VIP → node A's 15001; notsleep's plaintext to echo → node B's 15006
    netns.dnat("10.96.0.10", 80, f"{net}.2:15001", src=f"{net}.2")
    netns.dnat(f"{net}.3", 8080, f"{net}.3:15006", src=f"{net}.4")
    m = netns.run_in(lambda: build_mesh(tmp_path, ca, net, procs, backends, start=False))
    for which, ip, path in (("b", f"{net}.3", m.path_b), ("a", f"{net}.2", m.path_a)):
        assert path is not None
        zp = ZtunnelProc(path, ip, tmp_path / f"node-{which}.log", netns=netns.name)
        procs.append(zp)
        zp.wait_ready()
        setattr(m, f"node_{which}", zp)
    assert m.node_a is not None and m.node_b is not None

    s = netns.run_in(lambda: _connect(f"{net}.2", ("10.96.0.10", 80)))
    assert roundtrip(s, b"captured") == b"echo-1:captured"
    s.close()
    m.node_a.wait_log(f"proxying to {net}.3:8080 using HBONE via {net}.3:15008 type Direct")

    # plaintext to a captured workload is accepted on 15006 while there is no STRICT policy...
    p = netns.run_in(lambda: _connect(f"{net}.4", (f"{net}.3", 8080)))
    assert roundtrip(p, b"plain") == b"echo-1:plain"
    # ...and STRICT (pushed as istiod does: a global DENY notPrincipals presence) closes and refuses it
    cfg = json.loads(json.dumps(m.cfg_b))
    cfg["policies"] = [STRICT]
    m.push("b", cfg)
    m.node_b.wait_log("closed because it's no longer allowed after a policy update")
    assert closed_by_peer(p)
    p.close()
    p = netns.run_in(lambda: _connect(f"{net}.4", (f"{net}.3", 8080)))
    assert closed_by_peer(p)
    p.close()
    m.node_b.wait_log(
        f"RBAC rejected conn={net}.4(none)->{net}.3:8080: "
        "explicitly denied by: istio-system/istio_converted_static_strict"
    )
    # HBONE (mTLS) traffic is still allowed under STRICT
    s = netns.run_in(lambda: _connect(f"{net}.2", ("10.96.0.10", 80)))
    assert roundtrip(s, b"mtls") == b"echo-1:mtls"
    s.close()
