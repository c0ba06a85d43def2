"""Cluster mode identity against a real API server: TokenReview auth and the published root ConfigMaps."""

from __future__ import annotations

import json

import grpc
import pytest

from pyambient.runtime.controlplane import ControlPlaneThread
from tests.harness.meshes import namespace as namespace_object
from tests.harness.meshes import pod
from tests.interop.test_ca_service import SecureControlPlane, request_for
from tests.kube.cluster import KubeCluster
from tests.kube.waiting import eventually
from waypoint.controller import WaypointController
from waypoint.kube.api import KubeApi
from waypoint.kube.tokenreview import TokenReviewAuthenticator
from xds.ca import spiffe_id
from xds.tokens import AuthenticationError, Caller

pytestmark = [pytest.mark.kube, pytest.mark.interop]


def _token(cluster: KubeCluster, ns: str, sa: str, audience: str = "istio-ca", pod_name: str = "") -> str:
    args = ["create", "token", sa, "-n", ns, "--audience", audience]
    if pod_name:
        args += ["--bound-object-kind", "Pod", "--bound-object-name", pod_name]
    return str(cluster.kubectl(*args).stdout).strip()


def _service_account(cluster: KubeCluster, ns: str, name: str) -> None:
    cluster.kubectl("create", "serviceaccount", name, "-n", ns)


def test_tokenreview_proves_the_service_account_and_refuses_other_audiences(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str
) -> None:
    _service_account(kube_cluster, namespace, "web")
    auth = TokenReviewAuthenticator(kube_api)
    assert auth.authenticate(_token(kube_cluster, namespace, "web")) == Caller(namespace, "web")
    with pytest.raises(AuthenticationError, match="audience|not authenticated|invalid"):
        auth.authenticate(_token(kube_cluster, namespace, "web", audience="kubernetes"))
    with pytest.raises(AuthenticationError):
        auth.authenticate("not-a-token")


@pytest.fixture
def ztunnel_pod(kube_cluster: KubeCluster, namespace: str) -> str:
    """The ztunnel ServiceAccount of istio-system and a ztunnel pod of its own on node-a."""
    name = f"ztunnel-{namespace}"[:63]
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ztunnel", "namespace": "istio-system"}},
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {
                "serviceAccountName": "ztunnel",
                "nodeName": "node-a",
                "containers": [{"name": "z", "image": "z"}],
            },
        },
    ]
    kube_cluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    return name


def test_secure_port_with_tokenreview_signs_for_the_pods_of_a_ztunnels_node(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str, ztunnel_pod: str
) -> None:
    token = _token(kube_cluster, "istio-system", "ztunnel", pod_name=ztunnel_pod)
    caller = TokenReviewAuthenticator(kube_api).authenticate(token)
    assert caller == Caller("istio-system", "ztunnel", ztunnel_pod, "node-a"), "a pod-bound token names its node"
    objects = [
        namespace_object(namespace),
        pod(namespace, "db-0", "127.0.11.13", {"app": "db"}, "db", node="node-a"),
        pod(namespace, "far-0", "127.0.11.31", {"app": "far"}, "far", node="node-b"),
    ]
    control = ControlPlaneThread(objects).start(authenticator=TokenReviewAuthenticator(kube_api))
    secure = SecureControlPlane(control, control.tokens)
    try:
        response = secure.create(request_for(spiffe_id(namespace, "db"), impersonate=True), token)
        assert len(response.cert_chain) == 2
        with pytest.raises(grpc.RpcError) as other_node:
            secure.create(request_for(spiffe_id(namespace, "far"), impersonate=True), token)
        assert other_node.value.code() == grpc.StatusCode.PERMISSION_DENIED
        _service_account(kube_cluster, namespace, "web")
        with pytest.raises(grpc.RpcError) as workload:
            secure.create(
                request_for(spiffe_id(namespace, "db"), impersonate=True), _token(kube_cluster, namespace, "web")
            )
        assert workload.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as unauthenticated:
            secure.create(request_for(spiffe_id(namespace, "web")), "garbage")
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as local_token:  # tokens of the local issuer mean nothing here
            secure.create(request_for(spiffe_id(namespace, "web")), control.tokens.issue(namespace, "web"))
        assert local_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        control.stop()


def test_controller_publishes_the_root_in_every_namespace(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str
) -> None:
    root = b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
    controller = WaypointController(kube_api, root_cert=root)
    controller.start()
    try:

        def published() -> bool:
            result = kube_cluster.kubectl(
                "get", "configmap", "istio-ca-root-cert", "-n", namespace, "-o", "json", check=False
            )
            if result.returncode != 0:
                return False
            data = json.loads(result.stdout)
            return bool(data["data"]["root-cert.pem"] == root.decode())

        eventually(published, timeout=30, what="istio-ca-root-cert in the namespace")
        later = f"{namespace}-later"
        kube_cluster.kubectl("create", "namespace", later)
        eventually(
            lambda: (
                kube_cluster.kubectl("get", "configmap", "istio-ca-root-cert", "-n", later, check=False).returncode == 0
            ),
            timeout=30,
            what="istio-ca-root-cert in a namespace created later",
        )
        assert (
            kube_cluster.kubectl("get", "configmap", "istio-ca-root-cert", "-n", "kube-system", check=False).returncode
            != 0
        )
    finally:
        controller.stop()


def test_controller_restores_a_deleted_or_edited_root_config_map(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str
) -> None:
    root = b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
    controller = WaypointController(kube_api, root_cert=root)
    controller.start()

    def published_root() -> str | None:
        result = kube_cluster.kubectl(
            "get", "configmap", "istio-ca-root-cert", "-n", namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            return None
        return str(json.loads(result.stdout)["data"].get("root-cert.pem"))

    try:
        eventually(lambda: published_root() == root.decode(), timeout=30, what="the root published")
        kube_cluster.kubectl("delete", "configmap", "istio-ca-root-cert", "-n", namespace)
        eventually(lambda: published_root() == root.decode(), timeout=30, what="a deleted root ConfigMap restored")
        # Created before the edit below: had the watch seen it, it would be cached before the restore.
        kube_cluster.kubectl("create", "configmap", "unrelated", "-n", namespace, "--from-literal=root-cert.pem=x")
        kube_cluster.kubectl(
            "patch", "configmap", "istio-ca-root-cert", "-n", namespace, "--type", "merge",
            "-p", json.dumps({"data": {"root-cert.pem": "not our root"}}),
        )  # fmt: skip
        eventually(lambda: published_root() == root.decode(), timeout=30, what="an edited root ConfigMap restored")
        # Other ConfigMaps are not ours to touch (not even watched: the watch selects the name).
        assert "unrelated" not in {name for _, name in _cached_config_maps(controller)}
    finally:
        controller.stop()


def _cached_config_maps(controller: WaypointController) -> list[tuple[str, str]]:
    return [
        (str(c["metadata"]["namespace"]), str(c["metadata"]["name"])) for c in controller.informers["ConfigMap"].items()
    ]
