"""A node without Kubernetes for the in-pod tests: "pods" are network namespaces with a veth into a bridge
namespace (the node's host network, where the ztunnels run like hostNetwork pods).

    host netns  (bridge br0 10.77.0.1/24, + 10.77.0.2 for the second ztunnel, + 169.254.7.127 the probe source)
      ├─ veth ─ pod netns 10.77.0.11  ("sleep")
      ├─ veth ─ pod netns 10.77.0.12  ("echo")
      └─ veth ─ pod netns 10.77.0.13  ("other", never enrolled)
"""

from __future__ import annotations

import os
import subprocess

from tests.ztunnel.netns import NetNS, sh

PREFIX = "10.77.0"
PROBE_SOURCE = "169.254.7.127"


class Node:
    def __init__(self, tag: str, pods: dict[str, str], prefix: str = PREFIX) -> None:
        self.tag = f"{tag}{os.getpid() % 100000}"
        self.host = NetNS(f"ip-host-{self.tag}")
        self.pods: dict[str, NetNS] = {}
        try:
            self._build(pods, prefix)
        except BaseException:
            self.delete()  # a half-built topology leaves no namespaces behind
            raise

    def _build(self, pods: dict[str, str], prefix: str) -> None:
        self.host.ex("ip", "link", "add", "br0", "type", "bridge")
        self.host.ex("ip", "link", "set", "br0", "up")
        for addr in (f"{prefix}.1/24", f"{prefix}.2/24", f"{PROBE_SOURCE}/32"):
            self.host.ex("ip", "addr", "add", addr, "dev", "br0")
        for i, (name, ip) in enumerate(pods.items()):
            ns = self.pods[name] = NetNS(f"ip-{name}-{self.tag}")
            host_end, pod_end = f"vh{i}{self.tag}"[:15], f"vp{i}{self.tag}"[:15]
            sh("ip", "link", "add", host_end, "netns", self.host.name, "type", "veth", "peer", "name", pod_end,
               "netns", ns.name)  # fmt: skip
            self.host.ex("ip", "link", "set", host_end, "master", "br0", "up")
            ns.ex("ip", "link", "set", pod_end, "name", "eth0")
            ns.ex("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            ns.ex("ip", "link", "set", "eth0", "up")
            ns.ex("ip", "route", "add", "default", "via", f"{prefix}.1")

    def netns_path(self, pod: str) -> str:
        return f"/var/run/netns/{self.pods[pod].name}"

    def iptables_save(self, pod: str) -> str:
        out = subprocess.run(
            ["ip", "netns", "exec", self.pods[pod].name, "iptables-save"], check=True, capture_output=True, text=True
        ).stdout
        return "\n".join(line for line in out.splitlines() if not line.startswith("#"))

    def ip_rules(self, pod: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.pods[pod].name, "ip", "rule"], check=True, capture_output=True, text=True
        ).stdout

    def delete(self) -> None:
        for ns in self.pods.values():
            ns.delete()
        self.host.delete()
