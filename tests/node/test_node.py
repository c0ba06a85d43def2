"""A real node (node.py): pods run, Services and cluster DNS work, and deploy/ runs on it as a user applies it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube.cluster import ROOT
from tests.node.ambient import ready_pods, web_server
from tests.node.node import NODE_NAME, TestNode

pytestmark = pytest.mark.node

# The pyambient image has python3 with the full stdlib: a web server and a client without any other image.
WEB_IMAGE = "ghcr.io/pyambient/pyambient:0.1.0"


def _web(namespace: str) -> str:
    return web_server(namespace, image=WEB_IMAGE, command='[python3, -m, http.server, "8080", --directory, /etc]')


def _http_get_in_pod(node: TestNode, namespace: str, pod: str, url: str) -> str:
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).status)"
    return node.kubectl("exec", "-n", namespace, pod, "--", "python3", "-c", script).stdout.strip()


def test_node_is_ready_and_schedulable(test_node: TestNode) -> None:
    node = test_node.get_json("node", NODE_NAME)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert not node["spec"].get("taints"), node["spec"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"


@pytest.fixture(scope="module")
def web(test_node: TestNode) -> Iterator[str]:
    test_node.kubectl("create", "namespace", "web")
    test_node.kubectl("apply", "-f", "-", input=_web("web"))
    pods = test_node.wait_for("web pod Ready", lambda: ready_pods(test_node, "web", "app=web"))
    yield pods[0]["metadata"]["name"]
    test_node.kubectl("delete", "namespace", "web", "--wait=false")


def test_pod_answers_on_its_pod_ip_from_the_node(test_node: TestNode, web: str) -> None:
    pod = test_node.get_json("pod", web, "-n", "web")
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("10.244.0."), pod_ip
    with test_node.ns.connect(pod_ip, 8080) as conn:
        conn.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200"), reply[:200]
    assert web.encode() in reply  # /etc/hostname of the pod


def test_pod_reaches_a_service_by_cluster_ip_and_by_dns_name(test_node: TestNode, web: str) -> None:
    service_ip = test_node.get_json("service", "web", "-n", "web")["spec"]["clusterIP"]
    assert _http_get_in_pod(test_node, "web", web, f"http://{service_ip}/hostname") == "200"
    assert _http_get_in_pod(test_node, "web", web, "http://web.web.svc.cluster.local/hostname") == "200"
    assert _http_get_in_pod(test_node, "web", web, "http://web/hostname") == "200"  # the search path


def test_pods_have_no_default_route(test_node: TestNode, web: str) -> None:
    routes = test_node.kubectl("exec", "-n", "web", web, "--", "ip", "route").stdout
    assert "default" not in routes, routes
    assert "10.96.0.0/16" in routes, routes


# -- deploy/ as a user applies it ---------------------------------------------------------------


def _rollout(node: TestNode, kind: str, name: str) -> None:
    node.kubectl("rollout", "status", f"{kind}/{name}", "-n", "istio-system", "--timeout=240s", timeout=260)


@pytest.fixture(scope="module")
def deployed(test_node: TestNode) -> TestNode:
    test_node.apply_deploy()
    _rollout(test_node, "deployment", "pyambient-controller")
    _rollout(test_node, "daemonset", "ztunnel")
    _rollout(test_node, "daemonset", "pyambient-cni-node")
    return test_node


def test_deploy_brings_up_the_controller_and_the_ztunnel_daemonset(deployed: TestNode) -> None:
    for selector in ("app=pyambient-controller", "app=ztunnel", "app=pyambient-cni-node"):
        pods = ready_pods(deployed, "istio-system", selector)
        assert len(pods) == 1, selector
        assert pods[0]["spec"]["nodeName"] == NODE_NAME
    controller_logs = deployed.kubectl("logs", "-n", "istio-system", "deploy/pyambient-controller").stdout
    assert "forbidden" not in controller_logs.lower(), controller_logs  # deploy/'s RBAC covers every watch
    ztunnel = ready_pods(deployed, "istio-system", "app=ztunnel")[0]["metadata"]["name"]
    logs = deployed.kubectl("logs", "-n", "istio-system", ztunnel).stdout
    # From the manifest's arguments alone: the node name from the downward API, certificates from the CA client.
    assert f"ztunnel ready node={NODE_NAME}" in logs, logs
    assert "HBONE is refused until this ztunnel has an identity" not in logs, logs


def _gateway(namespace: str) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: {namespace}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
"""


def _condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == kind:
            return str(c["status"])
    return None


def _children(node: TestNode, namespace: str) -> list[str]:
    found = []
    for kind in ("deployment", "service", "serviceaccount"):
        if node.get_json(kind, "waypoint", "-n", namespace) is not None:
            found.append(kind)
    return found


def test_waypoint_gateway_is_programmed_with_envoy_ready_and_our_listeners(deployed: TestNode) -> None:
    node = deployed
    node.kubectl("create", "namespace", "mesh")
    node.kubectl("apply", "-f", "-", input=_gateway("mesh"))
    node.wait_for("Gateway Programmed", lambda: _condition(
        node.get_json("gateway", "waypoint", "-n", "mesh"), "Programmed") == "True", timeout=240)
    node.wait_for("waypoint pod Ready", lambda: ready_pods(node, "mesh", "gateway.networking.k8s.io/gateway-name"
                                                            "=waypoint"), timeout=240)
    listeners = subprocess.run(
        [sys.executable, "-m", "pyambient", "proxy-config", "listener", "deploy/waypoint", "-n", "mesh",
         f"--kubeconfig={node.kubeconfig}", "-o", "json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert listeners.returncode == 0, listeners.stderr
    names = {listener["name"] for listener in json.loads(listeners.stdout)}
    # HBONE in and out (main_internal appears once a Service uses the waypoint), plus the static readiness one.
    assert {"connect_terminate", "connect_originate", "readiness"} <= names, names


def test_deleting_the_gateway_removes_its_children(deployed: TestNode) -> None:
    node = deployed
    node.kubectl("create", "namespace", "gone")
    node.kubectl("apply", "-f", "-", input=_gateway("gone"))
    node.wait_for("children", lambda: len(_children(node, "gone")) == 3, timeout=120)
    node.kubectl("delete", "gateway", "waypoint", "-n", "gone")
    # No controller deletes anything: the garbage collector follows the ownerReferences.
    node.wait_for("children gone", lambda: not _children(node, "gone"), timeout=120)


def test_a_killed_controller_pod_is_recreated_and_converges(deployed: TestNode) -> None:
    node = deployed
    old = ready_pods(node, "istio-system", "app=pyambient-controller")[0]["metadata"]["name"]
    node.kubectl("delete", "pod", old, "-n", "istio-system", "--grace-period=0", "--force")
    _rollout(node, "deployment", "pyambient-controller")
    new = node.wait_for("a new controller pod Ready", lambda: [
        p for p in ready_pods(node, "istio-system", "app=pyambient-controller") if p["metadata"]["name"] != old])
    assert new[0]["metadata"]["name"] != old
    # It took the CA the first one created (Secret istio-system/istio-ca-secret), not a new root. (Ready is not
    # yet started: the Deployment has no readiness probe, so the line is waited for.)
    node.wait_for("the new controller loads the CA from istio-ca-secret", lambda: (
        "using the self-signed root of Secret istio-system/istio-ca-secret"
        in node.kubectl("logs", "-n", "istio-system", new[0]["metadata"]["name"]).stdout), timeout=120)
    # The new controller converges: a Gateway created after the restart is Programmed.
    node.kubectl("create", "namespace", "after")
    node.kubectl("apply", "-f", "-", input=_gateway("after"))
    node.wait_for("Gateway Programmed after the restart", lambda: _condition(
        node.get_json("gateway", "waypoint", "-n", "after"), "Programmed") == "True", timeout=240)
