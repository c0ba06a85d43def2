"""`make demo-cluster`: the demo's control-plane scenarios on a real single-node Kubernetes (node.py).

What runs: a node in its own network namespace, deploy/ applied as a user applies it (controller Deployment,
ztunnel DaemonSet), a waypoint Gateway programmed with its Envoy pod Ready, the Envoy's listeners read through
the API server's port-forward, the Gateway deleted and its children collected. What does not run yet: ambient
traffic through the ztunnels (in-pod capture and the ztunnel's certificates are later issues), so the
traffic scenarios of `make demo` stay on the embedded mesh.
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.kube.cluster import ROOT
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


def main() -> int:
    started = time.monotonic()
    node = TestNode()
    step("starting a single-node Kubernetes (etcd, apiserver, controller-manager, scheduler, containerd, "
         "kubelet, kube-proxy, CoreDNS) in network namespace pyambient-node")
    try:
        node.start()
        step(f"node Ready in {node.timings['ready']:.1f}s")
        step("kubectl apply -f deploy/")
        node.kubectl("apply", "-f", str(ROOT / "deploy"))
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
        step("not run on the node yet: ambient traffic (in-pod capture, ztunnel certificates); "
             "`make demo` runs those scenarios on the embedded mesh")
    finally:
        step("stopping the node and restoring the host")
        node.stop()
    step(f"done in {time.monotonic() - started:.0f}s")
    return 0 if listeners.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
