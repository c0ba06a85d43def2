"""`make demo-cluster`: the demo's control-plane scenarios on a real single-node Kubernetes (node.py).

What runs: a node in its own network namespace, deploy/ applied as a user applies it (controller Deployment,
ztunnel DaemonSet with its CA client and in-pod mode, the CNI node agent DaemonSet), a waypoint Gateway
programmed with its Envoy pod Ready, the Envoy's listeners read through the API server's port-forward, the
Gateway deleted and its children collected; then ambient traffic between real pods (examples/node/): the
client's identity at the ztunnel and plaintext at the app, L4 authorization, round robin across two replicas,
enrolment of a running pod by labelling its namespace, `pyambient ztunnel-config workloads` through the API
server, the ztunnel pod's metrics, pods' traffic through the namespace waypoint (HTTPRoute 90/10, then 50/50
applied live), and the hairpin: a pod IP with a workload waypoint dialled directly goes through that waypoint.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.kube.cluster import ROOT
from tests.node.ambient import (
    EXAMPLES,
    NS,
    apply_mesh,
    fetch,
    pod_name,
    rollout,
    ztunnel_logs,
    ztunnel_metrics,
)
from tests.node.node import TestNode, now

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: demo}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"""


def step(message: str) -> None:
    print(f"[{now()}] {message}", flush=True)


def evidence(lines: list[str], limit: int = 2) -> None:
    for line in lines[-limit:]:
        print(f"    {line}", flush=True)


def metric(line: str, *labels: str) -> str:
    """A Prometheus sample shortened to its name, the named labels and its value (the full label set is ~30)."""
    name, _, rest = line.partition("{")
    body, _, value = rest.rpartition("}")
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', body))
    shown = ", ".join(f"{k}={pairs.get(k, '')!r}" for k in labels)
    return f"{name}{{{shown}, ...}} {value.strip()}"


def ambient(node: TestNode) -> None:
    step("kubectl apply -f examples/node/ (namespace default labelled ambient; sleep, notsleep, helloworld-v1 x2, "
         "httpbin v1/v2): the node agent hands each pod's netns to the ztunnel")
    apply_mesh(node)
    evidence([line for line in ztunnel_logs(node).splitlines() if "pod enrolled" in line], limit=6)
    step("1 L4 mTLS: kubectl exec deploy/sleep -- fetch http://helloworld:5000/")
    reply = fetch(node, NS, "sleep", "http://helloworld:5000/")
    print(f"    {reply}", flush=True)
    (server,) = reply["ok"]
    server_ip = node.get_json("pod", server, "-n", NS)["status"]["podIP"]
    step(f"HBONE from sleep's netns to {server}'s 15008 (no same-node shortcut in in-pod mode), the client's "
         "identity at the destination:")
    logs = ztunnel_logs(node).splitlines()
    evidence([line for line in logs if f"via {server_ip}:15008 type Direct" in line], limit=1)
    evidence([line for line in logs if "connection complete" in line and 'direction="inbound"' in line
              and f'dst.workload="{server}"' in line], limit=1)
    step(f"the app ({server}) read plaintext HTTP:")
    evidence(node.kubectl("logs", "-n", NS, server).stdout.splitlines(), limit=1)
    step("3 L4 authorization: kubectl apply -f examples/node/60-authz.yaml (only sa/sleep may call helloworld)")
    node.kubectl("apply", "-f", str(EXAMPLES / "60-authz.yaml"))
    refused = node.wait_for("notsleep refused", lambda: (r := fetch(node, NS, "notsleep",
                            "http://helloworld:5000/"))["errors"] and r, timeout=120)
    print(f"    notsleep: {refused}", flush=True)
    print(f"    sleep:    {fetch(node, NS, 'sleep', 'http://helloworld:5000/', count=3)}", flush=True)
    evidence([line for line in ztunnel_logs(node).splitlines() if "RBAC rejected" in line], limit=1)
    node.kubectl("delete", "-f", str(EXAMPLES / "60-authz.yaml"))
    node.wait_for("policy removed", lambda: not fetch(node, NS, "notsleep", "http://helloworld:5000/")["errors"],
                  timeout=60)
    step("2 round robin: 40 new connections from sleep to helloworld (2 replicas)")
    print(f"    {fetch(node, NS, 'sleep', 'http://helloworld:5000/', count=40)}", flush=True)
    step("8 enrolment: a Deployment in namespace `outside` (not labelled) is not captured")
    node.kubectl("create", "namespace", "outside")
    node.kubectl("create", "deployment", "web", "-n", "outside", "--image=ghcr.io/pyambient/app:0.1.0",
                 "--", "hello-server", "8080")
    node.kubectl("expose", "deployment", "web", "-n", "outside", "--port=80", "--target-port=8080")
    rollout(node, "outside", "deployment", "web")
    web = pod_name(node, "outside", "app=web")
    print(f"    enrolled: {any(f'pod=outside/{web} ' in line for line in ztunnel_logs(node).splitlines())}",
          flush=True)
    step("kubectl label namespace outside istio.io/dataplane-mode=ambient: the running pod is enrolled, "
         "not restarted")
    node.kubectl("label", "namespace", "outside", "istio.io/dataplane-mode=ambient")
    node.wait_for("web enrolled", lambda: any("pod enrolled" in line and f"pod=outside/{web} " in line
                                              for line in ztunnel_logs(node).splitlines()), timeout=120)
    evidence([line for line in ztunnel_logs(node).splitlines() if f"pod=outside/{web} " in line], limit=1)
    print(f"    {fetch(node, NS, 'sleep', 'http://web.outside/')}", flush=True)
    step("6 pyambient ztunnel-config workloads --workload-namespace default (admin port through the API server)")
    workloads = subprocess.run(
        [sys.executable, "-m", "pyambient", "ztunnel-config", "workloads", f"--kubeconfig={node.kubeconfig}",
         "--workload-namespace", NS], capture_output=True, text=True, timeout=120, cwd=ROOT)
    print(workloads.stdout or workloads.stderr, flush=True)
    step("7 metrics from the ztunnel pod's 15020 (istio_tcp_connections_opened_total, source sleep)")
    evidence([metric(line, "reporter", "source_principal", "destination_workload", "connection_security_policy")
              for line in ztunnel_metrics(node).splitlines()
              if line.startswith("istio_tcp_connections_opened_total{") and 'source_workload="sleep"' in line],
             limit=1)
    step("4 kubectl apply -f examples/node/40-waypoint.yaml -f examples/node/50-httproute.yaml "
         "(namespace waypoint; httpbin 90/10 v1/v2)")
    node.kubectl("apply", "-f", str(EXAMPLES / "40-waypoint.yaml"), "-f", str(EXAMPLES / "50-httproute.yaml"))
    node.kubectl("wait", "--for=condition=Programmed", "gateway/waypoint", "-n", NS, "--timeout=240s", timeout=260)
    rollout(node, NS, "deployment", "waypoint")
    node.wait_for("the 90/10 split", lambda: sum(
        n for body, n in fetch(node, NS, "sleep", "http://httpbin:8000/", count=20)["ok"].items()
        if body.startswith("httpbin-v2-")) <= 8, timeout=180)
    print(f"    200 requests: {fetch(node, NS, 'sleep', 'http://httpbin:8000/', count=200)}", flush=True)
    evidence([line for line in ztunnel_logs(node).splitlines() if "type ToServerWaypoint" in line], limit=1)
    step("kubectl apply: the HTTPRoute at 50/50, live")
    node.kubectl("apply", "-f", "-", input=(EXAMPLES / "50-httproute.yaml").read_text()
                 .replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50"))
    time.sleep(3)
    print(f"    200 requests: {fetch(node, NS, 'sleep', 'http://httpbin:8000/', count=200)}", flush=True)
    step("5 hairpin: kubectl apply -f examples/node/70-workload-waypoint.yaml (a waypoint for workloads, pod "
         "ratings using it, the waypoint denying GET /admin); sleep dials the ratings pod IP directly")
    node.kubectl("apply", "-f", str(EXAMPLES / "70-workload-waypoint.yaml"))
    node.kubectl("wait", "--for=condition=Programmed", "gateway/workload-waypoint", "-n", NS, "--timeout=240s",
                 timeout=260)
    rollout(node, NS, "deployment", "workload-waypoint")
    rollout(node, NS, "deployment", "ratings")
    ratings = pod_name(node, NS, "app=ratings")
    ip = node.get_json("pod", ratings, "-n", NS)["status"]["podIP"]
    node.wait_for("the waypoint's policy on the pod IP", lambda: fetch(
        node, NS, "sleep", f"http://{ip}:9080/admin")["errors"] == {"HTTP 403": 1}, timeout=180)
    print(f"    GET http://{ip}:9080/admin: {fetch(node, NS, 'sleep', f'http://{ip}:9080/admin')}", flush=True)
    print(f"    GET http://{ip}:9080/:      {fetch(node, NS, 'sleep', f'http://{ip}:9080/')}", flush=True)
    logs = ztunnel_logs(node).splitlines()
    evidence([line for line in logs if f"proxying to {ip}:9080 using HBONE" in line], limit=1)
    step("the destination side: the connections to ratings came from the waypoint's identity")
    evidence([metric(line, "reporter", "source_principal", "destination_workload")
              for line in ztunnel_metrics(node).splitlines() if line.startswith(
              "istio_tcp_connections_opened_total{") and 'reporter="destination"' in line
              and 'destination_workload="ratings"' in line], limit=1)


def main() -> int:
    started = time.monotonic()
    node = TestNode()
    step("starting a single-node Kubernetes (etcd, apiserver, controller-manager, scheduler, containerd, "
         "kubelet, kube-proxy, CoreDNS) in network namespace pyambient-node")
    try:
        node.start()
        step(f"node Ready in {node.timings['ready']:.1f}s")
        step("kubectl apply -f deploy/")
        node.apply_deploy()
        for kind, name in (("deployment", "pyambient-controller"), ("daemonset", "ztunnel")):
            node.kubectl("rollout", "status", f"{kind}/{name}", "-n", "istio-system", "--timeout=300s", timeout=320)
            step(f"{kind}/{name} Ready")
        print(node.kubectl("get", "pods", "-n", "istio-system", "-o", "wide").stdout, flush=True)
        step("kubectl apply: Gateway demo/waypoint (class istio-waypoint)")
        node.kubectl("create", "namespace", "demo")
        node.kubectl("apply", "-f", "-", input=GATEWAY)
        node.kubectl("wait", "--for=condition=Programmed", "gateway/waypoint", "-n", "demo", "--timeout=300s",
                     timeout=320)
        node.kubectl("rollout", "status", "deployment/waypoint", "-n", "demo", "--timeout=300s", timeout=320)
        step("Gateway Programmed, waypoint Envoy pod Ready")
        print(node.kubectl("get", "gateway,deployment,service,pods", "-n", "demo").stdout, flush=True)
        step("pyambient proxy-config listener deploy/waypoint -n demo (through the API server's port-forward)")
        listeners = subprocess.run(
            [sys.executable, "-m", "pyambient", "proxy-config", "listener", "deploy/waypoint", "-n", "demo",
             f"--kubeconfig={node.kubeconfig}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        print(listeners.stdout or listeners.stderr, flush=True)
        step("kubectl delete gateway waypoint: the garbage collector removes its Deployment, Service, "
             "ServiceAccount")
        node.kubectl("delete", "gateway", "waypoint", "-n", "demo")
        node.kubectl("wait", "--for=delete", "deployment/waypoint", "service/waypoint", "-n", "demo",
                     "--timeout=120s", timeout=140)
        step("children gone")
        ambient(node)
    finally:
        step("stopping the node and restoring the host")
        node.stop()
    step(f"done in {time.monotonic() - started:.0f}s")
    return 0 if listeners.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
