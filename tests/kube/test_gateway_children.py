"""Issue 3, list items 1–3: Gateways applied with kubectl become ServiceAccount/Deployment/Service,
status follows the Service's endpoints, edits propagate, and bad input becomes conditions."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from tests.kube.cluster import KubeCluster
from tests.kube.waiting import eventually
from waypoint.controller import WaypointController

pytestmark = pytest.mark.kube

MANAGED = "istio.io-mesh-controller"
UNSUPPORTED = 'Expected a single listener on port 15008 with protocol "HBONE"'


HBONE_LISTENER = "{name: mesh, port: 15008, protocol: HBONE}"


def gateway_yaml(namespace: str, name: str, *, annotations: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, listener: str = HBONE_LISTENER) -> str:
    return textwrap.dedent(f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata:
          name: {name}
          namespace: {namespace}
          labels: {json.dumps(labels or {})}
          annotations: {json.dumps(annotations or {})}
        spec:
          gatewayClassName: istio-waypoint
          listeners: [{listener}]
        """)


def children(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = {kind: cluster.get_json(kind, name, "-n", namespace, "--show-managed-fields")
             for kind in ("serviceaccount", "deployment", "service")}
    return found if all(found.values()) else None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def ready_endpoint_slice(namespace: str, service: str, ip: str = "10.244.0.7") -> str:
    return textwrap.dedent(f"""\
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: {service}-test
          namespace: {namespace}
          labels: {{kubernetes.io/service-name: {service}}}
        addressType: IPv4
        ports: [{{name: mesh, port: 15008, protocol: TCP}}, {{name: status-port, port: 15021, protocol: TCP}}]
        endpoints:
        - addresses: [{ip}]
          conditions: {{ready: true}}
        """)


def test_namespace_waypoint_gets_children_and_becomes_programmed(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    """SA, Deployment and Service appear with the labels, ports and ownerReferences of reference §3.3;
    PROGRAMMED turns True only once the waypoint Service has a ready endpoint on 15008."""
    kube_cluster.apply(gateway_yaml(namespace, "waypoint", labels={"topology.istio.io/network": "net-1"}))
    objects = eventually(lambda: children(kube_cluster, namespace, "waypoint"), what="children")
    gateway = kube_cluster.get_json("gateway", "waypoint", "-n", namespace)

    for kind, obj in objects.items():
        labels = obj["metadata"]["labels"]
        assert labels["gateway.networking.k8s.io/gateway-name"] == "waypoint", kind
        assert labels["gateway.istio.io/managed"] == MANAGED, kind
        assert labels["gateway.networking.k8s.io/gateway-class-name"] == "istio-waypoint", kind
        assert labels["topology.istio.io/network"] == "net-1", kind  # Gateway labels are copied
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "waypoint",
            "uid": gateway["metadata"]["uid"],
        }], kind
        managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
        assert managers == {"istio.io/gateway-controller"}, kind

    deployment = objects["deployment"]
    assert deployment["metadata"]["labels"]["istio.io/dataplane-mode"] == "none"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["istio.io/dataplane-mode"] == "none"
    assert pod["spec"]["serviceAccountName"] == "waypoint"
    proxy = pod["spec"]["containers"][0]
    assert proxy["command"] == ["envoy"] and proxy["args"][0] == "-c"
    assert {p["containerPort"] for p in proxy["ports"]} == {15008, 15021, 15020, 15090}
    bootstrap = " ".join(pod["spec"]["initContainers"][0]["command"])
    assert f"pyambient waypoint bootstrap --name waypoint --namespace {namespace} --xds-socket " in bootstrap

    service = objects["service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p.get("appProtocol")) for p in service["spec"]["ports"]] == [
        ("status-port", 15021, "tcp"), ("mesh", 15008, "hbone")]

    def not_yet_programmed() -> dict[str, Any] | None:
        gw = kube_cluster.get_json("gateway", "waypoint", "-n", namespace)
        programmed = condition(gw, "Programmed")
        return gw if programmed and programmed["reason"] == "AddressNotAssigned" else None

    gw = eventually(not_yet_programmed, what="Programmed=False/AddressNotAssigned")
    assert condition(gw, "Accepted")["status"] == "True"  # type: ignore[index]
    assert "addresses" not in gw["status"]

    kube_cluster.apply(ready_endpoint_slice(namespace, "waypoint"))

    def programmed_column() -> str | None:
        table = kube_cluster.kubectl("get", "gateway", "waypoint", "-n", namespace).stdout
        header, row = table.splitlines()[:2]
        values = dict(zip(header.split(), row.split(), strict=False))
        return values.get("PROGRAMMED") if values.get("PROGRAMMED") == "True" else None

    eventually(programmed_column, what="kubectl get gateway PROGRAMMED True")
    gw = kube_cluster.get_json("gateway", "waypoint", "-n", namespace)
    cluster_ip = service["spec"]["clusterIP"]
    assert gw["status"]["addresses"] == [
        {"type": "IPAddress", "value": cluster_ip},
        {"type": "Hostname", "value": f"waypoint.{namespace}.svc.cluster.local"},
    ]
    assert condition(gw, "Programmed")["message"] == (  # type: ignore[index]
        f"Resource programmed, assigned to service(s) waypoint.{namespace}.svc.cluster.local:15008")
    assert [lst["name"] for lst in gw["status"]["listeners"]] == ["mesh"]


def test_service_account_waypoint(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    """A waypoint for one service account (`istio.io/for-service-account`) gets its own children,
    carrying the annotation so the data plane can tell which workloads it serves."""
    kube_cluster.apply(gateway_yaml(namespace, "reviews-waypoint",
                                    annotations={"istio.io/for-service-account": "bookinfo-reviews"}))
    objects = eventually(lambda: children(kube_cluster, namespace, "reviews-waypoint"), what="children")
    for kind, obj in objects.items():
        assert obj["metadata"]["annotations"]["istio.io/for-service-account"] == "bookinfo-reviews", kind
    # The mesh model sees the same Gateway through the controller's feed.
    eventually(lambda: any(o["kind"] == "Gateway" and o["metadata"]["name"] == "reviews-waypoint"
                           for o in controller.mesh_objects()), what="gateway in mesh objects")


def test_editing_gateway_updates_children_and_delete_leaves_them_to_gc(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    kube_cluster.apply(gateway_yaml(namespace, "edited", annotations={"istio.io/for-service-account": "a"}))
    eventually(lambda: children(kube_cluster, namespace, "edited"), what="children")

    kube_cluster.kubectl("label", "gateway", "edited", "-n", namespace, "team=payments")
    kube_cluster.kubectl("annotate", "--overwrite", "gateway", "edited", "-n", namespace,
                         "istio.io/for-service-account=b")

    def updated() -> bool:
        objects = children(kube_cluster, namespace, "edited") or {}
        return len(objects) == 3 and all(
            o["metadata"]["labels"].get("team") == "payments"
            and o["metadata"]["annotations"].get("istio.io/for-service-account") == "b"
            for o in objects.values()
        )

    eventually(updated, what="label and annotation on all children")

    uid = kube_cluster.get_json("gateway", "edited", "-n", namespace)["metadata"]["uid"]
    kube_cluster.kubectl("delete", "gateway", "edited", "-n", namespace)
    # No garbage collector runs here: the controller itself deletes nothing, and every child is
    # owned by the deleted Gateway's uid, which is what lets a real cluster's GC remove them.
    objects = children(kube_cluster, namespace, "edited")
    assert objects is not None
    for kind, obj in objects.items():
        assert [o["uid"] for o in obj["metadata"]["ownerReferences"]] == [uid], kind


def test_wrong_listener_gets_listener_condition_but_gateway_stays_accepted(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    kube_cluster.apply(gateway_yaml(namespace, "wrong",
                                    listener="{name: http, port: 8080, protocol: HTTP}"))

    def listener_rejected() -> dict[str, Any] | None:
        gw = kube_cluster.get_json("gateway", "wrong", "-n", namespace)
        listeners = (gw.get("status") or {}).get("listeners") or []
        return gw if listeners else None

    gw = eventually(listener_rejected, what="listener status")
    [listener] = gw["status"]["listeners"]
    accepted = next(c for c in listener["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"], accepted["message"]) == (
        "False", "UnsupportedProtocol", UNSUPPORTED)
    assert condition(gw, "Accepted")["status"] == "True"  # type: ignore[index]
    # The Deployment is still created (as istiod does), with the listener's port on the Service.
    objects = eventually(lambda: children(kube_cluster, namespace, "wrong"), what="children")
    assert [p["port"] for p in objects["service"]["spec"]["ports"]] == [15021, 8080]


def test_existing_unmanaged_object_is_never_touched(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    kube_cluster.apply(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: taken, namespace: {namespace}, labels: {{owner: someone-else}}}}
        spec: {{ports: [{{port: 80}}]}}
        """))
    before = kube_cluster.get_json("service", "taken", "-n", namespace)
    kube_cluster.apply(gateway_yaml(namespace, "taken"))

    def flagged() -> dict[str, Any] | None:
        gw = kube_cluster.get_json("gateway", "taken", "-n", namespace)
        programmed = condition(gw, "Programmed")
        return gw if programmed and programmed["reason"] == "Invalid" else None

    gw = flagged() or eventually(flagged, what="Programmed=False/Invalid")
    assert "without label gateway.istio.io/managed" in condition(gw, "Programmed")["message"]  # type: ignore[index]
    after = kube_cluster.get_json("service", "taken", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "ownerReferences" not in after["metadata"]
    # The other children are still created: only the conflicting object is skipped.
    assert kube_cluster.get_json("deployment", "taken", "-n", namespace) is not None


def test_invalid_gateway_gets_a_condition_not_a_crash(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    long_name = "w" * 70  # a valid Gateway name, but too long for the Service it needs
    kube_cluster.apply(gateway_yaml(namespace, long_name))

    def rejected() -> dict[str, Any] | None:
        gw = kube_cluster.get_json("gateway", long_name, "-n", namespace)
        accepted = condition(gw, "Accepted")
        return gw if accepted and accepted["status"] == "False" else None

    gw = eventually(rejected, what="Accepted=False")
    assert condition(gw, "Accepted")["reason"] == "InvalidParameters"  # type: ignore[index]
    assert kube_cluster.get_json("deployment", long_name, "-n", namespace) is None
    # The controller keeps working for everyone else.
    kube_cluster.apply(gateway_yaml(namespace, "fine"))
    eventually(lambda: children(kube_cluster, namespace, "fine"), what="children of a valid Gateway")
    assert controller.reconcile_errors == 0


def test_gateway_class_is_created_with_status_and_never_overwritten(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    def accepted_class() -> dict[str, Any] | None:
        gc = kube_cluster.get_json("gatewayclass", "istio-waypoint")
        accepted = condition(gc, "Accepted") if gc else None
        return gc if accepted and accepted["status"] == "True" else None

    gc = eventually(accepted_class, what="GatewayClass Accepted")
    assert gc["spec"]["controllerName"] == "istio.io/mesh-controller"
    assert condition(gc, "Accepted")["message"] == "Handled by Istio controller"  # type: ignore[index]

    kube_cluster.kubectl("patch", "gatewayclass", "istio-waypoint", "--type=merge",
                         "-p", '{"spec":{"description":"edited by a user"}}')
    # A Gateway reconcile (and a class event) must leave the user's edit alone.
    kube_cluster.apply(gateway_yaml(namespace, "after-class-edit"))
    eventually(lambda: children(kube_cluster, namespace, "after-class-edit"), what="children")
    gateway_class = kube_cluster.get_json("gatewayclass", "istio-waypoint")
    assert gateway_class["spec"]["description"] == "edited by a user"


def test_hostname_address_means_manual_deployment(
    kube_cluster: KubeCluster, controller: WaypointController, namespace: str
) -> None:
    """A Gateway addressed by hostname is run by the user: nothing is deployed, and status follows
    the Service that hostname names."""
    kube_cluster.apply(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: my-waypoint, namespace: {namespace}}}
        spec: {{ports: [{{name: mesh, port: 15008}}]}}
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {{name: manual, namespace: {namespace}}}
        spec:
          gatewayClassName: istio-waypoint
          addresses: [{{type: Hostname, value: my-waypoint.{namespace}.svc.cluster.local}}]
          listeners: [{HBONE_LISTENER}]
        """))
    kube_cluster.apply(ready_endpoint_slice(namespace, "my-waypoint"))

    def programmed() -> dict[str, Any] | None:
        gw = kube_cluster.get_json("gateway", "manual", "-n", namespace)
        cond = condition(gw, "Programmed")
        return gw if cond and cond["status"] == "True" else None

    gw = eventually(programmed, what="Programmed from the user's Service")
    assert gw["status"]["addresses"][-1] == {
        "type": "Hostname", "value": f"my-waypoint.{namespace}.svc.cluster.local"}
    assert kube_cluster.get_json("deployment", "manual", "-n", namespace) is None
    assert kube_cluster.get_json("serviceaccount", "manual", "-n", namespace) is None
