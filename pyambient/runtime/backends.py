"""Stand-ins for application pods: HTTP servers on pod addresses that answer with their name."""

from __future__ import annotations

import http.server
import threading


class NamedHttpBackend:
    """An HTTP/1.0 server on ip:port whose every response body is its name."""

    def __init__(self, ip: str, port: int, name: str) -> None:
        body = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            # Any method gets the same answer: route tests match on the method, the backend does not care.
            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((ip, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
