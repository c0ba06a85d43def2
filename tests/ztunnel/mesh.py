"""A small two-node mesh on loopback: node A (client side) and node B (server side)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ztunnel.conftest import Backend, ZtunnelProc, issue, proxy_section, workload, write_yaml
from xds.ca import CertificateAuthority

ECHO_HOST = "echo.default.svc.cluster.local"


@dataclass
class Mesh:
    tmp: Path
    net: str  # e.g. "127.0.0" -> node A = .2, node B = .3
    node_a: ZtunnelProc | None = None
    node_b: ZtunnelProc | None = None
    cfg_a: dict[str, Any] = field(default_factory=dict)
    cfg_b: dict[str, Any] = field(default_factory=dict)
    path_a: Path | None = None
    path_b: Path | None = None

    def ip(self, last: int) -> str:
        return f"{self.net}.{last}"

    @property
    def socks(self) -> tuple[str, int]:
        return (self.ip(2), 15080)

    def push(self, which: str, cfg: dict[str, Any]) -> None:
        path = self.path_a if which == "a" else self.path_b
        assert path is not None
        write_yaml(path, cfg)


def build_mesh(
    tmp: Path,
    ca: CertificateAuthority,
    net: str,
    procs: list[ZtunnelProc],
    backends: list[Backend],
    *,
    endpoints: int = 1,
    policies: list[dict[str, Any]] | None = None,
    core: str = "cython",
    start: bool = True,
    extra_workloads_b: list[dict[str, Any]] | None = None,
    extra_services: list[dict[str, Any]] | None = None,
) -> Mesh:
    m = Mesh(tmp, net)
    certdir = tmp / "certs"
    root = certdir / "root.crt"
    certs_a = [issue(ca, certdir, "default", "sleep"), issue(ca, certdir, "default", "notsleep")]
    certs_b = [issue(ca, certdir, "default", "echo")]
    svc_map = {f"default/{ECHO_HOST}": {80: 8080}}
    wls = [
        workload("sleep", m.ip(2), "node-a"),
        workload("notsleep", m.ip(4), "node-a"),
    ]
    echo_ips = [m.ip(3), m.ip(5), m.ip(6), m.ip(7)][:endpoints]
    for i, ip in enumerate(echo_ips):
        wls.append(workload(f"echo-{i + 1}", ip, "node-b", sa="echo", services=svc_map))
        backends.append(Backend(ip, 8080, f"echo-{i + 1}"))
    wls += extra_workloads_b or []
    services = [
        {
            "name": "echo",
            "namespace": "default",
            "hostname": ECHO_HOST,
            "vips": ["/10.96.0.10"],
            "ports": {80: 8080},
        }
    ] + (extra_services or [])
    base = {"workloads": wls, "services": services, "policies": policies or []}
    m.cfg_a = {"proxy": proxy_section(m.ip(2), "node-a", certs_a, root, workload="default/sleep"), **base}
    m.cfg_b = {"proxy": proxy_section(m.ip(3), "node-b", certs_b, root), **base}
    m.path_a = write_yaml(tmp / "node-a.yaml", m.cfg_a)
    m.path_b = write_yaml(tmp / "node-b.yaml", m.cfg_b)
    if start:
        start_nodes(m, procs, core=core)
    return m


def start_nodes(m: Mesh, procs: list[ZtunnelProc], *, core: str = "cython") -> None:
    """Node B and node A from their config files as they are now (a test may have changed them); both ready."""
    assert m.path_a is not None and m.path_b is not None
    m.node_b = ZtunnelProc(m.path_b, m.ip(3), m.tmp / "node-b.log", core=core)
    procs.append(m.node_b)
    m.node_a = ZtunnelProc(m.path_a, m.ip(2), m.tmp / "node-a.log", core=core)
    procs.append(m.node_a)
    m.node_b.wait_ready()
    m.node_a.wait_ready()
