"""JSON Web Tokens for tests: keys, JWKS documents and signed tokens (ES256, RS256) with `cryptography`,
and a small JWKS server on a loopback address.

Written by hand because it is a few lines on top of `cryptography` (RFC 7515/7517/7518: base64url
JSON header and payload, an ES256 signature as the raw r||s pair, RS256 as PKCS#1 v1.5 over SHA-256).
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


@dataclass
class SigningKey:
    """One key of an issuer: signs tokens and describes itself as a JWK."""

    kid: str
    alg: str  # "ES256" | "RS256"
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def es256(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def rs256(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            numbers = self.private.public_key().public_numbers()
            return {
                "kty": "EC",
                "crv": "P-256",
                "kid": self.kid,
                "alg": self.alg,
                "use": "sig",
                "x": _uint(numbers.x, 32),
                "y": _uint(numbers.y, 32),
            }
        rsa_numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
            "n": _uint(rsa_numbers.n),
            "e": _uint(rsa_numbers.e),
        }

    def _signature(self, signing_input: bytes) -> bytes:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())

    def token(self, claims: dict[str, Any]) -> str:
        header = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64url(self._signature(signing_input.encode()))}"


def jwks(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.jwk() for k in keys]})


def claims(issuer: str, subject: str, *, lifetime: float = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "sub": subject, "iat": now, "exp": now + int(lifetime), **extra}


class JwksServer:
    """Serves one JWKS document at `/jwks` on ip:port (HTTPS with `tls`); counts the fetches."""

    def __init__(self, ip: str, port: int, document: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.document = document
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                owner.fetches += 1
                body = owner.document.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
                pass

        self.server = http.server.ThreadingHTTPServer((ip, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.uri = f"{scheme}://{ip}:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
