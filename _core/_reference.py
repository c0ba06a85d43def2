"""Pure-Python twins of the Cython classes in `_core.core`, with an identical API.

Used by the tests (the same parametrised suite runs against both) and by the benchmarks (as a baseline).
The Cython parts in `_core/*.pxi` are line-for-line the same algorithms with C types.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Sequence
from typing import Any, cast

# HTTP/2 framing constants (RFC 9113 §6)
FRAME_HEADER = 9
T_DATA = 0x0
T_WINDOW_UPDATE = 0x8
F_END_STREAM = 0x1
F_PADDED = 0x8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
READ_CHUNK = 256 * 1024
DEFAULT_WINDOW = 65535
DEFAULT_FRAME = 16384
# error codes (RFC 9113 §7) the pump raises through `owner.pump_error`
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
ENHANCE_YOUR_CALM = 0xB
# abuse limits, named and defaulted as Envoy's HTTP/2 protocol options
MAX_CONSECUTIVE_EMPTY_FRAMES = 1  # max_consecutive_inbound_frames_with_empty_payload

_pack_wu = struct.Struct(">BHBBII").pack


class RoundRobin:
    """Round-robin over a fixed list of items: O(1) `pick()`, `replace()` on update.

    The cursor survives `replace()` (modulo the new length), so a config push does not restart the
    rotation at the first endpoint.
    """

    __slots__ = ("_items", "_n", "_next")

    def __init__(self, items: Sequence[Any] = ()) -> None:
        self._items: list[Any] = list(items)
        self._n = len(self._items)
        self._next = 0

    def replace(self, items: Sequence[Any]) -> None:
        self._items = list(items)
        self._n = len(self._items)
        if self._n:
            self._next %= self._n
        else:
            self._next = 0

    def pick(self) -> Any:
        if self._n == 0:
            return None
        i = self._next
        self._next = i + 1 if i + 1 < self._n else 0
        return self._items[i]

    def items(self) -> list[Any]:
        return list(self._items)

    def __len__(self) -> int:
        return self._n


def data_frame_header(length: int, flags: int, stream_id: int) -> bytes:
    return bytes(
        (
            (length >> 16) & 0xFF,
            (length >> 8) & 0xFF,
            length & 0xFF,
            T_DATA,
            flags,
            (stream_id >> 24) & 0x7F,
            (stream_id >> 16) & 0xFF,
            (stream_id >> 8) & 0xFF,
            stream_id & 0xFF,
        )
    )


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return _pack_wu(0, 4, T_WINDOW_UPDATE, 0, stream_id & 0x7FFFFFFF, increment & 0x7FFFFFFF)


SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_dst(fd: int) -> tuple[bytes, int] | None:
    try:
        sock = socket.socket(fileno=fd)  # borrowed: detached below, never closed here
    except OSError:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    finally:
        sock.detach()
    return (raw[4:8], (raw[2] << 8) | raw[3]) if len(raw) >= 8 else None


class _Stream:
    __slots__ = (
        "sid",
        "transport",
        "send_window",
        "pending",
        "pending_eof",
        "recv_unacked",
        "write_paused",
        "reading_paused",
        "inbuf",
        "bytes_in",
        "bytes_out",
        "remote_closed",
    )

    def __init__(self, sid: int, send_window: int) -> None:
        self.sid = sid
        self.transport: Any = None
        self.send_window = send_window
        self.pending = bytearray()
        self.pending_eof = False
        self.recv_unacked = 0
        self.write_paused = False
        self.reading_paused = False
        self.inbuf: list[bytes] = []
        self.bytes_in = 0  # DATA payload received from the tunnel (written to the plain side)
        self.bytes_out = 0  # plain bytes sent into the tunnel
        self.remote_closed = False  # the peer ended its side (END_STREAM): more DATA is STREAM_CLOSED


class TunnelPump:
    """One HBONE connection's bytes path: TCP ↔ TLS (ssl.SSLObject over MemoryBIOs) ↔ HTTP/2 DATA.

    An asyncio protocol for the TCP socket to the peer. DATA and WINDOW_UPDATE frames are handled here;
    every other frame (and the client preface) is handed, in order, to `owner.pump_control(bytes)`, where
    `h2` keeps the connection and stream state. Bytes `h2` wants to send come back through `send_raw()`.

    Owner callbacks: `pump_handshake_done()`, `pump_control(data)`, `pump_stream_drained(sid)` (a
    half-close requested by `end_stream` may now be sent), `pump_stream_lost(sid, exc)`, `pump_closed(exc)`,
    `pump_error(sid, code, reason, detail)`: an RFC 9113 violation or abuse found in the frames the pump
    reads itself; sid 0 is a connection error (the owner sends GOAWAY `code` and closes; the pump parses
    nothing more of this batch), any other sid a stream error (RST_STREAM `code`). `reason` is a short
    metric label, `detail` the log text.

    What the pump refuses (RFC 9113): any frame longer than `max_frame` (our SETTINGS_MAX_FRAME_SIZE), so
    at most one frame is ever buffered (§4.2, FRAME_SIZE_ERROR); DATA beyond the receive windows we granted
    (§6.9.1, FLOW_CONTROL_ERROR), so what a stream buffers is bounded by its window; WINDOW_UPDATE with a
    length other than 4 (FRAME_SIZE_ERROR), an increment of 0 (PROTOCOL_ERROR), or one that pushes a send
    window above 2^31-1 (FLOW_CONTROL_ERROR: the connection's as GOAWAY, a stream's as RST_STREAM).
    Abuse: more than MAX_CONSECUTIVE_EMPTY_FRAMES DATA frames in a row with no payload and no END_STREAM is
    ENHANCE_YOUR_CALM. Memory: while the TLS transport has paused writing (the peer does not read), every plain
    side stops reading, so what we queue towards the peer is bounded by the transport's high-water mark plus
    one read, however large the windows the peer grants; the owner counts the frames it queues meanwhile
    (`write_paused`).
    """

    def __init__(
        self,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        owner: Any,
        server_side: bool,
        stream_window: int,
        conn_window: int,
        max_frame: int = DEFAULT_FRAME,
    ) -> None:
        self._ssl = sslobj
        self._in = incoming
        self._out = outgoing
        self._owner = owner
        self._server_side = server_side
        self._transport: Any = None
        self._handshaked = False
        self._closed = False
        self._notified = False
        self._need_preface = server_side
        self._buf = bytearray()
        self._rbuf = bytearray(READ_CHUNK)
        self._wbuf = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._stream_window = stream_window  # what we advertise (receive side)
        self._conn_window = conn_window
        self._conn_unacked = 0
        self._max_frame = max_frame  # what we advertise as SETTINGS_MAX_FRAME_SIZE
        self._empty_run = 0  # consecutive DATA frames with no payload and no END_STREAM
        self._write_paused = False  # the transport's buffer is above its high-water mark
        self._peer_stream_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_FRAME
        self._conn_send_window = DEFAULT_WINDOW
        self._blocked: dict[int, _Stream] = {}  # streams with pending bytes waiting for window
        self.bytes_received = 0
        self.bytes_sent = 0
        self._rem = 0  # payload bytes still to come of a DATA frame being cut through
        self._rem_sid = 0
        self._rem_flags = 0
        self._out_sid = 0
        self._segs: list[bytes] = []
        self._stage = memoryview(bytearray(READ_CHUNK))

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        if not self._server_side:
            self._handshake()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self.bytes_received += len(data)
        self._in.write(data)
        if not self._handshaked:
            if not self._handshake():
                return
        self._read_plain()
        self._flush()

    # asyncio.BufferedProtocol (uvloop picks it by duck typing; plain asyncio keeps using data_received): the
    # event loop reads straight into the pump's staging buffer instead of into a new bytes object. One buffer
    # serves the TLS socket and every plain socket of this connection: each read is consumed (copied into the
    # BIO, encrypted, or queued) before the loop reads again.
    def get_buffer(self, sizehint: int) -> memoryview:
        return self._stage

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._stage[:nbytes])  # type: ignore[arg-type]

    def _plain_read(self, sid: int, nbytes: int) -> None:
        self.send_data(sid, self._stage[:nbytes])  # type: ignore[arg-type]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closed = True
        if not self._notified:
            self._notified = True
            self._owner.pump_closed(exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        for st in self._streams.values():
            if not st.reading_paused and st.transport is not None:
                st.reading_paused = True
                st.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        for st in self._streams.values():
            if st.reading_paused and not st.pending and st.transport is not None:
                st.reading_paused = False
                st.transport.resume_reading()

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def _error(self, sid: int, code: int, reason: str, detail: str) -> None:
        self._flush_out()
        self._owner.pump_error(sid, code, reason, detail)

    # ---------------------------------------------------------------- TLS
    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return False
        except (ssl.SSLError, OSError) as e:
            self._flush_tls()
            self._fail(e)
            return False
        self._handshaked = True
        self._flush_tls()
        self._owner.pump_handshake_done()
        return not self._closed

    def _fail(self, exc: BaseException) -> None:
        if self._notified:
            return
        self._closed = True
        self._notified = True
        if self._transport is not None:
            self._transport.abort()
        self._owner.pump_closed(exc)

    def _read_plain(self) -> None:
        rbuf = self._rbuf
        buf = self._buf
        while True:
            # stop when nothing is left to decrypt, instead of paying for an SSLWantReadError every batch
            if not self._in.pending and not self._ssl.pending():
                break
            try:
                n = cast(int, self._ssl.read(READ_CHUNK, rbuf))  # with a buffer, read() returns a count
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer sent close_notify: finish parsing, then close
                self._parse()
                self.close()
                return
            except (ssl.SSLError, OSError) as e:
                self._fail(e)
                return
            if n == 0:  # close_notify: ssl reports it as a zero-length read
                self._parse()
                self.close()
                return
            buf += memoryview(rbuf)[:n]
        self._parse()

    # ---------------------------------------------------------------- framing, receive side
    def _parse(self) -> None:
        """Split the plaintext into frames. DATA payload for tracked streams is cut through as it arrives (a
        frame need not be complete) and coalesced into one write per stream per batch; control frames go to
        the owner in order (pending payload is written first, so END_STREAM/RST never overtake data)."""
        buf = self._buf
        pos = 0
        end = len(buf)
        ctl_start = -1
        if self._need_preface:
            if end < 24:
                return
            self._need_preface = False
            ctl_start = 0
            pos = 24
        if self._rem > 0:
            n = min(self._rem, end - pos)
            self._deliver(self._rem_sid, pos, n)
            pos += n
            self._rem -= n
            if self._rem > 0:
                self._flush_out()
                del buf[:pos]
                return
            if self._rem_flags & F_END_STREAM:
                self._flush_out()
                self._owner.pump_control(data_frame_header(0, F_END_STREAM, self._rem_sid))
                if self._closed:
                    return
        while end - pos >= FRAME_HEADER:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            ftype = buf[pos + 3]
            flags = buf[pos + 4]
            sid = ((buf[pos + 5] & 0x7F) << 24) | (buf[pos + 6] << 16) | (buf[pos + 7] << 8) | buf[pos + 8]
            if length > self._max_frame or ftype == T_DATA or ftype == T_WINDOW_UPDATE:
                if ctl_start >= 0:  # frames before the offending one reach the owner first
                    self._flush_out()
                    self._owner.pump_control(bytes(buf[ctl_start:pos]))
                    ctl_start = -1
                    if self._closed:
                        return
                if not self._frame_ok(length, ftype, flags, sid):
                    return
            elif length:  # any frame with a payload ends a run of empty DATA frames
                self._empty_run = 0
            if ftype == T_DATA and not flags & F_PADDED and sid in self._streams:
                if ctl_start >= 0:
                    self._owner.pump_control(bytes(buf[ctl_start:pos]))
                    ctl_start = -1
                    if self._closed:
                        return
                avail = end - pos - FRAME_HEADER
                if avail < length:  # cut through: deliver what is here, the rest follows in later batches
                    self._deliver(sid, pos + FRAME_HEADER, avail)
                    self._rem = length - avail
                    self._rem_sid = sid
                    self._rem_flags = flags
                    pos = end
                    break
                self._deliver(sid, pos + FRAME_HEADER, length)
                pos += FRAME_HEADER + length
                if flags & F_END_STREAM:
                    self._flush_out()
                    self._owner.pump_control(data_frame_header(0, F_END_STREAM, sid))
                    if self._closed:
                        return
                continue
            if end - pos - FRAME_HEADER < length:
                break
            if ftype == T_DATA and flags & F_PADDED and (length == 0 or buf[pos + FRAME_HEADER] >= length):
                self._error(0, PROTOCOL_ERROR, "protocol", f"DATA padding exceeds the frame on stream {sid}")
                return
            if ftype == T_DATA and sid in self._streams:  # padded: whole-frame path
                self._flush_out()
                if ctl_start >= 0:
                    self._owner.pump_control(bytes(buf[ctl_start:pos]))
                    ctl_start = -1
                    if self._closed:
                        return
                target = self._streams.get(sid)
                if target is not None:
                    self._on_data(target, buf, pos + FRAME_HEADER, length, flags)
                if flags & F_END_STREAM:
                    self._owner.pump_control(data_frame_header(0, F_END_STREAM, sid))
                    if self._closed:
                        return
                pos += FRAME_HEADER + length
            elif ftype == T_DATA:
                # DATA for a stream the pump does not track (closed/reset here, or never opened): drop the
                # payload, give its connection window back, and let h2 judge the stream state from an
                # empty DATA frame with the same END_STREAM flag.
                self._flush_out()
                if ctl_start < 0:
                    ctl_start = pos
                self._conn_unacked += length
                if self._conn_unacked >= self._conn_window >> 1:
                    self._wbuf += window_update_frame(0, self._conn_unacked)
                    self._conn_unacked = 0
                self._owner.pump_control(bytes(buf[ctl_start:pos]) + data_frame_header(0, flags & F_END_STREAM, sid))
                ctl_start = -1
                if self._closed:
                    return
                pos += FRAME_HEADER + length
            elif ftype == T_WINDOW_UPDATE and (sid == 0 or sid in self._streams):
                p = pos + FRAME_HEADER
                inc = ((buf[p] & 0x7F) << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]
                if not self._on_window_update(sid, inc):
                    return
                pos += FRAME_HEADER + length
            else:
                if ctl_start < 0:
                    self._flush_out()
                    ctl_start = pos
                pos += FRAME_HEADER + length
        if ctl_start >= 0:
            self._flush_out()
            self._owner.pump_control(bytes(buf[ctl_start:pos]))
        self._flush_out()
        if not self._closed:
            del buf[:pos]

    def _frame_ok(self, length: int, ftype: int, flags: int, sid: int) -> bool:
        """Checks on a frame header before any of its payload is buffered; False after a connection error."""
        if length > self._max_frame:
            self._error(
                0, FRAME_SIZE_ERROR, "frame_size", f"frame type {ftype} of {length} bytes exceeds {self._max_frame}"
            )
            return False
        if ftype == T_DATA:
            if length == 0 and not flags & F_END_STREAM:
                self._empty_run += 1
                if self._empty_run > MAX_CONSECUTIVE_EMPTY_FRAMES:
                    self._error(0, ENHANCE_YOUR_CALM, "empty_frame_flood", "consecutive DATA frames without payload")
                    return False
            else:
                self._empty_run = 0
            if self._conn_unacked + length > self._conn_window:
                self._error(0, FLOW_CONTROL_ERROR, "flow_control", "DATA beyond the connection receive window")
                return False
            st = self._streams.get(sid)
            if st is not None:
                if st.remote_closed:  # §5.1 half-closed (remote): a stream error; the owner closes the stream
                    self._error(sid, STREAM_CLOSED, "stream_closed", f"DATA after END_STREAM on stream {sid}")
                    return not self._closed
                if st.recv_unacked + length > self._stream_window:
                    self._error(
                        0, FLOW_CONTROL_ERROR, "flow_control", f"DATA beyond the receive window of stream {sid}"
                    )
                    return False
                if flags & F_END_STREAM:
                    st.remote_closed = True
            return True
        if ftype == T_WINDOW_UPDATE and length != 4:
            self._error(0, FRAME_SIZE_ERROR, "frame_size", f"WINDOW_UPDATE of length {length}")
            return False
        return True

    def _deliver(self, sid: int, off: int, n: int) -> None:
        """Account n payload bytes at buffer offset `off` for stream sid; queue them for one coalesced write."""
        if n <= 0:
            return
        self._conn_unacked += n
        if self._conn_unacked >= self._conn_window >> 1:
            self._wbuf += window_update_frame(0, self._conn_unacked)
            self._conn_unacked = 0
        st = self._streams.get(sid)
        if st is None:
            return
        st.recv_unacked += n
        if not st.write_paused and st.recv_unacked >= self._stream_window >> 1:
            self._wbuf += window_update_frame(sid, st.recv_unacked)
            st.recv_unacked = 0
        if self._segs and self._out_sid != sid:
            self._flush_out()
        self._out_sid = sid
        self._segs.append(bytes(self._buf[off : off + n]))

    def _flush_out(self) -> None:
        if not self._segs:
            return
        data = self._segs[0] if len(self._segs) == 1 else b"".join(self._segs)
        self._segs.clear()
        st = self._streams.get(self._out_sid)
        if st is None:
            return
        st.bytes_in += len(data)
        if st.transport is None:
            st.inbuf.append(data)
        else:
            st.transport.write(data)

    def _on_data(self, st: _Stream, buf: bytearray, start: int, length: int, flags: int) -> None:
        self._conn_unacked += length
        if self._conn_unacked >= self._conn_window >> 1:
            self._wbuf += window_update_frame(0, self._conn_unacked)
            self._conn_unacked = 0
        if flags & F_PADDED and length > 0:
            pad = buf[start]
            payload = bytes(buf[start + 1 : start + length - pad])
        else:
            payload = bytes(buf[start : start + length])
        st.recv_unacked += length
        if payload:
            st.bytes_in += len(payload)
            if st.transport is None:
                st.inbuf.append(payload)
            else:
                st.transport.write(payload)
        if not st.write_paused and st.recv_unacked >= self._stream_window >> 1:
            self._wbuf += window_update_frame(st.sid, st.recv_unacked)
            st.recv_unacked = 0

    def _on_window_update(self, sid: int, inc: int) -> bool:
        """Apply a peer's WINDOW_UPDATE (RFC 9113 §6.9); False after a connection error."""
        if inc == 0:
            self._error(0, PROTOCOL_ERROR, "flow_control", f"WINDOW_UPDATE increment 0 on stream {sid}")
            return False
        if sid == 0:
            if self._conn_send_window + inc > MAX_WINDOW:
                self._error(0, FLOW_CONTROL_ERROR, "flow_control", "connection send window above 2^31-1")
                return False
            self._conn_send_window += inc
            if self._blocked:
                for st in list(self._blocked.values()):
                    self._push(st)
                    if self._conn_send_window <= 0:
                        break
        else:
            one = self._streams.get(sid)
            if one is not None:
                if one.send_window + inc > MAX_WINDOW:
                    self._error(sid, FLOW_CONTROL_ERROR, "flow_control", f"send window of stream {sid} above 2^31-1")
                    return not self._closed
                one.send_window += inc
                if one.pending:
                    self._push(one)
        return True

    # ---------------------------------------------------------------- send side
    def _push(self, st: _Stream) -> None:
        pending = st.pending
        maxf = self._peer_max_frame
        wbuf = self._wbuf
        sid = st.sid
        while pending:
            n = min(len(pending), st.send_window, self._conn_send_window, maxf)
            if n <= 0:
                break
            wbuf += data_frame_header(n, 0, sid)
            wbuf += memoryview(pending)[:n]
            del pending[:n]
            st.send_window -= n
            self._conn_send_window -= n
        if pending:
            self._blocked[sid] = st
            if not st.reading_paused and st.transport is not None:
                st.reading_paused = True
                st.transport.pause_reading()
        else:
            self._blocked.pop(sid, None)
            if st.reading_paused and st.transport is not None and not self._write_paused:
                st.reading_paused = False
                st.transport.resume_reading()
            if st.pending_eof:
                st.pending_eof = False
                self._owner.pump_stream_drained(sid)

    def send_data(self, sid: int, data: bytes) -> None:
        st = self._streams.get(sid)
        if st is None or self._closed:
            return
        st.bytes_out += len(data)
        if not st.pending:
            maxf = self._peer_max_frame
            mv = memoryview(data)
            off = 0
            total = len(data)
            wbuf = self._wbuf
            while off < total:
                n = min(total - off, st.send_window, self._conn_send_window, maxf)
                if n <= 0:
                    break
                wbuf += data_frame_header(n, 0, sid)
                wbuf += mv[off : off + n]
                off += n
                st.send_window -= n
                self._conn_send_window -= n
            if off < total:
                st.pending += mv[off:]
                self._push(st)
        else:
            st.pending += data
            self._push(st)
        self._flush()

    def end_stream(self, sid: int) -> None:
        """Half-close after the pending bytes: `owner.pump_stream_drained(sid)` fires when it may be sent."""
        st = self._streams.get(sid)
        if st is None:
            return
        if st.pending:
            st.pending_eof = True
        else:
            self._owner.pump_stream_drained(sid)

    def send_raw(self, data: bytes) -> None:
        if data and not self._closed:
            self._wbuf += data
            self._flush()

    def _flush(self) -> None:
        if self._wbuf and self._handshaked and not self._closed:
            try:
                self._ssl.write(self._wbuf)
            except (ssl.SSLError, OSError) as e:
                self._fail(e)
                return
            self._wbuf.clear()
        self._flush_tls()

    def _flush_tls(self) -> None:
        if self._out.pending and self._transport is not None:
            data = self._out.read()
            self.bytes_sent += len(data)
            self._transport.write(data)

    # ---------------------------------------------------------------- streams
    def open_stream(self, sid: int) -> None:
        if sid not in self._streams:
            self._streams[sid] = _Stream(sid, self._peer_stream_window)

    def attach(self, sid: int, transport: Any) -> None:
        st = self._streams.get(sid)
        if st is None:
            return
        st.transport = transport
        if st.inbuf:
            for chunk in st.inbuf:
                transport.write(chunk)
            st.inbuf.clear()
        if (st.pending or self._write_paused) and not st.reading_paused:
            st.reading_paused = True
            transport.pause_reading()

    def close_stream(self, sid: int) -> tuple[int, int]:
        """Forget a stream; returns (bytes received from the tunnel, bytes sent into it)."""
        st = self._streams.pop(sid, None)
        self._blocked.pop(sid, None)
        if st is None:
            return (0, 0)
        if st.recv_unacked:  # give back the connection window the dropped bytes used
            st.recv_unacked = 0
        return (st.bytes_in, st.bytes_out)

    def has_stream(self, sid: int) -> bool:
        return sid in self._streams

    def remote_ended(self, sid: int) -> None:
        """The peer ended its side of the stream (END_STREAM on its HEADERS): more DATA is STREAM_CLOSED."""
        st = self._streams.get(sid)
        if st is not None:
            st.remote_closed = True

    def stream_transport_lost(self, sid: int, exc: BaseException | None) -> None:
        st = self._streams.get(sid)
        if st is not None:
            st.transport = None
            self._owner.pump_stream_lost(sid, exc)

    def set_stream_write_paused(self, sid: int, paused: bool) -> None:
        st = self._streams.get(sid)
        if st is None:
            return
        st.write_paused = paused
        if not paused and st.recv_unacked >= self._stream_window >> 1:
            self._wbuf += window_update_frame(sid, st.recv_unacked)
            st.recv_unacked = 0
            self._flush()

    def set_peer_settings(self, initial_window: int, max_frame: int) -> None:
        delta = initial_window - self._peer_stream_window
        self._peer_stream_window = initial_window
        self._peer_max_frame = max_frame
        if delta:
            for st in self._streams.values():
                st.send_window += delta
            for st in list(self._blocked.values()):
                self._push(st)
            self._flush()

    def add_conn_send_window(self, inc: int) -> None:
        self._on_window_update(0, inc)

    @property
    def transport(self) -> Any:
        return self._transport

    @property
    def handshake_done(self) -> bool:
        return self._handshaked

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        if self._closed:
            return
        self._flush()
        if self._handshaked:
            try:
                self._ssl.unwrap()  # queue our close_notify
            except (ssl.SSLError, OSError):
                pass
            self._flush_tls()
        self._closed = True
        if self._transport is not None:
            # A lingering close: our FIN now, but keep reading (and dropping) what the peer still sends until it
            # closes too; closing with its bytes unread would make the kernel answer with a reset, which can
            # destroy our GOAWAY before the peer reads it. The owner aborts if the peer never closes.
            if self._transport.can_write_eof():
                self._transport.write_eof()
            else:
                self._transport.close()


class PlainSide:
    """asyncio protocol for the plain TCP side of one tunnelled stream: socket bytes go straight into the
    pump as DATA frames, with no Python-level handler in between."""

    __slots__ = ("_pump", "_sid", "transport")

    def __init__(self, pump: TunnelPump, sid: int) -> None:
        self._pump = pump
        self._sid = sid
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._pump.attach(self._sid, transport)

    def data_received(self, data: bytes) -> None:
        self._pump.send_data(self._sid, data)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._pump.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._pump._plain_read(self._sid, nbytes)

    def eof_received(self) -> bool:
        self._pump.end_stream(self._sid)
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._pump.stream_transport_lost(self._sid, exc)

    def pause_writing(self) -> None:
        self._pump.set_stream_write_paused(self._sid, True)

    def resume_writing(self) -> None:
        self._pump.set_stream_write_paused(self._sid, False)
