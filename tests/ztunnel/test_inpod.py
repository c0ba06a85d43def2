"""In-pod capture end to end, without Kubernetes: pods are network namespaces on a bridge (tests/ztunnel/
inpod_topology.py), each of two ztunnels runs in the host netns (like a hostNetwork DaemonSet pod) and receives
its pods' netns fds over the enrolment socket; the ztunnel installs the rules inside each pod and serves it from
listeners opened there."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.ztunnel.conftest import (
    Backend,
    ZtunnelProc,
    closed_by_peer,
    issue,
    proxy_section,
    roundtrip,
    workload,
    write_yaml,
)
from tests.ztunnel.inpod_topology import PREFIX, PROBE_SOURCE, Node
from xds.ca import CertificateAuthority
from ztunnel.inpod.enrolment import AddPod
from ztunnel.inpod.link import EnrolmentRefused, ZtunnelLink

pytestmark = pytest.mark.ztunnel
T = TypeVar("T")

SLEEP, ECHO, OTHER = f"{PREFIX}.11", f"{PREFIX}.12", f"{PREFIX}.13"
VIP = "10.96.0.10"
STRICT = {
    "name": "istio_converted_static_strict",
    "namespace": "istio-system",
    "scope": "Global",
    "action": "Deny",
    "rules": [[[{"notPrincipals": [{"Presence": []}]}]]],
}
POD = {"sleep": ("default/sleep", SLEEP), "echo": ("default/echo", ECHO), "other": ("default/other", OTHER)}


@dataclass
class Cluster:
    node: Node
    tmp: Path
    zt: dict[str, ZtunnelProc]
    sockets: dict[str, Path]
    configs: dict[str, Path]
    echo: Backend

    def start_ztunnel(self, which: str) -> ZtunnelProc:
        zp = ZtunnelProc(
            self.configs[which], f"{PREFIX}.{1 if which == 'node-1' else 2}",
            self.tmp / f"{which}-{time.monotonic_ns()}.log", netns=self.node.host.name,
        )  # fmt: skip
        self.zt[which] = zp
        zp.wait_ready(60)
        return zp

    def enrol(self, which: str, pods: list[str]) -> None:
        """What the node agent does on (re)connect: every pod, then snapshot-sent."""
        link = ZtunnelLink(self.sockets[which])
        try:
            for pod in pods:
                fd = os.open(self.node.netns_path(pod), os.O_RDONLY)
                try:
                    link.add(AddPod(f"uid-{pod}", "default", pod, (POD[pod][1],)), fd)
                finally:
                    os.close(fd)
            link.snapshot_sent()
        finally:
            link.close()


def _in(node: Node, pod: str, fn: Callable[[], T]) -> T:
    return node.pods[pod].run_in(fn) if pod in node.pods else node.host.run_in(fn)


def _connect(dst: tuple[str, int], src: str | None = None) -> Callable[[], socket.socket]:
    def go() -> socket.socket:
        s = socket.socket()
        s.settimeout(10)
        if src:
            s.bind((src, 0))
        s.connect(dst)
        return s

    return go


def _eventually(fn: Callable[[], bytes], want: bytes, what: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    got: bytes | str = b""
    while time.time() < deadline:
        try:
            got = fn()
            if got == want:
                return
        except OSError as e:
            got = str(e)
        time.sleep(0.2)
    raise AssertionError(f"{what}: got {got!r}, want {want!r}")


@pytest.fixture
def cluster(tmp_path: Path, ca: CertificateAuthority) -> Iterator[Cluster]:
    node = Node("t", {"sleep": SLEEP, "echo": ECHO, "other": OTHER})
    zt: dict[str, ZtunnelProc] = {}
    echo: Backend | None = None
    try:
        certs = {sa: issue(ca, tmp_path, "default", sa) for sa in ("sleep", "echo")}
        root = tmp_path / "root.pem"
        root.write_bytes(ca.root_pem)
        wls = [
            workload("sleep", SLEEP, "node-1"),
            workload("echo", ECHO, "node-2", services={"default/echo.default.svc.cluster.local": {80: 8080}}),
            workload("other", OTHER, "node-1", protocol="TCP"),
        ]
        svcs = [{"name": "echo", "namespace": "default", "hostname": "echo.default.svc.cluster.local",
                 "vips": [f"/{VIP}"], "ports": {80: 8080}}]  # fmt: skip
        sockets, configs = {}, {}
        for which, ip, sa in (("node-1", f"{PREFIX}.1", "sleep"), ("node-2", f"{PREFIX}.2", "echo")):
            sockets[which] = tmp_path / f"{which}.sock"
            configs[which] = write_yaml(
                tmp_path / f"{which}.yaml",
                {
                    "proxy": proxy_section(ip, which, [certs[sa]], root, inpodSocket=str(sockets[which])),
                    "workloads": wls,
                    "services": svcs,
                    "policies": [STRICT],
                },
            )
        echo = node.pods["echo"].run_in(lambda: Backend("0.0.0.0", 8080, "echo"))
        c = Cluster(node, tmp_path, zt, sockets, configs, echo)
        c.start_ztunnel("node-1")
        c.start_ztunnel("node-2")
        yield c
    finally:
        for p in zt.values():
            p.stop()
        if echo is not None:
            echo.close()
        node.delete()


def test_inpod_capture_enrolment_probe_restart_and_removal(cluster: Cluster) -> None:
    node, echo = cluster.node, cluster.echo
    untouched = node.iptables_save("sleep")
    assert "ISTIO" not in untouched

    cluster.enrol("node-1", ["sleep"])
    cluster.enrol("node-2", ["echo"])
    rules = node.iptables_save("sleep")
    assert "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001" in rules
    assert "-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006" in rules
    zt1, zt2 = cluster.zt["node-1"], cluster.zt["node-2"]
    zt1.wait_log("pod enrolled uid=uid-sleep pod=default/sleep ips=10.77.0.11 rules=installed")
    assert "fwmark 0x111/0xfff lookup 100" in node.ip_rules("sleep")

    # sleep → echo's pod IP: captured in sleep's netns, HBONE to echo's netns, plaintext to the app from sleep's IP
    s = _in(node, "sleep", _connect((ECHO, 8080)))
    assert roundtrip(s, b"direct") == b"echo:direct"
    s.close()
    assert echo.peers[-1][0] == SLEEP
    zt1.wait_log(f"proxying to {ECHO}:8080 using HBONE via {ECHO}:15008 type Direct")
    zt2.wait_log("spiffe://cluster.local/ns/default/sa/sleep")
    # ... and the service VIP, round-robined to echo
    s = _in(node, "sleep", _connect((VIP, 80)))
    assert roundtrip(s, b"vip") == b"echo:vip"
    s.close()
    assert echo.peers[-1][0] == SLEEP

    # a destination outside the mesh: captured, then passed through from inside sleep's netns (its IP, marked)
    outside = node.host.run_in(lambda: Backend(f"{PREFIX}.1", 9090, "outside"))
    try:
        s = _in(node, "sleep", _connect((f"{PREFIX}.1", 9090)))
        assert roundtrip(s, b"out") == b"outside:out"
        s.close()
        assert outside.peers[-1][0] == SLEEP
        zt1.wait_log(f"proxying to {PREFIX}.1:9090 using TCP via {PREFIX}.1:9090 type Passthrough")
    finally:
        outside.close()

    # an unenrolled pod is untouched: no rules; its plaintext reaches echo's 15006, where STRICT refuses it
    assert "ISTIO" not in node.iptables_save("other")
    p = _in(node, "other", _connect((ECHO, 8080)))
    assert closed_by_peer(p)
    p.close()
    zt2.wait_log(f"RBAC rejected conn={OTHER}(none)->{ECHO}:8080")

    # the kubelet's probe (SNATed to 169.254.7.127 on the host) is not captured; other host traffic is
    n = len(echo.peers)
    p = _in(node, "host", _connect((ECHO, 8080), src=PROBE_SOURCE))
    assert roundtrip(p, b"probe") == b"echo:probe"
    p.close()
    assert echo.peers[n][0] == PROBE_SOURCE
    p = _in(node, "host", _connect((ECHO, 8080), src=f"{PREFIX}.1"))
    assert closed_by_peer(p)
    p.close()

    # ztunnel restart: the rules stay while it is down, the agent re-sends its snapshot, nothing is reinstalled
    before = node.iptables_save("echo")
    cluster.zt["node-2"].stop()
    assert node.iptables_save("echo") == before
    zt2 = cluster.start_ztunnel("node-2")
    cluster.enrol("node-2", ["echo"])
    zt2.wait_log("rules=already in place")
    assert node.iptables_save("echo") == before

    def through() -> bytes:
        c = _in(node, "sleep", _connect((ECHO, 8080)))
        try:
            return roundtrip(c, b"again")
        finally:
            c.close()

    _eventually(through, b"echo:again", "new connections after the ztunnel restart")

    # a re-sent snapshot without the pod removes it (rules, listeners); then sleep's plaintext is refused by echo
    cluster.enrol("node-1", [])
    zt1.wait_log("pod removed uid=uid-sleep pod=default/sleep")
    assert "ISTIO" not in node.iptables_save("sleep")
    assert "lookup 100" not in node.ip_rules("sleep")
    p = _in(node, "sleep", _connect((ECHO, 8080)))
    assert closed_by_peer(p)
    p.close()
    zt2.wait_log(f"RBAC rejected conn={SLEEP}(none)->{ECHO}:8080")


def test_enrolment_refuses_bad_messages_and_keeps_serving(cluster: Cluster) -> None:
    link = ZtunnelLink(cluster.sockets["node-1"])
    try:
        with open(cluster.configs["node-1"], "rb") as f, pytest.raises(EnrolmentRefused, match="setns"):
            link.add(AddPod("uid-x", "default", "x", (SLEEP,)), f.fileno())
        link.sock.send(b'{"type":"add","uid":"u"}')
        assert b"expects 1 netns fd" in link.sock.recv(1000)
        fd = os.open(cluster.node.netns_path("sleep"), os.O_RDONLY)
        try:
            with pytest.raises(EnrolmentRefused, match="IPv6 address; in-pod capture is IPv4-only"):
                link.add(AddPod("uid-6", "default", "sleep", (SLEEP, "fd00::11")), fd)
        finally:
            os.close(fd)
        link.sock.send(b'{"type":"hello"}')
        assert b"unknown message type" in link.sock.recv(1000)
    finally:
        link.close()
    assert "ISTIO" not in cluster.node.iptables_save("sleep")
    cluster.enrol("node-1", ["sleep"])  # the socket still serves after refusing
    cluster.zt["node-1"].wait_log("pod enrolled uid=uid-sleep")


def test_enrolled_pod_unknown_to_the_ztunnel_never_borrows_another_identity(cluster: Cluster) -> None:
    # "other" is node-1's workload; enrolled on node-2 (whose only local workload is echo), its captured traffic
    # must be refused as an unknown source, never sent as echo
    cluster.enrol("node-2", ["other"])
    zt2 = cluster.zt["node-2"]
    zt2.wait_log("pod enrolled uid=uid-other")
    c = _in(cluster.node, "other", _connect((ECHO, 8080)))
    assert closed_by_peer(c)
    c.close()
    zt2.wait_log(f"connection failed src.addr={OTHER}:")
    assert 'error="unknown source workload"' in zt2.log()
    assert "spiffe://cluster.local/ns/default/sa/echo" not in zt2.log().split("pod enrolled uid=uid-other")[1]
    # ... nor does its 15008 answer with echo's certificate
    c = _in(cluster.node, "host", _connect((OTHER, 15008)))
    assert closed_by_peer(c)
    c.close()
    zt2.wait_log(f"inbound HBONE to {OTHER} refused: no workload or certificate for this pod's identity")
