"""Issue 4 items 1 and 2: two ztunnels on loopback, HBONE between them, round robin, config pushes."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness.hbone import HboneTerminator
from tests.ztunnel.conftest import Backend, ZtunnelProc, roundtrip, socks_connect
from tests.ztunnel.mesh import ECHO_HOST, build_mesh
from xds.ca import CertificateAuthority

pytestmark = pytest.mark.ztunnel


@pytest.mark.parametrize("core", ["cython", "python"])
def test_client_reaches_service_on_other_node_over_hbone_with_its_identity(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend], core: str
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.0", procs, backends, core=core)
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(s, b"hello") == b"echo-1:hello"
    big = bytes(range(256)) * 4096  # 1 MiB through the tunnel both ways
    s.sendall(big)
    got = b""
    while len(got) < len(big) + len(b"echo-1:"):
        chunk = s.recv(1 << 20)
        assert chunk
        got += chunk
    assert got.replace(b"echo-1:", b"") == big
    s.close()
    assert m.node_a is not None and m.node_b is not None
    m.node_a.wait_log(f"proxying to {m.ip(3)}:8080 using HBONE via {m.ip(3)}:15008 type Direct")
    # the destination node sees (and reports) the client's SPIFFE identity
    log_b = m.node_b.wait_log('src.identity="spiffe://cluster.local/ns/default/sa/sleep"')
    assert 'direction="inbound"' in log_b
    metrics = m.node_b.http(15020, "/metrics")
    assert 'source_principal="spiffe://cluster.local/ns/default/sa/sleep"' in metrics
    assert "istio_tcp_connections_opened_total{" in metrics
    assert "_created" not in metrics  # ztunnel exports no *_created series
    dump = json.loads(m.node_a.http(15000, "/config_dump"))
    assert [w["name"] for w in dump["workloads"]] == ["echo-1", "notsleep", "sleep"]
    assert dump["services"][0]["hostname"] == ECHO_HOST
    assert m.node_b.http(15021, "/healthz/ready") == "ready\n"


def test_round_robin_splits_100_connections_50_50_and_removed_endpoint_gets_no_new_connections(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.20", procs, backends, endpoints=2)

    def one(_: int) -> bytes:
        s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
        try:
            return roundtrip(s, b"x")
        finally:
            s.close()

    with ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(one, range(100)))
    assert sorted(set(answers)) == [b"echo-1:x", b"echo-2:x"]
    assert answers.count(b"echo-1:x") == 50 and answers.count(b"echo-2:x") == 50

    # push: echo-2 leaves the service; a live connection to it survives the push
    live = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    first = roundtrip(live, b"a")
    if first != b"echo-2:a":  # make sure the survivor is on echo-2
        live.close()
        live = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
        first = roundtrip(live, b"a")
    assert first == b"echo-2:a"
    cfg = dict(m.cfg_a)
    cfg["workloads"] = [w for w in cfg["workloads"] if w["name"] != "echo-2"]
    m.push("a", cfg)
    assert m.node_a is not None
    m.node_a.wait_log("config reloaded")
    before = backends[1].connections
    answers = [one(i) for i in range(20)]
    assert set(answers) == {b"echo-1:x"}
    assert backends[1].connections == before
    assert roundtrip(live, b"still") == b"echo-2:still"
    live.close()


def test_bad_config_push_is_rejected_naming_path_and_field(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.21", procs, backends)
    cfg = json.loads(json.dumps(m.cfg_a))
    cfg["workloads"][0]["workloadIps"] = ["not-an-ip"]
    m.push("a", cfg)
    assert m.node_a is not None and m.path_a is not None
    m.node_a.wait_log(f"{m.path_a}: workloads[0].workloadIps[0]: 'not-an-ip' is not an IP address")
    time.sleep(0.3)
    s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))  # the old config keeps serving
    assert roundtrip(s, b"ok") == b"echo-1:ok"
    s.close()


@pytest.mark.parametrize("core", ["cython", "python"])
def test_connect_request_carries_forwarded_baggage_and_a_fresh_traceparent(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend], core: str
) -> None:
    """What node B receives, read by a plain h2 CONNECT terminator standing in for it: Istio's request headers."""
    m = build_mesh(tmp_path, ca, "127.0.0", procs, backends, core=core, start=False)
    assert m.path_a is not None
    terminator = HboneTerminator(m.ip(3), ca.issue("spiffe://cluster.local/ns/default/sa/echo"))
    try:
        m.node_a = ZtunnelProc(m.path_a, m.ip(2), tmp_path / "node-a.log", core=core)
        procs.append(m.node_a)
        m.node_a.wait_ready()
        ports = []
        for _ in range(2):
            s = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
            assert roundtrip(s, b"hi") == b"echo-1:hi"
            ports.append(s.getsockname()[1])
            s.close()
    finally:
        terminator.close()
    first, second = terminator.records
    assert first.peer_identity == "spiffe://cluster.local/ns/default/sa/sleep"
    assert first.authority == f"{m.ip(3)}:8080"
    headers = dict(first.headers)
    assert headers[":method"] == "CONNECT"
    assert headers["forwarded"] == f'for="{m.ip(2)}:{ports[0]}";host={ECHO_HOST}'
    assert "k8s.namespace.name=default" in headers["baggage"].split(",")
    trace = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00", headers["traceparent"])
    assert trace is not None and trace.group(1) != "0" * 32 and trace.group(2) != "0" * 16
    assert dict(second.headers)["traceparent"] != headers["traceparent"]  # one trace per connection
