"""SOCKS5 CONNECT (RFC 1928), sans-IO: no auth; IPv4/IPv6 destinations (domain names need DNS: refused).

As ztunnel does, success is replied before the upstream connect, with bound address 0.0.0.0:0.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ztunnel.state import IPAddr

REPLY_OK = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"
REPLY_ADDR_UNSUPPORTED = b"\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00"
REPLY_CMD_UNSUPPORTED = b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00"


class SocksError(ValueError):
    def __init__(self, msg: str, reply: bytes = b"") -> None:
        super().__init__(msg)
        self.reply = reply


@dataclass
class SocksParser:
    buf: bytes = b""
    state: int = 0  # 0 greeting, 1 request, 2 done
    dst: tuple[IPAddr, int] | None = None

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Returns (bytes to send back, leftover bytes after the request once done)."""
        self.buf += data
        out = b""
        if self.state == 0:
            if len(self.buf) < 2:
                return out, b""
            if self.buf[0] != 5:
                raise SocksError(f"not SOCKS5 (version byte {self.buf[0]})")
            n = self.buf[1]
            if len(self.buf) < 2 + n:
                return out, b""
            if 0 not in self.buf[2 : 2 + n]:
                raise SocksError("client offers no 'no authentication' method", b"\x05\xff")
            self.buf = self.buf[2 + n :]
            out += b"\x05\x00"
            self.state = 1
        if self.state == 1:
            try:
                return self._request(out)
            except SocksError as e:
                # the greeting's answer goes out first, whether the request came in the same read or a later one
                e.reply = out + e.reply
                raise
        return out, b""

    def _request(self, out: bytes) -> tuple[bytes, bytes]:
        """The CONNECT request (state 1); `out` is what the greeting already answered."""
        b = self.buf
        if len(b) < 5:
            return out, b""
        if b[0] != 5:
            raise SocksError("bad request version")
        if b[1] != 1:
            raise SocksError(f"command {b[1]} not supported", REPLY_CMD_UNSUPPORTED)
        atyp = b[3]
        if atyp == 1:
            need = 4 + 4 + 2
        elif atyp == 4:
            need = 4 + 16 + 2
        elif atyp == 3:
            raise SocksError("domain names are not supported (no DNS proxy)", REPLY_ADDR_UNSUPPORTED)
        else:
            raise SocksError(f"address type {atyp} not supported", REPLY_ADDR_UNSUPPORTED)
        if len(b) < need:
            return out, b""
        ip = ipaddress.ip_address(bytes(b[4 : need - 2]))
        port = int.from_bytes(b[need - 2 : need], "big")
        self.dst = (ip, port)
        self.state = 2
        out += REPLY_OK
        rest, self.buf = self.buf[need:], b""
        return out, rest
