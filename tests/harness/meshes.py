"""Kubernetes objects for test meshes, as plain dicts (what `kubectl apply` would send)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def namespace(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def ambient_namespace(name: str, **labels: str) -> Obj:
    return namespace(name, **{"istio.io/dataplane-mode": "ambient", **labels})


def service(
    ns: str, name: str, vip: str, ports: list[tuple[str, int, int]], selector: dict[str, str], **labels: str
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {
            "clusterIP": vip,
            "selector": selector,
            "ports": [{"name": n, "port": p, "targetPort": t} for n, p, t in ports],
        },
    }


def pod(
    ns: str, name: str, ip: str, labels: dict[str, str], service_account: str = "default", node: str = "node-a"
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"serviceAccountName": service_account, "nodeName": node},
        "status": {"podIP": ip},
    }


def waypoint(
    ns: str,
    name: str = "waypoint",
    *,
    for_service_account: str | None = None,
    listeners: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "namespace": ns, "labels": dict(labels or {})}
    if for_service_account:
        meta["annotations"] = {"istio.io/for-service-account": for_service_account}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": listeners if listeners is not None else [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }


def http_route(
    ns: str,
    name: str,
    parent: str,
    port: int | None,
    backends: list[tuple[str, int]],
    path: tuple[str, str] | None = None,
) -> Obj:
    parent_ref: Obj = {"group": "", "kind": "Service", "name": parent}
    if port is not None:
        parent_ref["port"] = port
    rule: Obj = {"backendRefs": [{"name": n, "port": port or 80, "weight": w} for n, w in backends]}
    if path:
        rule["matches"] = [{"path": {"type": path[0], "value": path[1]}}]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRefs": [parent_ref], "rules": [rule]},
    }


def shop_mesh(v1_weight: int = 90, v2_weight: int = 10) -> list[Obj]:
    """Two namespaces; `shop` has a namespace waypoint and a service-account waypoint.

    VIPs live in 127.96.0.0/16, pods in 127.0.11.0/24, waypoints in 127.0.12.0/24: loopback only;
    VIPs are never dialled.
    """
    return [
        ambient_namespace("shop"),
        ambient_namespace("other"),
        service("shop", "web", "127.96.0.10", [("http", 80, 8080)], {"app": "web"}),
        service("shop", "web-v1", "127.96.0.11", [("http", 80, 8080)], {"app": "web", "version": "v1"}),
        service("shop", "web-v2", "127.96.0.12", [("http", 80, 8080)], {"app": "web", "version": "v2"}),
        service("shop", "db", "127.96.0.13", [("tcp-postgres", 5432, 8080)], {"app": "db"}),
        service("shop", "reviews", "127.96.0.14", [("http", 9080, 8080)], {"app": "reviews"}),
        service("other", "echo", "127.96.1.10", [("http", 80, 8080)], {"app": "echo"}),
        pod("shop", "web-v1-0", "127.0.11.11", {"app": "web", "version": "v1"}, "web"),
        pod("shop", "web-v2-0", "127.0.11.12", {"app": "web", "version": "v2"}, "web"),
        pod("shop", "db-0", "127.0.11.13", {"app": "db"}, "db"),
        pod("shop", "reviews-0", "127.0.11.14", {"app": "reviews"}, "reviews"),
        pod("other", "echo-0", "127.0.11.21", {"app": "echo"}, "echo"),
        waypoint("shop", "waypoint"),
        waypoint("shop", "reviews-waypoint", for_service_account="reviews"),
        waypoint("other", "waypoint"),
        http_route("shop", "web-split", "web", 80, [("web-v1", v1_weight), ("web-v2", v2_weight)]),
    ]
