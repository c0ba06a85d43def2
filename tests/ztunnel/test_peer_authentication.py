"""PeerAuthentication end to end (issue 9 item 3): objects → our control plane → delta xDS → our ztunnels, with
real connections. Plaintext reaches the destination ztunnel's 15006 through iptables DNAT (as the node's
capture rules send it), mTLS arrives as HBONE from the client's ztunnel."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import wait_until
from tests.harness.meshes import ambient_namespace, namespace, pod, service
from tests.ztunnel.conftest import Backend, ZtunnelProc, closed_by_peer, issue, proxy_section, socks_connect, write_yaml
from tests.ztunnel.netns import NetNS
from xds.ca import CertificateAuthority

pytestmark = [pytest.mark.ztunnel, pytest.mark.policy]

NET = "127.0.62"
WEB, SLEEP, OUTSIDER = f"{NET}.3", f"{NET}.2", f"{NET}.9"  # OUTSIDER: a client outside the mesh (plaintext)
STATIC = "istio-system/istio_converted_static_strict"


def _pa(ns: str, name: str, mode: str | None, **spec: Any) -> dict[str, Any]:
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


def _mesh(*policies: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        namespace("istio-system"),
        ambient_namespace("ns"),
        service("ns", "web", "10.96.0.20", [("http", 80, 8080)], {"app": "web"}),
        pod("ns", "web-0", WEB, {"app": "web"}, "web", node="node-b"),
        pod("ns", "sleep-0", SLEEP, {"app": "sleep"}, "sleep", node="node-a"),
        *policies,
    ]


@pytest.fixture
def netns() -> Iterator[NetNS]:
    ns = NetNS(f"zt-pa-{os.getpid()}")
    yield ns
    ns.delete()


def _plaintext(netns: NetNS, port: int) -> bytes:
    """One plaintext exchange from outside the mesh to web-0:port; b"" when the ztunnel refused it."""

    def go() -> bytes:
        with socket.socket() as s:
            s.settimeout(10)
            s.bind((OUTSIDER, 0))
            s.connect((WEB, port))
            if closed_by_peer(s):
                return b""
            s.sendall(b"hi")
            data = s.recv(100)
            return data

    return netns.run_in(go)


def _mtls(netns: NetNS, port: int) -> bytes:
    def go() -> bytes:
        with socks_connect((SLEEP, 15080), (WEB, port), src_ip=SLEEP) as s:
            s.sendall(b"hi")
            return s.recv(100)

    return netns.run_in(go)


def _eventually(fn: Any, want: bytes, what: str) -> None:
    wait_until(lambda: fn() == want, timeout=20, what=what)


def test_strict_permissive_and_port_level_over_real_connections(
    tmp_path: Path, ca: CertificateAuthority, procs: list[ZtunnelProc], backends: list[Backend], netns: NetNS
) -> None:
    for port in (8080, 9090):
        netns.dnat(WEB, port, f"{WEB}:15006", src=OUTSIDER)
    cp = netns.run_in(lambda: ControlPlaneThread(_mesh(_pa("istio-system", "default", "STRICT")), ca=ca)
                      .start(f"{NET}.1:0"))  # fmt: skip
    try:
        netns.run_in(lambda: backends.extend(Backend(WEB, p, f"web-{p}") for p in (8080, 9090)))
        certdir, root = tmp_path / "certs", tmp_path / "certs" / "root.crt"
        nodes = {}
        for node, ip, sa in (("node-b", WEB, "web"), ("node-a", SLEEP, "sleep")):
            proxy = proxy_section(ip, node, [issue(ca, certdir, "ns", sa)], root, xds=f"{NET}.1:{cp.port}")
            path = write_yaml(tmp_path / f"{node}.yaml", {"proxy": proxy})
            nodes[node] = ZtunnelProc(path, ip, tmp_path / f"{node}.log", netns=netns.name)
            procs.append(nodes[node])
        for zp in nodes.values():
            zp.wait_ready()
        node_b = nodes["node-b"]

        # mesh-wide STRICT (root namespace): plaintext refused and logged, mTLS flows
        _eventually(lambda: _mtls(netns, 8080), b"web-8080:hi", "mTLS through HBONE under STRICT")
        _eventually(lambda: _plaintext(netns, 8080), b"", "plaintext refused under mesh-wide STRICT")
        node_b.wait_log(f"RBAC rejected conn={OUTSIDER}(none)->{WEB}:8080: explicitly denied by: {STATIC}")

        # a namespace PERMISSIVE policy overrides the mesh's STRICT
        cp.apply(_mesh(_pa("istio-system", "default", "STRICT"), _pa("ns", "default", "PERMISSIVE")))
        _eventually(lambda: _plaintext(netns, 8080), b"web-8080:hi", "namespace PERMISSIVE accepts plaintext")
        assert _plaintext(netns, 9090) == b"web-9090:hi"

        # workload STRICT with 8080 PERMISSIVE: plaintext only on 8080, refused on 9090 by the converted policy
        cp.apply(_mesh(
            _pa("istio-system", "default", "STRICT"),
            _pa("ns", "web", "STRICT", selector={"matchLabels": {"app": "web"}},
                portLevelMtls={"8080": {"mode": "PERMISSIVE"}}),
        ))  # fmt: skip
        _eventually(lambda: _plaintext(netns, 9090), b"", "plaintext refused on the STRICT port")
        assert _plaintext(netns, 8080) == b"web-8080:hi"
        converted = "ns/converted_peer_authentication_web"
        node_b.wait_log(f"RBAC rejected conn={OUTSIDER}(none)->{WEB}:9090: explicitly denied by: {converted}")
        assert _mtls(netns, 9090) == b"web-9090:hi"  # mTLS is never refused by PeerAuthentication
        assert len(cp.control_plane.nacks) == 0
    finally:
        netns.run_in(cp.stop)
