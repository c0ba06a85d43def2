"""Who is calling the control plane: ServiceAccount tokens, verified, become a `Caller`.

Two sources, one interface (`Authenticator.authenticate(token) -> Caller`):

- cluster mode: the API server's TokenReview (`waypoint.kube.tokenreview`), as istiod does;
- local mode: `LocalTokenIssuer`, tokens this control plane signs itself (ES256 JWTs shaped like
  Kubernetes' bound ServiceAccount tokens: `sub: system:serviceaccount:<ns>:<sa>`, the
  `kubernetes.io` claim with namespace, service account, pod and node).

The JWT is written by hand on top of `cryptography`: ES256 compact serialisation is ~30 lines, and
verifying only our own tokens (one algorithm, one key, fixed claims) needs none of a JWT library's
algorithm negotiation.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from xds.ca import DEFAULT_TRUST_DOMAIN, spiffe_id

# The audience istiod's CA and xDS server accept (Istio's default `TOKEN_AUDIENCES`).
ISTIO_CA_AUDIENCE = "istio-ca"
LOCAL_ISSUER = "pyambient-control-plane"
SA_PREFIX = "system:serviceaccount:"


class AuthenticationError(Exception):
    """The caller could not be authenticated; the message says why (logged, sent as UNAUTHENTICATED)."""


@dataclass(frozen=True)
class Caller:
    """An authenticated ServiceAccount, and the pod/node its token is bound to when known."""

    namespace: str
    service_account: str
    pod: str = ""
    node: str = ""

    def identity(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
        return spiffe_id(self.namespace, self.service_account, trust_domain)

    def __str__(self) -> str:
        return f"{SA_PREFIX}{self.namespace}:{self.service_account}"


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Caller:
        """The caller a bearer token proves, or AuthenticationError."""
        ...


def caller_from_username(username: str, pod: str = "", node: str = "") -> Caller:
    """`system:serviceaccount:<ns>:<sa>` (a TokenReview's user name or a token's `sub`) as a Caller."""
    if not username.startswith(SA_PREFIX):
        raise AuthenticationError(f"{username!r} is not a ServiceAccount")
    parts = username[len(SA_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        raise AuthenticationError(f"malformed ServiceAccount user name {username!r}")
    return Caller(parts[0], parts[1], pod, node)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LocalTokenIssuer:
    """Signs and verifies local-mode ServiceAccount tokens (ES256, P-256 key)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None, issuer: str = LOCAL_ISSUER) -> None:
        self._key = key or ec.generate_private_key(ec.SECP256R1())
        self.issuer = issuer

    @classmethod
    def load_or_create(cls, directory: Path) -> LocalTokenIssuer:
        """An issuer whose key survives restarts (`token-signing.key` in directory)."""
        path = directory / "token-signing.key"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path}: not an EC private key")
            return cls(key)
        issuer = cls()
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                issuer._key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        return issuer

    def issue(
        self,
        namespace: str,
        service_account: str,
        *,
        pod: str = "",
        node: str = "",
        audience: str = ISTIO_CA_AUDIENCE,
        ttl_seconds: int = 12 * 3600,
    ) -> str:
        now = int(time.time())
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": service_account}}
        if pod:
            k8s["pod"] = {"name": pod}
        if node:
            k8s["node"] = {"name": node}
        claims = {
            "iss": self.issuer,
            "sub": f"{SA_PREFIX}{namespace}:{service_account}",
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "kubernetes.io": k8s,
        }
        header = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def authenticate(self, token: str, audience: str = ISTIO_CA_AUDIENCE) -> Caller:
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthenticationError("token is not a JWT")
        try:
            header = json.loads(_unb64(parts[0]))
            signature = _unb64(parts[2])
        except ValueError as exc:
            raise AuthenticationError(f"token is not a JWT: {exc}") from None
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise AuthenticationError("token algorithm is not ES256")
        if len(signature) != 64:
            raise AuthenticationError("token signature has the wrong length")
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            self._key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AuthenticationError("token signature does not verify (not issued by this control plane)") from None
        # Claims are read only once the signature holds.
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError as exc:
            raise AuthenticationError(f"token claims are not JSON: {exc}") from None
        if not isinstance(claims, dict) or claims.get("iss") != self.issuer:
            raise AuthenticationError("token issuer is not this control plane")
        now = time.time()
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            raise AuthenticationError("token expired")
        if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + 60:
            raise AuthenticationError("token not yet valid")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise AuthenticationError(f"token audience {audiences} does not include {audience!r}")
        k8s = claims.get("kubernetes.io")
        k8s = k8s if isinstance(k8s, dict) else {}
        return caller_from_username(str(claims.get("sub", "")), _claim_name(k8s, "pod"), _claim_name(k8s, "node"))


def _claim_name(k8s: dict[str, Any], key: str) -> str:
    """`kubernetes.io.<key>.name` of a bound ServiceAccount token, or ""."""
    entry = k8s.get(key)
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) else ""


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer <token>` gRPC metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip() or None
    return None
