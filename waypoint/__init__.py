"""waypoint package.

Imports `xds` first so `xds.tls13` configures gRPC before the agent and controller import grpc.
"""

import xds as xds
