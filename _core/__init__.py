"""Cython hot path of the ztunnel. Imports no project code; only `ztunnel` imports it.

`_core.core` is the compiled extension (one C compilation unit, `core.pyx` includes `parts/*.pxi`);
`_core._reference` holds pure-Python twins with the same API. There is no silent fallback: if the extension
was not built, importing `_core` fails and says how to build it.
"""

try:
    from _core.core import (
        PlainSide,
        RoundRobin,
        TunnelPump,
        data_frame_header,
        original_dst,
        window_update_frame,
    )
except ImportError as e:  # pragma: no cover - a build problem, not a runtime condition
    raise ImportError(f"_core.core is not built ({e}); run `.venv/bin/python setup.py -q build_ext --inplace`") from e

__all__ = ["PlainSide", "RoundRobin", "TunnelPump", "data_frame_header", "original_dst", "window_update_frame"]
