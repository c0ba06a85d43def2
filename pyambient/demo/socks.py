"""A minimal SOCKS5 CONNECT client (RFC 1928, no auth): how uncaptured demo clients use a ztunnel.

The socket is bound to the client pod's IP first, so the ztunnel knows which workload (and so which
identity) the connection comes from. Hand-written: the demo needs only CONNECT to an IPv4 address,
which is a dozen bytes each way, and no SOCKS package is among our dependencies.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

REPLIES = {
    1: "general failure",
    2: "not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class SocksError(ConnectionError):
    pass


def connect(
    proxy: tuple[str, int], source_ip: str, destination: tuple[str, int], timeout: float = 10.0
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source_ip, 0))
        sock.connect(proxy)
        sock.sendall(b"\x05\x01\x00")
        if _read(sock, 2) != b"\x05\x00":
            raise SocksError("proxy refused the no-auth method")
        host, port = destination
        sock.sendall(b"\x05\x01\x00\x01" + ipaddress.IPv4Address(host).packed + struct.pack("!H", port))
        reply = _read(sock, 10)
        if reply[1] != 0:
            raise SocksError(f"proxy answered {reply[1]} ({REPLIES.get(reply[1], 'unknown')})")
        return sock
    except BaseException:
        sock.close()
        raise


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SocksError("proxy closed the connection")
        data += chunk
    return data


def http_get(
    proxy: tuple[str, int], source_ip: str, destination: tuple[str, int], host: str = "demo", timeout: float = 10.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 GET through the proxy; returns (status, body). Raises on a refused/reset connection."""
    sock = connect(proxy, source_ip, destination, timeout)
    try:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        raise ConnectionResetError("connection closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    return (int(status_line[1]) if len(status_line) > 1 else 0), body
