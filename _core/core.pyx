# cython: language_level=3
"""The single compilation unit of the Cython hot path; parts are `include`d below in dependency order."""

include "parts/consts.pxi"
include "parts/stdlib.pxi"
include "parts/rr.pxi"
include "parts/tunnel.pxi"
include "parts/sockopt.pxi"
