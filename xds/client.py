"""Delta ADS client: a sans-IO core (`DeltaClient`) plus a thin grpc.aio shell (`run_delta_ads`).

The core follows h2's contract: responses go in (`receive(resp) -> Update`), requests come out
(`initial_requests()`, `ack(update)`, `nack(update, message)`). It tracks per-type resource versions
(sent as `initial_resource_versions` on reconnect, as ztunnel does) and decodes `Any` payloads. Whether
an update is acceptable is the caller's decision: it applies the update and then asks for an ACK, or a
NACK naming the error.

Wire facts (ztunnel `src/xds/client.rs`): one watch per type URL on
`envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources`; the initial request
has an empty subscribe list (wildcard); ACK = a request with `response_nonce`; NACK also sets
`error_detail.message`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import betterproto2
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DeltaDiscoveryResponse
from envoy_data_plane.google.protobuf import Any as AnyMsg
from envoy_data_plane.google.rpc import Status

from xds import workloadapi as _workloadapi  # noqa: F401 - registers istio types in the message pool
from xds.workloadapi import ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL

log = logging.getLogger("xds.client")

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
ZTUNNEL_TYPE_URLS: tuple[str, ...] = (ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL)
_INVALID_ARGUMENT = 3


class XdsDecodeError(ValueError):
    """A resource in a response could not be decoded; the response must be NACKed."""


@dataclass(frozen=True)
class Update:
    """One decoded DeltaDiscoveryResponse: what changed for one type URL."""

    type_url: str
    nonce: str
    updated: dict[str, betterproto2.Message]
    versions: dict[str, str]
    removed: tuple[str, ...]
    error: str | None = None  # set when decoding failed; the caller should NACK with it


@dataclass
class _TypeState:
    versions: dict[str, str] = field(default_factory=dict)


class DeltaClient:
    """Sans-IO delta xDS client state for a set of type URLs."""

    def __init__(self, node: Node, type_urls: Iterable[str] = ZTUNNEL_TYPE_URLS) -> None:
        self.node = node
        self.types: dict[str, _TypeState] = {t: _TypeState() for t in type_urls}

    def initial_requests(self) -> list[DeltaDiscoveryRequest]:
        """The first request of each type on a (re)connected stream: wildcard subscribe + known versions."""
        return [
            DeltaDiscoveryRequest(node=self.node, type_url=t, initial_resource_versions=dict(st.versions))
            for t, st in self.types.items()
        ]

    def receive(self, resp: DeltaDiscoveryResponse) -> Update:
        if resp.type_url not in self.types:
            return Update(resp.type_url, resp.nonce, {}, {}, (), error=f"unsubscribed type {resp.type_url}")
        updated: dict[str, betterproto2.Message] = {}
        versions: dict[str, str] = {}
        for res in resp.resources:
            if res.resource is None:
                return Update(resp.type_url, resp.nonce, {}, {}, (), error=f"resource {res.name}: no body")
            try:
                msg = _unpack(res.resource, resp.type_url)
            except XdsDecodeError as e:
                return Update(resp.type_url, resp.nonce, {}, {}, (), error=f"resource {res.name}: {e}")
            updated[res.name] = msg
            versions[res.name] = res.version
        return Update(resp.type_url, resp.nonce, updated, versions, tuple(resp.removed_resources))

    def ack(self, update: Update) -> DeltaDiscoveryRequest:
        st = self.types.get(update.type_url)
        if st is not None:
            st.versions.update(update.versions)
            for name in update.removed:
                st.versions.pop(name, None)
        return DeltaDiscoveryRequest(type_url=update.type_url, response_nonce=update.nonce)

    def nack(self, update: Update, message: str) -> DeltaDiscoveryRequest:
        return DeltaDiscoveryRequest(
            type_url=update.type_url,
            response_nonce=update.nonce,
            error_detail=Status(code=_INVALID_ARGUMENT, message=message),
        )


def _unpack(any_msg: AnyMsg, type_url: str) -> betterproto2.Message:
    if any_msg.type_url != type_url:
        raise XdsDecodeError(f"type {any_msg.type_url!r} in a {type_url} response")
    try:
        msg = any_msg.unpack()
    except Exception as e:  # betterproto2 raises assorted errors on malformed bytes
        raise XdsDecodeError(f"cannot decode: {e}") from e
    if msg is None:
        raise XdsDecodeError("empty Any")
    return msg


# --------------------------------------------------------------------------------------------- the shell
async def _drain(q: asyncio.Queue[DeltaDiscoveryRequest]) -> AsyncIterator[DeltaDiscoveryRequest]:
    while True:
        yield await q.get()


Handler = Callable[[Update], Awaitable[str | None]]
"""Applies an update; returns None to ACK or an error message to NACK."""


async def run_delta_ads(
    target: str,
    client: DeltaClient,
    handler: Handler,
    *,
    reconnect_delay: float = 1.0,
    on_connected: Callable[[], None] | None = None,
    root_pem: bytes | None = None,
    token: Callable[[], str] | None = None,
    server_name: str | None = None,
) -> None:
    """Keep a delta ADS stream to `target` (host:port) open forever, reconnecting.

    Plaintext gRPC by default; with `root_pem`, TLS to the secure port (15012) trusting that root and
    checking `server_name` (default: the host dialled), with `authorization: Bearer <token()>` on
    each stream (re-read per connection: projected tokens rotate).
    """
    import grpc  # imported here so the sans-IO core has no grpc dependency at import time

    def channel_for() -> grpc.aio.Channel:
        if root_pem is None:
            return grpc.aio.insecure_channel(target)
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_pem), options=options)

    while True:
        try:
            async with channel_for() as channel:
                call = channel.stream_stream(
                    ADS_METHOD,
                    request_serializer=bytes,
                    response_deserializer=DeltaDiscoveryResponse.parse,
                )
                outq: asyncio.Queue[DeltaDiscoveryRequest] = asyncio.Queue()
                for req in client.initial_requests():
                    outq.put_nowait(req)

                metadata = (("authorization", f"Bearer {token()}"),) if token is not None else None
                stream = call(_drain(outq), metadata=metadata)
                if on_connected is not None:
                    on_connected()
                async for resp in stream:
                    update = client.receive(resp)
                    error = update.error
                    if error is None:
                        try:
                            error = await handler(update)
                        except Exception as e:  # a handler bug must not kill the stream: NACK it
                            error = f"{type(e).__name__}: {e}"
                    if error is None:
                        outq.put_nowait(client.ack(update))
                    else:
                        log.warning("NACK %s nonce=%s: %s", update.type_url, update.nonce, error)
                        outq.put_nowait(client.nack(update, error))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # grpc.aio.AioRpcError and connection errors: reconnect
            log.warning("xds stream to %s failed: %s; reconnecting", target, e)
        await asyncio.sleep(reconnect_delay)
