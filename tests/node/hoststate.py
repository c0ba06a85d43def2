"""A snapshot of the machine state a test node could leave behind, to compare before/after a node's life.

The test process's own network namespace and the machine's root one are compared in full (links,
addresses, routes, iptables-save, nft ruleset); machine-wide tables that other test runs on a shared
machine change concurrently (mounts, network namespaces, processes) are compared restricted to what a
node creates: mounts under its directories or of pod network namespaces, `cni-*`/node namespaces,
processes naming the node's directories (and containers' shims and pause), kubepods cgroups, and the
sysctls and paths it may touch.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.node.hostns import NODE_NETNS, HostNamespaces
from tests.node.node import CONTAINERD_ROOT, FOREIGN_PATHS, KUBELET_SYSCTLS, RUN_DIR

CONTAINER_PROCESS_NAMES = ("containerd-shim", "containerd-shim-runc-v2", "pause", "runc")


def _out(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return result.stdout + (f"(exit {result.returncode}: {result.stderr.strip()})" if result.returncode else "")


def _iptables_save(text: str) -> str:
    # Comments and packet counters change on every read.
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in lines)


def _network(ns: HostNamespaces, prefix: list[str]) -> dict[str, str]:
    return {
        "links": _out([*prefix, "ip", "-o", "link", "show"]),
        "addresses": _out([*prefix, "ip", "-o", "addr", "show"]),
        "routes": _out([*prefix, "ip", "route", "show", "table", "all"]),
        "iptables": _iptables_save(_out([*prefix, "iptables-save"])),
        "ip6tables": _iptables_save(_out([*prefix, "ip6tables-save"])),
        "nft": _out([*prefix, "nft", "list", "ruleset"]),
    }


def snapshot(ns: HostNamespaces) -> dict[str, object]:
    state: dict[str, object] = {}
    state["this netns"] = _network(ns, [])
    state["machine netns"] = _network(ns, ns.host_netns())
    state["sysctls"] = {key: Path(f"/proc/sys/{key}").read_text().strip() for key in KUBELET_SYSCTLS}
    state["paths"] = {p: Path(ns.root + p).exists() for p in FOREIGN_PATHS}
    ours = (str(RUN_DIR), str(CONTAINERD_ROOT), "/run/netns/cni-", f"/run/netns/{NODE_NETNS}", "/run/containerd")
    mounts = Path(f"/proc/{ns.pid}/mountinfo").read_text().splitlines()
    state["mounts"] = sorted(line.split()[4] for line in mounts if line.split()[4].startswith(ours))
    state["netns"] = sorted(p.name for p in Path(ns.root + "/run/netns").glob("*")
                            if p.name.startswith(("cni-", NODE_NETNS)))
    # Processes of a node: every one names our directories in its arguments, except containers themselves.
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue  # exited, holding nothing but a PID until its reaper (the machine's init) runs
                name = (entry / "comm").read_text().strip()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(RUN_DIR) in cmdline or name in CONTAINER_PROCESS_NAMES:
                processes.append(name)
    state["processes"] = sorted(processes)
    cgroups = Path(ns.root + "/sys/fs/cgroup")
    state["cgroups"] = sorted(str(p) for p in cgroups.glob("*/kubepods*")) + sorted(
        str(p) for p in cgroups.glob("kubepods*"))
    return state
