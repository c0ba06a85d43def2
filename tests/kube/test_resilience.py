"""Issue 3, list item 5 and the restart-safety rules: the controller survives an apiserver restart,
resumes or relists its watches, converges after its own restart without duplicating anything."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.kube.cluster import KubeCluster
from tests.kube.conftest import PublishedObjects
from tests.kube.test_gateway_children import children, condition, gateway_yaml
from tests.kube.waiting import eventually
from waypoint.controller import WaypointController
from waypoint.kube.api import GATEWAYS, KubeApi, ResourceVersionExpired
from waypoint.kube.watch import Informer
from waypoint.settings import WatchSettings

pytestmark = pytest.mark.kube


def child_uids(cluster: KubeCluster, namespace: str, name: str) -> dict[str, str]:
    objects = children(cluster, namespace, name) or {}
    return {kind: obj["metadata"]["uid"] for kind, obj in objects.items()}


def count_managed(cluster: KubeCluster, namespace: str) -> int:
    listed = cluster.get_json("serviceaccounts,deployments,services", "-n", namespace,
                              "-l", "gateway.istio.io/managed=istio.io-mesh-controller")
    return len(listed["items"])


def test_apiserver_restart_mid_test_converges(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    """The apiserver goes away under a running controller; a Gateway created right after it comes back
    (while the controller is still backing off) and an edit made then are both reconciled."""
    kube_cluster.apply(gateway_yaml(namespace, "before"))
    eventually(lambda: children(kube_cluster, namespace, "before"), what="children before restart")
    before_uids = child_uids(kube_cluster, namespace, "before")
    reconnects_before = sum(i.reconnects for i in controller.informers.values())

    kube_cluster.stop_apiserver()
    # Every watch notices the outage (and starts backing off) before the server returns.
    eventually(lambda: sum(i.reconnects for i in controller.informers.values()) >= reconnects_before + 10,
               what="informers to notice the outage", timeout=30)
    kube_cluster.start_apiserver()

    kube_cluster.apply(gateway_yaml(namespace, "during"))
    kube_cluster.kubectl("label", "gateway", "before", "-n", namespace, "after-restart=yes")

    eventually(lambda: children(kube_cluster, namespace, "during"), what="children of the new Gateway",
               timeout=40)

    def relabelled() -> bool:
        objects = children(kube_cluster, namespace, "before") or {}
        return all(o["metadata"]["labels"].get("after-restart") == "yes" for o in objects.values())

    eventually(relabelled, what="edit made after the restart", timeout=40)
    assert child_uids(kube_cluster, namespace, "before") == before_uids  # updated in place, not re-created

    def accepted(name: str) -> bool:
        gw = kube_cluster.get_json("gateway", name, "-n", namespace)
        return bool(condition(gw, "Accepted") and condition(gw, "Accepted")["status"] == "True")  # type: ignore[index]

    eventually(lambda: accepted("during"), what="status on the new Gateway")
    assert count_managed(kube_cluster, namespace) == 6


def test_controller_restart_creates_no_duplicates(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str
) -> None:
    """A Gateway created while the controller is down is reconciled when it starts again; the
    objects of Gateways it had already handled are left exactly as they were (same uid, no copies)."""
    first = WaypointController(kube_api)
    first.start()
    assert first.wait_synced(30)
    kube_cluster.apply(gateway_yaml(namespace, "kept"))
    eventually(lambda: children(kube_cluster, namespace, "kept"), what="children")

    def settled() -> bool:
        gw = kube_cluster.get_json("gateway", "kept", "-n", namespace)
        return condition(gw, "Programmed") is not None and condition(gw, "Programmed")["reason"] != "Pending"  # type: ignore[index]

    eventually(settled, what="status written")
    first.stop()
    uids = child_uids(kube_cluster, namespace, "kept")
    versions = {kind: obj["metadata"]["resourceVersion"]
                for kind, obj in (children(kube_cluster, namespace, "kept") or {}).items()}

    kube_cluster.apply(gateway_yaml(namespace, "while-down"))

    second = WaypointController(kube_api)
    second.start()
    try:
        assert second.wait_synced(30)
        eventually(lambda: children(kube_cluster, namespace, "while-down"), what="children of while-down")
        eventually(lambda: second.queue.idle(), what="queue drained")
        assert child_uids(kube_cluster, namespace, "kept") == uids
        after = {kind: obj["metadata"]["resourceVersion"]
                 for kind, obj in (children(kube_cluster, namespace, "kept") or {}).items()}
        assert after == versions, "a restarted controller rewrote objects that were already right"
        assert count_managed(kube_cluster, namespace) == 6
    finally:
        second.stop()


def test_watch_from_expired_resource_version_relists(kube_cluster: KubeCluster, kube_api: KubeApi,
                                                     namespace: str) -> None:
    """410 Gone is recognised, and the informer recovers by listing again (with the full object set)."""
    kube_cluster.apply(gateway_yaml(namespace, "listed"))
    with pytest.raises(ResourceVersionExpired):
        for _ in kube_api.watch(GATEWAYS, "1", timeout_seconds=5, read_timeout=10, connect_timeout=5):
            pass

    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(resource: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        with lock:
            if new is not None:
                seen.append(new)

    informer = Informer(kube_api, GATEWAYS, record, WatchSettings(), resume_from="1")
    informer.start()
    try:
        assert informer.synced.wait(20)
        assert informer.relists == 1
        assert informer.get(namespace, "listed") is not None
        assert any(o["metadata"]["name"] == "listed" for o in seen)
    finally:
        informer.stop()
        informer.join(5)


def test_mesh_feed_hands_kubectl_objects_to_the_control_plane(
    kube_cluster: KubeCluster, controller: WaypointController, published: PublishedObjects, namespace: str
) -> None:
    """Namespaces, Services, EndpointSlices, Pods, ServiceAccounts, HTTPRoutes, AuthorizationPolicies,
    PeerAuthentications and Gateways reach the control plane as `kubectl get -o json` shows them, and build a Mesh."""
    from xds.mesh.objects import mesh_from_objects

    kube_cluster.kubectl("label", "namespace", namespace, "istio.io/dataplane-mode=ambient")
    kube_cluster.apply(gateway_yaml(namespace, "waypoint"))
    kube_cluster.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: {namespace}, labels: {{istio.io/use-waypoint: waypoint}}}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews, namespace: {namespace}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: reviews, port: 9080}}]
  rules:
  - backendRefs: [{{name: reviews, port: 9080, weight: 100}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-nothing, namespace: {namespace}}}
spec: {{action: ALLOW}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: {namespace}}}
spec: {{mtls: {{mode: STRICT}}}}
""")

    def fed() -> list[dict[str, Any]] | None:
        objects = [o for o in published.latest() if (o.get("metadata") or {}).get("namespace") == namespace
                   or o.get("kind") == "Namespace" and o["metadata"]["name"] == namespace]
        kinds = {o["kind"] for o in objects}
        wanted = {"Namespace", "Service", "HTTPRoute", "AuthorizationPolicy", "PeerAuthentication", "Gateway",
                  "ServiceAccount"}
        return objects if wanted <= kinds else None

    objects = eventually(fed, what="objects published to the control plane")
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"][0]["name"] == "reviews"
    mesh = mesh_from_objects(published.latest())
    assert mesh.service(namespace, "reviews") is not None
    # issue 9's probe: cluster mode watches PeerAuthentication, so a STRICT policy reaches the mesh model
    assert [(p.namespace, p.name, p.mode.value) for p in mesh.peer_authentications] == [(namespace, "strict", "STRICT")]
    assert controller.mesh_feed is not None and controller.mesh_feed.publishes >= 1
