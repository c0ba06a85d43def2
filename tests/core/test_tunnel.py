"""TunnelPump + PlainSide against the h2 library as the oracle peer, over real loopback TLS sockets.

The server side is the pump (DATA/WINDOW_UPDATE in the core, everything else through a minimal h2-based
owner); the client is a plain `h2.H2Connection` over `asyncio` TLS. 6 MiB each way crosses every flow
control window: the pump's receive window (4 MiB stream, it must send WINDOW_UPDATEs) and the client's
default 64 KiB window (the pump must stop and wait for the client's WINDOW_UPDATEs).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import uvloop

from xds.ca import CertificateAuthority

STREAM_WINDOW = 4 << 20
CONN_WINDOW = 16 << 20


class Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)

    def eof_received(self) -> bool:
        self.t.write_eof()
        return True


class Owner:
    """The smallest pump owner: h2 for control frames, an echo server behind each CONNECT stream."""

    def __init__(self, impl: ModuleType, ctx: ssl.SSLContext) -> None:
        self.impl = impl
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sslobj = ctx.wrap_bio(inc, out, server_side=True)
        self.pump = impl.TunnelPump(self.sslobj, inc, out, self, True, STREAM_WINDOW, CONN_WINDOW)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW}
        )
        self.transports: dict[int, Any] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: list[int] = []
        self.early_eof: set[int] = set()
        self.errors: list[tuple[int, int, str]] = []

    def flush(self) -> None:
        self.pump.send_raw(self.h2.data_to_send())

    def pump_handshake_done(self) -> None:
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONN_WINDOW - 65535)
        self.flush()

    def pump_control(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.pump.open_stream(ev.stream_id)
                asyncio.get_running_loop().create_task(self.attach(ev.stream_id))
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                rs = self.h2.remote_settings
                self.pump.set_peer_settings(rs.initial_window_size, rs.max_frame_size)
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in self.transports:
                    self.transports[ev.stream_id].write_eof()
                else:
                    self.early_eof.add(ev.stream_id)
        self.flush()

    async def attach(self, sid: int) -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        self.h2.send_headers(sid, [(":status", "200")])
        self.flush()
        await loop.connect_accepted_socket(Echo, sock=b)
        t, _ = await loop.connect_accepted_socket(lambda: self.impl.PlainSide(self.pump, sid), sock=a)
        self.transports[sid] = t
        if sid in self.early_eof:
            t.write_eof()

    def pump_stream_drained(self, sid: int) -> None:
        self.h2.end_stream(sid)
        self.flush()
        self.transports[sid].close()

    def pump_stream_lost(self, sid: int, exc: BaseException | None) -> None:
        self.lost.append(sid)
        self.pump.close_stream(sid)

    def pump_closed(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def pump_error(self, sid: int, code: int, reason: str, detail: str) -> None:
        self.errors.append((sid, code, reason))
        if not sid:
            self.pump.close()


def _contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = CertificateAuthority()
    sc, sk, root = ca.issue("spiffe://cluster.local/ns/default/sa/echo").write(tmp, "server")
    cc, ck, _ = ca.issue("spiffe://cluster.local/ns/default/sa/sleep").write(tmp, "client")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(str(root))
    server.load_cert_chain(str(sc), str(sk))
    server.set_alpn_protocols(["h2"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(str(root))
    client.load_cert_chain(str(cc), str(ck))
    client.set_alpn_protocols(["h2"])
    return server, client


class PumpOwner(Protocol):
    pump: Any


OwnerT = TypeVar("OwnerT", bound=PumpOwner)


async def pump_server(make_owner: Callable[[], OwnerT]) -> tuple[asyncio.Server, int, list[OwnerT]]:
    """A loopback server whose every connection is a new owner's pump: (the server, its port, the owners)."""
    owners: list[OwnerT] = []

    def factory() -> Any:
        owners.append(make_owner())
        return owners[-1].pump

    srv = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1], owners


async def _client(port: int, ctx: ssl.SSLContext, payloads: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=None)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    sids = []
    for _ in payloads:
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "CONNECT"), (":authority", "127.0.0.1:1")])
        sids.append(sid)
    sent = dict.fromkeys(sids, 0)
    received = {sid: bytearray() for sid in sids}
    ok: set[int] = set()
    ended: set[int] = set()
    while len(ended) < len(sids):
        for sid, payload in zip(sids, payloads, strict=True):
            if sid in ok and sent[sid] < len(payload):
                while sent[sid] < len(payload):
                    n = min(c.local_flow_control_window(sid), c.max_outbound_frame_size, len(payload) - sent[sid])
                    if n <= 0:
                        break
                    c.send_data(sid, payload[sent[sid] : sent[sid] + n])
                    sent[sid] += n
                if sent[sid] == len(payload):
                    c.end_stream(sid)
        writer.write(c.data_to_send())
        await writer.drain()
        data = await reader.read(1 << 16)
        assert data, "server closed the connection"
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                assert dict(ev.headers or [])[":status"] == "200"  # type: ignore[index]
                ok.add(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                received[ev.stream_id] += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
    writer.write(c.data_to_send())
    writer.close()
    return [bytes(received[s]) for s in sids]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # uvloop reads through get_buffer/buffer_updated
@pytest.mark.parametrize("streams", [1, 3])
def test_pump_echoes_bulk_data_through_every_flow_control_window(
    impl: ModuleType, tmp_path: Path, streams: int, loop: str
) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)

    async def main() -> None:
        srv, port, owners = await pump_server(lambda: Owner(impl, server_ctx))
        payloads = [os.urandom(6 << 20) for _ in range(streams)]
        got = await asyncio.wait_for(_client(port, client_ctx, payloads), 60)
        assert [len(g) for g in got] == [len(p) for p in payloads]
        assert got == payloads
        await asyncio.wait_for(owners[0].closed, 10)
        assert owners[0].pump.bytes_received > streams * (6 << 20)
        srv.close()

    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


def test_pump_refuses_a_peer_that_is_not_tls(impl: ModuleType, tmp_path: Path) -> None:
    server_ctx, _ = _contexts(tmp_path)

    async def main() -> None:
        srv, port, owners = await pump_server(lambda: Owner(impl, server_ctx))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await asyncio.wait_for(owners[0].closed, 10)
        assert owners[0].pump.closed and not owners[0].pump.handshake_done
        srv.close()

    asyncio.run(main())
