"""HBONE peers for tests, written on `h2` + `ssl` with blocking sockets and threads.

- `HboneClient`: what a source ztunnel does — mTLS (TLS 1.3, ALPN h2, no SNI) to a :15008 listener,
  then one HTTP/2 CONNECT stream per proxied connection with `:authority` = destination ip:port.
- `HboneTerminator`: what a destination node does — accepts HBONE on <pod ip>:15008, records the
  peer identity and the `:authority`, connects to that address and relays bytes.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from xds.ca import IssuedCertificate, uri_sans

MAX_READ = 65536


def text_headers(headers: Any) -> list[tuple[str, str]]:
    """h2 events' headers as text: with `header_encoding="utf-8"` h2 decodes them, its stubs still say bytes."""
    return [(k if isinstance(k, str) else k.decode(), v if isinstance(v, str) else v.decode()) for k, v in headers]


def tls_context(cert: IssuedCertificate, *, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    with tempfile.TemporaryDirectory() as tmp:
        crt, key, _ = cert.write(Path(tmp))
        ctx.load_cert_chain(crt, key)
    ctx.load_verify_locations(cadata=cert.root_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    return ctx


def peer_identity(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    if not der:
        return ""
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    sans = uri_sans(pem)
    return sans[0] if sans else ""


@dataclass
class ConnectResult:
    status: int
    body: bytes
    reset: bool = False


class HboneClient:
    def __init__(
        self, address: tuple[str, int], cert: IssuedCertificate, *, timeout: float = 10.0, source: str | None = None
    ) -> None:
        # `source`: the client's address as a source ztunnel in a pod's network namespace would present it.
        raw = socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None)
        self.sock = tls_context(cert, server=False).wrap_socket(raw, server_hostname=None)
        assert self.sock.selected_alpn_protocol() == "h2", "peer did not negotiate h2"
        self.peer_identity = peer_identity(self.sock)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self.sock.close()

    def __enter__(self) -> HboneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(
        self,
        authority: str,
        payload: bytes,
        *,
        method: str = "CONNECT",
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> ConnectResult:
        """Open one stream, send payload once the CONNECT is answered 200, read until the stream ends."""
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":authority", authority)]
        if method != "CONNECT":
            headers += [(":scheme", "https"), (":path", "/")]
        headers += extra_headers or []
        self.conn.send_headers(stream_id, headers, end_stream=method != "CONNECT")
        self._flush()
        status, body, sent = 0, bytearray(), False
        while True:
            data = self.sock.recv(MAX_READ)
            if not data:
                return ConnectResult(status, bytes(body), reset=True)
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    status = int(dict(text_headers(event.headers))[":status"])
                    if status == 200 and method == "CONNECT" and not sent:
                        self.conn.send_data(stream_id, payload)
                        sent = True
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    self._flush()
                    return ConnectResult(status, bytes(body))
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    self._flush()
                    return ConnectResult(status, bytes(body), reset=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return ConnectResult(status, bytes(body), reset=True)
            self._flush()


def http_get(
    host: str = "svc", *, method: str = "GET", path: str = "/", headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()


@dataclass(frozen=True)
class TunnelRecord:
    peer_identity: str
    authority: str
    headers: tuple[tuple[str, str], ...]


class HboneTerminator:
    """Destination-node stand-in: HBONE in on <ip>:15008, plain TCP out to the `:authority`."""

    def __init__(self, ip: str, cert: IssuedCertificate, port: int = 15008) -> None:
        self.ip, self.port = ip, port
        self.context = tls_context(cert, server=True)
        self.listener = socket.create_server((ip, port), reuse_port=False)
        self.records: list[TunnelRecord] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set_certificate(self, cert: IssuedCertificate) -> None:
        """Serve new connections with a re-issued certificate (rotation)."""
        self.context = tls_context(cert, server=True)

    def close(self) -> None:
        self._closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        identity = peer_identity(sock)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        lock = threading.Lock()
        window_open = threading.Condition(lock)
        upstreams: dict[int, socket.socket] = {}
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())

        def pump(stream_id: int, upstream: socket.socket) -> None:
            """Upstream bytes → DATA frames, within the peer's flow-control window; EOF → END_STREAM."""
            while True:
                try:
                    chunk = upstream.recv(MAX_READ)
                except OSError:
                    chunk = b""
                with lock:
                    try:
                        if not chunk:
                            conn.end_stream(stream_id)
                            sock.sendall(conn.data_to_send())
                            return
                        while chunk:
                            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                            if window <= 0:
                                window_open.wait(5)
                                continue
                            conn.send_data(stream_id, chunk[:window])
                            chunk = chunk[window:]
                        sock.sendall(conn.data_to_send())
                    except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError, OSError, KeyError):
                        return

        try:
            while True:
                data = sock.recv(MAX_READ)
                if not data:
                    break
                with lock:
                    events = conn.receive_data(data)
                    for event in events:
                        if isinstance(event, h2.events.RequestReceived):
                            fields = text_headers(event.headers)
                            headers = dict(fields)
                            authority = headers.get(":authority", "")
                            self.records.append(TunnelRecord(identity, authority, tuple(fields)))
                            if headers.get(":method") != "CONNECT":
                                conn.send_headers(event.stream_id, [(":status", "405")], end_stream=True)
                                continue
                            host, _, port = authority.rpartition(":")
                            try:
                                upstream = socket.create_connection((host, int(port)), timeout=5)
                            except (OSError, ValueError):
                                conn.send_headers(event.stream_id, [(":status", "503")], end_stream=True)
                                continue
                            upstreams[event.stream_id] = upstream
                            conn.send_headers(event.stream_id, [(":status", "200")])
                            threading.Thread(target=pump, args=(event.stream_id, upstream), daemon=True).start()
                        elif isinstance(event, h2.events.DataReceived):
                            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                            target = upstreams.get(event.stream_id)
                            if target is not None:
                                target.sendall(event.data)
                        elif isinstance(event, h2.events.StreamEnded):
                            target = upstreams.get(event.stream_id)
                            if target is not None:
                                try:
                                    target.shutdown(socket.SHUT_WR)
                                except OSError:
                                    pass
                        elif isinstance(event, h2.events.StreamReset):
                            gone = upstreams.pop(event.stream_id, None)
                            if gone is not None:
                                gone.close()
                        elif isinstance(event, h2.events.WindowUpdated):
                            window_open.notify_all()
                    sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError, ssl.SSLError):
            pass
        finally:
            for upstream in upstreams.values():
                upstream.close()
            sock.close()
