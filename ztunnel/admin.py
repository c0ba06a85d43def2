"""A minimal asyncio HTTP/1.1 server for the admin (15000), metrics (15020) and readiness (15021) ports.

Hand-written because the project has no HTTP server dependency and these endpoints need only GET/POST
with a full-body response, `Connection: close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("admin")

Handler = Callable[[str, str], Awaitable[tuple[int, str, bytes]]]  # (method, path) -> (status, ctype, body)
REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    400: "Bad Request",
}


async def serve_http(host: str, port: int, handler: Handler) -> asyncio.Server:
    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            if len(parts) != 3:
                status, ctype, body = 400, "text/plain", b"bad request\n"
            else:
                method, target = parts[0], parts[1]
                status, ctype, body = await handler(method, target)
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("admin handler failed")
        finally:
            writer.close()

    return await asyncio.start_server(on_conn, host, port)
