"""Frame helpers agree with hyperframe (the h2 project's framing library) as the oracle."""

from __future__ import annotations

from types import ModuleType

import pytest
from hyperframe.frame import DataFrame, WindowUpdateFrame


@pytest.mark.parametrize(("length", "flags", "sid"), [(0, 1, 1), (16384, 0, 3), (1 << 20, 0, 2**31 - 1)])
def test_data_frame_header_matches_hyperframe(impl: ModuleType, length: int, flags: int, sid: int) -> None:
    f = DataFrame(sid, data=b"\x00" * length)
    if flags & 1:
        f.flags.add("END_STREAM")
    assert impl.data_frame_header(length, flags, sid) == f.serialize()[:9]


@pytest.mark.parametrize(("sid", "inc"), [(0, 1), (1, 65535), (7, 2**31 - 1)])
def test_window_update_matches_hyperframe(impl: ModuleType, sid: int, inc: int) -> None:
    assert impl.window_update_frame(sid, inc) == WindowUpdateFrame(sid, window_increment=inc).serialize()
