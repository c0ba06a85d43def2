"""The waypoint agent's xDS proxy (pilot-agent's): Envoy's ADS goes to a Unix socket in the pod, and out
to the control plane's secure port over TLS with the pod's token.

Why a proxy and not Envoy dialling 15012 itself: the token is the pod's credential and rotates in
place (the kubelet rewrites the projected file); pilot-agent keeps it out of Envoy's config and
adds it on every stream, and so do we. The control plane then checks that the token owns Envoy's
node id (`xds.authz`), which it never could on plaintext 15010.

The relay is message by message and does not parse them: requests and responses are passed on as
bytes (grpcio without (de)serializers), so SotW and delta both work, and whatever the control plane
answers (including a refusal's status and message) reaches Envoy unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

log = logging.getLogger("pyambient.agent.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHODS = ("StreamAggregatedResources", "DeltaAggregatedResources")
# Where pilot-agent serves Envoy's xDS in a pod (Istio's bootstrap: `./etc/istio/proxy/XDS`).
DEFAULT_XDS_SOCKET = Path("/etc/istio/proxy/XDS")
_MESSAGE_LIMIT = 256 * 1024 * 1024


class XdsProxy:
    """ADS from Envoy on `socket_path` relayed to `upstream` (host:port, TLS, bearer token)."""

    def __init__(
        self,
        upstream: str,
        root_pem: bytes,
        token: Callable[[], str],
        socket_path: Path,
        *,
        server_name: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.socket_path = socket_path
        self.token = token
        options: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
            ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self.channel = grpc.aio.secure_channel(upstream, grpc.ssl_channel_credentials(root_pem), options=options)
        self.server: grpc.aio.Server | None = None
        self.streams = 0  # streams relayed so far (for logs and tests)

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
                ("grpc.max_send_message_length", _MESSAGE_LIMIT),
            ]
        )
        handlers = {method: self._handler(method) for method in ADS_METHODS}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),))
        if not self.server.add_insecure_port(f"unix:{self.socket_path}"):
            raise OSError(f"cannot serve xDS on {self.socket_path}")
        await self.server.start()
        os.chmod(self.socket_path, 0o600)  # the pod's own user (Envoy) only: it is the pod's credential
        log.info("proxying Envoy's xDS from %s to %s (TLS, token)", self.socket_path, self.upstream)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0.5)
        await self.channel.close()

    def _handler(self, method: str) -> grpc.RpcMethodHandler:
        path = f"/{ADS_SERVICE}/{method}"

        async def relay(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for response in self._relay(path, requests, context):
                yield response

        # No (de)serializers: messages pass as bytes.
        return grpc.stream_stream_rpc_method_handler(relay)

    async def _relay(
        self, path: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        try:
            token = self.token()
        except OSError as exc:
            log.warning("xDS stream from Envoy not relayed: cannot read the pod's token: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"agent cannot read its token: {exc}")
        call = self.channel.stream_stream(path)(metadata=(("authorization", f"Bearer {token}"),))
        self.streams += 1

        async def forward() -> None:
            try:
                async for request in requests:
                    await call.write(request)
                await call.done_writing()
            except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.aio.UsageError):
                pass

        forwarding = asyncio.ensure_future(forward())
        refused: grpc.aio.AioRpcError | None = None
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            refused = exc
        finally:
            forwarding.cancel()
            call.cancel()
        if refused is not None:
            log.warning(
                "control plane %s ended Envoy's xDS stream %s: %s: %s",
                self.upstream,
                path.rsplit("/", 1)[1],
                refused.code().name,
                refused.details(),
            )
            # Envoy sees the control plane's own status (PERMISSION_DENIED stays PERMISSION_DENIED).
            await context.abort(refused.code(), refused.details() or "")
