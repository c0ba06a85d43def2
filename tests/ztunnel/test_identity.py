"""Our ztunnel's identities: only ever its workloads' own, from files or from the CA on demand.

- issue 9 item 5: a workload without a certificate of its own gets no traffic proxied (outbound or
  inbound), with one clear log line; never the first certificate the ztunnel happens to have;
- CA mode: no certificate files; the ztunnel asks the control plane's secure port for each local
  workload's identity with its own token (istio-system/ztunnel, impersonation), and carries HBONE
  between two nodes with those certificates, over xDS on the secure port too.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import wait_until
from tests.harness.meshes import ambient_namespace, namespace, pod, service
from tests.ztunnel.conftest import Backend, ZtunnelProc, roundtrip, socks_connect, workload, write_yaml
from tests.ztunnel.mesh import build_mesh, start_nodes
from xds.ca import CertificateAuthority

pytestmark = [pytest.mark.interop, pytest.mark.ztunnel]


def _refused(s: socket.socket) -> bool:
    s.settimeout(10)
    try:
        s.sendall(b"hello")
        return s.recv(64) == b""
    except OSError:
        return True


def test_workload_without_its_own_certificate_gets_no_traffic(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    extra_b = [workload("nocert", "127.0.41.8", "node-b", sa="nocert")]
    m = build_mesh(tmp_path, ca, "127.0.41", procs, backends, start=False, extra_workloads_b=extra_b)
    backends.append(Backend("127.0.41.8", 8080, "nocert"))
    # node A holds only sleep's certificate: notsleep (same node) has none.
    m.cfg_a["proxy"]["certificates"] = m.cfg_a["proxy"]["certificates"][:1]
    m.push("a", m.cfg_a)
    start_nodes(m, procs)
    assert m.node_a is not None and m.node_b is not None

    ok = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(ok, b"hi") == b"echo-1:hi"
    ok.close()

    outbound = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(4))
    assert _refused(outbound)
    outbound.close()
    line = m.node_a.wait_log("no certificate for identity spiffe://cluster.local/ns/default/sa/notsleep")
    assert line.count("sa/notsleep; not proxying under another identity") == 1

    inbound = socks_connect(m.socks, ("127.0.41.8", 8080), src_ip=m.ip(2))
    assert _refused(inbound)
    inbound.close()
    log_b = m.node_b.wait_log("no certificate for identity spiffe://cluster.local/ns/default/sa/nocert")
    assert 'connection refused dst.addr=127.0.41.8:15008 direction="inbound"' in log_b
    assert "echo-1:hello" not in log_b


@pytest.fixture
def control() -> Iterator[ControlPlaneThread]:
    objects = [
        namespace("default"),
        pod("default", "sleep", "127.0.42.2", {"app": "sleep"}, "sleep", node="node-a"),
        pod("default", "notsleep", "127.0.42.4", {"app": "notsleep"}, "notsleep", node="node-a"),
        pod("default", "echo-1", "127.0.42.3", {"app": "echo"}, "echo", node="node-b"),
    ]
    control = ControlPlaneThread(objects).start()
    try:
        yield control
    finally:
        control.stop()


def test_ztunnels_get_certificates_from_the_ca_and_carry_hbone_between_nodes(
    tmp_path: Path,
    ca: CertificateAuthority,
    control: ControlPlaneThread,
    procs: list[ZtunnelProc],
    backends: list[Backend],
) -> None:
    m = build_mesh(tmp_path, ca, "127.0.42", procs, backends, start=False)
    root = tmp_path / "root-cert.pem"
    root.write_bytes(control.control_plane.ca.root_pem)
    nodes = {}
    for name, cfg, path, ip in (("b", m.cfg_b, m.path_b, m.ip(3)), ("a", m.cfg_a, m.path_a, m.ip(2))):
        assert path is not None
        for key in ("certificates", "rootCert"):
            cfg["proxy"].pop(key)  # no certificate files at all
        write_yaml(path, cfg)
        token = tmp_path / f"token-{name}"
        token.write_text(control.tokens.issue("istio-system", "ztunnel", pod=f"ztunnel-{name}", node=f"node-{name}"))
        args = ["--ca-address", f"127.0.0.1:{control.secure_port}", "--ca-root-cert", str(root)]
        args += ["--token-path", str(token), "--ca-server-name", "istiod.istio-system.svc", "--secret-ttl", "30"]
        nodes[name] = ZtunnelProc(path, ip, tmp_path / f"node-{name}.log", extra_args=tuple(args))
        procs.append(nodes[name])
    for proc in nodes.values():
        proc.wait_ready()
    nodes["a"].wait_log("certificate for spiffe://cluster.local/ns/default/sa/sleep issued by the CA", timeout=30)
    nodes["b"].wait_log("certificate for spiffe://cluster.local/ns/default/sa/echo issued by the CA", timeout=30)

    live = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(live, b"hello") == b"echo-1:hello"

    # 30 s certificates are renewed at half life; the connection made before keeps working.
    def renewed(proc: ZtunnelProc, identity: str) -> bool:
        return proc.log().count(f"certificate for {identity} issued by the CA") >= 2

    for proc, identity in (
        (nodes["a"], "spiffe://cluster.local/ns/default/sa/sleep"),
        (nodes["b"], "spiffe://cluster.local/ns/default/sa/echo"),
    ):
        wait_until(functools.partial(renewed, proc, identity), timeout=90, interval=0.5, what=f"{identity} renewed")
    assert roundtrip(live, b"again") == b"echo-1:again"
    live.close()
    log_b = nodes["b"].wait_log('src.identity="spiffe://cluster.local/ns/default/sa/sleep"')  # when it completes
    assert 'dst.identity="spiffe://cluster.local/ns/default/sa/echo"' in log_b
    fresh = socks_connect(m.socks, ("10.96.0.10", 80), src_ip=m.ip(2))
    assert roundtrip(fresh, b"new") == b"echo-1:new"
    fresh.close()
    # Node A's token could not get echo's identity (not on its node) even if it asked: the CA checks.
    assert "sa/echo issued" not in nodes["a"].log()


def test_ztunnels_fed_only_by_the_secure_port_carry_traffic(
    tmp_path: Path, procs: list[ZtunnelProc], backends: list[Backend]
) -> None:
    """As Istio's ztunnel runs against istiod: xDS and certificates both over 15012, one token, no files."""
    net = "127.0.43"
    objects = [
        ambient_namespace("default"),
        service("default", "echo", "10.96.43.10", [("http", 80, 8080)], {"app": "echo"}),
        pod("default", "sleep", f"{net}.2", {"app": "sleep"}, "sleep", node="node-a"),
        pod("default", "echo-1", f"{net}.3", {"app": "echo"}, "echo", node="node-b"),
    ]
    control = ControlPlaneThread(objects).start(address=None)  # no plaintext port at all
    try:
        backends.append(Backend(f"{net}.3", 8080, "echo-1"))
        root = tmp_path / "root-cert.pem"
        root.write_bytes(control.control_plane.ca.root_pem)
        nodes = []
        for name, last in (("b", 3), ("a", 2)):
            cfg = {
                "proxy": {
                    "node": f"node-{name}",
                    "bindIp": f"{net}.{last}",
                    "handshakeTimeout": 2.0,
                    "xds": f"127.0.0.1:{control.secure_port}",
                }
            }
            token = tmp_path / f"token-{name}"
            token.write_text(control.tokens.issue("istio-system", "ztunnel", node=f"node-{name}"))
            args = (
                "--ca-address",
                f"127.0.0.1:{control.secure_port}",
                "--ca-root-cert",
                str(root),
                "--token-path",
                str(token),
                "--ca-server-name",
                "istiod.istio-system.svc",
                "--xds-tls",
            )
            proc = ZtunnelProc(
                write_yaml(tmp_path / f"{name}.yaml", cfg), f"{net}.{last}", tmp_path / f"{name}.log", extra_args=args
            )
            procs.append(proc)
            nodes.append(proc)
        for proc in nodes:
            proc.wait_ready()
        nodes[0].wait_log("certificate for spiffe://cluster.local/ns/default/sa/echo issued by the CA", timeout=30)
        nodes[1].wait_log("certificate for spiffe://cluster.local/ns/default/sa/sleep issued by the CA", timeout=30)
        s = socks_connect((f"{net}.2", 15080), ("10.96.43.10", 80), src_ip=f"{net}.2")
        assert roundtrip(s, b"over-15012") == b"echo-1:over-15012"
        s.close()
        nodes[0].wait_log('src.identity="spiffe://cluster.local/ns/default/sa/sleep"')
    finally:
        control.stop()
