"""TLS 1.3 only on the secure port (15012), with the one knob grpcio has for it.

grpcio's Python API has no minimum TLS version for servers (gRPC core has one, unexposed). What it
does read is `GRPC_SSL_CIPHER_SUITES`: the TLS 1.2 cipher list of every TLS context in the process
(TLS 1.3 suites are not configurable and stay on). We set it to a PSK suite only: gRPC never sets up
a pre-shared key, so no TLS 1.2 handshake can agree on a cipher and a TLS 1.2 client is refused at
the handshake (`NO_SHARED_CIPHER`), whatever the certificate's key type; TLS 1.3 is untouched
(measured with Python `ssl` clients capped at 1.2 and at 1.3: tests/interop/test_secure_port_tls.py).

gRPC core reads the variable once, when `grpc` is first imported, so this module must run before
that: it is imported by `xds/__init__.py` (and thereby by `waypoint` and every control-plane entry
point). A secure port refuses to start if the variable could not take effect (`enforced()` false):
failing closed rather than quietly accepting TLS 1.2.
"""

from __future__ import annotations

import os
import sys

CIPHER_SUITES_VARIABLE = "GRPC_SSL_CIPHER_SUITES"
# Any PSK-only list does: gRPC has no PSK callback, so these are never negotiable.
TLS12_NOTHING = "ECDHE-PSK-CHACHA20-POLY1305"

_grpc_loaded_first = "grpc" in sys.modules
_preset = os.environ.get(CIPHER_SUITES_VARIABLE)
if not _grpc_loaded_first and _preset is None:
    os.environ[CIPHER_SUITES_VARIABLE] = TLS12_NOTHING


def enforced() -> bool:
    """True when this process's gRPC negotiates TLS 1.3 only."""
    # What grpc read is what the variable held when it was imported: ours, or a preset value.
    return not _grpc_loaded_first and (_preset is None or _preset == TLS12_NOTHING)


def why_not() -> str:
    if _grpc_loaded_first:
        return f"grpc was imported before xds.tls13 could set {CIPHER_SUITES_VARIABLE}"
    return f"{CIPHER_SUITES_VARIABLE} was preset to {_preset!r}, not {TLS12_NOTHING!r}"
