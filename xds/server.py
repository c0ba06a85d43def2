"""The grpcio shell of the ADS service: moves messages between gRPC streams and `xds.stream`.

What to send comes from a `SnapshotSource`; the stream objects decide when; this module only waits
for requests and for snapshot changes. Two kinds of port:

- plaintext (15010, local mode): anyone may connect, so it never serves secrets (SDS resources are
  left out of every response);
- secure (`SecurePort`, istiod's 15012): gRPC over TLS with our CA's serving certificate; every call
  carries `authorization: Bearer <ServiceAccount token>`, and a stream gets the config of its node id
  only if the token owns that node. Refusals are a gRPC status (UNAUTHENTICATED / PERMISSION_DENIED)
  and one log line.

The same shell serves Envoy's SDS service (`SDS_SERVICE`) for the waypoint agent's Unix socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)

from xds import resources, tls13
from xds.authz import Refusal
from xds.resources import short
from xds.serving import RotatingServingCertificate
from xds.snapshot import Snapshot
from xds.stream import Acked, DeltaStream, Event, Nacked, NodeIdentified, SotwStream, StaleNonce, Subscribed
from xds.tokens import AuthenticationError, Authenticator, Caller, bearer_token

log = logging.getLogger("pyambient.xds")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
_METHODS = {
    SERVICE: ("StreamAggregatedResources", "DeltaAggregatedResources"),
    SDS_SERVICE: ("StreamSecrets", "DeltaSecrets"),
}


class SnapshotSource(Protocol):
    """What the server needs from the control plane."""

    def snapshot_for(self, node: Node) -> Snapshot: ...

    def on_event(self, node: Node | None, event: Event) -> None: ...

    def register(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` whenever snapshots may have changed; returns an unregister function."""
        ...


@dataclass(frozen=True)
class SecurePort:
    """What makes a port istiod's secure port: TLS identity, token check, node ownership, extra services."""

    serving: RotatingServingCertificate  # from our CA, renewed at half life
    authenticator: Authenticator
    authorize_node: Callable[[Caller, Node], Refusal | None]
    handlers: tuple[grpc.GenericRpcHandler, ...] = ()
    # The cluster whose tokens we can check; Istio's clients name theirs in the `clusterid` header
    # (istiod refuses a cluster it does not know, and so do we).
    cluster_id: str = "Kubernetes"


class AdsServer:
    def __init__(
        self,
        source: SnapshotSource,
        *,
        secure: SecurePort | None = None,
        serves_secrets: bool | None = None,
        service: str = SERVICE,
    ) -> None:
        self.source = source
        self.secure = secure
        # Secrets only where the caller is authenticated (or, for the agent's socket, is its own pod).
        self.serves_secrets = secure is not None if serves_secrets is None else serves_secrets
        self.service = service
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def authenticate(self, context: grpc.aio.ServicerContext, what: str) -> Caller:
        """The caller of a secure-port call; aborts it with UNAUTHENTICATED (and logs why) otherwise."""
        assert self.secure is not None
        metadata = context.invocation_metadata() or ()
        token = bearer_token(metadata)
        cluster = next((str(v) for k, v in metadata if k.lower() == "clusterid"), self.secure.cluster_id)
        reason = "no bearer token (authorization: Bearer <ServiceAccount token, audience istio-ca>)"
        if cluster != self.secure.cluster_id:
            reason = (
                f"client claims to be in cluster {cluster!r}; this control plane knows only {self.secure.cluster_id!r}"
            )
        elif token is not None:
            try:
                # TokenReview is blocking I/O against the API server.
                return await asyncio.to_thread(self.secure.authenticator.authenticate, token)
            except AuthenticationError as exc:
                reason = str(exc)
        log.warning("%s from %s refused (UNAUTHENTICATED): %s", what, context.peer(), reason)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {reason}")
        raise AssertionError("unreachable: abort raises")

    async def start(self, address: str = "127.0.0.1:15010") -> int:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        sotw, delta = _METHODS[self.service]
        handlers = {
            sotw: grpc.stream_stream_rpc_method_handler(
                self._sotw,
                request_deserializer=DiscoveryRequest.FromString,
                response_serializer=DiscoveryResponse.SerializeToString,
            ),
            delta: grpc.stream_stream_rpc_method_handler(
                self._delta,
                request_deserializer=DeltaDiscoveryRequest.FromString,
                response_serializer=DeltaDiscoveryResponse.SerializeToString,
            ),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.service, handlers),))
        if self.secure is not None:
            if not tls13.enforced():
                # Fail closed: without the cipher list, grpc would accept TLS 1.2 on 15012.
                log.error("secure port %s not started: cannot restrict it to TLS 1.3: %s", address, tls13.why_not())
                raise RuntimeError(f"secure port {address} cannot be restricted to TLS 1.3: {tls13.why_not()}")
            self.server.add_generic_rpc_handlers(self.secure.handlers)
            self.port = self.server.add_secure_port(address, self.secure.serving.credentials())
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen for xDS on {address}")
        await self.server.start()
        return self.port

    async def stop(self, grace: float = 0.5) -> None:
        if self.server is not None:
            await self.server.stop(grace)

    async def _run(
        self,
        stream: SotwStream | DeltaStream,
        requests: AsyncIterator[object],
        kind: str,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[object]:
        caller = await self.authenticate(context, kind) if self.secure is not None else None
        node_checked = False
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
                if not node_checked and self.secure is not None and caller is not None:
                    refusal = self.secure.authorize_node(caller, stream.node)
                    if refusal is not None:
                        log.warning(
                            "%s for node %s refused (%s): %s", kind, stream.node.id, refusal.code, refusal.message
                        )
                        await context.abort(getattr(grpc.StatusCode, refusal.code), refusal.message)
                    node_checked = True
                snapshot = self.source.snapshot_for(stream.node)
                if not self.serves_secrets:
                    snapshot = without_secrets(snapshot)
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
        kind = "SDS" if self.service == SDS_SERVICE else "ADS"
        async for response in self._run(SotwStream(), requests, kind, context):
            yield response

    async def _delta(
        self, requests: AsyncIterator[DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[object]:
        kind = "Delta SDS" if self.service == SDS_SERVICE else "Delta ADS"
        async for response in self._run(DeltaStream(), requests, kind, context):
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


def without_secrets(snapshot: Snapshot) -> Snapshot:
    """The snapshot minus its SDS resources: what an unauthenticated port may serve."""
    if resources.SECRET not in snapshot.resources:
        return snapshot
    return Snapshot({t: r for t, r in snapshot.resources.items() if t != resources.SECRET})
