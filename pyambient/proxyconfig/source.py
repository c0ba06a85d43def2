"""Where proxy-config data comes from: a file (`-` = stdin), an Envoy admin address, or a Kubernetes pod."""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request

from pyambient.proxyconfig.dump import ProxyConfigError

_ADDRESS = re.compile(r"^(https?://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d+)/?$")


def read_file(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ProxyConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProxyConfigError(f"{path} is not valid JSON: not UTF-8 text") from None


def is_admin_address(target: str) -> bool:
    """`127.0.0.1:15000`, `localhost:15000`, `[::1]:15000` or `http://host:port`."""
    return bool(_ADDRESS.match(target)) and "/" not in target.split("://")[-1].rstrip("/")


def admin_get(address: str, path: str, timeout: float = 10.0) -> str:
    """GET `path` from an Envoy admin listener at `address`."""
    base = address.rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    url = base + path
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - user-given admin address
            body: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        raise ProxyConfigError(f"GET {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProxyConfigError(f"cannot reach admin address {address}: {reason}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProxyConfigError(f"GET {url}: response is not UTF-8 text") from None


def fetch(target: str, path: str, port: int, kubeconfig: str | None, namespace: str | None) -> str:
    """The admin `path` from an address or a Kubernetes target."""
    if is_admin_address(target):
        return admin_get(target, path)
    from pyambient.proxyconfig import kube  # heavy import, only for cluster targets

    return kube.admin_get(target, path, port, kubeconfig, namespace)
