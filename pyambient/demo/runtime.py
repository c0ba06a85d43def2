"""Starts and stops a whole ambient mesh on this machine: control plane, ztunnels, waypoints, backends."""

from __future__ import annotations

import functools
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import yaml

from pyambient.demo.plan import DemoPlan, NodePlan, plan
from pyambient.runtime.backends import NamedHttpBackend
from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, free_port, wait_until
from pyambient.runtime.processes import stop_process
from xds import resources
from xds.envoy.bootstrap import WaypointNode
from xds.mesh.files import DirectoryWatcher, MeshDirectory, unknown_kinds_line

ZTUNNEL_PORTS = {"socks5": 15080, "admin": 15000, "metrics": 15020, "readiness": 15021}


@dataclass
class ZtunnelProcess:
    node: NodePlan
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def address(self, listener: str) -> tuple[str, int]:
        return (self.node.ip, ZTUNNEL_PORTS[listener])

    def url(self, listener: str, path: str) -> str:
        return f"http://{self.node.ip}:{ZTUNNEL_PORTS[listener]}{path}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []


@dataclass
class DemoMesh:
    mesh_dir: Path
    workdir: Path
    log: TextIO = sys.stderr
    plan: DemoPlan | None = None
    control: ControlPlaneThread | None = None
    watcher: DirectoryWatcher | None = None
    envoys: dict[str, EnvoyProcess] = field(default_factory=dict)
    ztunnels: dict[str, ZtunnelProcess] = field(default_factory=dict)
    backends: list[NamedHttpBackend] = field(default_factory=list)

    def start(self) -> DemoMesh:
        mesh_directory = MeshDirectory(self.mesh_dir)  # the watcher keeps each file's last good objects from here
        mesh = mesh_directory.load()
        for error in mesh.errors:
            print(f"  mesh: {error}", file=self.log)
        unknown = unknown_kinds_line(self.mesh_dir)
        if unknown:
            print(f"  mesh: {unknown}", file=self.log)
        self.plan = plan(mesh)
        self.control = ControlPlaneThread(mesh).start()
        self.watcher = DirectoryWatcher(mesh_directory, self.control.control_plane.update).start()
        for backend in self.plan.backends:
            self.backends.append(NamedHttpBackend(backend.pod.ip, backend.port, backend.pod.name))
        for node in self.plan.nodes:
            self.ztunnels[node.name] = self._start_ztunnel(node)
        for wp in self.plan.waypoints:
            envoy_node = WaypointNode(wp.waypoint.name, wp.waypoint.namespace, wp.pod.ip)
            credentials = self.control.waypoint_credentials(envoy_node)
            self.envoys[wp.waypoint.name] = EnvoyProcess(
                self.workdir, envoy_node, self.control.port, credentials=credentials
            )
            self.envoys[wp.waypoint.name].start_agent()  # agents side by side; each Envoy once its agent serves
        for envoy in self.envoys.values():
            envoy.start()
        for zt in self.ztunnels.values():
            ready: Callable[[], bool] = functools.partial(_http_ok, zt.url("readiness", "/healthz/ready"))
            wait_until(
                ready,
                timeout=30,
                what=f"ztunnel {zt.node.name} ready (log: {zt.log_path})",
            )
        for name, envoy in self.envoys.items():
            wait_until(functools.partial(self._acked, envoy), timeout=60, what=f"waypoint {name} ACKs its config")
        return self

    def _acked(self, envoy: EnvoyProcess) -> bool:
        assert self.control is not None
        cp = self.control.control_plane
        snapshot = cp.snapshot_for(envoy.node.to_node())
        types = (resources.LISTENER, resources.CLUSTER)
        acked = all(cp.acks.get((envoy.node.node_id, t)) == snapshot.version(t) for t in types)
        return acked and envoy.serving()

    def _start_ztunnel(self, node: NodePlan) -> ZtunnelProcess:
        assert self.control is not None
        cp = self.control.control_plane
        directory = self.workdir / node.name
        directory.mkdir(parents=True, exist_ok=True)
        # No certificate files: the ztunnel asks the secure port for its workloads' identities with
        # its own token (istio-system/ztunnel, bound to its node), as in a cluster.
        root = directory / "root-cert.pem"
        root.write_bytes(cp.ca.root_pem)
        token = directory / "istio-token"
        token.touch(mode=0o600)
        token.write_text(
            self.control.tokens.issue("istio-system", "ztunnel", pod=f"ztunnel-{node.name}", node=node.name)
        )
        identity_args = [
            "--ca-address",
            f"127.0.0.1:{self.control.secure_port}",
            "--ca-root-cert",
            str(root),
            "--token-path",
            str(token),
            "--ca-server-name",
            "istiod.istio-system.svc",
        ]
        config = {
            "proxy": {
                "node": node.name,
                "bindIp": node.ip,
                "outbound": None,  # no iptables capture in the demo: clients use SOCKS5
                **{k: f"{node.ip}:{p}" for k, p in ZTUNNEL_PORTS.items()},
                "xds": f"127.0.0.1:{self.control.port}",
            }
        }
        config_path = directory / "ztunnel.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = self.workdir / f"ztunnel-{node.name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "pyambient", "ztunnel", "--config", str(config_path), *identity_args],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        return ZtunnelProcess(node, config_path, log_path, process)

    def stop(self) -> None:
        for envoy in self.envoys.values():
            envoy.stop()
        for zt in self.ztunnels.values():
            stop_process(zt.process)
        for backend in self.backends:
            backend.close()
        if self.watcher:
            self.watcher.stop()
        if self.control:
            self.control.stop()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


__all__ = ["DemoMesh", "ZtunnelProcess", "free_port"]
