"""A TCP relay from loopback in the test process's network namespace to an address inside the node's.

The API server runs inside the node's network namespace (the kubelet's and pods' side); the test process
and kubectl reach it on 127.0.0.1 here. Each accepted connection gets a thread that enters the node's
network namespace, connects to the target there, and copies bytes both ways (the two sockets live in
different namespaces; the kernel does not mind). By hand because no library relays across namespaces.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.node.hostns import enter_netns


class NetnsRelay:
    def __init__(self, netns_path: str, target: tuple[str, int]) -> None:
        self._netns_path = netns_path
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="node-relay", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="node-relay-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            enter_netns(self._netns_path)
            upstream = socket.create_connection(self._target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
