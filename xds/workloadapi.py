"""Istio's ambient config API as betterproto2 messages: `istio.workload` and `istio.security`.

Hand-declared mirrors of Istio's `workload.proto` and `authorization.proto` (as vendored by ztunnel),
with the same package names, message names and field numbers, so the bytes are wire-compatible with
istiod and the real ztunnel. Declared the way `envoy-data-plane` (betterproto2 0.9) declares its
generated messages and registered in `envoy_data_plane.message_pool.default_message_pool`, so
`google.protobuf.Any.pack(msg)` yields the right type URL:

- `type.googleapis.com/istio.workload.Address`   (`ADDRESS_TYPE_URL`)
- `type.googleapis.com/istio.security.Authorization`   (`AUTHORIZATION_TYPE_URL`)

Only fields ztunnel actually reads are declared (unknown fields are skipped on parse).
We hand-declare instead of running protoc because the protos are not packaged anywhere on PyPI for
betterproto2 and the toolchain would be a build-time dependency for ~30 small messages.
"""

from __future__ import annotations

from typing import Any

import betterproto2
from envoy_data_plane.google import protobuf as pb
from envoy_data_plane.message_pool import default_message_pool
from pydantic import model_validator
from pydantic.dataclasses import dataclass

__all__ = [
    "ADDRESS_TYPE_URL",
    "AUTHORIZATION_TYPE_URL",
    "Address",
    "AppProtocol",
    "ApplicationTunnel",
    "ApplicationTunnelProtocol",
    "Authorization",
    "AuthzAction",
    "AuthzAddress",
    "AuthzScope",
    "Clause",
    "GatewayAddress",
    "IPFamilies",
    "LoadBalancing",
    "LoadBalancingHealthPolicy",
    "LoadBalancingMode",
    "LoadBalancingScope",
    "Locality",
    "Match",
    "NamespacedHostname",
    "NetworkAddress",
    "NetworkMode",
    "Port",
    "PortList",
    "Rule",
    "Service",
    "ServiceAccountMatch",
    "ServiceVisibility",
    "StringMatch",
    "TunnelProtocol",
    "Workload",
    "WorkloadStatus",
    "WorkloadType",
]

ADDRESS_TYPE_URL = "type.googleapis.com/istio.workload.Address"
AUTHORIZATION_TYPE_URL = "type.googleapis.com/istio.security.Authorization"

_W = "istio.workload"
_S = "istio.security"
_CFG: Any = {"extra": "forbid"}


def _enum(n: int, cls: type[betterproto2.Enum]) -> Any:
    return betterproto2.field(n, betterproto2.TYPE_ENUM, default_factory=lambda: cls(0))


def _str(n: int) -> Any:
    return betterproto2.field(n, betterproto2.TYPE_STRING)


def _strs(n: int) -> Any:
    return betterproto2.field(n, betterproto2.TYPE_STRING, repeated=True)


def _u32(n: int) -> Any:
    return betterproto2.field(n, betterproto2.TYPE_UINT32)


def _msg(n: int, group: str | None = None) -> Any:
    return betterproto2.field(n, betterproto2.TYPE_MESSAGE, optional=True, group=group)


def _msgs(n: int) -> Any:
    return betterproto2.field(n, betterproto2.TYPE_MESSAGE, repeated=True)


# ---------------------------------------------------------------------------------------------- enums
class TunnelProtocol(betterproto2.Enum):
    NONE = 0
    HBONE = 1
    LEGACY_ISTIO_MTLS = 2


class WorkloadStatus(betterproto2.Enum):
    HEALTHY = 0
    UNHEALTHY = 1


class WorkloadType(betterproto2.Enum):
    DEPLOYMENT = 0
    CRONJOB = 1
    POD = 2
    JOB = 3


class NetworkMode(betterproto2.Enum):
    STANDARD = 0
    HOST_NETWORK = 1


class AppProtocol(betterproto2.Enum):
    UNKNOWN = 0
    HTTP11 = 1
    HTTP2 = 2
    GRPC = 3


class ApplicationTunnelProtocol(betterproto2.Enum):
    NONE = 0
    PROXY = 1


class IPFamilies(betterproto2.Enum):
    AUTOMATIC = 0
    IPV4_ONLY = 1
    IPV6_ONLY = 2
    DUAL = 3


class ServiceVisibility(betterproto2.Enum):
    PUBLIC = 0
    NAMESPACE = 1


class LoadBalancingScope(betterproto2.Enum):
    UNSPECIFIED_SCOPE = 0
    REGION = 1
    ZONE = 2
    SUBZONE = 3
    NODE = 4
    CLUSTER = 5
    NETWORK = 6


class LoadBalancingMode(betterproto2.Enum):
    UNSPECIFIED_MODE = 0
    STRICT = 1
    FAILOVER = 2
    PASSTHROUGH = 3


class LoadBalancingHealthPolicy(betterproto2.Enum):
    ONLY_HEALTHY = 0
    ALLOW_ALL = 1


class AuthzScope(betterproto2.Enum):
    GLOBAL = 0
    NAMESPACE = 1
    WORKLOAD_SELECTOR = 2


class AuthzAction(betterproto2.Enum):
    ALLOW = 0
    DENY = 1


# -------------------------------------------------------------------------------- istio.workload
@dataclass(eq=False, repr=False, config=_CFG)
class NetworkAddress(betterproto2.Message):
    network: str = _str(1)
    address: bytes = betterproto2.field(2, betterproto2.TYPE_BYTES)
    length: int | None = betterproto2.field(3, betterproto2.TYPE_UINT32, optional=True)


@dataclass(eq=False, repr=False, config=_CFG)
class NamespacedHostname(betterproto2.Message):
    namespace: str = _str(1)
    hostname: str = _str(2)


@dataclass(eq=False, repr=False, config=_CFG)
class GatewayAddress(betterproto2.Message):
    """Oneofs: destination (hostname | address)."""

    hostname: NamespacedHostname | None = _msg(1, "destination")
    address: NetworkAddress | None = _msg(2, "destination")
    hbone_mtls_port: int = _u32(3)

    @model_validator(mode="after")
    def check_oneof(cls, values: Any) -> Any:  # noqa: N805 - pydantic validator signature
        return cls._validate_field_groups(values)


@dataclass(eq=False, repr=False, config=_CFG)
class Port(betterproto2.Message):
    service_port: int = _u32(1)
    target_port: int = _u32(2)
    app_protocol: AppProtocol = _enum(3, AppProtocol)


@dataclass(eq=False, repr=False, config=_CFG)
class PortList(betterproto2.Message):
    ports: list[Port] = _msgs(1)


@dataclass(eq=False, repr=False, config=_CFG)
class Locality(betterproto2.Message):
    region: str = _str(1)
    zone: str = _str(2)
    subzone: str = _str(3)


@dataclass(eq=False, repr=False, config=_CFG)
class LoadBalancing(betterproto2.Message):
    routing_preference: list[LoadBalancingScope] = betterproto2.field(1, betterproto2.TYPE_ENUM, repeated=True)
    mode: LoadBalancingMode = _enum(2, LoadBalancingMode)
    health_policy: LoadBalancingHealthPolicy = _enum(3, LoadBalancingHealthPolicy)


@dataclass(eq=False, repr=False, config=_CFG)
class ApplicationTunnel(betterproto2.Message):
    protocol: ApplicationTunnelProtocol = _enum(1, ApplicationTunnelProtocol)
    port: int = _u32(2)


@dataclass(eq=False, repr=False, config=_CFG)
class Workload(betterproto2.Message):
    name: str = _str(1)
    namespace: str = _str(2)
    addresses: list[bytes] = betterproto2.field(3, betterproto2.TYPE_BYTES, repeated=True)
    network: str = _str(4)
    tunnel_protocol: TunnelProtocol = _enum(5, TunnelProtocol)
    trust_domain: str = _str(6)
    service_account: str = _str(7)
    waypoint: GatewayAddress | None = _msg(8)
    node: str = _str(9)
    canonical_name: str = _str(10)
    canonical_revision: str = _str(11)
    workload_type: WorkloadType = _enum(12, WorkloadType)
    workload_name: str = _str(13)
    native_tunnel: bool = betterproto2.field(14, betterproto2.TYPE_BOOL)
    authorization_policies: list[str] = _strs(16)
    status: WorkloadStatus = _enum(17, WorkloadStatus)
    cluster_id: str = _str(18)
    network_gateway: GatewayAddress | None = _msg(19)
    uid: str = _str(20)
    hostname: str = _str(21)
    services: dict[str, PortList] = betterproto2.field(
        22,
        betterproto2.TYPE_MAP,
        map_meta=betterproto2.map_meta(betterproto2.TYPE_STRING, betterproto2.TYPE_MESSAGE),
    )
    application_tunnel: ApplicationTunnel | None = _msg(23)
    locality: Locality | None = _msg(24)
    network_mode: NetworkMode = _enum(25, NetworkMode)
    capacity: int | None = betterproto2.field(
        27, betterproto2.TYPE_MESSAGE, unwrap=lambda: pb.UInt32Value, optional=True
    )


@dataclass(eq=False, repr=False, config=_CFG)
class Service(betterproto2.Message):
    name: str = _str(1)
    namespace: str = _str(2)
    hostname: str = _str(3)
    addresses: list[NetworkAddress] = _msgs(4)
    ports: list[Port] = _msgs(5)
    subject_alt_names: list[str] = _strs(6)
    waypoint: GatewayAddress | None = _msg(7)
    load_balancing: LoadBalancing | None = _msg(8)
    ip_families: IPFamilies = _enum(9, IPFamilies)
    canonical: bool = betterproto2.field(11, betterproto2.TYPE_BOOL)
    ingress_use_waypoint: bool = betterproto2.field(12, betterproto2.TYPE_BOOL)
    visibility: ServiceVisibility = _enum(14, ServiceVisibility)


@dataclass(eq=False, repr=False, config=_CFG)
class Address(betterproto2.Message):
    """`istio.workload.Address`; oneofs: type (workload | service)."""

    workload: Workload | None = _msg(1, "type")
    service: Service | None = _msg(2, "type")

    @model_validator(mode="after")
    def check_oneof(cls, values: Any) -> Any:  # noqa: N805
        return cls._validate_field_groups(values)


# -------------------------------------------------------------------------------- istio.security
@dataclass(eq=False, repr=False, config=_CFG)
class StringMatch(betterproto2.Message):
    """Oneofs: match_type (exact | prefix | suffix | presence)."""

    exact: str | None = betterproto2.field(1, betterproto2.TYPE_STRING, optional=True, group="match_type")
    prefix: str | None = betterproto2.field(2, betterproto2.TYPE_STRING, optional=True, group="match_type")
    suffix: str | None = betterproto2.field(3, betterproto2.TYPE_STRING, optional=True, group="match_type")
    presence: pb.Empty | None = _msg(4, "match_type")

    @model_validator(mode="after")
    def check_oneof(cls, values: Any) -> Any:  # noqa: N805
        return cls._validate_field_groups(values)


@dataclass(eq=False, repr=False, config=_CFG)
class AuthzAddress(betterproto2.Message):
    """`istio.security.Address`: a CIDR (raw address bytes + prefix length)."""

    address: bytes = betterproto2.field(1, betterproto2.TYPE_BYTES)
    length: int = _u32(2)


@dataclass(eq=False, repr=False, config=_CFG)
class ServiceAccountMatch(betterproto2.Message):
    namespace: str = _str(1)
    service_account: str = _str(2)


@dataclass(eq=False, repr=False, config=_CFG)
class Match(betterproto2.Message):
    namespaces: list[StringMatch] = _msgs(1)
    not_namespaces: list[StringMatch] = _msgs(2)
    principals: list[StringMatch] = _msgs(3)
    not_principals: list[StringMatch] = _msgs(4)
    source_ips: list[AuthzAddress] = _msgs(5)
    not_source_ips: list[AuthzAddress] = _msgs(6)
    destination_ips: list[AuthzAddress] = _msgs(7)
    not_destination_ips: list[AuthzAddress] = _msgs(8)
    destination_ports: list[int] = betterproto2.field(9, betterproto2.TYPE_UINT32, repeated=True)
    not_destination_ports: list[int] = betterproto2.field(10, betterproto2.TYPE_UINT32, repeated=True)
    service_accounts: list[ServiceAccountMatch] = _msgs(11)
    not_service_accounts: list[ServiceAccountMatch] = _msgs(12)


@dataclass(eq=False, repr=False, config=_CFG)
class Clause(betterproto2.Message):
    matches: list[Match] = _msgs(2)


@dataclass(eq=False, repr=False, config=_CFG)
class Rule(betterproto2.Message):
    clauses: list[Clause] = _msgs(1)


@dataclass(eq=False, repr=False, config=_CFG)
class Authorization(betterproto2.Message):
    name: str = _str(1)
    namespace: str = _str(2)
    scope: AuthzScope = _enum(3, AuthzScope)
    action: AuthzAction = _enum(4, AuthzAction)
    rules: list[Rule] = _msgs(5)
    dry_run: bool = betterproto2.field(6, betterproto2.TYPE_BOOL)


for _pkg, _name, _cls in (
    (_W, "NetworkAddress", NetworkAddress),
    (_W, "NamespacedHostname", NamespacedHostname),
    (_W, "GatewayAddress", GatewayAddress),
    (_W, "Port", Port),
    (_W, "PortList", PortList),
    (_W, "Locality", Locality),
    (_W, "LoadBalancing", LoadBalancing),
    (_W, "ApplicationTunnel", ApplicationTunnel),
    (_W, "Workload", Workload),
    (_W, "Service", Service),
    (_W, "Address", Address),
    (_S, "StringMatch", StringMatch),
    (_S, "Address", AuthzAddress),
    (_S, "ServiceAccountMatch", ServiceAccountMatch),
    (_S, "Match", Match),
    (_S, "Clause", Clause),
    (_S, "Rule", Rule),
    (_S, "Authorization", Authorization),
):
    if _cls not in default_message_pool.type_to_url:  # idempotent under importlib.reload
        default_message_pool.register_message(_pkg, _name, _cls)
