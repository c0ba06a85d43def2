"""Network namespaces for capture tests: iptables DNAT to 15001/15006 needs its own netns.

`run_in(ns, fn)` runs `fn` on a fresh thread that has joined the namespace (setns is per thread, and
threads it starts inherit it), so backends and clients can live in the test process.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class NetNS:
    def __init__(self, name: str) -> None:
        self.name = name
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        sh("ip", "netns", "add", name)
        self.ex("ip", "link", "set", "lo", "up")

    def ex(self, *cmd: str) -> None:
        sh("ip", "netns", "exec", self.name, *cmd)

    def dnat(self, dst: str, port: int, to: str, *, src: str | None = None) -> None:
        """Capture as the ztunnel's node rules do: locally sent TCP to dst:port (from src, if given) goes to `to`
        ("ip:port") instead, and the accepted socket can read dst:port back with SO_ORIGINAL_DST."""
        match = ["-s", src] if src else []
        self.ex(
            "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", *match, "-d", dst, "--dport", str(port),
            "-j", "DNAT", "--to-destination", to,
        )  # fmt: skip

    def run_in(self, fn: Callable[[], T]) -> T:
        box: dict[str, Any] = {}

        def target() -> None:
            fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            try:
                box["v"] = fn()
            except BaseException as e:
                box["e"] = e

        t = threading.Thread(target=target)
        t.start()
        t.join()
        if "e" in box:
            raise box["e"]
        return box["v"]  # type: ignore[no-any-return]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
