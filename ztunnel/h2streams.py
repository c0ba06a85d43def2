"""HTTP/2 *stream* frames of an HBONE connection, sans-IO; the *connection* frames stay with `h2`.

An HBONE stream uses a sliver of HTTP/2: one HEADERS each way (CONNECT, then its status), then DATA (which the
Cython pump moves without Python), then an END_STREAM or a RST_STREAM. Running those few frames through h2's
general machinery (frame objects, events, its full stream state machine, outbound re-validation, an HPACK
encoder that searches its table per header) was about half of the Python work per new connection, so this
module does the stream part by hand:

- **receive**: splits the pump's control bytes into frames; HEADERS/CONTINUATION, RST_STREAM, PRIORITY,
  PUSH_PROMISE and the pump's payload-free DATA markers are handled here, in order; every other frame (the
  preface, SETTINGS, PING, GOAWAY, stream-0 WINDOW_UPDATE, unknown types) is handed to h2 unchanged, so h2 keeps
  owning connection state, settings negotiation and their protocol errors.
- **HPACK decoding** stays with the `hpack` library, which follows the peer's dynamic table exactly. A block that
  uses only representations which leave the dynamic table alone (static-table references, literals without
  indexing or never indexed, no Huffman: what our encoder and Istio's ztunnel send) is read by a small fast path
  instead; any other block goes to `hpack` whole, so the table state is the same either way.
  **Encoding** is literal-without-indexing (never-indexed where asked), which never touches the peer's table, so
  it is stateless and a few lines here.
- **RFC 9113 framing** of these frames: stream ids only increase (a HEADERS on an id the peer skipped is a
  connection error PROTOCOL_ERROR, on one it closed a stream error STREAM_CLOSED), MAX_CONCURRENT_STREAMS is
  counted from the HEADERS themselves (a burst of HEADERS in one read counts in full: REFUSED_STREAM beyond
  it), PRIORITY must be 5 bytes (FRAME_SIZE_ERROR) and no stream may depend on itself (PROTOCOL_ERROR), a
  WINDOW_UPDATE for a stream the pump does not track is checked here (idle stream or increment 0: PROTOCOL_ERROR;
  a closed stream: ignored). Like Envoy (nghttp2/oghttp2), the PRIORITY and self-dependency stream errors are
  answered as connection errors, which RFC 9113 §5.4 allows.
- **abuse limits** (Envoy's names and defaults): `max_inbound_priority_frames_per_stream` and a bound on the
  compressed header block; `too_many_premature_resets` is Envoy's rapid-reset rule, for the owner to apply.
- **checks** follow RFC 9113 §8.2-8.3 for what a CONNECT tunnel can receive: lowercase field names with legal
  characters, no connection-specific fields, pseudo-headers first, known and not repeated; a request needs
  `:method`, and CONNECT needs `:authority` and forbids `:scheme`/`:path`. A malformed message is a stream
  error (RST_STREAM PROTOCOL_ERROR); a framing or compression error is a connection error (GOAWAY).

Events are plain tuples; `StreamFrames.receive()` returns them in wire order.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Collection, Container, Iterable

import hpack
import hpack.exceptions
import hpack.table

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types and flags (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20

# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x5, 0x6, 0x7, 0x8
FLOW_CONTROL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x3, 0x9, 0xB

# events
EV_H2 = 0  # (EV_H2, bytes): connection frames for h2, unchanged
EV_HEADERS = 1  # (EV_HEADERS, sid, headers, end_stream): a checked request (server) or response/trailers (client)
EV_ENDED = 2  # (EV_ENDED, sid): the peer ended its side of the stream
EV_RESET = 3  # (EV_RESET, sid, error code): the peer reset the stream
EV_REJECT = 4  # (EV_REJECT, sid, error code, reason): answer with RST_STREAM (malformed, refused, closed)
EV_ERROR = 5  # (EV_ERROR, error code, reason, metric label): connection error; nothing after it was processed

_HEADER = struct.Struct(">BHBBL")  # length (24 bits as 8+16), type, flags, stream id
_STREAM_TYPES = frozenset({DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION})

# Limits, named after Envoy's HTTP/2 protocol options / runtime keys and with their defaults.
MAX_HEADER_BLOCK = 256 * 1024  # compressed header block across CONTINUATIONs (a CONTINUATION flood ends here)
MAX_HEADER_LIST = 64 * 1024  # our SETTINGS_MAX_HEADER_LIST_SIZE as a server: Istio ztunnel's (Envoy's
# max_request_headers_kb is 60); a larger list is a connection error, as the HPACK table may be half-updated
MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM = 100  # max_inbound_priority_frames_per_stream
PREMATURE_RESET_TOTAL_STREAM_COUNT = 500  # overload.premature_reset_total_stream_count
PREMATURE_RESET_MIN_STREAM_LIFETIME = 1.0  # overload.premature_reset_min_stream_lifetime_seconds
_SKIPPED_RANGES = 16  # stream-id gaps remembered to tell "never opened" from "closed"
_PEER_CLOSED = 1024  # closed streams the peer had ended or reset, remembered for STREAM_CLOSED (§5.1)

# RFC 9113 §8.2: tchar, lowercase only; no NUL/CR/LF in values and no leading or trailing whitespace
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9a-z]")
_CONNECTION_SPECIFIC = frozenset({"connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade"})
_REQUEST_PSEUDO = frozenset({":method", ":scheme", ":authority", ":path"})

# HPACK static table (RFC 7541 Appendix A), from the hpack library; the names HBONE sends, by index
_STATIC = tuple((name.decode(), value.decode()) for name, value in hpack.table.HeaderTable.STATIC_TABLE)
_STATIC_NAME = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8}
_GOOD_NAMES: dict[str, bool] = {}  # regular field names already checked (a handful per mesh)


class H2StreamError(Exception):
    """A connection-level HTTP/2 error found in stream frames (sent as GOAWAY with `code`); `label` names the
    kind for the metric of connections closed (`protocol` unless it is one of the abuse limits)."""

    def __init__(self, code: int, reason: str, label: str = "protocol") -> None:
        super().__init__(reason)
        self.code = code
        self.label = label


def too_many_premature_resets(closed: int, premature: int, total_stream_count: int) -> bool:
    """Envoy's rapid-reset rule: once a connection has closed `total_stream_count` streams, it is closed if
    more than half of them were reset by the peer before `premature_reset_min_stream_lifetime_seconds`."""
    return closed >= total_stream_count and premature * 2 > closed


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def rst_stream(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, code.to_bytes(4, "big"))


def end_stream(sid: int) -> bytes:
    return frame(DATA, END_STREAM, sid)


def _int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1 integer, with `first` holding the pattern bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ENCODED: dict[tuple[str, str], bytes] = {}  # repeated fields (method, authority, baggage, status), encoded once


def _field(name: str, value: str, never_indexed: bool) -> bytes:
    pattern = 0x10 if never_indexed else 0x00
    index = _STATIC_NAME.get(name)
    if index is not None:
        head = _int(index, 4, pattern)
    else:
        nb = name.encode()
        head = bytes((pattern,)) + _int(len(nb), 7, 0) + nb
    vb = value.encode()
    return head + _int(len(vb), 7, 0) + vb


def encode_block(headers: Iterable[tuple[str, str]], table_size_update: int | None = None) -> bytes:
    """HPACK literals without indexing (§6.2.2), or never indexed (§6.2.3) for `hpack.NeverIndexedHeaderTuple`,
    name from the static table where it is there, no Huffman (HBONE values are short and mostly unique)."""
    parts = [] if table_size_update is None else [_int(table_size_update, 5, 0x20)]
    for header in headers:
        if isinstance(header, hpack.NeverIndexedHeaderTuple):  # unique per connection: not worth caching
            parts.append(_field(header[0], header[1], True))
            continue
        key = (header[0], header[1])
        encoded = _ENCODED.get(key)
        if encoded is None:
            if len(_ENCODED) >= 4096:
                _ENCODED.clear()
            encoded = _ENCODED[key] = _field(header[0], header[1], False)
        parts.append(encoded)
    return b"".join(parts)


def _string(block: bytes, pos: int) -> tuple[str, int] | None:
    """A raw (non-Huffman) HPACK string literal at pos; None if Huffman-coded or not valid UTF-8."""
    first = block[pos]
    if first & 0x80:
        return None
    length = first & 0x7F
    pos += 1
    if length == 0x7F:
        shift = 0
        while True:
            byte = block[pos]
            pos += 1
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift > 28:
                return None
    end = pos + length
    if end > len(block):
        return None
    try:
        return block[pos:end].decode(), end
    except UnicodeDecodeError:
        return None


def fast_decode(block: bytes, max_list_size: int) -> list[tuple[str, str]] | None:
    """Decode a header block that leaves the HPACK dynamic table alone, or None: then the block must go to
    `hpack.Decoder` whole (it uses the dynamic table or Huffman, or is malformed or oversized)."""
    headers: list[tuple[str, str]] = []
    pos, n, size = 0, len(block), 0
    try:
        while pos < n:
            first = block[pos]
            if first & 0x80:  # indexed field: static entries only
                index = first & 0x7F
                if not 0 < index <= len(_STATIC):
                    return None
                name, value = _STATIC[index - 1]
                pos += 1
            elif first & 0xE0:  # incremental indexing (01xxxxxx) or a table size update (001xxxxx)
                return None
            else:  # literal without indexing (0000xxxx) or never indexed (0001xxxx)
                index = first & 0x0F
                pos += 1
                if index == 0x0F:  # a multi-byte index may point into the dynamic table
                    return None
                if index:
                    name = _STATIC[index - 1][0]
                else:
                    got = _string(block, pos)
                    if got is None:
                        return None
                    name, pos = got
                got = _string(block, pos)
                if got is None:
                    return None
                value, pos = got
            size += len(name) + len(value) + 32
            if size > max_list_size:
                return None
            headers.append((name, value))
    except IndexError:
        return None
    return headers


def headers_frames(sid: int, block: bytes, end: bool, max_frame: int) -> bytes:
    """HEADERS, plus CONTINUATION frames when the block is larger than the peer's frame size."""
    flags = END_STREAM if end else 0
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, sid, block)
    out = [frame(HEADERS, flags, sid, block[:max_frame])]
    for at in range(max_frame, len(block), max_frame):
        last = at + max_frame >= len(block)
        out.append(frame(CONTINUATION, END_HEADERS if last else 0, sid, block[at : at + max_frame]))
    return b"".join(out)


def _bad_value(value: str) -> bool:
    """RFC 9113 §8.2.1: no NUL, CR or LF, no leading or trailing whitespace (str methods beat a regex here)."""
    return "\r" in value or "\n" in value or "\x00" in value or value.strip(" \t") != value


def _check_fields(headers: list[tuple[str, str]], allowed_pseudo: Container[str], pseudo: dict[str, str]) -> str | None:
    """Why the field list is malformed, or None; fills `pseudo` with the pseudo-header values."""
    seen_regular = False
    for name, value in headers:
        if name[:1] == ":":
            if seen_regular:
                return f"pseudo-header {name} after a regular header"
            if name not in allowed_pseudo:
                return f"unknown pseudo-header {name}"
            if name in pseudo:
                return f"duplicate pseudo-header {name}"
            pseudo[name] = value
        else:
            seen_regular = True
            if name not in _GOOD_NAMES:
                if not name or _BAD_NAME.search(name):
                    return f"invalid header name {name!r}"
                if len(_GOOD_NAMES) < 1024:
                    _GOOD_NAMES[name] = True
            if name in _CONNECTION_SPECIFIC or (name == "te" and value != "trailers"):
                return f"connection-specific header {name}"
        if _bad_value(value):
            return f"invalid value for header {name}"
    return None


def check_request(headers: list[tuple[str, str]]) -> str | None:
    """Why a request header list is malformed (RFC 9113 §8.3, §8.5 for CONNECT), or None."""
    pseudo: dict[str, str] = {}
    problem = _check_fields(headers, _REQUEST_PSEUDO, pseudo)
    if problem:
        return problem
    method = pseudo.get(":method")
    if method is None:
        return "missing :method"
    if method == "CONNECT":
        if ":authority" not in pseudo:
            return "CONNECT without :authority"
        if ":scheme" in pseudo or ":path" in pseudo:
            return "CONNECT with :scheme or :path"
    elif ":scheme" not in pseudo or not pseudo.get(":path"):
        return "request without :scheme or with an empty or missing :path"
    return None


def check_response(headers: list[tuple[str, str]]) -> str | None:
    """Why a response (or trailer) header list is malformed, or None."""
    return _check_fields(headers, (":status",), {})


class StreamFrames:
    """The receive side: control bytes from the pump in, events out (see the module docstring).

    `known` is the owner's set (or dict) of open stream ids, read here and changed only by the owner; a server
    refuses a new stream while `len(known)` is at `max_streams` (our SETTINGS_MAX_CONCURRENT_STREAMS)."""

    def __init__(
        self, *, server_side: bool, known: Collection[int], max_streams: int = 200, max_header_list: int = 65536
    ) -> None:
        self.server_side = server_side
        self.known = known
        self.max_streams = max_streams
        self.decoder = hpack.Decoder(max_header_list_size=max_header_list)
        self.highest_inbound = 0  # server: highest stream id the peer opened
        self.highest_outbound = 0  # client: highest stream id we opened
        self._preface = server_side
        self._block_sid = 0  # a HEADERS without END_HEADERS is waiting for CONTINUATION on this stream
        self._block_end = False
        self._block: list[bytes] = []
        self._block_len = 0
        self._h2_from = -1
        self._pos = 0
        self._new: set[int] = set()  # streams opened in this receive(): not in `known` until the owner sees them
        self._skipped: list[tuple[int, int]] = []  # (low, high) stream ids the peer jumped over, newest last
        self._ended: set[int] = set()  # open streams the peer has ended (END_STREAM): half-closed (remote)
        self._peer_closed: dict[int, None] = {}  # closed streams the peer had ended or reset, oldest first
        self.opened = 0  # streams the peer opened (accepted or refused)
        self.priority_frames = 0

    def forget(self, sid: int, peer_done: bool) -> None:
        """The owner closed the stream; `peer_done` if the peer had ended or reset it, so that any frame but
        PRIORITY, WINDOW_UPDATE or RST_STREAM the peer sends on it later is a STREAM_CLOSED error (§5.1)."""
        self._ended.discard(sid)
        if peer_done:
            self._peer_closed[sid] = None
            if len(self._peer_closed) > _PEER_CLOSED:
                del self._peer_closed[next(iter(self._peer_closed))]

    def next_stream_id(self) -> int:
        """Client: the id for a new stream (odd, increasing)."""
        self.highest_outbound += 2 if self.highest_outbound else 1
        return self.highest_outbound

    def receive(self, data: bytes) -> list[tuple]:  # type: ignore[type-arg]
        events: list[tuple] = []  # type: ignore[type-arg]
        if self._new:
            self._new.clear()
        try:
            self._receive(data, events)
        except H2StreamError as e:
            events.append((EV_ERROR, e.code, str(e), e.label))
        return events

    def _receive(self, data: bytes, events: list[tuple]) -> None:  # type: ignore[type-arg]
        self._h2_from = -1
        self._pos = 0
        try:
            self._frames(data, events)
        except H2StreamError:
            if self._h2_from >= 0:  # connection frames before the error still go to h2 first
                events.append((EV_H2, data[self._h2_from : self._pos]))
            raise

    def _frames(self, data: bytes, events: list[tuple]) -> None:  # type: ignore[type-arg]
        pos, n, h2_from = 0, len(data), -1
        if self._preface:
            self._preface = False
            h2_from, pos = 0, len(PREFACE)  # h2 checks the preface itself
        while pos + 9 <= n:
            self._h2_from, self._pos = h2_from, pos
            hi, lo, ftype, flags, sid = _HEADER.unpack_from(data, pos)
            length = (hi << 16) | lo
            sid &= 0x7FFFFFFF
            end = pos + 9 + length
            if end > n:
                raise H2StreamError(FRAME_SIZE_ERROR, "truncated frame")
            if self._block_sid and ftype != CONTINUATION:
                raise H2StreamError(PROTOCOL_ERROR, f"frame type {ftype} inside a header block")
            if ftype not in _STREAM_TYPES and (ftype != WINDOW_UPDATE or sid == 0):
                if h2_from < 0:
                    h2_from = pos
                pos = end
                continue
            if h2_from >= 0:
                events.append((EV_H2, data[h2_from:pos]))
                h2_from = self._h2_from = -1
            if sid == 0:
                raise H2StreamError(PROTOCOL_ERROR, f"frame type {ftype} on stream 0")
            if ftype == HEADERS:
                self._on_headers(sid, flags, data[pos + 9 : end], events)
            elif ftype == CONTINUATION:
                if sid != self._block_sid:
                    raise H2StreamError(PROTOCOL_ERROR, "CONTINUATION without a HEADERS to continue")
                self._add_fragment(data[pos + 9 : end])
                if flags & END_HEADERS:
                    block = b"".join(self._block)
                    self._block_sid, self._block, self._block_len = 0, [], 0
                    self._on_block(sid, block, self._block_end, events)
            elif ftype == DATA:  # the pump's payload-free marker, or DATA for a stream it does not track
                if sid in self.known or sid in self._new:
                    if sid in self._ended:
                        events.append((EV_REJECT, sid, STREAM_CLOSED, f"DATA after END_STREAM on stream {sid}"))
                    elif flags & END_STREAM:
                        self._ended.add(sid)
                        events.append((EV_ENDED, sid))
                elif sid in self._peer_closed:
                    raise H2StreamError(STREAM_CLOSED, f"DATA on closed stream {sid}")
                elif self._idle(sid):
                    raise H2StreamError(PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            elif ftype == RST_STREAM:
                if length != 4:
                    raise H2StreamError(FRAME_SIZE_ERROR, "RST_STREAM length is not 4")
                if sid in self.known or sid in self._new:
                    self._new.discard(sid)
                    events.append((EV_RESET, sid, int.from_bytes(data[pos + 9 : end], "big")))
                elif self._idle(sid):
                    raise H2StreamError(PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
            elif ftype == PRIORITY:  # deprecated (RFC 9113 §5.3.2): checked, counted, otherwise ignored
                if length != 5:
                    raise H2StreamError(FRAME_SIZE_ERROR, f"PRIORITY of length {length} on stream {sid}")
                self._on_priority(sid, data[pos + 9 : end])
            elif ftype == WINDOW_UPDATE:  # for a stream the pump does not track
                if length != 4:
                    raise H2StreamError(FRAME_SIZE_ERROR, f"WINDOW_UPDATE of length {length}")
                if self._idle(sid):
                    raise H2StreamError(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
                if not int.from_bytes(data[pos + 9 : end], "big") & 0x7FFFFFFF:
                    raise H2StreamError(PROTOCOL_ERROR, f"WINDOW_UPDATE increment 0 on stream {sid}")
            elif ftype == PUSH_PROMISE:
                raise H2StreamError(PROTOCOL_ERROR, "PUSH_PROMISE (push is disabled)")
            pos = end
        if pos != n:
            raise H2StreamError(FRAME_SIZE_ERROR, "truncated frame")
        if h2_from >= 0:
            events.append((EV_H2, data[h2_from:]))

    def _idle(self, sid: int) -> bool:
        """A stream id the peer cannot refer to yet (RFC 9113 §5.1: frames on idle streams)."""
        if self.server_side:
            return sid > self.highest_inbound
        return sid % 2 == 0 or sid > self.highest_outbound

    def _on_priority(self, sid: int, fields: bytes) -> None:
        """A PRIORITY frame's or HEADERS priority fields: no self-dependency (§5.3.1), and Envoy's flood bound."""
        if int.from_bytes(fields[:4], "big") & 0x7FFFFFFF == sid:
            raise H2StreamError(PROTOCOL_ERROR, f"stream {sid} depends on itself")
        self.priority_frames += 1
        if self.priority_frames > MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM * (1 + self.opened):
            raise H2StreamError(
                ENHANCE_YOUR_CALM, f"{self.priority_frames} PRIORITY frames for {self.opened} streams", "priority_flood"
            )

    def _add_fragment(self, fragment: bytes) -> None:
        self._block_len += len(fragment)
        if self._block_len > MAX_HEADER_BLOCK:
            raise H2StreamError(ENHANCE_YOUR_CALM, "header block too large", "header_block")
        self._block.append(fragment)

    def _on_headers(self, sid: int, flags: int, payload: bytes, events: list[tuple]) -> None:  # type: ignore[type-arg]
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise H2StreamError(PROTOCOL_ERROR, "HEADERS padding exceeds the frame")
            payload = payload[1 : len(payload) - payload[0]]
        if flags & PRIORITY_FLAG:
            if len(payload) < 5:
                raise H2StreamError(FRAME_SIZE_ERROR, "HEADERS priority fields truncated")
            if int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == sid:
                raise H2StreamError(PROTOCOL_ERROR, f"stream {sid} depends on itself")
            payload = payload[5:]
        if flags & END_HEADERS:
            self._on_block(sid, payload, bool(flags & END_STREAM), events)
            return
        self._block_sid, self._block_end = sid, bool(flags & END_STREAM)
        self._add_fragment(payload)

    def _on_block(self, sid: int, block: bytes, end: bool, events: list[tuple]) -> None:  # type: ignore[type-arg]
        headers = fast_decode(block, self.decoder.max_header_list_size)
        if headers is None:
            headers = self._slow_decode(block)
        self._on_header_list(sid, headers, end, events)

    def _slow_decode(self, block: bytes) -> list[tuple[str, str]]:
        try:
            return self.decoder.decode(block)  # type: ignore[return-value]
        except hpack.exceptions.OversizedHeaderListError as e:
            raise H2StreamError(PROTOCOL_ERROR, f"header list too large: {e}") from None
        except hpack.exceptions.HPACKError as e:
            raise H2StreamError(COMPRESSION_ERROR, f"HPACK: {e}") from None

    def _on_header_list(self, sid: int, headers: list[tuple[str, str]], end: bool, events: list[tuple]) -> None:  # type: ignore[type-arg]
        if sid in self.known or sid in self._new:  # trailers (server), or the response/trailers (client)
            if sid in self._ended:
                events.append((EV_REJECT, sid, STREAM_CLOSED, f"HEADERS after END_STREAM on stream {sid}"))
                return
            if end:
                self._ended.add(sid)
            if self.server_side and not end:
                events.append((EV_REJECT, sid, PROTOCOL_ERROR, "trailers without END_STREAM"))
                return
            problem = check_response(headers) if not self.server_side else _check_fields(headers, (), {})
            if problem:
                events.append((EV_REJECT, sid, PROTOCOL_ERROR, problem))
                return
            events.append((EV_HEADERS, sid, headers, end))
            return
        if sid in self._peer_closed:
            raise H2StreamError(STREAM_CLOSED, f"HEADERS on closed stream {sid}")
        if not self.server_side:
            if self._idle(sid):
                raise H2StreamError(PROTOCOL_ERROR, f"HEADERS on idle stream {sid}")
            return  # a stream we already closed (e.g. reset it): ignore, as RFC 9113 §5.1 allows
        if sid % 2 == 0:
            raise H2StreamError(PROTOCOL_ERROR, f"even stream id {sid} from a client")
        if sid <= self.highest_inbound:
            if any(low <= sid <= high for low, high in self._skipped):  # §5.1.1: ids must increase
                raise H2StreamError(PROTOCOL_ERROR, f"stream id {sid} is lower than {self.highest_inbound}")
            events.append((EV_REJECT, sid, STREAM_CLOSED, f"HEADERS on closed stream {sid}"))
            return
        if sid > self.highest_inbound + 2:  # the ids in between are closed without ever being opened
            self._skipped.append((self.highest_inbound + 1, sid - 2))
            if len(self._skipped) > _SKIPPED_RANGES:
                del self._skipped[0]
        self.highest_inbound = sid
        self.opened += 1
        if len(self.known) + len(self._new) >= self.max_streams:
            events.append((EV_REJECT, sid, REFUSED_STREAM, "too many concurrent streams"))
            return
        problem = check_request(headers)
        if problem:
            events.append((EV_REJECT, sid, PROTOCOL_ERROR, problem))
            return
        self._new.add(sid)
        if end:
            self._ended.add(sid)
        events.append((EV_HEADERS, sid, headers, end))
