"""Where the test node's processes run: the machine's mount namespace and the node's network namespace.

`pa-sandbox` (and `ip netns exec` in general) runs the test process in a private mount namespace with a
fresh sysfs, so /sys/fs/cgroup is empty there and the kubelet could not see a single cgroup. The node's
processes therefore enter the mount namespace of the nearest ancestor that has the cgroup hierarchies
(the machine's own; on CI, the test process's own), and the node's network namespace, with `nsenter`.
The test process itself stays where it is and reaches into the node's network namespace only from
dedicated threads (`setns` is per thread), for the API server relay and for probes of pod IPs.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

NODE_NETNS = "pyambient-node"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _has_cgroups(root: str) -> bool:
    try:
        return any(os.scandir(f"{root}/sys/fs/cgroup"))
    except OSError:
        return False


def host_pid() -> int:
    """The nearest process (this one, an ancestor, or else any) whose mount namespace shows the cgroups."""
    pid = os.getpid()
    while pid > 1:
        if _has_cgroups(f"/proc/{pid}/root"):
            return pid
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    # Detached from the shell that started it (reparented): any process of the machine's namespace will do.
    for entry in sorted(os.listdir("/proc"), key=lambda n: int(n) if n.isdigit() else 0):
        if entry.isdigit() and int(entry) > 1 and _has_cgroups(f"/proc/{entry}/root"):
            return int(entry)
    raise RuntimeError("no process sees /sys/fs/cgroup: cannot run a kubelet here")


class HostNamespaces:
    """Commands in the machine's mount namespace, optionally in the node's network namespace."""

    def __init__(self) -> None:
        pid = self.pid = host_pid()
        # An fd keeps the mount namespace reachable even if the ancestor exits before the node stops.
        self._mnt_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
        self._net_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        self.mnt = f"/proc/{os.getpid()}/fd/{self._mnt_fd}"
        self.host_net = f"/proc/{os.getpid()}/fd/{self._net_fd}"
        # Files as the machine's mount namespace sees them (the same paths on CI).
        self.root = "" if pid == os.getpid() else f"/proc/{pid}/root"

    def close(self) -> None:
        os.close(self._mnt_fd)
        os.close(self._net_fd)

    def host(self, *argv: str) -> list[str]:
        """argv run in the machine's mount namespace (and this process's network namespace)."""
        return ["nsenter", f"--mount={self.mnt}", "--", *argv]

    def host_netns(self, *argv: str) -> list[str]:
        """argv run in the machine's mount and network namespaces (its real root namespace)."""
        return ["nsenter", f"--mount={self.mnt}", f"--net={self.host_net}", "--", *argv]

    def node(self, *argv: str) -> list[str]:
        """argv run in the machine's mount namespace and the node's network namespace."""
        return ["nsenter", f"--mount={self.mnt}", "--", "nsenter", f"--net=/run/netns/{NODE_NETNS}", "--", *argv]

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def netns_path(self) -> str:
        return f"{self.root}/run/netns/{NODE_NETNS}"

    def in_node_netns(self, fn: Callable[[], T]) -> T:
        """Runs fn on a thread that has entered the node's network namespace (sockets it opens stay there)."""
        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                enter_netns(self.netns_path())
                result.append(fn())
            except BaseException as e:  # handed to the caller's thread
                error.append(e)

        thread = threading.Thread(target=target, name="node-netns", daemon=True)
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    def connect(self, host: str, port: int, timeout: float = 10) -> socket.socket:
        """A TCP connection opened inside the node's network namespace."""
        return self.in_node_netns(lambda: socket.create_connection((host, port), timeout=timeout))


def enter_netns(path: str) -> None:
    """setns(2) for the calling thread only. Python 3.11 has no os.setns."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)

