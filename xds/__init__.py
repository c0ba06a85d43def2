"""xds package.

`xds.tls13` first: it must set gRPC's cipher list before anything imports grpc.
"""

from xds import tls13 as tls13
