"""A raw HTTP/2 client over HBONE's mTLS, for checks that need frames no well-behaved client sends.

Frames are built with `hyperframe` (the h2 project's framing library) where they are valid, by `raw_frame` where
the point is that they are not; replies are parsed with `hyperframe` too. The client sends the preface and its
SETTINGS, acknowledges the server's SETTINGS, and otherwise does only what the test says: it sends no
WINDOW_UPDATE of its own, so a test controls every window.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
INITIAL_WINDOW_SIZE = SettingsFrame.INITIAL_WINDOW_SIZE
MAX_FRAME_SIZE = SettingsFrame.MAX_FRAME_SIZE
MAX_CONCURRENT_STREAMS = SettingsFrame.MAX_CONCURRENT_STREAMS

# error codes (RFC 9113 §7)
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x1, 0x3, 0x5, 0x6, 0x7


def raw_frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


@dataclass
class Closed:
    """The server closed the connection (EOF or reset)."""


class RawH2:
    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, *, settings: dict[int, int] | None = None):
        raw = socket.create_connection(address, timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname=None)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.encoder = hpack.Encoder()
        self.server_settings: dict[int, int] = {}
        self._buf = b""
        self.closed = False
        self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
        deadline = time.monotonic() + 10
        while not self.server_settings and time.monotonic() < deadline:  # the server's SETTINGS, acked
            frame = self.read(deadline - time.monotonic())
            assert not isinstance(frame, Closed), "server closed during the handshake"
            if frame is None:
                break

    def send(self, data: bytes) -> None:
        """Send; a server that closes (or resets) the connection mid-way is what some checks want, so a
        failed send only marks the connection closed: what the server sent before is still read."""
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            self.closed = True

    def send_frame(self, frame: Frame) -> None:
        self.send(frame.serialize())

    def connect(self, sid: int, authority: str, *, end_stream: bool = False) -> None:
        flags = {"END_HEADERS"} | ({"END_STREAM"} if end_stream else set())
        block = self.encoder.encode([(":method", "CONNECT"), (":authority", authority)])
        self.send_frame(HeadersFrame(sid, block, flags=flags))

    def data(self, sid: int, payload: bytes, *, end_stream: bool = False) -> None:
        self.send_frame(DataFrame(sid, payload, flags={"END_STREAM"} if end_stream else set()))

    def settings(self, values: dict[int, int]) -> None:
        """One SETTINGS frame with these values in order (a dict keeps insertion order; repeat with pairs)."""
        self.send_frame(SettingsFrame(0, settings=values))

    def settings_pairs(self, pairs: list[tuple[int, int]]) -> None:
        self.send(raw_frame(0x4, 0, 0, b"".join(struct.pack(">HL", k, v) for k, v in pairs)))

    def window_update(self, sid: int, increment: int) -> None:
        self.send(raw_frame(0x8, 0, sid, struct.pack(">L", increment)))

    def priority(self, sid: int, depends_on: int = 0, weight: int = 15) -> None:
        self.send_frame(PriorityFrame(sid, depends_on=depends_on, stream_weight=weight))

    def rst_stream(self, sid: int, code: int) -> None:
        self.send_frame(RstStreamFrame(sid, error_code=code))

    def read(self, timeout: float = 10.0) -> Frame | Closed | None:
        """The next frame (SETTINGS are acknowledged and recorded), Closed, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buf) >= 9:
                length = int.from_bytes(self._buf[:3], "big")
                if len(self._buf) >= 9 + length:
                    header, body = self._buf[:9], self._buf[9 : 9 + length]
                    self._buf = self._buf[9 + length :]
                    frame, _ = Frame.parse_frame_header(memoryview(header))
                    frame.parse_body(memoryview(body))
                    if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        self.server_settings.update(frame.settings)
                        self.send_frame(SettingsFrame(0, flags={"ACK"}))
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except (OSError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.closed = True
                return Closed()
            self._buf += chunk

    def until(self, wanted: type[Frame] | type[Closed], timeout: float = 10.0, *, sid: int | None = None) -> list:  # type: ignore[type-arg]
        """Frames read until one of type `wanted` (on stream `sid`, if given) arrives; it is the last item.
        Raises AssertionError with what came instead when it does not arrive in time."""
        seen: list = []  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"no {wanted.__name__} within {timeout}s; got {seen}")
            seen.append(frame)
            if isinstance(frame, wanted) and (sid is None or getattr(frame, "stream_id", None) == sid):
                return seen
            if isinstance(frame, Closed):
                raise AssertionError(f"connection closed while waiting for {wanted.__name__}; got {seen}")

    def data_bytes(self, sid: int, count: int, timeout: float = 10.0) -> bytes:
        """Read until `count` DATA payload bytes arrived on `sid` (fails on RST_STREAM, GOAWAY or close)."""
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < count:
            frame = self.read(max(0.0, deadline - time.monotonic()))
            assert frame is not None, f"only {len(got)} of {count} bytes on stream {sid}: {got!r}"
            assert not isinstance(frame, Closed | GoAwayFrame), f"connection ended: {frame}"
            assert not (isinstance(frame, RstStreamFrame) and frame.stream_id == sid), f"stream reset: {frame}"
            if isinstance(frame, DataFrame) and frame.stream_id == sid:
                got += frame.data
        return got

    def quiet(self, sid: int, seconds: float) -> None:
        """Nothing arrives on stream `sid` (and the connection stays up) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            frame = self.read(left)
            if frame is None:
                return
            assert not isinstance(frame, Closed | GoAwayFrame), f"connection ended: {frame}"
            assert getattr(frame, "stream_id", 0) != sid or isinstance(frame, PingFrame), f"unexpected {frame}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


__all__ = ["Closed", "ContinuationFrame", "GoAwayFrame", "HeadersFrame", "RawH2", "RstStreamFrame", "raw_frame"]
