# ruff: noqa: E501  (expected tables are kept verbatim)
"""The Kubernetes backends against a real kube-apiserver + etcd (the `kube` test cluster, Gateway CRDs installed).

There is no kubelet, so pods never run and a port-forward cannot succeed: proxy-config is checked up to
resolving its target.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.runner import run_cli
from tests.kube.cluster import KubeCluster, remove_cluster, start_cluster

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeCluster]:
    started = start_cluster()
    try:
        yield started
    finally:
        remove_cluster(started)


def test_apply_list_status_delete(cluster: KubeCluster) -> None:
    kubeconfig = str(cluster.kubeconfig)
    cluster.kubectl("create", "namespace", "apps")
    cluster.kubectl("label", "namespace", "apps", "istio.io/dataplane-mode=ambient")

    applied = run_cli(
        "waypoint",
        "apply",
        "--kubeconfig",
        kubeconfig,
        "-n",
        "apps",
        "--for",
        "service",
        "--enroll-namespace",
    )
    assert applied.code == 0, applied.err
    assert applied.out == (
        '✅ waypoint apps/waypoint applied\n✅ namespace apps labeled with "istio.io/use-waypoint: waypoint"\n'
    )
    gw = cluster.get_json("gateway", "waypoint", "-n", "apps", "--show-managed-fields")
    assert gw["spec"]["gatewayClassName"] == "istio-waypoint"
    assert gw["metadata"]["labels"] == {"istio.io/waypoint-for": "service"}
    assert [m["manager"] for m in gw["metadata"]["managedFields"]] == ["istioctl"]
    assert [m["operation"] for m in gw["metadata"]["managedFields"]] == ["Apply"]
    ns = cluster.get_json("namespace", "apps")
    assert ns["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint"

    listed = run_cli("waypoint", "list", "--kubeconfig", kubeconfig, "-n", "apps")
    assert (
        listed.out
        == "NAME       REVISION   TRAFFIC TYPE   PROGRAMMED\nwaypoint   default    service        Unknown\n"
    )

    cluster.kubectl(
        "patch",
        "gateway",
        "waypoint",
        "-n",
        "apps",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"conditions": [{"type": "Programmed", "status": "True", "reason": "Programmed", '
        '"message": "Resource programmed", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}',
    )
    status = run_cli(
        "waypoint", "status", "--kubeconfig", kubeconfig, "-n", "apps", "--waypoint-timeout", "5"
    )
    assert status.code == 0, status.err
    assert status.out == (
        "NAME       STATUS   TYPE         REASON       MESSAGE\nwaypoint   True     Programmed   Programmed   Resource programmed\n"
    )

    deleted = run_cli("waypoint", "delete", "--kubeconfig", kubeconfig, "-n", "apps", "waypoint", "other")
    assert deleted.out == "waypoint apps/waypoint deleted\nwaypoint apps/other not found\n"
    assert cluster.get_json("gateway", "waypoint", "-n", "apps") is None
    assert run_cli("waypoint", "list", "--kubeconfig", kubeconfig, "-A").out == "No waypoints found.\n"


def test_apply_without_namespace_is_not_found_error(cluster: KubeCluster) -> None:
    result = run_cli("waypoint", "apply", "--kubeconfig", str(cluster.kubeconfig), "-n", "missing-ns")
    assert result.code == 1
    assert result.err.count("\n") == 1 and result.err.startswith("Error: ")


POD = """apiVersion: v1
kind: Pod
metadata: {name: waypoint-abc, namespace: pcns, labels: {app: waypoint}}
spec: {containers: [{name: istio-proxy, image: envoy}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: pcns}
spec:
  selector: {matchLabels: {app: waypoint}}
  template:
    metadata: {labels: {app: waypoint}}
    spec: {containers: [{name: istio-proxy, image: envoy}]}
"""

PC_TARGETS = [
    ("missing-deployment", ["deploy/missing.pcns"], "unknown target deploy/missing.pcns: Not Found"),
    ("missing-pod-default-namespace", ["pod/missing"], "unknown target pod/missing.default: Not Found"),
    (
        "deployment-without-running-pods",
        ["deploy/waypoint", "-n", "pcns"],
        "no running pods for deploy/waypoint.pcns",
    ),
    ("pod-without-kubelet", ["waypoint-abc.pcns"], "port-forward to pod/waypoint-abc.pcns:15000 failed"),
]


@pytest.mark.parametrize(("target", "message"), [c[1:] for c in PC_TARGETS], ids=[c[0] for c in PC_TARGETS])
def test_proxy_config_kubernetes_targets(cluster: KubeCluster, target: list[str], message: str) -> None:
    if cluster.get_json("namespace", "pcns") is None:
        cluster.kubectl("create", "namespace", "pcns")
        cluster.apply(POD)
    result = run_cli("pc", "cluster", *target, "--kubeconfig", str(cluster.kubeconfig))
    assert result.code == 1
    assert result.err.count("\n") == 1 and message in result.err, result.err
