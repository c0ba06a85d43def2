"""h2spec's properties that need an open stream, re-checked on an accepted CONNECT stream (raw frames over mTLS).

h2spec drives these with GET/POST requests, which an HBONE server answers at once with a 4xx and END_STREAM
(`CONNECT_ONLY` in `test_h2spec.py` names each case and why). Here the same property is checked where it
applies to HBONE: on a CONNECT stream our ztunnel accepted (200) to a real backend, with both cores. Test names
say the property; the h2spec case each one stands for is in its docstring.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import hpack
import pytest

from tests.harness.raw_h2 import (
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    Closed,
    GoAwayFrame,
    HeadersFrame,
    RawH2,
    RstStreamFrame,
    raw_frame,
)
from tests.ztunnel.conftest import (
    Backend,
    ZtunnelProc,
    hbone_client_context,
    issue,
    proxy_section,
    workload,
    write_yaml,
)
from xds.ca import CertificateAuthority

pytestmark = [pytest.mark.hardening, pytest.mark.ztunnel]

NET = "127.0.151"
CORES = {"cython": f"{NET}.3", "python": f"{NET}.4"}
REPLY = b"echo:"  # the backend answers each chunk with this prefix + the chunk


class Node:
    def __init__(self, ip: str, context: ssl.SSLContext) -> None:
        self.ip = ip
        self.context = context
        self.backend = f"{ip}:8080"

    def client(self, settings: dict[int, int] | None = None) -> RawH2:
        return RawH2((self.ip, 15008), self.context, settings=settings)


@pytest.fixture(scope="module", params=list(CORES))
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    core, ip = request.param, CORES[request.param]
    tmp = tmp_path_factory.mktemp(f"connect-{core}")
    ca = CertificateAuthority()
    sleep, echo = issue(ca, tmp, "default", "sleep"), issue(ca, tmp, "default", "echo")
    root = tmp / "root.crt"
    backend = Backend(ip, 8080, "echo")
    cfg = {"proxy": proxy_section(ip, "node-b", [echo], root), "workloads": [workload("echo", ip, "node-b")]}
    zt = ZtunnelProc(write_yaml(tmp / "b.yaml", cfg), ip, tmp / "b.log", core=core)
    try:
        zt.wait_ready()
        yield Node(ip, hbone_client_context(sleep, root))
    finally:
        zt.stop()
        backend.close()


def _accepted(c: RawH2, sid: int) -> None:
    frames = c.until(HeadersFrame, sid=sid)
    block = frames[-1].data
    assert (":status", "200") in [(k.decode(), v.decode()) for k, v in _decode(block)], frames


def _decode(block: bytes) -> list[tuple[bytes, bytes]]:
    return hpack.Decoder().decode(block, raw=True)  # type: ignore[return-value]


@pytest.mark.parametrize("before_update", ["nothing", "priority"])
def test_window_update_and_priority_on_a_half_closed_remote_connect_stream_are_accepted(
    node: Node, before_update: str
) -> None:
    """generic/2/2, generic/2/3: WINDOW_UPDATE (and PRIORITY) on a half-closed (remote) stream are accepted;
    the update opens the window of a stream whose reply waits for it."""
    c = node.client({INITIAL_WINDOW_SIZE: 0})
    try:
        c.connect(1, node.backend)
        _accepted(c, 1)
        c.data(1, b"hello", end_stream=True)  # half-closed (remote) on the server; its reply waits for window
        c.quiet(1, 0.5)
        if before_update == "priority":
            c.priority(1)
        c.window_update(1, 1)
        assert c.data_bytes(1, 1) == b"e"
        c.window_update(1, 100)
        assert c.data_bytes(1, 9) == b"cho:hello"
    finally:
        c.close()


def test_settings_initial_window_values_apply_in_the_order_they_appear(node: Node) -> None:
    """http2/6.5.3/1, http2/6.9.1/1: SETTINGS_INITIAL_WINDOW_SIZE 100 then 1 in one frame leaves 1: the server
    sends exactly one byte of its reply."""
    c = node.client()
    try:
        c.settings_pairs([(INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)])
        c.connect(1, node.backend)
        _accepted(c, 1)
        c.data(1, b"hello")
        assert c.data_bytes(1, 1) == b"e"
        c.quiet(1, 0.5)
    finally:
        c.close()


def test_initial_window_change_after_headers_applies_to_the_open_connect_stream(node: Node) -> None:
    """http2/6.9.2/1: a SETTINGS_INITIAL_WINDOW_SIZE change adjusts the window of a stream already open."""
    c = node.client({INITIAL_WINDOW_SIZE: 0})
    try:
        c.connect(1, node.backend)
        _accepted(c, 1)
        c.data(1, b"hello")
        c.quiet(1, 0.5)
        c.settings({INITIAL_WINDOW_SIZE: 2})
        assert c.data_bytes(1, 2) == b"ec"
        c.quiet(1, 0.5)
    finally:
        c.close()


def test_a_window_made_negative_by_settings_is_tracked_until_updates_make_it_positive(node: Node) -> None:
    """http2/6.9.2/2: window 3, three bytes sent, SETTINGS to 2 makes it -1; WINDOW_UPDATE 2 allows one byte."""
    c = node.client({INITIAL_WINDOW_SIZE: 3})
    try:
        c.connect(1, node.backend)
        _accepted(c, 1)
        c.data(1, b"hello")
        assert c.data_bytes(1, 3) == b"ech"
        c.settings({INITIAL_WINDOW_SIZE: 2})
        c.quiet(1, 0.5)
        c.window_update(1, 2)
        assert c.data_bytes(1, 1) == b"o"
        c.quiet(1, 0.5)
    finally:
        c.close()


def test_a_connect_stream_window_above_2_31_minus_1_is_a_flow_control_stream_error(node: Node) -> None:
    """http2/6.9.1/3: WINDOW_UPDATEs taking a stream's window above 2^31-1 → RST_STREAM FLOW_CONTROL_ERROR."""
    c = node.client()
    try:
        c.connect(1, node.backend)
        _accepted(c, 1)
        c.window_update(1, 2**31 - 1)
        c.window_update(1, 2**31 - 1)
        frames = c.until(RstStreamFrame, sid=1)
        assert frames[-1].error_code == FLOW_CONTROL_ERROR, frames
    finally:
        c.close()


def test_a_second_headers_without_end_stream_on_a_connect_stream_is_a_protocol_error(node: Node) -> None:
    """http2/8.1/1: after the request's HEADERS, another HEADERS (trailers) without END_STREAM makes the message
    malformed → RST_STREAM or GOAWAY PROTOCOL_ERROR, never another answer on that stream."""
    c = node.client()
    try:
        c.connect(1, node.backend)
        _accepted(c, 1)
        c.send_frame(HeadersFrame(1, c.encoder.encode([("x-trailer", "1")]), flags={"END_HEADERS"}))
        frames = c.until(RstStreamFrame, sid=1)
        codes = [f.error_code for f in frames if isinstance(f, RstStreamFrame | GoAwayFrame)]
        assert codes and codes[-1] == PROTOCOL_ERROR, frames
        assert not any(isinstance(f, HeadersFrame) for f in frames), frames
    finally:
        c.close()


def test_connect_streams_beyond_the_advertised_limit_are_refused(node: Node) -> None:
    """http2/5.1.2/1: one CONNECT more than SETTINGS_MAX_CONCURRENT_STREAMS, sent in one burst while all are
    open → that stream is refused (REFUSED_STREAM or PROTOCOL_ERROR) and the others are served."""
    c = node.client({INITIAL_WINDOW_SIZE: 0})
    try:
        limit = c.server_settings[MAX_CONCURRENT_STREAMS]
        sids = [1 + 2 * i for i in range(limit + 1)]
        burst = []
        for sid in sids:
            block = c.encoder.encode([(":method", "CONNECT"), (":authority", node.backend)])
            burst.append(HeadersFrame(sid, block, flags={"END_HEADERS"}).serialize())
        c.send(b"".join(burst))
        accepted: set[int] = set()
        refused: dict[int, int] = {}
        while len(accepted) + len(refused) < len(sids):
            frame = c.read(60)
            assert frame is not None and not isinstance(frame, Closed | GoAwayFrame), (frame, len(accepted))
            if isinstance(frame, HeadersFrame):
                accepted.add(frame.stream_id)
            elif isinstance(frame, RstStreamFrame):
                refused[frame.stream_id] = frame.error_code
        assert list(refused) == [sids[-1]] and refused[sids[-1]] in (REFUSED_STREAM, PROTOCOL_ERROR), refused
        assert len(accepted) == limit
    finally:
        c.close()


def test_a_headers_frame_above_our_advertised_max_frame_size_is_a_frame_size_connection_error(node: Node) -> None:
    """http2/4.2/3: h2spec's HEADERS is 20 KB, inside the 1 MiB we advertise (as Istio's ztunnel); one byte above
    what we advertise → GOAWAY FRAME_SIZE_ERROR and the connection closes."""
    c = node.client()
    try:
        size = c.server_settings.get(MAX_FRAME_SIZE, 16384) + 1
        block = c.encoder.encode([(":method", "CONNECT"), (":authority", node.backend)])
        c.send(raw_frame(0x1, 0x4, 1, block + b"\x00" * (size - len(block))))
        # GOAWAY FRAME_SIZE_ERROR, then the close; the server may abort before reading the rest of the frame,
        # and a reset can discard the GOAWAY in our receive buffer, so the close alone also counts (as in h2spec)
        frames = c.until(Closed, timeout=20)
        goaways = [f.error_code for f in frames if isinstance(f, GoAwayFrame)]
        assert goaways in ([], [FRAME_SIZE_ERROR]), frames
        assert not any(isinstance(f, HeadersFrame) for f in frames), f"the oversized HEADERS was answered: {frames}"
    finally:
        c.close()
