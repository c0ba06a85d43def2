"""The node agent's end of the enrolment socket (blocking; the agent and the CNI path are not event loops).

Each call sends one message (with the pod's netns fd by SCM_RIGHTS where the protocol carries one) and waits
for the ztunnel's ack; a refused message raises EnrolmentRefused with the ztunnel's reason.
"""

from __future__ import annotations

import select
import socket
from pathlib import Path

from ztunnel.inpod import enrolment


class EnrolmentRefused(Exception):
    pass


class ZtunnelLink:
    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise

    def _call(self, msg: enrolment.Message, fd: int | None = None) -> None:
        data = enrolment.encode(msg)
        if fd is None:
            self.sock.send(data)
        else:
            socket.send_fds(self.sock, [data], [fd])
        reply = self.sock.recv(enrolment.MAX_MESSAGE)
        if not reply:
            raise ConnectionError("ztunnel closed the enrolment socket")
        ack = enrolment.decode(reply, [])
        if not isinstance(ack, enrolment.Ack):
            raise enrolment.EnrolmentError(f"expected an ack, got {type(ack).__name__}")
        if ack.error:
            raise EnrolmentRefused(ack.error)

    def add(self, pod: enrolment.AddPod, netns_fd: int) -> None:
        self._call(pod, netns_fd)

    def delete(self, uid: str, netns_fd: int | None = None) -> None:
        self._call(enrolment.DelPod(uid), netns_fd)

    def snapshot_sent(self) -> None:
        self._call(enrolment.SnapshotSent())

    def peer_closed(self) -> bool:
        """True once the ztunnel has closed its end (checked without blocking, between messages)."""
        if not select.select([self.sock], [], [], 0)[0]:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()
