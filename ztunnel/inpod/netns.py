"""The shell that works inside one pod's network namespace, given an fd for it.

A socket belongs to the netns of the thread that created it, for its whole life: so one dedicated thread per pod
joins the pod's netns once (`setns` changes only the calling thread) and creates every socket the ztunnel needs
there — listeners, and the marked client sockets it dials from; the event loop then binds, connects and serves
them from its own thread as usual. Commands (iptables-restore, ip) run under `nsenter` on the same fd.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import fcntl
import os
import socket
import subprocess
from collections.abc import Callable
from typing import TypeVar

from ztunnel.inpod import rules

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace fd → its CLONE_NEW* type (linux/nsfs.h)
IP_TRANSPARENT = 19
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(Exception):
    pass


def _join(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns(fd {fd}): {os.strerror(err)}")


def netns_inode(fd: int) -> int:
    return os.fstat(fd).st_ino


class PodNetns:
    """Owns a dup of the pod's netns fd and the thread living in that netns."""

    def __init__(self, fd: int) -> None:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = -1  # not a namespace at all
        if kind != CLONE_NEWNET:
            raise NetnsError("the fd passed is not a network namespace; setns refused")
        self.fd = os.dup(fd)
        self.inode = netns_inode(self.fd)
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netns-{self.inode}", initializer=_join, initargs=(self.fd,)
        )
        try:
            self.call(lambda: None)  # fail here, not at first use, when joining fails
        except concurrent.futures.BrokenExecutor:
            self.close()
            raise NetnsError(f"setns into netns {self.inode} failed") from None

    def call(self, fn: Callable[[], T]) -> T:
        return self._thread.submit(fn).result()

    def client_socket(self, *, family: int = socket.AF_INET, transparent: bool = False) -> socket.socket:
        """A non-blocking TCP socket in the pod's netns, marked so the pod's rules let it through."""

        def make() -> socket.socket:
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, rules.ZTUNNEL_MARK)
                if transparent:
                    s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
                s.setblocking(False)
            except BaseException:
                s.close()
                raise
            return s

        return self.call(make)

    def listener(self, port: int, *, family: int = socket.AF_INET) -> socket.socket:
        """A listening socket on the wildcard address of the pod's netns (REDIRECT lands on the pod's IPs)."""

        def make() -> socket.socket:
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, rules.ZTUNNEL_MARK)
                s.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
                s.listen(1024)
                s.setblocking(False)
            except BaseException:
                s.close()
                raise
            return s

        return self.call(make)

    def run(self, *cmd: str, stdin: str | None = None, check: bool = True) -> str:
        p = subprocess.run(
            ["nsenter", f"--net=/proc/self/fd/{self.fd}", *cmd],
            input=stdin,
            capture_output=True,
            text=True,
            pass_fds=(self.fd,),
        )
        if check and p.returncode != 0:
            raise NetnsError(f"{' '.join(cmd)} in netns {self.inode}: {p.stderr.strip() or p.returncode}")
        return p.stdout

    def install_rules(self, r: rules.PodRules) -> bool:
        """Idempotent; returns False when the rules were already exactly in place (nothing touched)."""
        saved = self.run("iptables-save")
        ip_rules = self.run("ip", "-4", "rule", "show", "pref", str(rules.RULE_PRIORITY))
        if rules.installed(r, saved) and ip_rules.strip():
            self.run("ip", *r.ip_route)
            return False
        self.run("ip", *r.ip_route)
        if not ip_rules.strip():
            self.run("ip", *r.ip_rule)
        self.run("iptables-restore", "--noflush", stdin=rules.install_payload(r, saved))
        return True

    def remove_rules(self, r: rules.PodRules) -> None:
        payload = rules.removal_payload(r, self.run("iptables-save"))
        if payload is not None:
            self.run("iptables-restore", "--noflush", stdin=payload)
        if self.run("ip", "-4", "rule", "show", "pref", str(rules.RULE_PRIORITY)).strip():
            self.run("ip", "rule", "del", "pref", str(rules.RULE_PRIORITY))
        self.run("ip", "route", "flush", "table", str(rules.ROUTE_TABLE), check=False)

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        os.close(self.fd)
