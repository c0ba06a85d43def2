"""Names the waypoint controller shares with Istio: class, controller, labels, field manager, ports.

Values follow istiod (reference §1); they are part of the contract with users' manifests and tools.
"""

from __future__ import annotations

WAYPOINT_CLASS = "istio-waypoint"
WAYPOINT_CONTROLLER = "istio.io/mesh-controller"
# The managed label value is the controller name with `/` replaced by `-`.
MANAGED_LABEL = "gateway.istio.io/managed"
MANAGED_VALUE = "istio.io-mesh-controller"
# The default-class controller name, used by istiod as the server-side-apply field manager.
FIELD_MANAGER = "istio.io/gateway-controller"

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_CLASS_NAME_LABEL = "gateway.networking.k8s.io/gateway-class-name"
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"
FOR_SERVICE_ACCOUNT = "istio.io/for-service-account"
NAME_OVERRIDE = "gateway.istio.io/name-override"
SERVICE_ACCOUNT_OVERRIDE = "gateway.istio.io/service-account"
CONTROLLER_VERSION = "gateway.istio.io/controller-version"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

HBONE_PORT = 15008
STATUS_PORT = 15021
METRICS_PORT = 15020
ENVOY_PROMETHEUS_PORT = 15090
HBONE_LISTENER_NAME = "mesh"
HBONE_PROTOCOL = "HBONE"
CLUSTER_DOMAIN = "cluster.local"
