"""The ztunnel's side of in-pod mode (I/O shell): the enrolment socket, and per enrolled pod its netns, rules
and listeners.

For each pod the node agent enrols, the ztunnel joins the pod's netns (`PodNetns`), installs the rules
(`rules.pod_rules`, idempotent) and opens 15001 (outbound, the pod is the source), 15006 (inbound plaintext) and
15008 (inbound HBONE) inside it, served by the ztunnel's ordinary handlers. The sockets it dials from for that
pod (HBONE to peers, and the connection to the pod's own apps) are also made in the pod's netns, marked.

Restart: a new ztunnel process starts with no pods; the agent reconnects and re-sends every pod, then
`snapshot-sent`. Re-installing rules that are already in place changes nothing, so capture never stops for a
pod that stays enrolled; only pods the agent deletes (or leaves out of a later snapshot on the same process)
lose their rules.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ztunnel.errors import MissingCertificate
from ztunnel.inpod import enrolment, rules
from ztunnel.inpod.netns import NetnsError, PodNetns

if TYPE_CHECKING:
    from ztunnel.app import Ztunnel

log = logging.getLogger("ztunnel::inpod")
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class EnrolledPod:
    uid: str
    namespace: str
    name: str
    ips: tuple[IPAddr, ...]
    netns: PodNetns
    servers: list[asyncio.Server] = field(default_factory=list)


class InpodPods:
    def __init__(self, zt: Ztunnel) -> None:
        self.zt = zt
        self.pods: dict[str, EnrolledPod] = {}
        self._by_ip: dict[IPAddr, EnrolledPod] = {}
        self.rules = rules.pod_rules(
            outbound_port=zt.settings.outbound[1] if zt.settings.outbound else rules.OUTBOUND_PORT,
            plaintext_port=zt.settings.plaintext_port,
            hbone_port=zt.settings.inbound_port,
        )
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ what the proxy asks
    def ips(self) -> set[IPAddr]:
        return set(self._by_ip)

    def owns(self, ip: IPAddr) -> bool:
        return ip in self._by_ip

    def socket_for(self, ip: IPAddr, *, transparent: bool = False) -> socket.socket | None:
        """A marked socket inside the netns of the pod owning `ip`, or None when no enrolled pod has it."""
        pod = self._by_ip.get(ip)
        if pod is None:
            return None
        return pod.netns.client_socket(
            family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET, transparent=transparent
        )

    # ------------------------------------------------------------------ enrolment
    async def add(self, msg: enrolment.AddPod, fd: int) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            ips = tuple(ipaddress.ip_address(i) for i in msg.ips)
            if any(ip.version == 6 for ip in ips):
                # the pod rules are iptables (IPv4) only: an IPv6 address would leave the pod's IPv6 traffic
                # uncaptured, so such a pod is refused (its CNI ADD fails) rather than half-captured
                raise enrolment.EnrolmentError(
                    f"add: pod {msg.namespace}/{msg.name} has an IPv6 address; in-pod capture is IPv4-only"
                )
            old = self.pods.get(msg.uid)
            netns = PodNetns(fd)
            if old is not None and old.netns.inode == netns.inode and old.ips == ips:
                netns.close()
                await loop.run_in_executor(None, old.netns.install_rules, self.rules)
                return
            if old is not None:
                await self._drop(old, remove_rules=False)
            pod = EnrolledPod(msg.uid, msg.namespace, msg.name, ips, netns)
            try:
                changed = await loop.run_in_executor(None, netns.install_rules, self.rules)
                await self._listen(pod)
            except (OSError, NetnsError):
                for srv in pod.servers:
                    srv.close()
                netns.close()
                raise
            self.pods[msg.uid] = pod
            for ip in ips:
                self._by_ip[ip] = pod
            await self.zt._sync_inbound_listeners()
            log.info(
                "pod enrolled uid=%s pod=%s/%s ips=%s rules=%s",
                msg.uid,
                msg.namespace,
                msg.name,
                ",".join(map(str, ips)),
                "installed" if changed else "already in place",
            )

    async def _listen(self, pod: EnrolledPod) -> None:
        loop = asyncio.get_running_loop()
        zt, s = self.zt, self.zt.settings
        ip = pod.ips[0]
        outbound_port = s.outbound[1] if s.outbound else rules.OUTBOUND_PORT
        for port, factory in (
            (outbound_port, zt._captured_factory),
            (s.plaintext_port, functools.partial(zt._plaintext_factory, ip)),
            (s.inbound_port, functools.partial(self._hbone_factory, ip)),
        ):
            sock = pod.netns.listener(port, family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
            pod.servers.append(await loop.create_server(factory, sock=sock))
        log.info(
            "listeners established pod=%s/%s ports=%d,%d,%d (in the pod's netns)",
            pod.namespace,
            pod.name,
            outbound_port,
            s.plaintext_port,
            s.inbound_port,
        )

    def _hbone_factory(self, ip: IPAddr) -> asyncio.BaseProtocol:
        """The pod's 15008 serves only under the pod's own identity: with no workload known for its IP, or no
        certificate for that identity, the connection is refused rather than answered with another one's."""
        wl = self.zt.state.find_workload(ip)
        try:
            own = wl is not None and self.zt.server_ctx(wl.identity)[1] == wl.identity
        except MissingCertificate:
            own = False
        if not own:
            log.warning("inbound HBONE to %s refused: no workload or certificate for this pod's identity", ip)
            return _Refused()
        return self.zt._hbone_factory(ip)  # type: ignore[no-any-return]

    async def delete(self, uid: str, fd: int | None = None) -> None:
        async with self._lock:
            pod = self.pods.get(uid)
            if pod is not None:
                await self._drop(pod, remove_rules=True)
                await self.zt._sync_inbound_listeners()
                log.info("pod removed uid=%s pod=%s/%s", uid, pod.namespace, pod.name)
            elif fd is not None:  # a pod enrolled by an earlier ztunnel process: only its rules are left
                netns = PodNetns(fd)
                try:
                    await asyncio.get_running_loop().run_in_executor(None, netns.remove_rules, self.rules)
                finally:
                    netns.close()
                log.info("pod removed uid=%s (rules only; not enrolled in this process)", uid)

    async def keep_only(self, uids: set[str]) -> None:
        for uid in [u for u in self.pods if u not in uids]:
            await self.delete(uid)

    async def _drop(self, pod: EnrolledPod, *, remove_rules: bool) -> None:
        self.pods.pop(pod.uid, None)
        for ip in pod.ips:
            if self._by_ip.get(ip) is pod:
                del self._by_ip[ip]
        for srv in pod.servers:
            srv.close()  # live connections stay; only the listening sockets go
        if remove_rules:
            with contextlib.suppress(NetnsError):  # the netns may be gone with the pod
                await asyncio.get_running_loop().run_in_executor(None, pod.netns.remove_rules, self.rules)
        pod.netns.close()

    def close(self) -> None:
        """Process exit: listeners close, rules stay (the next ztunnel re-enrols the same pods)."""
        for pod in self.pods.values():
            for srv in pod.servers:
                srv.close()
            pod.netns.close()
        self.pods.clear()
        self._by_ip.clear()


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the enrolment socket
def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def recv_message(sock: socket.socket, max_fds: int = 4) -> tuple[bytes, list[int]]:
    """One SEQPACKET datagram and its SCM_RIGHTS fds (asyncio has no recvmsg; wait for readability)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, anc, _flags, _addr = sock.recvmsg(
                enrolment.MAX_MESSAGE, socket.CMSG_SPACE(max_fds * array.array("i").itemsize)
            )
            break
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _set_once, ready)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(payload[: len(payload) - (len(payload) % a.itemsize)])
            fds.extend(a)
    return data, fds


class EnrolmentServer:
    def __init__(self, path: Path, pods: InpodPods) -> None:
        self.path = path
        self.pods = pods
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(str(self.path))
        os.chmod(self.path, 0o600)
        s.listen(8)
        s.setblocking(False)
        self._sock = s
        t = asyncio.get_running_loop().create_task(self._accept())
        self._tasks.add(t)
        log.info("enrolment socket listening path=%s", self.path)

    async def _accept(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            conn.setblocking(False)
            t = loop.create_task(self._serve(conn))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        sent: set[str] = set()  # pods (re-)sent on this connection: the snapshot
        log.info("node agent connected")
        try:
            while True:
                data, fds = await recv_message(conn)
                if not data and not fds:
                    log.info("node agent disconnected")
                    return
                error = ""
                try:
                    msg = enrolment.decode(data, fds)
                    if isinstance(msg, enrolment.AddPod):
                        await self.pods.add(msg, fds[0])
                        sent.add(msg.uid)
                    elif isinstance(msg, enrolment.DelPod):
                        await self.pods.delete(msg.uid, fds[0] if fds else None)
                        sent.discard(msg.uid)
                    elif isinstance(msg, enrolment.SnapshotSent):
                        await self.pods.keep_only(sent)
                        log.info("snapshot received pods=%d", len(sent))
                    else:
                        raise enrolment.EnrolmentError(f"unexpected message {type(msg).__name__}")
                except (enrolment.EnrolmentError, NetnsError, OSError) as e:
                    error = str(e)
                    log.error("enrolment message refused: %s", error)
                except Exception as e:  # noqa: BLE001 - one bad message must not take the socket down
                    error = f"internal error: {e}"
                    log.exception("enrolment message failed")
                finally:
                    for fd in fds:
                        os.close(fd)
                await loop.sock_sendall(conn, enrolment.encode(enrolment.Ack(error)))
        except (ConnectionError, OSError) as e:
            log.info("node agent connection ended: %s", e)
        finally:
            conn.close()

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
