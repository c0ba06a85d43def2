"""Names the waypoint controller shares with Istio: class, controller, labels, field manager, ports.

Values follow istiod (reference §1); they are part of the contract with users' manifests and tools.
"""

from __future__ import annotations

# Shared with the mesh model (the layer below): one definition each, re-exported here.
from xds.mesh.model import CLUSTER_DOMAIN as CLUSTER_DOMAIN
from xds.mesh.model import DATAPLANE_MODE as DATAPLANE_MODE_LABEL  # noqa: F401 - re-export
from xds.mesh.model import FOR_SERVICE_ACCOUNT as FOR_SERVICE_ACCOUNT
from xds.mesh.model import GATEWAY_NAME_LABEL as GATEWAY_NAME_LABEL
from xds.mesh.model import HBONE_PORT as HBONE_PORT
from xds.mesh.model import WAYPOINT_CLASS as WAYPOINT_CLASS
from xds.mesh.model import WAYPOINT_CONTROLLER as WAYPOINT_CONTROLLER

# The managed label value is the controller name with `/` replaced by `-`.
MANAGED_LABEL = "gateway.istio.io/managed"
MANAGED_VALUE = "istio.io-mesh-controller"
# The default-class controller name, used by istiod as the server-side-apply field manager.
FIELD_MANAGER = "istio.io/gateway-controller"

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY_CLASS_NAME_LABEL = "gateway.networking.k8s.io/gateway-class-name"
NAME_OVERRIDE = "gateway.istio.io/name-override"
SERVICE_ACCOUNT_OVERRIDE = "gateway.istio.io/service-account"
CONTROLLER_VERSION = "gateway.istio.io/controller-version"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

STATUS_PORT = 15021
METRICS_PORT = 15020
ENVOY_PROMETHEUS_PORT = 15090
HBONE_LISTENER_NAME = "mesh"
HBONE_PROTOCOL = "HBONE"
