"""Stand-ins for application pods: HTTP servers on pod addresses that answer with their name (or what they are
given to answer)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message


@dataclass(frozen=True)
class HttpAnswer:
    body: bytes
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()  # sent before Content-Length, which is always sent


# What a backend answers to one request: (its path, its headers) → the answer.
Answerer = Callable[[str, Message], HttpAnswer]


class HttpBackend:
    """An HTTP/1.0 server on ip:port (0: a free one, see `address`) answering every request with `answer`."""

    def __init__(self, ip: str, port: int, answer: Answerer) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                reply = answer(self.path, self.headers)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            # Any method gets the same answer: route tests match on the method, the backend does not care.
            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((ip, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        """ip:port, the port the server is bound to."""
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NamedHttpBackend(HttpBackend):
    """An HTTP/1.0 server on ip:port whose every response body is its name."""

    def __init__(self, ip: str, port: int, name: str) -> None:
        answer = HttpAnswer(name.encode())
        super().__init__(ip, port, lambda _path, _headers: answer)
