"""The mesh CA in a cluster, kept where istiod keeps it: Secrets in the controller's namespace.

As istiod (`pilot/pkg/bootstrap/istio_ca.go`, `security/pkg/pki/ca/ca.go`):
- a **plug-in CA**, Secret `cacerts` (`ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`, or a
  `kubernetes.io/tls` Secret's `tls.crt`, `tls.key`, `ca.crt`), is used when it exists;
- else the **self-signed root** of Secret `istio-ca-secret` (`ca-cert.pem`, `ca-key.pem`);
- else a new root is made and the Secret *created* (type `istio.io/ca-root`, istiod's layout). A create that
  loses the race to another replica (409) re-reads the winner's. An existing Secret is never overwritten.

A Secret that cannot be used is an error naming the Secret and the key (`CaSecretError`): the controller
refuses to start rather than sign under a root nobody trusts. The decoding and checks are pure
(`ca_from_plugin_secret`, `ca_from_ca_secret`, `ca_secret`); `load_or_create_ca` is the API shell.
The CA key is in the Secret only: it is never logged (the root certificate's fingerprint is).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from waypoint.kube.api import SECRETS, ApiError, ApiUnavailable, KubeApi
from xds.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_CHAIN_FILE,
    DEFAULT_TRUST_DOMAIN,
    ROOT_CERT_FILE,
    CaBundleError,
    CertificateAuthority,
    new_self_signed_root,
)

log = logging.getLogger("pyambient.ca")

CA_SECRET = "istio-ca-secret"
PLUGIN_SECRET = "cacerts"
CA_SECRET_TYPE = "istio.io/ca-root"
# istiod's unused slots of istio-ca-secret, written empty as its BuildSecret does.
PRIVATE_KEY_FILE = "key.pem"
# A `kubernetes.io/tls` cacerts Secret: istiod reads tls.crt as the signing certificate, tls.key as its key,
# ca.crt as the root, and serves tls.crt + ca.crt as the chain.
TLS_CERT_FILE = "tls.crt"
TLS_KEY_FILE = "tls.key"
TLS_ROOT_FILE = "ca.crt"

# How long a starting controller keeps trying an API server it cannot reach before it gives up.
API_RETRY_SECONDS = 120.0


class CaSecretError(Exception):
    """A CA Secret that cannot be used; names the Secret and the key."""

    def __init__(self, namespace: str, name: str, key: str, reason: str) -> None:
        super().__init__(f"Secret {namespace}/{name}: key {key}: {reason}")
        self.namespace = namespace
        self.name = name
        self.key = key


def _secret_id(secret: Mapping[str, Any]) -> tuple[str, str]:
    meta = secret.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _value(secret: Mapping[str, Any], key: str, *, required: bool = True) -> bytes:
    namespace, name = _secret_id(secret)
    data = secret.get("data") or {}
    if key not in data:
        if required:
            raise CaSecretError(namespace, name, key, "missing")
        return b""
    try:
        return base64.b64decode(str(data[key] or ""), validate=True)
    except (binascii.Error, ValueError):
        raise CaSecretError(namespace, name, key, "not base64 (a Secret's data values are)") from None


def _from_parts(secret: Mapping[str, Any], keys: Mapping[str, str], parts: Mapping[str, bytes],
                trust_domain: str) -> CertificateAuthority:
    """`keys`: bundle part (xds.ca's names) → the Secret key it came from, for errors."""
    try:
        return CertificateAuthority.from_pem(
            parts[CA_CERT_FILE], parts[CA_KEY_FILE], parts[CERT_CHAIN_FILE], parts[ROOT_CERT_FILE], trust_domain
        )
    except CaBundleError as exc:
        namespace, name = _secret_id(secret)
        reason = exc.reason
        for part, key in keys.items():  # say it in the Secret's own key names
            reason = reason.replace(part, key)
        raise CaSecretError(namespace, name, keys[exc.part], reason) from None


def ca_from_plugin_secret(secret: Mapping[str, Any], trust_domain: str = DEFAULT_TRUST_DOMAIN) -> CertificateAuthority:
    """The plug-in CA of a `cacerts` Secret (an intermediate or a root), verified as istiod does."""
    data = secret.get("data") or {}
    if TLS_CERT_FILE in data:
        keys = {CA_CERT_FILE: TLS_CERT_FILE, CA_KEY_FILE: TLS_KEY_FILE, CERT_CHAIN_FILE: TLS_CERT_FILE,
                ROOT_CERT_FILE: TLS_ROOT_FILE}
        root = _value(secret, TLS_ROOT_FILE)
        signing = _value(secret, TLS_CERT_FILE)
        parts = {CA_CERT_FILE: signing, CA_KEY_FILE: _value(secret, TLS_KEY_FILE),
                 CERT_CHAIN_FILE: signing.rstrip(b"\n") + b"\n" + root, ROOT_CERT_FILE: root}
        return _from_parts(secret, keys, parts, trust_domain)
    if CA_KEY_FILE not in data:
        # istiod then runs its self-signed CA with root-cert.pem as additional roots: not implemented here,
        # and ignoring the Secret would trust less than the operator configured.
        namespace, name = _secret_id(secret)
        raise CaSecretError(namespace, name, CA_KEY_FILE, "missing (a cacerts Secret that only adds roots to the "
                                                          "self-signed CA is not supported)")
    keys = {part: part for part in (CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE)}
    parts = {part: _value(secret, part) for part in keys}
    return _from_parts(secret, keys, parts, trust_domain)


def ca_from_ca_secret(secret: Mapping[str, Any], trust_domain: str = DEFAULT_TRUST_DOMAIN) -> CertificateAuthority:
    """The self-signed CA of `istio-ca-secret`: `ca-cert.pem` is its own root (istiod reads only these two keys)."""
    cert, key = _value(secret, CA_CERT_FILE), _value(secret, CA_KEY_FILE)
    keys = {CA_CERT_FILE: CA_CERT_FILE, CA_KEY_FILE: CA_KEY_FILE, CERT_CHAIN_FILE: CERT_CHAIN_FILE,
            ROOT_CERT_FILE: CA_CERT_FILE}
    parts = {CA_CERT_FILE: cert, CA_KEY_FILE: key, CERT_CHAIN_FILE: b"", ROOT_CERT_FILE: cert}
    return _from_parts(secret, keys, parts, trust_domain)


def ca_secret(namespace: str, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    """istio-ca-secret as istiod's `BuildSecret` writes it for a new self-signed root."""

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": namespace},
        "type": CA_SECRET_TYPE,
        "data": {
            CERT_CHAIN_FILE: "",
            PRIVATE_KEY_FILE: "",
            ROOT_CERT_FILE: b64(cert_pem),
            CA_CERT_FILE: b64(cert_pem),
            CA_KEY_FILE: b64(key_pem),
        },
    }


def root_fingerprint(ca: CertificateAuthority) -> str:
    """SHA-256 of the (first) root certificate, for log lines: which root, never any key."""
    root = x509.load_pem_x509_certificates(ca.root_pem)[0]
    return root.fingerprint(hashes.SHA256()).hex(":")


def load_or_create_ca(
    api: KubeApi, namespace: str, trust_domain: str = DEFAULT_TRUST_DOMAIN, *,
    api_retry_seconds: float = API_RETRY_SECONDS,
) -> tuple[CertificateAuthority, str]:
    """The CA and the name of the Secret it came from (see the module doc for the order)."""
    deadline = time.monotonic() + api_retry_seconds
    delay = 0.5
    while True:
        try:
            return _load_or_create_once(api, namespace, trust_domain)
        except ApiUnavailable as exc:
            problem: Exception = exc
        except ApiError as exc:
            if not exc.retriable:
                raise
            problem = exc
        if time.monotonic() + delay > deadline:
            raise problem
        log.warning("reading the CA Secrets in %s failed (%s); retrying in %.1fs", namespace, problem, delay)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def _load_or_create_once(api: KubeApi, namespace: str, trust_domain: str) -> tuple[CertificateAuthority, str]:
    plugin = api.get(SECRETS, namespace, PLUGIN_SECRET)
    if plugin is not None:
        ca = ca_from_plugin_secret(plugin, trust_domain)
        log.info("using the plug-in CA of Secret %s/%s (root sha256 %s)", namespace, PLUGIN_SECRET,
                 root_fingerprint(ca))
        return ca, PLUGIN_SECRET
    existing = api.get(SECRETS, namespace, CA_SECRET)
    if existing is None:
        cert_pem, key_pem = new_self_signed_root(trust_domain)
        try:
            api.create(SECRETS, ca_secret(namespace, cert_pem, key_pem))
        except ApiError as exc:
            if exc.status != 409:
                raise
            log.info("Secret %s/%s was created by another controller first; using its root", namespace, CA_SECRET)
            existing = api.get(SECRETS, namespace, CA_SECRET)
            if existing is None:
                raise ApiError(409, "Conflict", f"Secret {namespace}/{CA_SECRET} conflicted but is gone") from None
        else:
            ca = CertificateAuthority.from_pem(cert_pem, key_pem, b"", cert_pem, trust_domain)
            log.info("created Secret %s/%s with a new self-signed root (sha256 %s)", namespace, CA_SECRET,
                     root_fingerprint(ca))
            return ca, CA_SECRET
    ca = ca_from_ca_secret(existing, trust_domain)
    log.info("using the self-signed root of Secret %s/%s (sha256 %s)", namespace, CA_SECRET, root_fingerprint(ca))
    return ca, CA_SECRET
