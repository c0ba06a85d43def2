"""Controller settings: one frozen dataclass per concern, each field with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass, field

from waypoint.names import CLUSTER_DOMAIN


@dataclass(frozen=True)
class RenderSettings:
    # The secure xDS port the waypoint agent relays Envoy's ADS to, with the pod's token
    # (`pyambient controller --secure-address`): waypoints in a cluster never use plaintext 15010.
    xds_address: str = "pyambient-controller.istio-system.svc:15012"
    # The secure port the waypoint agent asks for its certificate (`pyambient controller --secure-address`).
    ca_address: str = "pyambient-controller.istio-system.svc:15012"
    # One image holds both envoy and the `pyambient` CLI that prints the bootstrap. A fixed tag (the project
    # version, as `make images` tags it): Kubernetes then defaults the pull policy to IfNotPresent, so a node
    # holding the local image never pulls, while a cluster with a registry pulls this name (`:latest` would
    # mean Always, which fails without a registry).
    proxy_image: str = "ghcr.io/pyambient/waypoint:0.1.0"
    cluster_domain: str = CLUSTER_DOMAIN


@dataclass(frozen=True)
class WatchSettings:
    # Server-side watch timeout; the apiserver closes the watch after it and we re-watch from the
    # last resourceVersion (cheap), which also bounds how long a half-dead connection can linger.
    server_timeout_seconds: int = 55
    # Client read timeout a little above the server's, so a silent connection is noticed.
    read_timeout_seconds: float = 65.0
    connect_timeout_seconds: float = 5.0
    # Reconnect backoff after errors (apiserver restart): starts small so tests converge quickly,
    # capped so a long outage does not hammer the server.
    backoff_initial_seconds: float = 0.2
    backoff_max_seconds: float = 5.0


@dataclass(frozen=True)
class QueueSettings:
    # Per-key retry backoff after a failed reconcile (e.g. apiserver unavailable).
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    workers: int = 2


@dataclass(frozen=True)
class MeshFeedSettings:
    # Quiet period before the object set is rebuilt into a Mesh: a burst of watch events (initial
    # list, 100 Gateways applied at once) becomes one model build instead of hundreds.
    debounce_seconds: float = 0.05
    # Upper bound on that wait, so a steady trickle of events cannot starve the data plane.
    max_delay_seconds: float = 1.0


@dataclass(frozen=True)
class ControllerSettings:
    render: RenderSettings = field(default_factory=RenderSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    mesh_feed: MeshFeedSettings = field(default_factory=MeshFeedSettings)
