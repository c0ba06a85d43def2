"""Kubernetes targets (`deploy/NAME[.NS]`, `pod/NAME[.NS]`, `NAME[.NS]`).

Admin GETs go through the API server's port-forward.

This is the only part that needs a cluster; it is deliberately thin (resolve pod, forward one port, send
one HTTP/1.1 request) and is not exercised by the unit tests, which have no kubelet.
"""

from __future__ import annotations

from typing import Any

from pyambient.proxyconfig.dump import ProxyConfigError


def parse_target(target: str, default_ns: str) -> tuple[str, str, str]:
    """(kind, name, namespace) from `deploy/NAME[.NS]`, `pod/NAME[.NS]` or `NAME[.NS]`."""
    kind, _, rest = target.rpartition("/")
    kind = {"": "pod", "po": "pod", "pods": "pod", "deployment": "deploy", "deployments": "deploy"}.get(
        kind, kind
    )
    if kind not in ("pod", "deploy") or not rest:
        raise ProxyConfigError(
            f"unknown target {target!r}: expected pod/NAME[.NS], deploy/NAME[.NS] or HOST:PORT"
        )
    name, _, ns = rest.partition(".")
    return kind, name, ns or default_ns


def _clients(kubeconfig: str | None) -> Any:
    try:
        from kubernetes import client, config
    except ImportError:
        raise ProxyConfigError("the kubernetes client is not installed") from None
    try:
        config.load_kube_config(config_file=kubeconfig)
    except Exception as exc:  # the client raises several unrelated types for a bad kubeconfig
        raise ProxyConfigError(f"cannot load kubeconfig: {exc}") from None
    return client.CoreV1Api(), client.AppsV1Api()


def resolve_pod(core: Any, apps: Any, kind: str, name: str, ns: str) -> str:
    from kubernetes.client.exceptions import ApiException

    try:
        if kind == "pod":
            core.read_namespaced_pod(name, ns)
            return name
        dep = apps.read_namespaced_deployment(name, ns)
        labels = dep.spec.selector.match_labels or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = core.list_namespaced_pod(ns, label_selector=selector).items
    except ApiException as exc:
        raise ProxyConfigError(f"unknown target {kind}/{name}.{ns}: {exc.reason}") from None
    running = [p.metadata.name for p in pods if p.status and p.status.phase == "Running"]
    if not running:
        raise ProxyConfigError(f"no running pods for {kind}/{name}.{ns}")
    return str(sorted(running)[0])


def admin_get(target: str, path: str, port: int, kubeconfig: str | None, namespace: str | None) -> str:
    kind, name, ns = parse_target(target, namespace or "default")
    core, apps = _clients(kubeconfig)
    pod = resolve_pod(core, apps, kind, name, ns)
    return _forwarded_get(core, pod, ns, path, port)


ZTUNNEL_NAMESPACE = "istio-system"
ZTUNNEL_SELECTOR = "app=ztunnel"


def ztunnel_admin_get(target: str, path: str, port: int, kubeconfig: str | None) -> str:
    """GET `path` from a ztunnel pod's admin port: the named pod (NAME[.NS], pod/NAME[.NS]; namespace istio-system
    by default) or, without a name, the first running `app=ztunnel` pod in istio-system."""
    from kubernetes.client.exceptions import ApiException

    core, apps = _clients(kubeconfig)
    if target:
        kind, name, ns = parse_target(target, ZTUNNEL_NAMESPACE)
        if kind != "pod":
            raise ProxyConfigError(f"unknown ztunnel target {target!r}: expected a pod, NAME[.NS] or pod/NAME[.NS]")
        pod = resolve_pod(core, apps, kind, name, ns)
        return _forwarded_get(core, pod, ns, path, port)
    try:
        pods = core.list_namespaced_pod(ZTUNNEL_NAMESPACE, label_selector=ZTUNNEL_SELECTOR).items
    except ApiException as exc:
        raise ProxyConfigError(f"cannot list ztunnel pods in {ZTUNNEL_NAMESPACE}: {exc.reason}") from None
    except Exception as exc:  # urllib3's connection errors: the API server is not reachable
        raise ProxyConfigError(f"cannot reach the API server: {_first_line(exc)}") from None
    running = sorted(p.metadata.name for p in pods if p.status and p.status.phase == "Running")
    if not running:
        raise ProxyConfigError(f"no running ztunnel pod ({ZTUNNEL_SELECTOR}) in {ZTUNNEL_NAMESPACE}")
    return _forwarded_get(core, running[0], ZTUNNEL_NAMESPACE, path, port)


def _forwarded_get(core: Any, pod: str, ns: str, path: str, port: int) -> str:
    from kubernetes.stream import portforward

    where = f"pod/{pod}.{ns}"
    try:
        pf = portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports=str(port))
    except Exception as exc:  # ApiException, websocket errors: all mean "cannot forward"
        raise ProxyConfigError(f"port-forward to {where}:{port} failed: {_first_line(exc)}") from None
    chunks: list[bytes] = []
    try:
        sock = pf.socket(port)
        sock.setblocking(True)
        request = f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except OSError as exc:
        raise ProxyConfigError(f"port-forward to {where}:{port} failed: {exc}") from None
    finally:
        pf.close()
    if not chunks:
        raise ProxyConfigError(f"port-forward to {where}:{port} returned nothing (is the admin port right?)")
    return _http_body(b"".join(chunks), where)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _http_body(raw: bytes, where: str) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    status = status_line.split()
    if len(status) < 2 or status[1] != b"200":
        raise ProxyConfigError(f"admin request to {where} failed: {status_line.decode(errors='replace')}")
    if b"transfer-encoding: chunked" in head.lower():
        out = bytearray()
        while body:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += body[:size]
            body = body[size + 2 :]
        body = bytes(out)
    return body.decode("utf-8", errors="replace")
