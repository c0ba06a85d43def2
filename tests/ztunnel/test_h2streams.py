"""ztunnel.h2streams: the hand-written HTTP/2 stream layer, checked against the `hpack` library and RFC 9113."""

from __future__ import annotations

from typing import Any

import hpack
import pytest

from ztunnel import h2streams as h2s

CONNECT = [(":method", "CONNECT"), (":authority", "10.0.0.1:8080")]
SETTINGS_EMPTY = h2s.frame(h2s.SETTINGS, 0, 0)


def _headers(sid: int, headers: list[tuple[str, str]], flags: int = h2s.END_HEADERS) -> bytes:
    return h2s.frame(h2s.HEADERS, flags, sid, h2s.encode_block(headers))


def _server(known: dict[int, Any] | None = None, max_streams: int = 200) -> h2s.StreamFrames:
    frames = h2s.StreamFrames(server_side=True, known=known if known is not None else {}, max_streams=max_streams)
    frames.receive(h2s.PREFACE)
    return frames


# ------------------------------------------------------------------------------------------ HPACK
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(CONNECT, id="static_names"),
        pytest.param([*CONNECT, ("baggage", "k8s.namespace.name=default," * 20)], id="value_longer_than_127"),
        pytest.param([*CONNECT, hpack.NeverIndexedHeaderTuple("traceparent", "00-ab-cd-00")], id="never_indexed"),
        pytest.param([(":status", "200"), ("x-" + "n" * 200, "")], id="long_literal_name_empty_value"),
        pytest.param([(":authority", "ü.example:80")], id="utf8_value"),
    ],
)
def test_our_encoding_decodes_with_the_hpack_library_and_with_the_fast_path(headers: list[tuple[str, str]]) -> None:
    block = h2s.encode_block(headers)
    decoder = hpack.Decoder()
    assert decoder.decode(block) == [tuple(h) for h in headers]
    assert len(decoder.header_table.dynamic_entries) == 0, "literals without indexing leave the peer's table alone"
    assert h2s.fast_decode(block, 65536) == [tuple(h) for h in headers]
    never = [isinstance(h, hpack.NeverIndexedHeaderTuple) for h in hpack.Decoder().decode(block)]
    assert never == [isinstance(h, hpack.NeverIndexedHeaderTuple) for h in headers]


def test_table_size_update_is_sent_first_in_the_block() -> None:
    block = h2s.encode_block(CONNECT, table_size_update=0)
    decoder = hpack.Decoder()
    assert decoder.decode(block) == CONNECT
    assert decoder.header_table.maxsize == 0


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda e, h: e.encode(h, huffman=True), id="huffman"),
        pytest.param(lambda e, h: e.encode(h, huffman=False), id="incremental_indexing"),
    ],
)
def test_blocks_that_use_the_dynamic_table_or_huffman_take_the_library_path(encode: Any) -> None:
    """An Envoy-like peer: the fast path declines, and the library keeps the dynamic table in step across blocks."""
    encoder = hpack.Encoder()
    first = encode(encoder, [*CONNECT, ("baggage", "a=b")])
    second = encode(encoder, [*CONNECT, ("baggage", "a=b")])  # now refers to dynamic entries
    assert h2s.fast_decode(first, 65536) is None
    frames = _server()
    ev1 = frames.receive(h2s.frame(h2s.HEADERS, h2s.END_HEADERS, 1, first))
    ev2 = frames.receive(h2s.frame(h2s.HEADERS, h2s.END_HEADERS, 3, second))
    assert ev1[0][:3] == (h2s.EV_HEADERS, 1, [*CONNECT, ("baggage", "a=b")])
    assert ev2[0][:3] == (h2s.EV_HEADERS, 3, [*CONNECT, ("baggage", "a=b")])


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(b"\x80", id="index_zero"),
        pytest.param(b"\xbe", id="dynamic_index"),
        pytest.param(b"\x00\x05ab", id="truncated_literal"),
        pytest.param(b"\x00\x02\xff\xfe\x00", id="invalid_utf8"),
    ],
)
def test_fast_path_declines_what_it_cannot_read(block: bytes) -> None:
    assert h2s.fast_decode(block, 65536) is None


# ------------------------------------------------------------------------------------------ server side
def test_preface_and_settings_go_to_h2_then_a_connect_request_is_an_event() -> None:
    frames = h2s.StreamFrames(server_side=True, known={})
    events = frames.receive(h2s.PREFACE + SETTINGS_EMPTY + _headers(1, CONNECT))
    assert events == [(h2s.EV_H2, h2s.PREFACE + SETTINGS_EMPTY), (h2s.EV_HEADERS, 1, CONNECT, False)]
    assert frames.highest_inbound == 1


def test_request_split_over_continuation_frames_is_reassembled() -> None:
    headers = [*CONNECT, ("baggage", "x" * 300)]
    wire = h2s.headers_frames(1, h2s.encode_block(headers), True, max_frame=100)
    assert wire.count(bytes([h2s.CONTINUATION])) >= 1
    assert _server().receive(wire) == [(h2s.EV_HEADERS, 1, headers, True)]


def test_padded_headers_with_priority_fields_are_read() -> None:
    block = h2s.encode_block(CONNECT)
    payload = bytes([3]) + b"\x00\x00\x00\x00\x10" + block + b"\x00\x00\x00"
    wire = h2s.frame(h2s.HEADERS, h2s.END_HEADERS | h2s.PADDED | h2s.PRIORITY_FLAG, 1, payload)
    assert _server().receive(wire) == [(h2s.EV_HEADERS, 1, CONNECT, False)]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param([(":method", "CONNECT")], "CONNECT without :authority", id="connect_without_authority"),
        pytest.param([*CONNECT, (":path", "/")], "CONNECT with :scheme or :path", id="connect_with_path"),
        pytest.param([(":authority", "a:1")], "missing :method", id="no_method"),
        pytest.param([(":method", "GET"), (":authority", "a:1")], "without :scheme", id="get_without_path"),
        pytest.param([*CONNECT, ("Forwarded", "x")], "invalid header name", id="uppercase_name"),
        pytest.param([*CONNECT, ("connection", "close")], "connection-specific", id="connection_header"),
        pytest.param([*CONNECT, ("te", "gzip")], "connection-specific", id="te_not_trailers"),
        pytest.param([("forwarded", "x"), *CONNECT], "after a regular header", id="pseudo_after_regular"),
        pytest.param([*CONNECT, (":method", "GET")], "duplicate pseudo-header", id="duplicate_pseudo"),
        pytest.param([*CONNECT, (":status", "200")], "unknown pseudo-header", id="response_pseudo_in_request"),
        pytest.param([*CONNECT, ("baggage", "a\r\nb")], "invalid value", id="crlf_in_value"),
        pytest.param([*CONNECT, ("baggage", " a")], "invalid value", id="leading_space"),
        pytest.param([*CONNECT, ("baggage", "a\t")], "invalid value", id="trailing_tab"),
        pytest.param([*CONNECT, ("baggage", "a\x00b")], "invalid value", id="nul_in_value"),
    ],
)
def test_malformed_request_is_a_stream_error(headers: list[tuple[str, str]], reason: str) -> None:
    events = _server().receive(_headers(1, headers))
    assert len(events) == 1
    kind, sid, code, why = events[0]
    assert (kind, sid, code) == (h2s.EV_REJECT, 1, h2s.PROTOCOL_ERROR)
    assert reason in why


def test_whitespace_inside_a_value_is_fine() -> None:
    headers = [*CONNECT, ("baggage", "a = b,\tc")]
    assert _server().receive(_headers(1, headers)) == [(h2s.EV_HEADERS, 1, headers, False)]


def test_get_with_scheme_and_path_is_well_formed_and_left_to_the_app() -> None:
    get = [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "a:1")]
    assert _server().receive(_headers(1, get, h2s.END_HEADERS | h2s.END_STREAM)) == [(h2s.EV_HEADERS, 1, get, True)]


def test_new_stream_beyond_max_concurrent_streams_is_refused() -> None:
    known = {1: None}
    events = _server(known, max_streams=1).receive(_headers(3, CONNECT))
    assert events[0][:3] == (h2s.EV_REJECT, 3, h2s.REFUSED_STREAM)


def test_headers_on_a_stream_id_already_used_is_stream_closed() -> None:
    frames = _server()
    frames.receive(_headers(1, CONNECT))
    frames.receive(_headers(3, CONNECT))
    assert frames.receive(_headers(1, CONNECT))[0][:3] == (h2s.EV_REJECT, 1, h2s.STREAM_CLOSED)


def test_headers_on_a_stream_id_the_peer_skipped_is_a_connection_error() -> None:
    frames = _server()
    frames.receive(_headers(5, CONNECT))
    assert frames.receive(_headers(3, CONNECT))[0][:2] == (h2s.EV_ERROR, h2s.PROTOCOL_ERROR)


def test_a_burst_of_headers_in_one_read_counts_against_max_concurrent_streams() -> None:
    events = _server(max_streams=200).receive(b"".join(_headers(sid, CONNECT) for sid in range(1, 2001, 2)))
    accepted = [e for e in events if e[0] == h2s.EV_HEADERS]
    refused = [e for e in events if e[0] == h2s.EV_REJECT]
    assert len(accepted) == 200
    assert len(refused) == 800
    assert {e[2] for e in refused} == {h2s.REFUSED_STREAM}


def test_headers_then_reset_in_one_read_are_both_events_and_free_the_slot() -> None:
    wire = b"".join(_headers(sid, CONNECT) + h2s.rst_stream(sid, h2s.CANCEL) for sid in range(1, 11, 2))
    events = _server(max_streams=1).receive(wire)
    assert [e[0] for e in events] == [h2s.EV_HEADERS, h2s.EV_RESET] * 5


def _priority(sid: int, depends_on: int, length: int = 5) -> bytes:
    return h2s.frame(h2s.PRIORITY, 0, sid, (depends_on.to_bytes(4, "big") + b"\x10")[:length].ljust(length, b"\0"))


def _window_update(sid: int, inc: int, length: int = 4) -> bytes:
    return h2s.frame(h2s.WINDOW_UPDATE, 0, sid, inc.to_bytes(4, "big")[:length].ljust(length, b"\0"))


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        pytest.param(lambda: _priority(1, 0, 4), h2s.FRAME_SIZE_ERROR, id="priority_of_length_4"),
        pytest.param(lambda: _priority(1, 0, 6), h2s.FRAME_SIZE_ERROR, id="priority_of_length_6"),
        pytest.param(lambda: _priority(3, 3), h2s.PROTOCOL_ERROR, id="priority_depends_on_itself"),
        pytest.param(
            lambda: h2s.frame(
                h2s.HEADERS, h2s.END_HEADERS | h2s.PRIORITY_FLAG, 1, b"\0\0\0\1\x10" + h2s.encode_block(CONNECT)
            ),
            h2s.PROTOCOL_ERROR,
            id="headers_depend_on_themselves",
        ),
        pytest.param(lambda: _window_update(5, 1), h2s.PROTOCOL_ERROR, id="window_update_on_idle_stream"),
        pytest.param(lambda: _window_update(1, 1, 3), h2s.FRAME_SIZE_ERROR, id="window_update_of_length_3"),
        pytest.param(
            lambda: _headers(1, CONNECT) + h2s.rst_stream(1, 0) + _window_update(1, 0),
            h2s.PROTOCOL_ERROR,
            id="window_update_increment_0_on_closed_stream",
        ),
    ],
)
def test_rfc9113_connection_errors(wire: Any, code: int) -> None:
    events = _server().receive(wire())
    assert events[-1][:2] == (h2s.EV_ERROR, code)


def test_window_update_on_a_closed_stream_is_ignored() -> None:
    frames = _server()
    frames.receive(_headers(1, CONNECT))
    assert frames.receive(_window_update(1, 100)) == []


def test_priority_flood_is_enhance_your_calm() -> None:
    frames = _server()
    limit = h2s.MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM
    assert frames.receive(b"".join(_priority(1, 0) for _ in range(limit))) == []
    events = frames.receive(_priority(1, 0))
    assert events[-1][0:2] == (h2s.EV_ERROR, h2s.ENHANCE_YOUR_CALM)
    assert events[-1][3] == "priority_flood"


def test_continuation_flood_ends_at_the_header_block_bound() -> None:
    frames = _server()
    events = frames.receive(_headers(1, CONNECT, 0))
    chunk = h2s.frame(h2s.CONTINUATION, 0, 1, b"\0" * 16384)
    for _ in range(h2s.MAX_HEADER_BLOCK // 16384 + 1):
        events = frames.receive(chunk)
        if events:
            break
    assert events[-1][0:2] == (h2s.EV_ERROR, h2s.ENHANCE_YOUR_CALM)
    assert events[-1][3] == "header_block"


@pytest.mark.parametrize(
    ("closed", "premature", "too_many"),
    [
        pytest.param(10, 10, False, id="few_streams_all_reset_is_not_judged_yet"),
        pytest.param(499, 499, False, id="just_under_the_stream_count"),
        pytest.param(500, 251, True, id="more_than_half_of_500_reset_early"),
        pytest.param(500, 250, False, id="exactly_half_is_allowed"),
        pytest.param(10000, 100, False, id="long_lived_connection_with_some_cancels"),
        pytest.param(10000, 9000, True, id="rapid_reset_flood"),
    ],
)
def test_premature_reset_rule(closed: int, premature: int, too_many: bool) -> None:
    assert h2s.too_many_premature_resets(closed, premature, h2s.PREMATURE_RESET_TOTAL_STREAM_COUNT) is too_many


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        pytest.param(lambda: _headers(2, CONNECT), h2s.PROTOCOL_ERROR, id="even_stream_from_client"),
        pytest.param(lambda: _headers(1, CONNECT, 0) + SETTINGS_EMPTY, h2s.PROTOCOL_ERROR, id="frame_inside_block"),
        pytest.param(lambda: h2s.frame(h2s.CONTINUATION, 4, 1, b""), h2s.PROTOCOL_ERROR, id="stray_continuation"),
        pytest.param(lambda: h2s.rst_stream(9, h2s.CANCEL), h2s.PROTOCOL_ERROR, id="rst_on_idle_stream"),
        pytest.param(lambda: h2s.frame(h2s.RST_STREAM, 0, 1, b"\0"), h2s.FRAME_SIZE_ERROR, id="short_rst"),
        pytest.param(lambda: h2s.end_stream(7), h2s.PROTOCOL_ERROR, id="data_on_idle_stream"),
        pytest.param(lambda: h2s.frame(h2s.PUSH_PROMISE, 4, 1, b"\0\0\0\2"), h2s.PROTOCOL_ERROR, id="push_promise"),
        pytest.param(lambda: h2s.frame(h2s.HEADERS, 4, 1, b"\xff\xff"), h2s.COMPRESSION_ERROR, id="hpack_garbage"),
        pytest.param(lambda: _headers(0, CONNECT), h2s.PROTOCOL_ERROR, id="headers_on_stream_zero"),
    ],
)
def test_connection_errors(wire: Any, code: int) -> None:
    events = _server().receive(wire())
    assert events[-1][:2] == (h2s.EV_ERROR, code)


def test_connection_frames_before_an_error_still_reach_h2_first() -> None:
    events = _server().receive(SETTINGS_EMPTY + _headers(2, CONNECT))
    assert [e[0] for e in events] == [h2s.EV_H2, h2s.EV_ERROR]


def test_end_stream_marker_and_reset_on_open_streams_are_events() -> None:
    known: dict[int, Any] = {}
    frames = _server(known)
    frames.receive(_headers(1, CONNECT))
    known[1] = None
    assert frames.receive(h2s.end_stream(1)) == [(h2s.EV_ENDED, 1)]
    assert frames.receive(h2s.rst_stream(1, h2s.CANCEL)) == [(h2s.EV_RESET, 1, h2s.CANCEL)]
    del known[1]
    assert frames.receive(h2s.rst_stream(1, h2s.CANCEL) + h2s.end_stream(1)) == [], "closed stream: ignored"


def test_trailers_end_the_stream_and_must_carry_end_stream() -> None:
    known: dict[int, Any] = {1: None}
    frames = _server(known)
    frames.highest_inbound = 1
    assert frames.receive(_headers(1, [("x-t", "1")], h2s.END_HEADERS | h2s.END_STREAM))[0][0] == h2s.EV_HEADERS
    assert frames.receive(_headers(1, [("x-t", "1")]))[0][:3] == (h2s.EV_REJECT, 1, h2s.STREAM_CLOSED), "ended"
    frames = _server({3: None})
    frames.highest_inbound = 3
    assert frames.receive(_headers(3, [("x-t", "1")]))[0][:3] == (h2s.EV_REJECT, 3, h2s.PROTOCOL_ERROR)


def test_frames_after_the_peer_ended_the_stream_are_stream_closed() -> None:
    known: dict[int, Any] = {}
    frames = _server(known)
    assert frames.receive(_headers(1, CONNECT, h2s.END_HEADERS | h2s.END_STREAM))[0][0] == h2s.EV_HEADERS
    known[1] = None
    assert frames.receive(h2s.end_stream(1))[0][:3] == (h2s.EV_REJECT, 1, h2s.STREAM_CLOSED), "half-closed (remote)"
    del known[1]
    frames.forget(1, peer_done=True)
    assert frames.receive(h2s.end_stream(1))[-1][:2] == (h2s.EV_ERROR, h2s.STREAM_CLOSED), "closed after its end"
    frames = _server(known)
    frames.receive(_headers(3, CONNECT))
    frames.forget(3, peer_done=False)  # we reset it: what the peer had in flight is ignored
    assert frames.receive(h2s.end_stream(3)) == []


# ------------------------------------------------------------------------------------------ client side
def test_client_stream_ids_are_odd_and_increasing() -> None:
    frames = h2s.StreamFrames(server_side=False, known={})
    assert [frames.next_stream_id() for _ in range(3)] == [1, 3, 5]


def test_client_gets_the_response_and_ignores_a_stream_it_closed() -> None:
    known: dict[int, Any] = {}
    frames = h2s.StreamFrames(server_side=False, known=known)
    sid = frames.next_stream_id()
    known[sid] = None
    ok = [(":status", "200"), ("baggage", "a=b")]
    assert frames.receive(_headers(sid, ok)) == [(h2s.EV_HEADERS, sid, ok, False)]
    del known[sid]
    assert frames.receive(_headers(sid, ok)) == []
    assert frames.receive(_headers(sid + 2, ok))[0][:2] == (h2s.EV_ERROR, h2s.PROTOCOL_ERROR), "idle stream"
    bad = [(":method", "GET")]
    known[sid] = None
    assert frames.receive(_headers(sid, bad))[0][:3] == (h2s.EV_REJECT, sid, h2s.PROTOCOL_ERROR)


def test_oversized_header_list_is_a_connection_error() -> None:
    frames = h2s.StreamFrames(server_side=True, known={}, max_header_list=100)
    frames.receive(h2s.PREFACE)
    events = frames.receive(_headers(1, [*CONNECT, ("baggage", "x" * 200)]))
    assert events[-1][:2] == (h2s.EV_ERROR, h2s.PROTOCOL_ERROR)
