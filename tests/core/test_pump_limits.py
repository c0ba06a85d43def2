"""What the TunnelPump refuses in the frames it reads itself (RFC 9113 §4.2, §6.9, and Envoy's empty-frame
limit), against both implementations, over real loopback TLS: a raw HTTP/2 client sends the frames, and the
pump's verdict reaches its owner as `pump_error(sid, code, reason, detail)` before any payload is buffered.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from pathlib import Path
from types import ModuleType

import pytest

from tests.core.test_tunnel import _contexts, pump_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM = 0x1, 0x3, 0x6, 0xB
DATA, HEADERS, WINDOW_UPDATE = 0x0, 0x1, 0x8
END_STREAM, END_HEADERS = 0x1, 0x4
CONNECT_BLOCK = b"\x02\x07CONNECT\x01\x0a10.0.0.1:1"  # literal :method / :authority (indexed names), no Huffman


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"", length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def window_update(sid: int, inc: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, inc.to_bytes(4, "big"))


OPEN_1 = frame(HEADERS, END_HEADERS, 1, CONNECT_BLOCK)


class RawOwner:
    """A pump owner with no HTTP/2 library: a HEADERS frame opens its stream in the pump; errors are recorded
    (a connection error closes the pump, as the real owner does after its GOAWAY)."""

    def __init__(self, impl: ModuleType, ctx: ssl.SSLContext, stream_window: int, conn_window: int) -> None:
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.pump = impl.TunnelPump(
            ctx.wrap_bio(inc, out, server_side=True), inc, out, self, True, stream_window, conn_window, 1 << 20
        )
        self.errors: list[tuple[int, int, str]] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pump_handshake_done(self) -> None: ...

    def pump_control(self, data: bytes) -> None:
        pos = len(PREFACE) if data.startswith(PREFACE) else 0
        while pos + 9 <= len(data):
            length = int.from_bytes(data[pos : pos + 3], "big")
            ftype, sid = data[pos + 3], int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            if ftype == HEADERS:
                self.pump.open_stream(sid)
            pos += 9 + length

    def pump_stream_drained(self, sid: int) -> None: ...

    def pump_stream_lost(self, sid: int, exc: BaseException | None) -> None: ...

    def pump_closed(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def pump_error(self, sid: int, code: int, reason: str, detail: str) -> None:
        self.errors.append((sid, code, reason))
        if not sid:
            self.pump.close()


def _run(impl: ModuleType, tmp: Path, wire: bytes, stream_window: int, conn_window: int) -> tuple[RawOwner, int]:
    """Send `wire` after the preface; returns the owner and how many bytes the client could still write."""
    server_ctx, client_ctx = _contexts(tmp)

    async def main() -> tuple[RawOwner, int]:
        srv, port, owners = await pump_server(lambda: RawOwner(impl, server_ctx, stream_window, conn_window))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=None)
        writer.write(PREFACE + wire)
        sent = 0
        try:  # an attacker keeps writing: the server must not take it in
            for _ in range(64):
                writer.write(b"\xff" * 65536)
                await asyncio.wait_for(writer.drain(), 2)
                sent += 65536
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        try:  # until the server closes (close_notify, or a reset when it closed with our bytes unread)
            while await asyncio.wait_for(reader.read(65536), 10):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
        await asyncio.wait_for(owners[0].closed, 10)
        writer.close()
        srv.close()
        return owners[0], sent

    return asyncio.run(main())


W = 1 << 20  # receive windows large enough not to matter unless a row is about them


@pytest.mark.parametrize(
    ("wire", "windows", "error"),
    [
        pytest.param(
            frame(DATA, 0, 1, length=0xFFFFFF), (W, W), (0, FRAME_SIZE_ERROR, "frame_size"), id="16MiB_data_frame"
        ),
        pytest.param(b"\xff" * 64, (W, W), (0, FRAME_SIZE_ERROR, "frame_size"), id="64_bytes_of_0xff_after_preface"),
        pytest.param(
            frame(0x6, 0, 0, length=(1 << 20) + 1), (W, W), (0, FRAME_SIZE_ERROR, "frame_size"), id="ping_over_max"
        ),
        pytest.param(
            frame(WINDOW_UPDATE, 0, 0, b"\0\0\1"), (W, W), (0, FRAME_SIZE_ERROR, "frame_size"), id="window_update_len3"
        ),
        pytest.param(window_update(0, 0), (W, W), (0, PROTOCOL_ERROR, "flow_control"), id="conn_increment_0"),
        pytest.param(
            OPEN_1 + window_update(1, 0), (W, W), (0, PROTOCOL_ERROR, "flow_control"), id="stream_increment_0"
        ),
        pytest.param(
            window_update(0, 2**31 - 1), (W, W), (0, FLOW_CONTROL_ERROR, "flow_control"), id="conn_window_overflow"
        ),
        pytest.param(
            OPEN_1 + frame(DATA, 0, 1, b"x" * 70000),
            (65535, W),
            (0, FLOW_CONTROL_ERROR, "flow_control"),
            id="data_beyond_stream_window",
        ),
        pytest.param(
            OPEN_1 + frame(DATA, 0, 1, b"x" * 70000),
            (W, 65535),
            (0, FLOW_CONTROL_ERROR, "flow_control"),
            id="data_beyond_connection_window",
        ),
        pytest.param(
            OPEN_1 + frame(DATA, 0, 1) + frame(DATA, 0, 1),
            (W, W),
            (0, ENHANCE_YOUR_CALM, "empty_frame_flood"),
            id="two_empty_data_frames",
        ),
    ],
)
def test_pump_refuses_before_buffering(
    impl: ModuleType, tmp_path: Path, wire: bytes, windows: tuple[int, int], error: tuple[int, int, str]
) -> None:
    owner, _ = _run(impl, tmp_path, wire, *windows)
    assert owner.errors == [error]


def test_stream_window_overflow_is_a_stream_error(impl: ModuleType, tmp_path: Path) -> None:
    owner, _ = _run(impl, tmp_path, OPEN_1 + window_update(1, 2**31 - 1) + frame(DATA, 0, 1), W, W)
    assert owner.errors[0] == (1, FLOW_CONTROL_ERROR, "flow_control")


def test_well_formed_frames_raise_nothing(impl: ModuleType, tmp_path: Path) -> None:
    wire = OPEN_1 + window_update(0, 1000) + window_update(1, 1000) + frame(DATA, 0, 1, b"x" * 16384)
    wire += frame(DATA, 0, 1) + frame(DATA, 0, 1, b"y") + frame(DATA, 0, 1) + frame(DATA, END_STREAM, 1)
    owner, _ = _run(impl, tmp_path, wire + frame(DATA, 0, 1, length=0xFFFFFF), W, W)
    assert owner.errors == [(0, FRAME_SIZE_ERROR, "frame_size")], "only the oversized frame at the end"
