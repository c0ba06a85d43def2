# TunnelPump: one HBONE connection's bytes path, TCP <-> TLS (ssl.SSLObject over MemoryBIOs) <-> HTTP/2 DATA.
# Same algorithm as _core/_reference.py:TunnelPump; buffers are C memory handed to ssl as memoryviews.

from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.object cimport PyObject


cdef inline void _put_header(unsigned char* p, Py_ssize_t length, int ftype, int flags, long sid) noexcept:
    p[0] = (length >> 16) & 0xFF
    p[1] = (length >> 8) & 0xFF
    p[2] = length & 0xFF
    p[3] = ftype
    p[4] = flags
    p[5] = (sid >> 24) & 0x7F
    p[6] = (sid >> 16) & 0xFF
    p[7] = (sid >> 8) & 0xFF
    p[8] = sid & 0xFF


def data_frame_header(Py_ssize_t length, int flags, long stream_id):
    cdef unsigned char h[9]
    _put_header(h, length, T_DATA, flags, stream_id)
    return PyBytes_FromStringAndSize(<char*>h, 9)


def window_update_frame(long stream_id, long increment):
    cdef unsigned char h[13]
    _put_header(h, 4, T_WINDOW_UPDATE, 0, stream_id)
    h[9] = (increment >> 24) & 0x7F
    h[10] = (increment >> 16) & 0xFF
    h[11] = (increment >> 8) & 0xFF
    h[12] = increment & 0xFF
    return PyBytes_FromStringAndSize(<char*>h, 13)


cdef class _Buf:
    """A growable C byte buffer with a read cursor (start) and a write cursor (end)."""
    cdef unsigned char* data
    cdef Py_ssize_t start
    cdef Py_ssize_t end
    cdef Py_ssize_t cap

    def __cinit__(self, Py_ssize_t cap):
        if cap < 64:
            cap = 64
        self.data = <unsigned char*>malloc(cap)
        if self.data == NULL:
            raise MemoryError()
        self.cap = cap
        self.start = 0
        self.end = 0

    def __dealloc__(self):
        if self.data != NULL:
            free(self.data)
            self.data = NULL

    cdef inline Py_ssize_t size(self) noexcept:
        return self.end - self.start

    cdef int reserve(self, Py_ssize_t n) except -1:
        """Make room for n more bytes at the end (compacting first, growing if needed)."""
        cdef Py_ssize_t used, newcap
        cdef unsigned char* p
        if self.cap - self.end >= n:
            return 0
        used = self.end - self.start
        if self.start > 0:
            if used:
                memmove(self.data, self.data + self.start, used)
            self.start = 0
            self.end = used
            if self.cap - self.end >= n:
                return 0
        newcap = self.cap * 2
        if newcap < used + n:
            newcap = used + n
        p = <unsigned char*>realloc(self.data, newcap)  # geometric growth: amortised O(1) appends
        if p == NULL:
            raise MemoryError()
        self.data = p
        self.cap = newcap
        return 0

    cdef int append(self, const unsigned char* src, Py_ssize_t n) except -1:
        self.reserve(n)
        memcpy(self.data + self.end, src, n)
        self.end += n
        return 0

    cdef int append_obj(self, object obj, Py_ssize_t off, Py_ssize_t n) except -1:
        cdef Py_buffer view
        PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE)
        try:
            self.append(<unsigned char*>view.buf + off, n)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef inline void consume(self, Py_ssize_t n) noexcept:
        self.start += n
        if self.start >= self.end:
            self.start = 0
            self.end = 0

    cdef inline void clear(self) noexcept:
        self.start = 0
        self.end = 0


cdef class _Stream:
    cdef public long sid
    cdef object transport
    cdef long send_window
    cdef _Buf pending
    cdef bint pending_eof
    cdef long recv_unacked
    cdef bint write_paused
    cdef bint reading_paused
    cdef list inbuf
    cdef long long bytes_in
    cdef long long bytes_out
    cdef bint remote_closed

    def __cinit__(self, long sid, long send_window):
        self.sid = sid
        self.transport = None
        self.send_window = send_window
        self.pending = _Buf(0)
        self.pending_eof = False
        self.recv_unacked = 0
        self.write_paused = False
        self.reading_paused = False
        self.inbuf = []
        self.bytes_in = 0
        self.bytes_out = 0
        self.remote_closed = False


cdef class TunnelPump:
    """See _core/_reference.py:TunnelPump for the contract (identical API)."""
    cdef object _ssl
    cdef object _ssl_read
    cdef object _ssl_write
    cdef object _in_write
    cdef object _inbio
    cdef object _ssl_pending
    cdef object _out
    cdef object _out_read
    cdef object _owner
    cdef object _pump_control
    cdef bint _server_side
    cdef object _transport
    cdef object _transport_write
    cdef bint _handshaked
    cdef bint _closed
    cdef bint _notified
    cdef bint _need_preface
    cdef _Buf _buf
    cdef _Buf _wbuf
    cdef dict _streams
    cdef dict _blocked
    cdef long _stream_window
    cdef long _conn_window
    cdef long _conn_unacked
    cdef long _max_frame
    cdef int _empty_run
    cdef bint _write_paused
    cdef long _peer_stream_window
    cdef long _peer_max_frame
    cdef long _conn_send_window
    cdef Py_ssize_t _rem
    cdef long _rem_sid
    cdef int _rem_flags
    cdef long _out_sid
    cdef int _nseg
    cdef Py_ssize_t _seg_off[MAX_SEGS]
    cdef Py_ssize_t _seg_len[MAX_SEGS]
    cdef public long long bytes_received
    cdef public long long bytes_sent
    cdef _Buf _stage

    def __init__(self, sslobj, incoming, outgoing, owner, bint server_side, long stream_window,
                 long conn_window, long max_frame=DEFAULT_FRAME):
        self._ssl = sslobj
        # the C-level _ssl._SSLSocket methods, skipping ssl.SSLObject's Python wrappers
        self._ssl_read = sslobj._sslobj.read
        self._ssl_write = sslobj._sslobj.write
        self._in_write = incoming.write
        self._inbio = incoming
        self._ssl_pending = sslobj._sslobj.pending
        self._out = outgoing
        self._out_read = outgoing.read
        self._owner = owner
        self._pump_control = owner.pump_control
        self._server_side = server_side
        self._transport = None
        self._transport_write = None
        self._handshaked = False
        self._closed = False
        self._notified = False
        self._need_preface = server_side
        self._buf = _Buf(READ_CHUNK + FRAME_HEADER)
        self._wbuf = _Buf(READ_CHUNK + 1024)
        self._streams = {}
        self._blocked = {}
        self._stream_window = stream_window
        self._conn_window = conn_window
        self._conn_unacked = 0
        self._max_frame = max_frame
        self._empty_run = 0
        self._write_paused = False
        self._peer_stream_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_FRAME
        self._conn_send_window = DEFAULT_WINDOW
        self.bytes_received = 0
        self.bytes_sent = 0
        self._rem = 0
        self._rem_sid = 0
        self._rem_flags = 0
        self._out_sid = 0
        self._nseg = 0
        self._stage = _Buf(READ_CHUNK)

    # ------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport):
        self._transport = transport
        self._transport_write = transport.write
        if not self._server_side:
            self._handshake()

    def data_received(self, data):
        if self._closed:
            return
        self.bytes_received += len(data)
        self._in_write(data)
        if not self._handshaked:
            if not self._handshake():
                return
        self._read_plain()
        self._flush()

    # asyncio.BufferedProtocol (uvloop picks it by duck typing; plain asyncio keeps using data_received): the
    # event loop reads straight into the pump's staging buffer instead of into a new bytes object. One buffer
    # serves the TLS socket and every plain socket of this connection: each read is consumed (copied into the
    # BIO, encrypted, or queued) before the loop reads again.
    def get_buffer(self, Py_ssize_t sizehint):
        return PyMemoryView_FromMemory(<char*>self._stage.data, self._stage.cap, PyBUF_WRITE)

    def buffer_updated(self, Py_ssize_t nbytes):
        self.data_received(PyMemoryView_FromMemory(<char*>self._stage.data, nbytes, PyBUF_READ))

    cdef object _plain_read(self, long sid, Py_ssize_t nbytes):
        self.send_data(sid, PyMemoryView_FromMemory(<char*>self._stage.data, nbytes, PyBUF_READ))

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self._closed = True
        if not self._notified:
            self._notified = True
            self._owner.pump_closed(exc)

    def pause_writing(self):
        cdef _Stream st
        self._write_paused = True
        for st in self._streams.values():
            if not st.reading_paused and st.transport is not None:
                st.reading_paused = True
                st.transport.pause_reading()

    def resume_writing(self):
        cdef _Stream st
        self._write_paused = False
        for st in self._streams.values():
            if st.reading_paused and not st.pending.size() and st.transport is not None:
                st.reading_paused = False
                st.transport.resume_reading()

    @property
    def write_paused(self):
        return self._write_paused

    cdef _error(self, long sid, int code, str reason, str detail):
        self._flush_out()
        self._owner.pump_error(sid, code, reason, detail)

    # ------------------------------------------------------------ TLS
    cdef bint _handshake(self) except -1:
        try:
            self._ssl.do_handshake()
        except SSLWantReadError:
            self._flush_tls()
            return False
        except (SSLError, OSError) as e:
            self._flush_tls()
            self._fail(e)
            return False
        self._handshaked = True
        self._flush_tls()
        self._owner.pump_handshake_done()
        return not self._closed

    cdef _fail(self, exc):
        if self._notified:
            return
        self._closed = True
        self._notified = True
        if self._transport is not None:
            self._transport.abort()
        self._owner.pump_closed(exc)

    cdef _read_plain(self):
        cdef _Buf buf = self._buf
        cdef Py_ssize_t n
        while True:
            # stop when nothing is left to decrypt, instead of paying for an SSLWantReadError every batch
            if not self._inbio.pending and not self._ssl_pending():
                break
            buf.reserve(RECORD_ROOM)  # one TLS record decrypts to at most 16 KiB
            try:
                n = self._ssl_read(
                    buf.cap - buf.end,
                    PyMemoryView_FromMemory(<char*>buf.data + buf.end, buf.cap - buf.end, PyBUF_WRITE),
                )
            except SSLWantReadError:
                break
            except SSLZeroReturnError:  # the peer sent close_notify: finish parsing, then close
                self._parse()
                self.close()
                return
            except (SSLError, OSError) as e:
                self._fail(e)
                return
            if n == 0:  # close_notify: ssl reports it as a zero-length read
                self._parse()
                self.close()
                return
            buf.end += n
        self._parse()

    # ------------------------------------------------------------ framing, receive side
    cdef _parse(self):
        """Split the plaintext into frames. DATA payload for tracked streams is cut through as it arrives (a
        frame need not be complete) and coalesced into one write per stream per batch; control frames go to
        the owner in order (pending payload is written first, so END_STREAM/RST never overtake data)."""
        cdef _Buf buf = self._buf
        cdef unsigned char* p
        cdef Py_ssize_t pos, end, length, avail, n, ctl_start = -1
        cdef int ftype, flags
        cdef long sid, inc
        cdef _Stream st
        pos = buf.start
        end = buf.end
        if self._need_preface:
            if end - pos < PREFACE_LEN:
                return
            self._need_preface = False
            ctl_start = pos
            pos += PREFACE_LEN
        if self._rem > 0:
            n = self._rem if self._rem < end - pos else end - pos
            self._deliver(self._rem_sid, pos, n)
            pos += n
            self._rem -= n
            if self._rem > 0:
                self._flush_out()
                buf.consume(pos - buf.start)
                return
            if self._rem_flags & F_END_STREAM:
                self._flush_out()
                self._pump_control(data_frame_header(0, F_END_STREAM, self._rem_sid))
                if self._closed:
                    return
        while end - pos >= FRAME_HEADER:
            p = buf.data + pos
            length = (p[0] << 16) | (p[1] << 8) | p[2]
            ftype = p[3]
            flags = p[4]
            sid = ((p[5] & 0x7F) << 24) | (p[6] << 16) | (p[7] << 8) | p[8]
            if length > self._max_frame or ftype == T_DATA or ftype == T_WINDOW_UPDATE:
                if ctl_start >= 0:  # frames before the offending one reach the owner first
                    self._flush_out()
                    self._pump_control(PyBytes_FromStringAndSize(<char*>buf.data + ctl_start, pos - ctl_start))
                    ctl_start = -1
                    if self._closed:
                        return
                    p = buf.data + pos
                if not self._frame_ok(length, ftype, flags, sid):
                    return
            elif length:  # any frame with a payload ends a run of empty DATA frames
                self._empty_run = 0
            if ftype == T_DATA and not (flags & F_PADDED) and sid in self._streams:
                if ctl_start >= 0:
                    self._pump_control(PyBytes_FromStringAndSize(<char*>buf.data + ctl_start, pos - ctl_start))
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
                    self._pump_control(data_frame_header(0, F_END_STREAM, sid))
                    if self._closed:
                        return
                continue
            if end - pos - FRAME_HEADER < length:
                break
            if ftype == T_DATA and (flags & F_PADDED) and (length == 0 or p[FRAME_HEADER] >= length):
                self._error(0, PROTOCOL_ERROR, "protocol", f"DATA padding exceeds the frame on stream {sid}")
                return
            if ftype == T_DATA and sid in self._streams:  # padded: whole-frame path
                self._flush_out()
                if ctl_start >= 0:
                    self._pump_control(PyBytes_FromStringAndSize(<char*>buf.data + ctl_start, pos - ctl_start))
                    ctl_start = -1
                    if self._closed:
                        return
                    p = buf.data + pos
                st = self._streams.get(sid)
                if st is not None:
                    self._on_data(st, p + FRAME_HEADER, length, flags)
                if flags & F_END_STREAM:
                    self._pump_control(data_frame_header(0, F_END_STREAM, sid))
                    if self._closed:
                        return
                pos += FRAME_HEADER + length
            elif ftype == T_DATA:
                # DATA for a stream the pump does not track: drop the payload, give its connection window back,
                # and let h2 judge the stream state from an empty DATA frame with the same END_STREAM flag.
                self._flush_out()
                if ctl_start < 0:
                    ctl_start = pos
                self._conn_unacked += length
                if self._conn_unacked >= (self._conn_window >> 1):
                    self._put_window_update(0, self._conn_unacked)
                    self._conn_unacked = 0
                self._pump_control(
                    PyBytes_FromStringAndSize(<char*>buf.data + ctl_start, pos - ctl_start)
                    + data_frame_header(0, flags & F_END_STREAM, sid)
                )
                ctl_start = -1
                if self._closed:
                    return
                pos += FRAME_HEADER + length
            elif ftype == T_WINDOW_UPDATE and (sid == 0 or sid in self._streams):
                inc = ((p[9] & 0x7F) << 24) | (p[10] << 16) | (p[11] << 8) | p[12]
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
            self._pump_control(PyBytes_FromStringAndSize(<char*>buf.data + ctl_start, pos - ctl_start))
        self._flush_out()
        if not self._closed:
            buf.consume(pos - buf.start)

    cdef bint _frame_ok(self, Py_ssize_t length, int ftype, int flags, long sid) except -1:
        """Checks on a frame header before any of its payload is buffered; False after a connection error."""
        cdef _Stream st
        if length > self._max_frame:
            self._error(0, FRAME_SIZE_ERROR, "frame_size",
                        f"frame type {ftype} of {length} bytes exceeds {self._max_frame}")
            return False
        if ftype == T_DATA:
            if length == 0 and not (flags & F_END_STREAM):
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
                    self._error(0, FLOW_CONTROL_ERROR, "flow_control",
                                f"DATA beyond the receive window of stream {sid}")
                    return False
                if flags & F_END_STREAM:
                    st.remote_closed = True
            return True
        if ftype == T_WINDOW_UPDATE and length != 4:
            self._error(0, FRAME_SIZE_ERROR, "frame_size", f"WINDOW_UPDATE of length {length}")
            return False
        return True

    cdef _deliver(self, long sid, Py_ssize_t off, Py_ssize_t n):
        """Account n payload bytes at buf offset `off` for stream sid and queue them for one coalesced write."""
        cdef _Stream st
        if n <= 0:
            return
        self._conn_unacked += n
        if self._conn_unacked >= (self._conn_window >> 1):
            self._put_window_update(0, self._conn_unacked)
            self._conn_unacked = 0
        st = self._streams.get(sid)
        if st is None:
            return
        st.recv_unacked += n
        if not st.write_paused and st.recv_unacked >= (self._stream_window >> 1):
            self._put_window_update(sid, st.recv_unacked)
            st.recv_unacked = 0
        if self._nseg and (self._out_sid != sid or self._nseg == MAX_SEGS):
            self._flush_out()
        self._out_sid = sid
        self._seg_off[self._nseg] = off
        self._seg_len[self._nseg] = n
        self._nseg += 1

    cdef _flush_out(self):
        cdef Py_ssize_t total = 0, i, at = 0
        cdef _Stream st
        cdef char* dst
        if self._nseg == 0:
            return
        for i in range(self._nseg):
            total += self._seg_len[i]
        data = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(data)
        for i in range(self._nseg):
            memcpy(dst + at, self._buf.data + self._seg_off[i], self._seg_len[i])
            at += self._seg_len[i]
        self._nseg = 0
        st = self._streams.get(self._out_sid)
        if st is None:
            return
        st.bytes_in += total
        if st.transport is None:
            st.inbuf.append(data)
        else:
            st.transport.write(data)

    cdef _on_data(self, _Stream st, unsigned char* payload, Py_ssize_t length, int flags):
        cdef Py_ssize_t pad
        self._conn_unacked += length
        if self._conn_unacked >= (self._conn_window >> 1):
            self._put_window_update(0, self._conn_unacked)
            self._conn_unacked = 0
        st.recv_unacked += length
        if flags & F_PADDED and length > 0:
            pad = payload[0]
            data = PyBytes_FromStringAndSize(<char*>payload + 1, length - 1 - pad)
        else:
            data = PyBytes_FromStringAndSize(<char*>payload, length)
        if len(data):
            st.bytes_in += len(data)
            if st.transport is None:
                st.inbuf.append(data)
            else:
                st.transport.write(data)
        if not st.write_paused and st.recv_unacked >= (self._stream_window >> 1):
            self._put_window_update(st.sid, st.recv_unacked)
            st.recv_unacked = 0

    cdef _put_window_update(self, long sid, long inc):
        cdef unsigned char h[13]
        _put_header(h, 4, T_WINDOW_UPDATE, 0, sid)
        h[9] = (inc >> 24) & 0x7F
        h[10] = (inc >> 16) & 0xFF
        h[11] = (inc >> 8) & 0xFF
        h[12] = inc & 0xFF
        self._wbuf.append(h, 13)

    cdef bint _on_window_update(self, long sid, long inc) except -1:
        """Apply a peer's WINDOW_UPDATE (RFC 9113 §6.9); False after a connection error."""
        cdef _Stream st
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
            st = self._streams.get(sid)
            if st is not None:
                if st.send_window + inc > MAX_WINDOW:
                    self._error(sid, FLOW_CONTROL_ERROR, "flow_control", f"send window of stream {sid} above 2^31-1")
                    return not self._closed
                st.send_window += inc
                if st.pending.size():
                    self._push(st)
        return True

    # ------------------------------------------------------------ send side
    cdef Py_ssize_t _frame_out(self, _Stream st, const unsigned char* src, Py_ssize_t total):
        """Frame as much of src as the windows allow into the write buffer; returns bytes consumed."""
        cdef Py_ssize_t off = 0, n
        cdef _Buf w = self._wbuf
        while off < total:
            n = total - off
            if n > st.send_window:
                n = st.send_window
            if n > self._conn_send_window:
                n = self._conn_send_window
            if n > self._peer_max_frame:
                n = self._peer_max_frame
            if n <= 0:
                break
            if n >= BIG_FRAME and self._handshaked and not self._closed:
                # Large frame: copy only the header and the first record's worth of payload, then let ssl
                # encrypt the rest straight from the caller's buffer (saves one memcpy of the payload).
                w.reserve(RECORD_PAYLOAD)
                _put_header(w.data + w.end, n, T_DATA, 0, st.sid)
                memcpy(w.data + w.end + FRAME_HEADER, src + off, RECORD_PAYLOAD - FRAME_HEADER)
                w.end += RECORD_PAYLOAD
                try:
                    self._ssl_write(PyMemoryView_FromMemory(<char*>w.data + w.start, w.size(), PyBUF_READ))
                    w.clear()
                    self._ssl_write(PyMemoryView_FromMemory(
                        <char*>src + off + RECORD_PAYLOAD - FRAME_HEADER, n - (RECORD_PAYLOAD - FRAME_HEADER),
                        PyBUF_READ))
                except (SSLError, OSError) as e:
                    self._fail(e)
                    return off
            else:
                w.reserve(FRAME_HEADER + n)
                _put_header(w.data + w.end, n, T_DATA, 0, st.sid)
                memcpy(w.data + w.end + FRAME_HEADER, src + off, n)
                w.end += FRAME_HEADER + n
            off += n
            st.send_window -= n
            self._conn_send_window -= n
        return off

    cdef _push(self, _Stream st):
        cdef _Buf pending = st.pending
        cdef Py_ssize_t n
        n = self._frame_out(st, pending.data + pending.start, pending.size())
        pending.consume(n)
        if pending.size():
            self._blocked[st.sid] = st
            if not st.reading_paused and st.transport is not None:
                st.reading_paused = True
                st.transport.pause_reading()
        else:
            self._blocked.pop(st.sid, None)
            if st.reading_paused and st.transport is not None and not self._write_paused:
                st.reading_paused = False
                st.transport.resume_reading()
            if st.pending_eof:
                st.pending_eof = False
                self._owner.pump_stream_drained(st.sid)

    def send_data(self, long sid, data):
        cdef _Stream st = self._streams.get(sid)
        cdef Py_buffer view
        cdef Py_ssize_t off
        if st is None or self._closed:
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            st.bytes_out += view.len
            if not st.pending.size():
                off = self._frame_out(st, <unsigned char*>view.buf, view.len)
                if off < view.len:
                    st.pending.append(<unsigned char*>view.buf + off, view.len - off)
                    self._push(st)
            else:
                st.pending.append(<unsigned char*>view.buf, view.len)
                self._push(st)
        finally:
            PyBuffer_Release(&view)
        self._flush()

    def end_stream(self, long sid):
        cdef _Stream st = self._streams.get(sid)
        if st is None:
            return
        if st.pending.size():
            st.pending_eof = True
        else:
            self._owner.pump_stream_drained(sid)

    def send_raw(self, data):
        if data and not self._closed:
            self._wbuf.append_obj(data, 0, len(data))
            self._flush()

    cdef _flush(self):
        cdef _Buf w = self._wbuf
        if w.size() and self._handshaked and not self._closed:
            try:
                self._ssl_write(PyMemoryView_FromMemory(<char*>w.data + w.start, w.size(), PyBUF_READ))
            except (SSLError, OSError) as e:
                self._fail(e)
                return
            w.clear()
        self._flush_tls()

    cdef _flush_tls(self):
        if self._out.pending and self._transport is not None:
            data = self._out_read()
            self.bytes_sent += len(data)
            self._transport_write(data)

    # ------------------------------------------------------------ streams
    def open_stream(self, long sid):
        if sid not in self._streams:
            self._streams[sid] = _Stream(sid, self._peer_stream_window)

    def attach(self, long sid, transport):
        cdef _Stream st = self._streams.get(sid)
        if st is None:
            return
        st.transport = transport
        if st.inbuf:
            for chunk in st.inbuf:
                transport.write(chunk)
            st.inbuf = []
        if (st.pending.size() or self._write_paused) and not st.reading_paused:
            st.reading_paused = True
            transport.pause_reading()

    def close_stream(self, long sid):
        cdef _Stream st = self._streams.pop(sid, None)
        self._blocked.pop(sid, None)
        if st is None:
            return (0, 0)
        st.recv_unacked = 0
        return (st.bytes_in, st.bytes_out)

    def has_stream(self, long sid):
        return sid in self._streams

    def remote_ended(self, long sid):
        cdef _Stream st = self._streams.get(sid)
        if st is not None:
            st.remote_closed = True

    def stream_transport_lost(self, long sid, exc):
        cdef _Stream st = self._streams.get(sid)
        if st is not None:
            st.transport = None
            self._owner.pump_stream_lost(sid, exc)

    def set_stream_write_paused(self, long sid, bint paused):
        cdef _Stream st = self._streams.get(sid)
        if st is None:
            return
        st.write_paused = paused
        if not paused and st.recv_unacked >= (self._stream_window >> 1):
            self._put_window_update(sid, st.recv_unacked)
            st.recv_unacked = 0
            self._flush()

    def set_peer_settings(self, long initial_window, long max_frame):
        cdef long delta = initial_window - self._peer_stream_window
        cdef _Stream st
        self._peer_stream_window = initial_window
        self._peer_max_frame = max_frame
        if delta:
            for st in self._streams.values():
                st.send_window += delta
            for st in list(self._blocked.values()):
                self._push(st)
            self._flush()

    def add_conn_send_window(self, long inc):
        self._on_window_update(0, inc)

    @property
    def transport(self):
        return self._transport

    @property
    def handshake_done(self):
        return self._handshaked

    @property
    def closed(self):
        return self._closed

    @property
    def stream_count(self):
        return len(self._streams)

    def close(self):
        if self._closed:
            return
        self._flush()
        if self._handshaked:
            try:
                self._ssl.unwrap()  # queue our close_notify
            except (SSLError, OSError):
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


cdef class PlainSide:
    """asyncio protocol for the plain TCP side of one tunnelled stream (see the reference twin)."""
    cdef TunnelPump _pump
    cdef long _sid
    cdef public object transport

    def __init__(self, TunnelPump pump, long sid):
        self._pump = pump
        self._sid = sid
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self._pump.attach(self._sid, transport)

    def data_received(self, data):
        self._pump.send_data(self._sid, data)

    def get_buffer(self, Py_ssize_t sizehint):
        return self._pump.get_buffer(sizehint)

    def buffer_updated(self, Py_ssize_t nbytes):
        self._pump._plain_read(self._sid, nbytes)

    def eof_received(self):
        self._pump.end_stream(self._sid)
        return True

    def connection_lost(self, exc):
        self._pump.stream_transport_lost(self._sid, exc)

    def pause_writing(self):
        self._pump.set_stream_write_paused(self._sid, True)

    def resume_writing(self):
        self._pump.set_stream_write_paused(self._sid, False)
