"""pyambient package.

Imports `xds` first so `xds.tls13` configures gRPC (TLS 1.3 only) before any command imports grpc.
"""

import xds as xds
