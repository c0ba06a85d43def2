"""A client-certificate relay for tools that cannot present one (h2spec): plain TCP in, HBONE's mTLS out.

Every accepted connection gets its own TLS 1.3 connection to the target, with our client certificate, ALPN h2
and no SNI (as a ztunnel dials HBONE), and bytes are copied both ways unchanged. When either side ends (EOF,
reset, or a failed TLS handshake upstream) the other is closed after what was already read is written, so a
server that closes the connection is seen closing it by the tool, which is what its connection-error checks
wait for.

Runs its own event loop on a thread, so blocking tests can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import Any

CHUNK = 65536


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        return


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 2)  # a TLS peer may never answer our close_notify


class MtlsRelay:
    """Listens on `listen` (ip, port 0 = any); relays each connection to `target` over mTLS with `context`."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], context: ssl.SSLContext) -> None:
        self.target = target
        self.context = context
        self.connections = 0
        self.upstream_failures = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, args=(listen,), daemon=True, name="mtls-relay")
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"mTLS relay could not listen on {listen}")
        self.address: tuple[str, int] = self._server.sockets[0].getsockname()[:2]

    def _run(self, listen: tuple[str, int]) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            try:
                self._server = await asyncio.start_server(self._serve, listen[0], listen[1])
            finally:
                self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _serve(self, down_reader: asyncio.StreamReader, down_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(down_reader, down_writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, down_reader: asyncio.StreamReader, down_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target, ssl=self.context, server_hostname=None), 10
            )
        except (OSError, ssl.SSLError, TimeoutError):
            self.upstream_failures += 1
            await _close(down_writer)
            return
        ups = asyncio.ensure_future(_copy(down_reader, up_writer))
        downs = asyncio.ensure_future(_copy(up_reader, down_writer))
        try:
            await asyncio.wait([ups, downs], return_when=asyncio.FIRST_COMPLETED)
            # one side ended: let the other direction deliver what it already has, then close both
            await asyncio.wait([ups, downs], timeout=0.2)
        finally:
            for task in (ups, downs):
                task.cancel()
            await asyncio.gather(ups, downs, return_exceptions=True)
            await _close(up_writer)
            await _close(down_writer)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> MtlsRelay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
