"""The mesh CA outlives the controller pod on the real node: deploy/ keeps it in Secret istio-system/istio-ca-secret
(as istiod does), so a replaced controller signs under the root the running ztunnel already trusts. Pods made after
the replacement get their identities from the new controller through the same, never restarted, ztunnel."""

from __future__ import annotations

import base64

import pytest

from tests.node.ambient import (
    NS,
    TRUST_DOMAIN,
    apply_mesh,
    enrolled,
    fetch,
    pod_name,
    ready_pods,
    restarts,
    rollout,
    web_server,
)
from tests.node.node import TestNode

pytestmark = pytest.mark.node

LATE = "after-controller"


@pytest.fixture(scope="module")
def mesh(test_node: TestNode) -> TestNode:
    apply_mesh(test_node)
    return test_node


def _late_pods(namespace: str) -> str:
    """A server and a client, each with a service account of its own, enrolled (ambient namespace)."""
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: late-web, namespace: {namespace}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: late-client, namespace: {namespace}}}
---{web_server(namespace, 'late-web')}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      serviceAccountName: late-client
      terminationGracePeriodSeconds: 0
      containers:
        - {{name: client, image: "ghcr.io/pyambient/app:0.1.0", imagePullPolicy: IfNotPresent,
           command: [sleep, infinity]}}
"""


def _published_root(node: TestNode) -> str:
    return str(node.get_json("configmap", "istio-ca-root-cert", "-n", NS)["data"]["root-cert.pem"])


def test_a_replaced_controller_signs_under_the_same_root_and_new_pods_connect_without_a_ztunnel_restart(
    mesh: TestNode,
) -> None:
    node = mesh
    ztunnel = pod_name(node, "istio-system", "app=ztunnel")
    ztunnel_restarts = restarts(node, "istio-system", ztunnel)
    secret = node.get_json("secret", "istio-ca-secret", "-n", "istio-system")
    assert secret is not None and secret["type"] == "istio.io/ca-root"
    root = _published_root(node)
    assert base64.b64decode(secret["data"]["ca-cert.pem"]).decode() == root, "the published root is the Secret's"

    old = pod_name(node, "istio-system", "app=pyambient-controller")
    node.kubectl("delete", "pod", old, "-n", "istio-system", "--grace-period=0", "--force")
    new = node.wait_for("a new controller pod Ready", lambda: [
        p["metadata"]["name"] for p in ready_pods(node, "istio-system", "app=pyambient-controller")
        if p["metadata"]["name"] != old], timeout=240)[0]
    # The Deployment has no readiness probe (Ready = started): the line is waited for.
    node.wait_for("the new controller loads the CA from istio-ca-secret", lambda: (
        "using the self-signed root of Secret istio-system/istio-ca-secret"
        in node.kubectl("logs", "-n", "istio-system", new).stdout), timeout=120)

    # Identities that exist only after the replacement: the ztunnel learns of the pods over xDS from the new
    # controller (TLS verified against the root it started with) and has their certificates signed by it.
    try:
        node.kubectl("apply", "-f", "-", input=_late_pods(LATE))
        for deployment in ("web", "client"):
            rollout(node, LATE, "deployment", deployment)
        web = pod_name(node, LATE, "app=web")
        for pod in (web, pod_name(node, LATE, "app=client")):
            node.wait_for(f"{pod} enrolled", lambda p=pod: enrolled(node, p, LATE), timeout=120)
        reply = node.wait_for("the new client reaches the new server", lambda: (r := fetch(
            node, LATE, "client", "http://web/", count=2))["ok"] and not r["errors"] and r, timeout=120)
        assert reply["ok"] == {web: 2}, reply
        logs = node.kubectl("logs", "-n", "istio-system", ztunnel).stdout
        for account in ("late-web", "late-client"):
            assert f"certificate for spiffe://{TRUST_DOMAIN}/ns/{LATE}/sa/{account} issued by the CA" in logs
        assert any("connection complete" in line and f'src.identity="spiffe://{TRUST_DOMAIN}/ns/{LATE}/sa/late-client"'
                   in line for line in logs.splitlines()), logs[-3000:]
        # Established identities keep working too: a new connection between the seeds' pods.
        node.wait_for("sleep still reaches helloworld", lambda: (r := fetch(
            node, NS, "sleep", "http://helloworld:5000/"))["ok"] and not r["errors"], timeout=60)
    finally:
        node.kubectl("delete", "namespace", LATE, "--wait=false", check=False)

    assert pod_name(node, "istio-system", "app=ztunnel") == ztunnel, "the ztunnel pod was not replaced"
    assert restarts(node, "istio-system", ztunnel) == ztunnel_restarts, "nor restarted"
    assert _published_root(node) == root
    unchanged = node.get_json("secret", "istio-ca-secret", "-n", "istio-system")
    assert unchanged["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"], "never rewritten"
