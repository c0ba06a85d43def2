"""The grpcio shell of the ADS service: moves messages between gRPC streams and `xds.stream`.

The only module of `xds` that does network I/O. What to send comes from a `SnapshotSource`; the
stream objects decide when; this module only waits for requests and for snapshot changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)

from xds.resources import short
from xds.snapshot import Snapshot
from xds.stream import Acked, DeltaStream, Event, Nacked, NodeIdentified, SotwStream, StaleNonce, Subscribed

log = logging.getLogger("pyambient.xds")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


class SnapshotSource(Protocol):
    """What the server needs from the control plane."""

    def snapshot_for(self, node: Node) -> Snapshot: ...

    def on_event(self, node: Node | None, event: Event) -> None: ...

    def register(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` whenever snapshots may have changed; returns an unregister function."""
        ...


class AdsServer:
    def __init__(self, source: SnapshotSource) -> None:
        self.source = source
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, address: str = "127.0.0.1:15010") -> int:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._sotw,
                request_deserializer=DiscoveryRequest.FromString,
                response_serializer=DiscoveryResponse.SerializeToString,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._delta,
                request_deserializer=DeltaDiscoveryRequest.FromString,
                response_serializer=DeltaDiscoveryResponse.SerializeToString,
            ),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen for xDS on {address}")
        await self.server.start()
        return self.port

    async def stop(self, grace: float = 0.5) -> None:
        if self.server is not None:
            await self.server.stop(grace)

    async def _run(
        self, stream: SotwStream | DeltaStream, requests: AsyncIterator[object], kind: str
    ) -> AsyncIterator[object]:
        wake = asyncio.Event()
        unregister = self.source.register(lambda: wake.set())
        done = asyncio.Event()

        async def read() -> None:
            try:
                async for request in requests:
                    for event in stream.receive(request):  # type: ignore[arg-type]
                        self._log_event(stream.node, event)
                        self.source.on_event(stream.node, event)
                    wake.set()
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            finally:
                done.set()
                wake.set()

        reader = asyncio.ensure_future(read())
        try:
            while True:
                await wake.wait()
                wake.clear()
                if done.is_set():
                    return
                if stream.node is None:
                    continue
                snapshot = self.source.snapshot_for(stream.node)
                for response in stream.respond(snapshot):
                    log.info(
                        "%s push %s to %s: %d resources, version %s",
                        kind,
                        short(response.type_url),
                        stream.node.id,
                        len(response.resources),
                        getattr(response, "version_info", "") or getattr(response, "system_version_info", ""),
                    )
                    yield response
        finally:
            unregister()
            reader.cancel()

    # grpc.aio recognises streaming handlers by being async generator functions themselves.
    async def _sotw(
        self, requests: AsyncIterator[DiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[object]:
        async for response in self._run(SotwStream(), requests, "ADS"):
            yield response

    async def _delta(
        self, requests: AsyncIterator[DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[object]:
        async for response in self._run(DeltaStream(), requests, "Delta ADS"):
            yield response

    @staticmethod
    def _log_event(node: Node | None, event: Event) -> None:
        who = node.id if node else "?"
        if isinstance(event, Nacked):
            log.warning(
                "NACK from %s for %s (rejected version %s): %s",
                who,
                short(event.type_url),
                event.rejected_version,
                event.message,
            )
        elif isinstance(event, Acked):
            log.debug("ACK from %s for %s version %s", who, short(event.type_url), event.version)
        elif isinstance(event, Subscribed):
            log.debug("%s subscribes to %s %s", who, short(event.type_url), sorted(event.names or ["*"]))
        elif isinstance(event, StaleNonce):
            log.debug("stale nonce %s from %s for %s", event.nonce, who, short(event.type_url))
        elif isinstance(event, NodeIdentified):
            log.info("xDS stream from %s", event.node.id)
