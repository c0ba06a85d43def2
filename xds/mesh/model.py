"""The mesh model: an immutable snapshot of what the mesh is, built from Kubernetes objects.

Everything downstream (waypoint Envoy config, ztunnel workload state) is a pure function of a
`Mesh`. Two sources build it from the same objects users apply: YAML files in a directory
(`xds.mesh.files`) and a live API server (the controller in `waypoint/`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from xds.ca import DEFAULT_TRUST_DOMAIN, spiffe_id

CLUSTER_DOMAIN = "cluster.local"
HBONE_PORT = 15008
WAYPOINT_CLASS = "istio-waypoint"
ROOT_NAMESPACE = "istio-system"  # Istio's default mesh root namespace: mesh-wide policies live here
WAYPOINT_CONTROLLER = "istio.io/mesh-controller"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

# Binding labels and annotations (see README: "Waypoint binding").
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
FOR_SERVICE_ACCOUNT = "istio.io/for-service-account"
DATAPLANE_MODE = "istio.io/dataplane-mode"


class Protocol(enum.Enum):
    """What a service port speaks, as Istio infers it (appProtocol, then the port name prefix)."""

    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"
    TCP = "tcp"
    TLS = "tls"
    UDP = "udp"
    UNKNOWN = "unknown"

    GRPC_WEB = "grpc-web"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_http2(self) -> bool:
        """Spoken as HTTP/2 to the backend (Istio's `IsHTTP2`)."""
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)


class TrafficType(enum.Enum):
    """`istio.io/waypoint-for`: which traffic a waypoint serves."""

    SERVICE = "service"
    WORKLOAD = "workload"
    ALL = "all"
    NONE = "none"

    @property
    def serves_services(self) -> bool:
        return self in (TrafficType.SERVICE, TrafficType.ALL)

    @property
    def serves_workloads(self) -> bool:
        return self in (TrafficType.WORKLOAD, TrafficType.ALL)


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ModelError:
    """An input the model could not use, and why; reported, never raised."""

    ref: ObjectRef
    field: str
    message: str
    source: str = ""  # the file it came from, in local mode

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.ref}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ambient(self) -> bool:
        return self.labels.get(DATAPLANE_MODE) == "ambient"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int  # 0 when the targetPort is a name: it is then resolved per pod (see Mesh.target_port)
    protocol: Protocol
    target_port_name: str = ""
    l4_protocol: str = "TCP"  # TCP | UDP | SCTP: a named targetPort only matches a container port of this protocol


@dataclass(frozen=True)
class NamedPort:
    """A pod's `containers[].ports[]` entry (or an EndpointSlice's `ports[]` entry): what a name resolves to."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    vips: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    creation: str = ""

    @property
    def hostname(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Service", self.namespace, self.name)

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True)
class Workload:
    """A pod (or any addressable endpoint) with its identity."""

    namespace: str
    name: str
    ip: str
    service_account: str = "default"
    node: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True
    captured: bool = False  # in the ambient mesh: reached over HBONE on <ip>:15008
    uid: str = ""
    container_ports: tuple[NamedPort, ...] = ()

    def named_port(self, name: str, protocol: str) -> int | None:
        """Kubernetes' `FindPort`: the container port with this name and protocol, if the pod declares one."""
        return next((p.port for p in self.container_ports if p.name == name and p.protocol == protocol), None)

    @property
    def identity(self) -> str:
        return spiffe_id(self.namespace, self.service_account)

    @property
    def canonical_name(self) -> str:
        return (
            self.labels.get("service.istio.io/canonical-name")
            or self.labels.get("app.kubernetes.io/name")
            or self.labels.get("app")
            or self.name
        )

    @property
    def canonical_revision(self) -> str:
        return (
            self.labels.get("service.istio.io/canonical-revision")
            or self.labels.get("app.kubernetes.io/version")
            or self.labels.get("version")
            or "latest"
        )

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Pod", self.namespace, self.name)


@dataclass(frozen=True)
class Waypoint:
    """A Gateway of class `istio-waypoint`."""

    namespace: str
    name: str
    traffic_type: TrafficType
    for_service_account: str | None = None  # the seeds' per-account waypoint
    service_account: str = ""  # the waypoint's own account (its identity)
    allowed_routes_from: str = "Same"
    listener_valid: bool = True
    addresses: tuple[str, ...] = ()  # status.addresses IPs, when programmed
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def hostname(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"

    @property
    def identity(self) -> str:
        return spiffe_id(self.namespace, self.service_account or self.name)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Gateway", self.namespace, self.name)


@dataclass(frozen=True)
class BackendRef:
    namespace: str
    name: str
    port: int | None
    weight: int


@dataclass(frozen=True)
class PathMatch:
    kind: str  # "PathPrefix" | "Exact" | "RegularExpression"
    value: str


@dataclass(frozen=True)
class ValueMatch:
    """One header or query-parameter condition of an HTTPRoute match (header names are lower-cased)."""

    name: str
    kind: str  # "Exact" | "RegularExpression"
    value: str


@dataclass(frozen=True)
class HTTPMatch:
    """One `matches[]` entry: every condition must hold (AND). The matches of a rule are ORed."""

    path: PathMatch = PathMatch("PathPrefix", "/")
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()
    method: str | None = None


@dataclass(frozen=True)
class HeaderModifier:
    """A RequestHeaderModifier / ResponseHeaderModifier filter: names lower-cased, in the order written."""

    set: tuple[tuple[str, str], ...] = ()  # replace (or add) the header
    add: tuple[tuple[str, str], ...] = ()  # append a value
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteRule:
    matches: tuple[HTTPMatch, ...]  # never empty: the Gateway API default is one PathPrefix "/" match
    backends: tuple[BackendRef, ...]
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    timeout: float | None = None  # seconds; None: no timeout (Envoy `timeout: 0s`)


@dataclass(frozen=True)
class HTTPRoute:
    namespace: str
    name: str
    parents: tuple[tuple[str, str, int | None], ...]  # Service parentRefs: (namespace, name, port)
    rules: tuple[RouteRule, ...]
    creation: str = ""


class PolicyAction(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


# `when` keys ztunnel can check (Istio's `l4WhenAttributes`); every other key needs a waypoint.
L4_CONDITION_KEYS = frozenset(
    {"source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"}
)
# Keys Istio accepts as they are; `request.headers[...]` and `request.auth.claims[...]` take a name in brackets.
CONDITION_KEYS = L4_CONDITION_KEYS | frozenset(
    {
        "remote.ip",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    }
)
CONDITION_KEY_PREFIXES = ("request.headers[", "request.auth.claims[")


@dataclass(frozen=True)
class Source:
    """One `from[].source`: its fields are AND-ed, the values of one field OR-ed; empty = any."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()

    @property
    def http_fields(self) -> tuple[str, ...]:
        """The fields set here that only an HTTP proxy can see (API names, for status messages)."""
        named = (
            ("remoteIpBlocks", self.remote_ip_blocks),
            ("notRemoteIpBlocks", self.not_remote_ip_blocks),
            ("requestPrincipals", self.request_principals),
            ("notRequestPrincipals", self.not_request_principals),
        )
        return tuple(name for name, values in named if values)


@dataclass(frozen=True)
class Operation:
    """One `to[].operation`: fields AND-ed, values OR-ed; empty = any."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()

    @property
    def http_fields(self) -> tuple[str, ...]:
        named = (
            ("hosts", self.hosts),
            ("notHosts", self.not_hosts),
            ("methods", self.methods),
            ("notMethods", self.not_methods),
            ("paths", self.paths),
            ("notPaths", self.not_paths),
        )
        return tuple(name for name, values in named if values)


@dataclass(frozen=True)
class Condition:
    """One `when[]` entry: the key's value is one of `values` (if any) and none of `not_values`."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()

    @property
    def is_l4(self) -> bool:
        return self.key in L4_CONDITION_KEYS


@dataclass(frozen=True)
class PolicyRule:
    """One `rules[]` entry: ANY of `sources` AND ANY of `operations` AND ALL `conditions`.

    An empty `sources`/`operations` means the rule has no `from`/`to` (any); the parser refuses an
    explicitly empty list, as Istio's validation does.
    """

    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @property
    def http_fields(self) -> tuple[str, ...]:
        """Every HTTP-only attribute the rule uses (field names and `when` keys), sorted, no repeats."""
        found = {f for s in self.sources for f in s.http_fields}
        found |= {f for o in self.operations for f in o.http_fields}
        found |= {c.key for c in self.conditions if not c.is_l4}
        return tuple(sorted(found))


@dataclass(frozen=True)
class PolicyTargetRef:
    group: str  # "" for core (Service)
    kind: str  # Gateway | GatewayClass | Service
    name: str


@dataclass(frozen=True)
class AuthorizationPolicy:
    namespace: str
    name: str
    action: PolicyAction
    selector: Mapping[str, str] | None  # None: namespace-wide (or mesh-wide in the root namespace)
    rules: tuple[PolicyRule, ...]
    target_refs: tuple[PolicyTargetRef, ...] = ()  # policies attached to a waypoint / a service / the class
    provider: str = ""  # CUSTOM: `provider.name`

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("AuthorizationPolicy", self.namespace, self.name)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PolicyCondition:
    """A status condition Istio writes on an AuthorizationPolicy (`ZtunnelAccepted`, `WaypointAccepted`)."""

    type: str
    status: bool
    reason: str
    message: str


class MtlsMode(enum.Enum):
    """`PeerAuthentication.mtls.mode`; UNSET (or no `mtls`) inherits from the level above."""

    UNSET = "UNSET"
    STRICT = "STRICT"
    PERMISSIVE = "PERMISSIVE"
    DISABLE = "DISABLE"


@dataclass(frozen=True)
class PeerAuthentication:
    namespace: str
    name: str
    mode: MtlsMode = MtlsMode.UNSET
    selector: Mapping[str, str] | None = None  # None (or empty): namespace-wide, mesh-wide in the root namespace
    port_level: Mapping[int, MtlsMode] = field(default_factory=dict)  # keyed by target (container) port
    creation: str = ""  # RFC 3339; the oldest policy of a level wins

    @property
    def age_key(self) -> tuple[str, str]:
        """Oldest first; ties (and local files without timestamps) broken by name, deterministically."""
        return (self.creation, self.name)


@dataclass(frozen=True)
class SliceEndpoint:
    """An address of an EndpointSlice of a Service without a selector, with the slice's ports."""

    workload: Workload
    ports: tuple[NamedPort, ...]
    ready: bool = True


@dataclass(frozen=True)
class JwtHeader:
    """`fromHeaders[]`: where a token is read from, and the prefix stripped before it (e.g. "Bearer ")."""

    name: str
    prefix: str = ""


@dataclass(frozen=True)
class ClaimToHeader:
    """`outputClaimToHeaders[]`: a claim copied into a request header."""

    header: str
    claim: str


@dataclass(frozen=True)
class JwksUri:
    """A parsed `jwksUri` (Istio's ParseJwksURI: http or https, default port 80/443)."""

    uri: str
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


@dataclass(frozen=True)
class JwtRule:
    """One `jwtRules[]` entry of a RequestAuthentication."""

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str = ""  # inline JWKS (JSON)
    jwks_uri: JwksUri | None = None
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    forward_original_token: bool = False
    timeout: float = 5.0  # seconds; Istio's default for fetching the JWKS
    space_delimited_claims: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RequestAuthentication:
    """security.istio.io RequestAuthentication; waypoints apply those attached with `targetRefs`."""

    namespace: str
    name: str
    target_refs: tuple[tuple[str, str], ...]  # (kind, name): Gateway, Service, or GatewayClass istio-waypoint
    jwt_rules: tuple[JwtRule, ...]


@dataclass(frozen=True)
class Mesh:
    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    waypoints: tuple[Waypoint, ...] = ()
    routes: tuple[HTTPRoute, ...] = ()
    policies: tuple[AuthorizationPolicy, ...] = ()
    peer_authentications: tuple[PeerAuthentication, ...] = ()
    request_authentications: tuple[RequestAuthentication, ...] = ()
    # (namespace, service) -> its EndpointSlices' addresses, for Services without a selector only
    slice_endpoints: Mapping[tuple[str, str], tuple[SliceEndpoint, ...]] = field(default_factory=dict)
    errors: tuple[ModelError, ...] = ()
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    root_namespace: str = ROOT_NAMESPACE  # policies here without a selector are mesh-wide

    @cached_property
    def policy_status(self) -> Mapping[str, tuple[PolicyCondition, ...]]:
        """`namespace/name` -> Istio's status conditions for that AuthorizationPolicy (one pure function)."""
        from xds.mesh.policy_status import policy_conditions  # it reads the model: imported when first asked

        return policy_conditions(self)

    def service(self, namespace: str, name: str) -> Service | None:
        return next((s for s in self.services if s.namespace == namespace and s.name == name), None)

    def waypoint(self, namespace: str, name: str) -> Waypoint | None:
        return next((w for w in self.waypoints if w.namespace == namespace and w.name == name), None)

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.get(namespace)
        return ns.labels if ns else {}

    def endpoints(self, service: Service) -> tuple[Workload, ...]:
        """Ready workloads selected by the service, in a stable order."""
        return self.service_endpoints.get((service.namespace, service.name), ())

    @cached_property
    def service_endpoints(self) -> Mapping[tuple[str, str], tuple[Workload, ...]]:
        """(namespace, service name) -> its ready workloads; computed once per mesh snapshot."""
        index: dict[tuple[str, str], tuple[Workload, ...]] = {}
        for service in self.services:
            if not service.selector:
                # Kubernetes manages no endpoints for these: the user's EndpointSlices are the endpoints
                slices = self.slice_endpoints.get((service.namespace, service.name), ())
                found = {e.workload.ip: e.workload for e in slices if e.ready and e.workload.ready}
                index[(service.namespace, service.name)] = tuple(found.values())
                continue
            selector = tuple(service.selector.items())
            index[(service.namespace, service.name)] = tuple(
                w
                for w in self.workloads_by_namespace.get(service.namespace, ())
                if w.ready and all(w.labels.get(k) == v for k, v in selector)
            )
        return index

    def target_port(self, service: Service, port: ServicePort, workload: Workload) -> int | None:
        """The port `workload` serves `port` of `service` on; None when it is not an endpoint for that port
        (a named targetPort the pod does not declare, or a slice without that port), as in Kubernetes."""
        if not service.selector:
            # an EndpointSlice port carries the Service port's name (an address may be in several slices)
            for p in self.slice_ports.get((service.namespace, service.name, workload.ip), ()):
                if p.name == port.name and p.protocol == port.l4_protocol:
                    return p.port
            return None
        if port.target_port_name:
            return workload.named_port(port.target_port_name, port.l4_protocol)
        return port.target_port

    @cached_property
    def slice_ports(self) -> Mapping[tuple[str, str, str], tuple[NamedPort, ...]]:
        """(namespace, selector-less service, address) -> the ports its EndpointSlices give that address."""
        index: dict[tuple[str, str, str], tuple[NamedPort, ...]] = {}
        for (ns, name), endpoints in self.slice_endpoints.items():
            for e in endpoints:
                key = (ns, name, e.workload.ip)
                index[key] = index.get(key, ()) + e.ports
        return index

    def port_endpoints(self, service: Service, port: ServicePort) -> tuple[tuple[Workload, int], ...]:
        """Ready endpoints of one service port, each with the target port it serves it on."""
        out = []
        for w in self.endpoints(service):
            target = self.target_port(service, port, w)
            if target is not None:
                out.append((w, target))
        return tuple(out)

    @cached_property
    def workload_services(self) -> Mapping[tuple[str, str], tuple[Service, ...]]:
        """(namespace, pod name) -> the services selecting it."""
        index: dict[tuple[str, str], list[Service]] = {}
        for service in self.services:
            for w in self.endpoints(service):
                index.setdefault((w.namespace, w.name), []).append(service)
        return {k: tuple(v) for k, v in index.items()}

    @cached_property
    def label_mode_namespaces(self) -> frozenset[str]:
        """Namespaces where some Namespace, Service or Pod carries `istio.io/use-waypoint` (binding rule)."""
        found = {ns.name for ns in self.namespaces.values() if USE_WAYPOINT in ns.labels}
        found |= {s.namespace for s in self.services if USE_WAYPOINT in s.labels}
        found |= {w.namespace for w in self.workloads if USE_WAYPOINT in w.labels}
        return frozenset(found)

    @cached_property
    def peer_authentications_by_namespace(self) -> Mapping[str, tuple[PeerAuthentication, ...]]:
        index: dict[str, list[PeerAuthentication]] = {}
        for p in self.peer_authentications:
            index.setdefault(p.namespace, []).append(p)
        return {ns: tuple(ps) for ns, ps in index.items()}

    @cached_property
    def workloads_by_namespace(self) -> Mapping[str, tuple[Workload, ...]]:
        index: dict[str, list[Workload]] = {}
        for w in self.workloads:
            index.setdefault(w.namespace, []).append(w)
        return {ns: tuple(ws) for ns, ws in index.items()}

    def waypoint_workloads(self, waypoint: Waypoint) -> tuple[Workload, ...]:
        """The waypoint's own pods (how ztunnels reach it)."""
        return tuple(
            w
            for w in self.workloads_by_namespace.get(waypoint.namespace, ())
            if w.labels.get(GATEWAY_NAME_LABEL) == waypoint.name and w.ready
        )
