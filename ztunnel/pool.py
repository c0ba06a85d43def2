"""HBONE connection pool keyed by (source identity, allowed destination identities, destination address,
source IP) — ztunnel's `WorkloadKey`.

A connection serves at most `max_streams` streams; then the next checkout dials another connection for the
same key. Only one dial per key is in flight at a time: concurrent checkouts wait for it (so 1000
simultaneous connects cause one TLS handshake), as ztunnel's pool does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ztunnel.hbone import HboneConnection
from ztunnel.state import IPAddr

PoolKey = tuple[str, tuple[str, ...], tuple[IPAddr, int], IPAddr]  # src id, dst ids, dst addr, src ip


class HbonePool:
    def __init__(self, dial: Callable[[PoolKey], Awaitable[HboneConnection]], max_streams: int = 100) -> None:
        self._dial = dial
        self.max_streams = max_streams
        self._conns: dict[PoolKey, list[HboneConnection]] = {}
        self._locks: dict[PoolKey, asyncio.Lock] = {}

    def take(self, key: PoolKey) -> HboneConnection | None:
        """A ready pooled connection with a free stream (reserved for the caller), or None: then `checkout`."""
        conns = self._conns.get(key)
        if not conns:
            return None
        conns[:] = [c for c in conns if not c.closed and not c.goaway]
        for c in conns:
            # the cap is min(our pool limit, the peer's MAX_CONCURRENT_STREAMS), as ztunnel's
            if c.usable and c.reserved < min(self.max_streams, c.peer_max_streams):
                c.reserved += 1
                return c
        return None

    async def checkout(self, key: PoolKey) -> HboneConnection:
        c = self.take(key)
        if c is not None:
            return c
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            c = self.take(key)
            if c is not None:
                return c
            conn = await self._dial(key)
            await conn.ready
            conn.reserved += 1
            self._conns.setdefault(key, []).append(conn)
            return conn

    def release(self, conn: HboneConnection) -> None:
        conn.reserved -= 1

    def remove(self, conn: HboneConnection) -> None:
        for key, conns in list(self._conns.items()):
            if conn in conns:
                conns.remove(conn)
                if not conns:
                    del self._conns[key]
                    self._locks.pop(key, None)

    def connections(self) -> list[HboneConnection]:
        return [c for conns in self._conns.values() for c in conns]

    def close(self) -> None:
        for c in self.connections():
            c.close()
        self._conns.clear()
