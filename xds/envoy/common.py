"""Small builders of Envoy messages shared by the waypoint config and the bootstrap."""

from __future__ import annotations

import datetime
import functools

import betterproto2
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    AggregatedConfigSource,
    ApiConfigSource,
    ApiConfigSourceApiType,
    ApiVersion,
    ConfigSource,
    EnvoyInternalAddress,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http2ProtocolOptions,
    KeepaliveSettings,
    SocketAddress,
    TransportSocket,
)
from envoy_data_plane.envoy.config.core.v3 import HttpProtocolOptions as CoreHttpProtocolOptions
from envoy_data_plane.envoy.extensions.transport_sockets.internal_upstream.v3 import (
    InternalUpstreamTransport,
    InternalUpstreamTransportMetadataValueSource,
)
from envoy_data_plane.envoy.extensions.transport_sockets.raw_buffer.v3 import RawBuffer
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    CommonTlsContextCombinedCertificateValidationContext,
    SdsSecretConfig,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsParameters,
    TlsParametersTlsProtocol,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.envoy.type.metadata.v3 import MetadataKind, MetadataKindHost
from envoy_data_plane.google.protobuf import Any

ORIGINAL_DST_METADATA = "envoy.filters.listener.original_dst"
HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Istio's HBONE HTTP/2 settings: 4 MiB stream window, 16 MiB connection window.
HBONE_STREAM_WINDOW = 4 * 1024 * 1024
HBONE_CONNECTION_WINDOW = 16 * 1024 * 1024
# Secret names Istio's proxies ask SDS for: the workload certificate and the root bundle.
SECRET_DEFAULT = "default"
SECRET_ROOTCA = "ROOTCA"
# The bootstrap cluster to the pod's agent (a Unix socket): secrets never come from the control plane.
SDS_CLUSTER = "sds-grpc"


def pack(message: betterproto2.Message) -> Any:
    return Any.pack(message)


def seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


@functools.cache
def ads() -> ConfigSource:
    """Resources come over the ADS stream the bootstrap opened."""
    return ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


def socket_address(ip: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=ip, port_value=port))


def internal_address(listener: str, endpoint_id: str = "") -> Address:
    return Address(envoy_internal_address=EnvoyInternalAddress(server_listener_name=listener, endpoint_id=endpoint_id))


@functools.cache
def internal_upstream_transport(passthrough: tuple[str, ...] = (ORIGINAL_DST_METADATA,)) -> TransportSocket:
    """Hands host metadata (the original destination) across an internal listener hop.

    Cached, like the other constant parts below: building and validating betterproto2 messages
    dominates config generation, and these never change. Callers must not mutate the result.
    """
    return TransportSocket(
        name="internal_upstream",
        typed_config=pack(
            InternalUpstreamTransport(
                passthrough_metadata=[
                    InternalUpstreamTransportMetadataValueSource(kind=MetadataKind(host=MetadataKindHost()), name=name)
                    for name in passthrough
                ],
                transport_socket=TransportSocket(name="raw_buffer", typed_config=pack(RawBuffer())),
            )
        ),
    )


@functools.cache
def agent_sds() -> ConfigSource:
    """Secrets come from the pod's agent over `sds-grpc`, as in Istio's proxies."""
    return ConfigSource(
        api_config_source=ApiConfigSource(
            api_type=ApiConfigSourceApiType.GRPC,
            transport_api_version=ApiVersion.V3,
            grpc_services=[GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=SDS_CLUSTER))],
            set_node_on_first_message_only=True,
        ),
        initial_fetch_timeout=seconds(0),
        resource_api_version=ApiVersion.V3,
    )


def sds(name: str) -> SdsSecretConfig:
    return SdsSecretConfig(name=name, sds_config=agent_sds())


@functools.cache
def mtls_context(trust_domain: str, *, extra_san_prefixes: tuple[str, ...] = ()) -> CommonTlsContext:
    """TLS 1.3 only, ALPN h2, our workload cert, peers verified against the root and trust domain."""
    prefixes = (f"spiffe://{trust_domain}/", *extra_san_prefixes)
    return CommonTlsContext(
        alpn_protocols=["h2"],
        tls_params=TlsParameters(
            tls_minimum_protocol_version=TlsParametersTlsProtocol.TLSv1_3,
            tls_maximum_protocol_version=TlsParametersTlsProtocol.TLSv1_3,
        ),
        tls_certificate_sds_secret_configs=[sds(SECRET_DEFAULT)],
        combined_validation_context=CommonTlsContextCombinedCertificateValidationContext(
            default_validation_context=CertificateValidationContext(
                match_typed_subject_alt_names=[
                    SubjectAltNameMatcher(san_type=SubjectAltNameMatcherSanType.URI, matcher=StringMatcher(prefix=p))
                    for p in prefixes
                ]
            ),
            validation_context_sds_secret_config=sds(SECRET_ROOTCA),
        ),
    )


def hbone_http2_options(*, keepalive: bool = False, max_streams: int | None = None) -> Http2ProtocolOptions:
    return Http2ProtocolOptions(
        allow_connect=True,
        initial_stream_window_size=HBONE_STREAM_WINDOW,
        initial_connection_window_size=HBONE_CONNECTION_WINDOW,
        max_concurrent_streams=max_streams,
        connection_keepalive=KeepaliveSettings(interval=seconds(10), timeout=seconds(20)) if keepalive else None,
    )


def upstream_http2_options(idle_timeout: float, http2: Http2ProtocolOptions) -> dict[str, Any]:
    return {
        HTTP_PROTOCOL_OPTIONS_KEY: pack(
            HttpProtocolOptions(
                common_http_protocol_options=CoreHttpProtocolOptions(idle_timeout=seconds(idle_timeout)),
                explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(http2_protocol_options=http2),
            )
        )
    }
