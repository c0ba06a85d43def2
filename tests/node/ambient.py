"""The ambient scenarios' shared steps on the test node (test_node_ambient.py, demo.py): the seeds' objects as
Kubernetes manifests (examples/node/), and what a user runs to look (kubectl exec `fetch`, kubectl logs)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.kube.cluster import ROOT
from tests.node.node import TestNode

EXAMPLES = ROOT / "examples" / "node"
NS = "default"
TRUST_DOMAIN = "cluster.local"


def ready_pods(node: TestNode, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = node.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or ())]


def pod_name(node: TestNode, namespace: str, selector: str) -> str:
    return str(node.wait_for(f"a Ready pod {selector} in {namespace}",
                             lambda: ready_pods(node, namespace, selector), timeout=240)[0]["metadata"]["name"])


def rollout(node: TestNode, namespace: str, kind: str, name: str) -> None:
    node.kubectl("rollout", "status", f"{kind}/{name}", "-n", namespace, "--timeout=240s", timeout=260)


def fetch(node: TestNode, namespace: str, client: str, url: str, count: int = 1) -> dict[str, dict[str, int]]:
    """`fetch URL --count N` in the client pod: {"ok": {body: n}, "errors": {error: n}}."""
    result = node.kubectl("exec", "-n", namespace, f"deploy/{client}", "--", "fetch", url, "--count", str(count),
                          "--timeout", "10", check=False, timeout=60 + 12 * count)
    if not result.stdout.strip():
        raise AssertionError(f"fetch in {client} printed nothing: {result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def ztunnel_pod(node: TestNode) -> str:
    return pod_name(node, "istio-system", "app=ztunnel")


def ztunnel_logs(node: TestNode) -> str:
    return node.kubectl("logs", "-n", "istio-system", ztunnel_pod(node)).stdout


def enrolled(node: TestNode, pod: str, namespace: str = NS) -> bool:
    return any("pod enrolled" in line and f"pod={namespace}/{pod} " in line for line in ztunnel_logs(node).splitlines())


def apply_mesh(node: TestNode) -> None:
    """deploy/ and the L4 part of the seeds (namespace, clients, helloworld ×2, httpbin v1/v2), every pod enrolled."""
    node.apply_deploy()
    rollout(node, "istio-system", "deployment", "pyambient-controller")
    # No ztunnel restart even if the controller pod was replaced before (test_node.py's restart test): the CA is
    # Secret istio-system/istio-ca-secret, so the new controller signs under the root the ztunnels trust.
    rollout(node, "istio-system", "daemonset", "ztunnel")
    rollout(node, "istio-system", "daemonset", "pyambient-cni-node")
    for name in ("00-namespace.yaml", "10-clients.yaml", "20-helloworld.yaml", "30-httpbin.yaml"):
        node.kubectl("apply", "-f", str(EXAMPLES / name))
    for deployment in ("sleep", "notsleep", "helloworld-v1", "httpbin-v1", "httpbin-v2"):
        rollout(node, NS, "deployment", deployment)
    for selector in ("app=sleep", "app=notsleep", "app=helloworld"):
        for pod in ready_pods(node, NS, selector):
            node.wait_for(f"{pod['metadata']['name']} enrolled", lambda p=pod: enrolled(node, p["metadata"]["name"]),
                          timeout=120)


def http_get(host: str, port: int, path: str) -> str:
    """A GET from the calling thread's netns (the test reaches pods from inside the node's: in_node_netns)."""
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def ztunnel_metrics(node: TestNode) -> str:
    """The ztunnel pod's 15020 /metrics, read from inside the node."""
    pod_ip = node.get_json("pod", ztunnel_pod(node), "-n", "istio-system")["status"]["podIP"]
    return str(node.ns.in_node_netns(lambda: http_get(pod_ip, 15020, "/metrics")))


def restarts(node: TestNode, namespace: str, pod: str) -> int:
    """The pod's containers' restarts, summed."""
    return sum(c["restartCount"] for c in node.get_json("pod", pod, "-n", namespace)["status"]["containerStatuses"])


APP_IMAGE = "ghcr.io/pyambient/app:0.1.0"
HELLO_SERVER = '[hello-server, "8080"]'


def web_server(namespace: str, service_account: str = "", image: str = APP_IMAGE, command: str = HELLO_SERVER) -> str:
    """Deployment + Service `web` in `namespace`: one server on 8080 (by default `hello-server`, answering with its
    pod name), as port 80 of the Service. `command`: a YAML flow list."""
    account = f"\n      serviceAccountName: {service_account}" if service_account else ""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:{account}
      terminationGracePeriodSeconds: 0
      containers:
        - name: web
          image: {image}
          imagePullPolicy: IfNotPresent
          command: {command}
          env:
            - name: POD_NAME
              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
          readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 2}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""
