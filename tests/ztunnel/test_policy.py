"""Issue 4 item 4: L4 policy (sleep allowed, notsleep denied with the RBAC log line); policy pushes re-check
live connections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ztunnel.conftest import Backend, ZtunnelProc, closed_by_peer, roundtrip, socks_connect
from tests.ztunnel.mesh import build_mesh
from xds.ca import CertificateAuthority

pytestmark = pytest.mark.ztunnel

ALLOW_SLEEP = {
    "name": "allow-sleep",
    "namespace": "default",
    "scope": "Namespace",
    "action": "Allow",
    "rules": [[[{"principals": [{"Exact": "cluster.local/ns/default/sa/sleep"}], "destinationPorts": [8080]}]]],
}
DENY_ALL_SLEEP = {
    "name": "deny-sleep",
    "namespace": "default",
    "scope": "Global",
    "action": "Deny",
    "rules": [[[{"principals": [{"Exact": "cluster.local/ns/default/sa/sleep"}]}]]],
}


def test_sleep_allowed_notsleep_denied_with_rbac_log_line(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.50", procs, backends, policies=[ALLOW_SLEEP])
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(s, b"hi") == b"echo-1:hi"
    s.close()
    bad = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(4))  # notsleep
    assert closed_by_peer(bad)
    bad.close()
    assert m.node_a is not None and m.node_b is not None
    m.node_b.wait_log(f"RBAC rejected conn={m.ip(4)}(spiffe://cluster.local/ns/default/sa/notsleep)->{m.ip(3)}:8080")
    m.node_a.wait_log('error="http status: 401"')
    metrics = m.node_b.http(15020, "/metrics")
    assert 'response_flags="DENY"' in metrics
    assert backends[0].connections == 1


def test_policy_push_closes_live_connections_no_longer_allowed(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.51", procs, backends)
    live = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(live, b"1") == b"echo-1:1"
    cfg = json.loads(json.dumps(m.cfg_b))
    cfg["policies"] = [DENY_ALL_SLEEP]
    m.push("b", cfg)
    assert m.node_b is not None
    m.node_b.wait_log("closed because it's no longer allowed after a policy update")
    assert closed_by_peer(live)
    live.close()
