"""One HBONE connection (client or server): `h2` for the HTTP/2 connection, `ztunnel.h2streams` for its
streams, `_core.TunnelPump` for the bytes path.

Split of work (see docs/ztunnel.md):
- `h2.H2Connection` owns *connection* state: preface, SETTINGS (+ACK) negotiation, PING/PONG, GOAWAY and
  their protocol errors. It never sees a stream frame.
- `h2streams.StreamFrames` owns the *stream* frames of CONNECT tunnels: HEADERS/CONTINUATION (HPACK decoding by
  the `hpack` library), request/response checks, RST_STREAM, END_STREAM, stream ids and the concurrency limit.
- `TunnelPump` (Cython) owns the *bytes*: TLS over MemoryBIOs, frame splitting, DATA payload → the plain
  socket, plain socket → DATA frames, both flow-control directions (WINDOW_UPDATE in and out) — without
  running Python code per chunk.

Hostile peers (docs/ztunnel.md, "Limits"): every RFC 9113 connection error found by h2, `h2streams` or the pump
is a GOAWAY with its code and the connection closed; the abuse limits below are Envoy's, with its defaults.
A connection closed for any of these gets one log line (with its counts) and one count in the metric
`ztunnel_hbone_connections_closed_total{reason}`; stream errors are counted and only the first per connection
is logged, so a flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ztunnel import h2streams as h2s
from ztunnel import tls
from ztunnel.identity import Identity

log = logging.getLogger("hbone")

STREAM_WINDOW = 4 * 1024 * 1024
CONN_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 1024 * 1024
DEFAULT_WINDOW = 65535
LINGER = 2.0  # seconds a closed connection keeps reading (and dropping) the peer's bytes before an abort
MAX_CONCURRENT_STREAMS = 200  # what a server advertises; counted from HEADERS (REFUSED_STREAM beyond it)
# Envoy's HTTP/2 protocol options, same defaults: frames we queue while the peer does not read (the transport
# has paused writing) before the connection is closed; control frames are PING/SETTINGS acks and RST_STREAM.
MAX_OUTBOUND_CONTROL_FRAMES = 1000  # max_outbound_control_frames
MAX_OUTBOUND_FRAMES = 10000  # max_outbound_frames


def _error_name(code: int) -> str:
    try:
        return repr(h2.errors.ErrorCodes(code))
    except ValueError:
        return str(code)


StreamDone = Callable[["StreamCtx", BaseException | None], None]
# the CONNECT outcome, called once: (sid, None) on 200, else (sid, HttpStatusError | TimeoutError | ConnectionError)
ResponseCallback = Callable[[int, BaseException | None], None]


class HttpStatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"http status: {status}")
        self.status = status


@dataclass
class StreamCtx:
    sid: int
    transport: Any = None
    on_response: ResponseCallback | None = None  # client: waiting for the CONNECT response
    timer: asyncio.TimerHandle | None = None  # client: the response deadline
    local_ended: bool = False
    remote_ended: bool = False
    on_done: StreamDone | None = None
    bytes_in: int = 0  # from the tunnel to the plain side
    bytes_out: int = 0  # from the plain side into the tunnel
    request_headers: list[tuple[str, str]] | None = None
    opened_at: float = 0.0  # server: when the peer opened it (premature resets are judged from it)
    peer_reset: bool = False  # the peer sent RST_STREAM


class HboneConnection:
    """Owner of a TunnelPump (the pump calls back `pump_*`) and of the h2 state machine."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        impl: Any,
        expected_sans: tuple[str, ...] = (),
        trust_domain: str = "cluster.local",
        on_request: Callable[[HboneConnection, int, list[tuple[str, str]]], object] | None = None,
        on_closed: Callable[[HboneConnection, BaseException | None], None] | None = None,
        keepalive: tuple[float, float] = (10.0, 20.0),
        peer: str = "",
        on_abuse: Callable[[str], None] | None = None,
    ) -> None:
        self.loop = asyncio.get_event_loop()
        self.server_side = server_side
        self.expected_sans = expected_sans
        self.trust_domain = trust_domain
        self.on_request = on_request
        self.on_closed = on_closed
        self.keepalive = keepalive
        self._peer = peer
        self.peer_identity: Identity | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side, server_hostname=None)
        self.on_abuse = on_abuse  # called with the reason when the connection is closed for an error or abuse
        self.pump = impl.TunnelPump(
            self.sslobj, self.incoming, self.outgoing, self, server_side, STREAM_WINDOW, CONN_WINDOW, MAX_FRAME
        )
        self._impl = impl
        # h2 runs the connection only (preface, SETTINGS, PING, GOAWAY); stream frames go through self.frames
        cfg = h2.config.H2Configuration(client_side=not server_side, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(cfg)
        S = h2.settings.SettingCodes
        values = {
            S.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            S.MAX_FRAME_SIZE: MAX_FRAME,
            S.MAX_HEADER_LIST_SIZE: h2s.MAX_HEADER_LIST if server_side else 16384,
        }
        if server_side:
            values[S.MAX_CONCURRENT_STREAMS] = MAX_CONCURRENT_STREAMS
        else:
            values[S.ENABLE_PUSH] = 0
        self.h2.local_settings = h2.settings.Settings(client=not server_side, initial_values=values)
        self._peer_max_streams = int(self.h2.remote_settings.max_concurrent_streams)
        self._peer_max_frame = int(self.h2.remote_settings.max_frame_size)
        self._table_update: int | None = None  # an HPACK table size update owed to the peer (its SETTINGS shrank)
        self.peer_addr: tuple[Any, int] | None = None  # the peer's (ip, port), cached by the app per connection
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.streams: dict[int, StreamCtx] = {}
        self.frames = h2s.StreamFrames(
            server_side=server_side,
            known=self.streams,
            max_streams=MAX_CONCURRENT_STREAMS,
            max_header_list=values[S.MAX_HEADER_LIST_SIZE],
        )
        self.settings_received = False  # the peer's first SETTINGS (after its preface) arrived
        self.closed_streams = 0  # server: streams the peer opened that are finished
        self.premature_resets = 0  # server: of those, reset by the peer within the minimum lifetime
        self.stream_errors = 0  # RST_STREAMs we sent for malformed/refused streams
        self._queued_control = 0  # control frames queued since the transport paused writing
        self._queued_frames = 0
        self.reserved = 0  # streams checked out by the pool (including ones being opened)
        self.goaway = False
        self.closed = False
        self._ping_at = 0.0
        self._pong_at = 0.0
        self._ka_handle: asyncio.TimerHandle | None = None

    @property
    def peer(self) -> str:
        if not self._peer:
            t = self.pump.transport
            pn = t.get_extra_info("peername") if t is not None else None
            if pn:
                self._peer = f"[{pn[0]}]:{pn[1]}" if ":" in pn[0] else f"{pn[0]}:{pn[1]}"
        return self._peer

    # --------------------------------------------------------------------------- pump callbacks
    def pump_handshake_done(self) -> None:
        try:
            if self.server_side:
                self.peer_identity = tls.check_client(self.sslobj, self.trust_domain)
            else:
                self.peer_identity = tls.check_server(self.sslobj, self.expected_sans)
        except ssl.SSLError as e:
            log.warning('connection failed peer=%s error="tls: %s"', self.peer, e.args[0] if e.args else e)
            self._fail_ready(e)
            self.close()
            return
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONN_WINDOW - DEFAULT_WINDOW)
        self._flush_h2()
        self._pong_at = time.monotonic()
        self._ka_handle = self.loop.call_later(self.keepalive[0], self._keepalive)
        if not self.ready.done():
            self.ready.set_result(None)

    def pump_control(self, data: bytes) -> None:
        if self._queued_frames and not self.pump.write_paused:
            self._queued_control = self._queued_frames = 0
        for ev in self.frames.receive(data):
            kind = ev[0]
            if kind == h2s.EV_HEADERS:
                self._on_headers(ev[1], ev[2], ev[3])
            elif kind == h2s.EV_ENDED:
                self._remote_end(ev[1])
            elif kind == h2s.EV_RESET:
                self._on_reset(ev[1], ev[2])
            elif kind == h2s.EV_H2:
                try:
                    events = self.h2.receive_data(ev[1])
                except h2.exceptions.ProtocolError as e:
                    self._flush_h2()  # h2 queued a GOAWAY with the error code
                    self._fail_connection(int(getattr(e, "error_code", h2s.PROTOCOL_ERROR)), "protocol", str(e))
                    return
                for h2ev in events:
                    self._dispatch(h2ev)
                    if self.closed or self.pump.closed:
                        return
                self._flush_h2()
            elif kind == h2s.EV_REJECT:
                self._reject(ev[1], ev[2], ev[3])
            else:  # EV_ERROR
                _, code, reason, label = ev
                self._fail_connection(code, label, reason)
                return
            if self.closed or self.pump.closed:
                return

    def pump_error(self, sid: int, code: int, reason: str, detail: str) -> None:
        """The pump found an RFC 9113 violation or abuse in DATA/WINDOW_UPDATE framing."""
        if sid:
            self._reject(sid, code, detail)
        else:
            self._fail_connection(code, reason, detail)

    def _fail_connection(self, code: int, reason: str, detail: str) -> None:
        """A connection error or an abuse limit: GOAWAY `code`, one log line with the counts, one metric count,
        and the connection closed (aborted if the peer is not reading, so its unread bytes are freed now)."""
        if self.closed or self.pump.closed:
            return
        log.warning(
            'connection failed peer=%s reason=%s error="http2 protocol error: %s" streams_opened=%d '
            "streams_closed=%d premature_resets=%d stream_errors=%d",
            self.peer,
            reason,
            detail,
            self.frames.opened,
            self.closed_streams,
            self.premature_resets,
            self.stream_errors,
        )
        if self.on_abuse is not None:
            self.on_abuse(reason)
        self._goaway(code)
        paused = self.pump.write_paused
        self.close()
        t = self.pump.transport
        if paused and t is not None:
            t.abort()

    def _queued(self, control: bool) -> None:
        """Count a frame we queue. Envoy counts the frames in its outbound buffer; ours are counted per batch
        of frames read, and across batches while the transport has paused writing (the peer is not reading):
        a batch that makes us answer with more than MAX_OUTBOUND_CONTROL_FRAMES acks/resets at once (one read
        of 15k PINGs), or a peer that does not read while it keeps asking for answers, is a flood."""
        self._queued_frames += 1
        if control:
            self._queued_control += 1
        if self._queued_control > MAX_OUTBOUND_CONTROL_FRAMES:
            self._fail_connection(h2s.ENHANCE_YOUR_CALM, "outbound_control_flood", "peer does not read its acks")
        elif self._queued_frames > MAX_OUTBOUND_FRAMES:
            self._fail_connection(h2s.ENHANCE_YOUR_CALM, "outbound_flood", "peer does not read its frames")

    def pump_stream_drained(self, sid: int) -> None:
        ctx = self.streams.get(sid)
        if ctx is None or ctx.local_ended:
            return
        ctx.local_ended = True
        self.pump.send_raw(h2s.end_stream(sid))
        if ctx.remote_ended and ctx.transport is not None:
            ctx.transport.close()

    def pump_stream_lost(self, sid: int, exc: BaseException | None) -> None:
        ctx = self.streams.get(sid)
        if ctx is None:
            return
        if exc is not None or not (ctx.local_ended and ctx.remote_ended):
            self._reset(sid)
        self._finish(sid, exc)

    def pump_closed(self, exc: BaseException | None) -> None:
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        self.closed = True
        err = exc or ConnectionResetError("HBONE connection closed")
        if not self.pump.handshake_done and exc is not None:
            log.warning('connection failed peer=%s error="tls handshake: %s"', self.peer, exc)
        self._fail_ready(err)
        for sid in list(self.streams):
            ctx = self.streams.get(sid)
            if ctx is None:
                continue
            if ctx.transport is not None:
                ctx.transport.abort()
            self._finish(sid, err)
            self._response(ctx, err)
        if self.on_closed is not None:
            self.on_closed(self, exc)

    # --------------------------------------------------------------------------- stream and h2 events
    def _on_headers(self, sid: int, headers: list[tuple[str, str]], end: bool) -> None:
        ctx = self.streams.get(sid)
        if self.server_side:
            if ctx is not None:  # trailers (they carry END_STREAM)
                self._remote_end(sid)
                return
            self.pump.open_stream(sid)
            ctx = self.streams[sid] = StreamCtx(sid, request_headers=headers, opened_at=time.monotonic())
            ctx.remote_ended = end
            if end:
                self.pump.remote_ended(sid)
            if self.on_request is not None:
                self.on_request(self, sid, headers)
            return
        if ctx is None:
            return
        if ctx.on_response is not None:
            status = next((v for k, v in headers if k == ":status"), "")
            if not (len(status) == 3 and status.isdigit()):
                self._reject(sid, h2s.PROTOCOL_ERROR, f"response :status {status!r}")
                return
            if status[0] == "1" and not end:
                return  # informational; the final response follows
            if status == "200":
                self._response(ctx, None)
            else:
                self._finish(sid, None)
                self._response(ctx, HttpStatusError(int(status)))
        if end:
            self._remote_end(sid)

    def _response(self, ctx: StreamCtx, exc: BaseException | None) -> None:
        """Deliver the CONNECT outcome (once) to whoever opened the stream."""
        callback = ctx.on_response
        if callback is None:
            return
        ctx.on_response = None
        if ctx.timer is not None:
            ctx.timer.cancel()
            ctx.timer = None
        callback(ctx.sid, exc)

    def _response_timeout(self, sid: int) -> None:
        ctx = self.streams.get(sid)
        if ctx is None or ctx.on_response is None:
            return
        self._reset(sid)
        self._finish(sid, None)
        self._response(ctx, TimeoutError("no response to CONNECT"))

    def _reject(self, sid: int, code: int, reason: str) -> None:
        """A stream error: RST_STREAM with `code`, and the stream (if we track it) ends as if the peer reset it.
        Only the first per connection is logged; the rest are counted (in the line that closes it, if any)."""
        self.stream_errors += 1
        if self.stream_errors == 1:
            log.warning(
                'stream failed peer=%s stream=%d error="http2: %s" (further stream errors on this connection are '
                "counted, not logged)",
                self.peer,
                sid,
                reason,
            )
        else:
            log.debug('stream failed peer=%s stream=%d error="http2: %s"', self.peer, sid, reason)
        self.pump.send_raw(h2s.rst_stream(sid, code))
        self._queued(True)
        if self.pump.closed:
            return
        self._on_reset(sid, code, local=True)

    def _on_reset(self, sid: int, code: int, local: bool = False) -> None:
        ctx = self.streams.get(sid)
        if ctx is None:
            return
        premature = (
            self.server_side
            and not local
            and time.monotonic() - ctx.opened_at < h2s.PREMATURE_RESET_MIN_STREAM_LIFETIME
        )
        if premature:
            self.premature_resets += 1
        ctx.peer_reset = not local
        self._finish(sid, None)
        if premature and h2s.too_many_premature_resets(
            self.closed_streams, self.premature_resets, h2s.PREMATURE_RESET_TOTAL_STREAM_COUNT
        ):
            self._fail_connection(h2s.ENHANCE_YOUR_CALM, "premature_resets", "too many streams reset early")
        if ctx.on_response is not None:  # only a stream still waiting for its response needs the error
            self._response(ctx, ConnectionResetError(f"stream reset: {_error_name(code)}"))
        if ctx.transport is not None:
            # RST_STREAM NO_ERROR/CANCEL is EOF; anything else is an error
            if code in (h2s.NO_ERROR, h2s.CANCEL):
                ctx.transport.close()
            else:
                ctx.transport.abort()

    def _dispatch(self, ev: h2.events.Event) -> None:
        """Connection events from h2 (it is never fed stream frames)."""
        if isinstance(ev, h2.events.PingReceived):
            self._queued(True)  # h2 queued the ack
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_received = True
            self._queued(True)  # h2 queued the ack
            rs = self.h2.remote_settings
            self.pump.set_peer_settings(rs.initial_window_size, rs.max_frame_size)
            self._peer_max_streams = int(rs.max_concurrent_streams)
            self._peer_max_frame = int(rs.max_frame_size)
            if h2.settings.SettingCodes.HEADER_TABLE_SIZE in ev.changed_settings:
                # our encoder never indexes, so its table is empty at any size; say so in the next block
                self._table_update = min(int(rs.header_table_size), 4096)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = True
            if not self.streams:
                self.close()
        elif isinstance(ev, h2.events.PingAckReceived):
            self._pong_at = time.monotonic()

    def _block(self, headers: list[tuple[str, str]]) -> bytes:
        update, self._table_update = self._table_update, None
        return h2s.encode_block(headers, update)

    def _remote_end(self, sid: int) -> None:
        ctx = self.streams.get(sid)
        if ctx is None:
            return
        ctx.remote_ended = True
        self.pump.remote_ended(sid)
        t = ctx.transport
        if t is None:
            return  # applied in attach_plain
        if ctx.local_ended:
            t.close()
        elif t.can_write_eof():
            t.write_eof()
        else:
            t.close()

    # --------------------------------------------------------------------------- streams
    def start_stream(
        self, authority: str, headers: list[tuple[str, str]], timeout: float, on_response: ResponseCallback
    ) -> int:
        """Client, on a ready connection: send CONNECT now and return the stream id; `on_response(sid, error)`
        runs once, from the event that decides it (no task in between): error None on 200, else
        `HttpStatusError`, `TimeoutError` after `timeout`, or `ConnectionError` (reset, connection lost). The
        stream is already finished when an error is delivered."""
        if self.closed or self.goaway or not self.ready.done() or self.ready.exception() is not None:
            raise ConnectionError("cannot open a stream: the HBONE connection is not usable")
        if len(self.streams) >= self._peer_max_streams:  # e.g. the peer allows fewer streams than we pool
            raise ConnectionError(f"cannot open a stream: the peer allows {self._peer_max_streams} at a time")
        sid = self.frames.next_stream_id()
        if sid > 0x7FFFFFFF:
            self.goaway = True  # ids are used up: new streams go to a new connection
            raise ConnectionError("cannot open a stream: stream ids exhausted")
        ctx = self.streams[sid] = StreamCtx(sid, on_response=on_response)
        ctx.timer = self.loop.call_later(timeout, self._response_timeout, sid)
        self.pump.open_stream(sid)
        block = self._block([(":method", "CONNECT"), (":authority", authority), *headers])
        self.pump.send_raw(h2s.headers_frames(sid, block, False, self._peer_max_frame))
        return sid

    async def open_stream(self, authority: str, headers: list[tuple[str, str]], timeout: float) -> int:
        """Client: send CONNECT, wait for the response; returns the stream id on 200 (else raises as
        `start_stream` reports)."""
        await self.ready
        outcome: asyncio.Future[None] = self.loop.create_future()

        def deliver(_sid: int, exc: BaseException | None) -> None:
            if not outcome.done():
                if exc is None:
                    outcome.set_result(None)
                else:
                    outcome.set_exception(exc)

        sid = self.start_stream(authority, headers, timeout, deliver)
        try:
            await outcome
        except asyncio.CancelledError:
            ctx = self.streams.get(sid)
            if ctx is not None and ctx.on_response is not None:
                ctx.on_response = None  # nobody waits any more; _finish cancels the deadline
                self._reset(sid)
                self._finish(sid, None)
            raise
        return sid

    def respond(self, sid: int, status: int, headers: list[tuple[str, str]] = (), end: bool = False) -> None:  # type: ignore[assignment]
        if self.closed or sid not in self.streams:
            return
        block = self._block([(":status", str(status)), *headers])
        self.pump.send_raw(h2s.headers_frames(sid, block, end, self._peer_max_frame))
        self._queued(False)
        if self.pump.closed:
            return
        if end:
            self._finish(sid, None)

    def attach_plain(self, sid: int, transport: asyncio.Transport, buffered: bytes, on_done: StreamDone) -> None:
        """Hand a held plain socket to the pump for this stream, then let bytes flow."""
        ctx = self.streams.get(sid)
        if ctx is None or self.closed:
            transport.abort()
            on_done(StreamCtx(sid), ConnectionResetError("stream gone"))
            return
        gone = transport.is_closing()  # it went away while held: the stream ends from the plain side
        ctx.transport = transport
        ctx.on_done = on_done
        plain = self._impl.PlainSide(self.pump, sid)
        transport.set_protocol(plain)
        if not gone and not self.pump.write_paused:
            transport.resume_reading()  # before the pump may pause it again (window or peer not reading)
        plain.connection_made(transport)
        if buffered:
            self.pump.send_data(sid, buffered)
        if ctx.remote_ended:
            ctx.remote_ended = False
            self._remote_end(sid)
        if gone:
            self.pump.stream_transport_lost(sid, None)

    def _reset(self, sid: int) -> None:
        if sid in self.streams and not self.closed:
            self.pump.send_raw(h2s.rst_stream(sid, h2s.CANCEL))
            self._queued(True)

    def _finish(self, sid: int, exc: BaseException | None) -> None:
        ctx = self.streams.pop(sid, None)
        if ctx is None:
            return
        if ctx.timer is not None:
            ctx.timer.cancel()
            ctx.timer = None
        ctx.bytes_in, ctx.bytes_out = self.pump.close_stream(sid)
        self.frames.forget(sid, ctx.remote_ended or ctx.peer_reset)
        if self.server_side:
            self.closed_streams += 1
        if ctx.on_done is not None:
            ctx.on_done(ctx, exc)
        if self.goaway and not self.streams:
            self.close()

    # --------------------------------------------------------------------------- connection
    def _flush_h2(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.pump.send_raw(data)

    def _goaway(self, code: int) -> None:
        if self.goaway or not self.pump.handshake_done:
            return
        self.goaway = True
        try:
            self.h2.close_connection(error_code=code, last_stream_id=self.frames.highest_inbound)
        except h2.exceptions.H2Error:
            pass
        self._flush_h2()

    def _fail_ready(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # mark retrieved

    def _keepalive(self) -> None:
        if self.closed:
            return
        now = time.monotonic()
        if self._ping_at > self._pong_at and now - self._ping_at > self.keepalive[1]:
            log.warning('connection failed peer=%s error="keepalive timeout"', self.peer)
            self.close()
            return
        if self._ping_at <= self._pong_at:
            self._ping_at = now
            try:
                self.h2.ping(b"ztunnel\x00")
            except h2.exceptions.H2Error:
                pass
            self._flush_h2()
        self._ka_handle = self.loop.call_later(self.keepalive[0], self._keepalive)

    @property
    def peer_max_streams(self) -> int:
        # cached: remote settings only change with the peer's SETTINGS (RemoteSettingsChanged)
        return self._peer_max_streams

    @property
    def usable(self) -> bool:
        return not self.closed and not self.goaway and self.ready.done() and self.ready.exception() is None

    def close(self) -> None:
        if self.closed or self.pump.closed:
            return
        self._goaway(h2s.NO_ERROR)
        self.pump.close()  # a lingering close: the peer gets LINGER seconds to read our GOAWAY and close
        self.loop.call_later(LINGER, self._linger_over)

    def _linger_over(self) -> None:
        t = self.pump.transport
        if not self.closed and t is not None:
            t.abort()
