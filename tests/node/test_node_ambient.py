"""Ambient on the real node (issue 13): deploy/ applied as a user applies it (controller, ztunnel DaemonSet with
its CA client and in-pod mode, the CNI node agent), then the seeds' objects (examples/node/) with `kubectl apply`.
Real pods are captured in their own network namespaces; every check reads what a user would read (kubectl exec,
kubectl logs, the ztunnel pod's 15020).

The clients run `fetch` (hack/images/app) inside their pods: one new TCP connection per request."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.kube.cluster import ROOT
from tests.node.ambient import (
    EXAMPLES,
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
    ztunnel_logs,
    ztunnel_metrics,
    ztunnel_pod,
)
from tests.node.node import NODE_NAME, TestNode

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def mesh(test_node: TestNode) -> TestNode:
    apply_mesh(test_node)
    return test_node


# -- 1: L4 mTLS between pods ------------------------------------------------------------------------


def test_pod_to_pod_traffic_is_mtls_with_the_client_identity_and_the_app_sees_plaintext(mesh: TestNode) -> None:
    node = mesh
    reply = node.wait_for("sleep reaches helloworld", lambda: (r := fetch(node, NS, "sleep",
                          "http://helloworld:5000/"))["ok"] and r, timeout=120)
    (server,) = reply["ok"]
    assert server.startswith("helloworld-v1-"), reply
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in ready_pods(node, NS, "app in (sleep,helloworld)")}
    sleep_ip = next(ip for name, ip in pods.items() if name.startswith("sleep-"))
    server_ip = pods[server]
    # In-pod mode has no node-local fast path (as upstream since 1.22): even on one node, the client's ztunnel
    # opened a TCP+TLS connection from inside sleep's netns to the helloworld pod's 15008, and the destination
    # side of the ztunnel, in that pod's netns, names the client's SPIFFE identity from its certificate.
    sleep_identity = f"spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/sleep"
    logs = ztunnel_logs(node).splitlines()
    assert any(f"using HBONE via {server_ip}:15008 type Direct" in line for line in logs), logs[-5:]
    inbound = [line for line in logs if "connection complete" in line and 'direction="inbound"' in line
               and f'dst.workload="{server}"' in line]
    assert any(f"src.addr={sleep_ip}:" in line and f'src.identity="{sleep_identity}"' in line
               and f"dst.addr={server_ip}:15008" in line
               and f'dst.identity="spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/helloworld"' in line
               for line in inbound), inbound
    # The app itself read a plaintext HTTP request line (no TLS bytes reach it).
    app_log = node.kubectl("logs", "-n", NS, server).stdout
    assert "line='GET / HTTP/1.1'" in app_log, app_log


# -- 3: L4 authorization ----------------------------------------------------------------------------


def test_l4_authorization_allows_sleep_and_refuses_notsleep_with_an_rbac_log_line(mesh: TestNode) -> None:
    node = mesh
    node.kubectl("apply", "-f", str(EXAMPLES / "60-authz.yaml"))
    try:
        refused = node.wait_for("notsleep refused", lambda: (r := fetch(node, NS, "notsleep",
                                "http://helloworld:5000/"))["errors"] and not r["ok"] and r, timeout=120)
        assert sum(refused["errors"].values()) == 1, refused
        allowed = fetch(node, NS, "sleep", "http://helloworld:5000/", count=5)
        assert sum(allowed["ok"].values()) == 5 and not allowed["errors"], allowed
        notsleep = f"spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/notsleep"
        rbac = [line for line in ztunnel_logs(node).splitlines() if "RBAC rejected" in line]
        assert any(notsleep in line for line in rbac), rbac
    finally:
        node.kubectl("delete", "-f", str(EXAMPLES / "60-authz.yaml"))


# -- 2: round robin ---------------------------------------------------------------------------------


def test_new_connections_round_robin_across_the_two_helloworld_replicas(mesh: TestNode) -> None:
    node = mesh
    replicas = sorted(p["metadata"]["name"] for p in ready_pods(node, NS, "app=helloworld"))
    assert len(replicas) == 2
    node.wait_for("no policy left", lambda: not fetch(node, NS, "notsleep", "http://helloworld:5000/")["errors"],
                  timeout=60)
    counts = fetch(node, NS, "sleep", "http://helloworld:5000/", count=40)
    assert not counts["errors"], counts
    # Round robin, not random: each replica gets exactly every other new connection.
    assert counts["ok"] == {replicas[0]: 20, replicas[1]: 20}, counts


# -- 8: enrolment -----------------------------------------------------------------------------------


def _outside(namespace: str) -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---{web_server(namespace)}"""


def test_unlabelled_namespace_is_untouched_until_labelled_then_running_pods_are_enrolled(mesh: TestNode) -> None:
    node = mesh
    node.kubectl("apply", "-f", "-", input=_outside("outside"))
    rollout(node, "outside", "deployment", "web")
    web = pod_name(node, "outside", "app=web")
    # Not ambient: the ztunnel never hears of it, and the mesh client reaches it without HBONE on its side.
    assert f"pod=outside/{web} " not in ztunnel_logs(node)
    plain = fetch(node, NS, "sleep", "http://web.outside/")
    assert plain["ok"] == {web: 1}, plain
    before = restarts(node, "outside", web)
    node.kubectl("label", "namespace", "outside", "istio.io/dataplane-mode=ambient")
    node.wait_for(f"{web} enrolled after the label", lambda: enrolled(node, web, "outside"), timeout=120)
    assert restarts(node, "outside", web) == before  # enrolled while running, not restarted
    node.get_json("pod", web, "-n", "outside")  # the same pod
    meshed = fetch(node, NS, "sleep", "http://web.outside/")
    assert meshed["ok"] == {web: 1}, meshed
    lines = [line for line in ztunnel_logs(node).splitlines()
             if "connection complete" in line and f'dst.workload="{web}"' in line]
    assert any(f'src.identity="spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/sleep"' in line for line in lines), lines


def test_a_ztunnel_pod_restart_keeps_new_connections_working_and_removes_no_pod_rules(mesh: TestNode) -> None:
    node = mesh
    old = ztunnel_pod(node)
    node.kubectl("delete", "pod", old, "-n", "istio-system", "--wait=false")
    started = time.monotonic()
    new = node.wait_for("a new ztunnel pod Ready", lambda: [
        p["metadata"]["name"] for p in ready_pods(node, "istio-system", "app=ztunnel") if p["metadata"]["name"] != old],
        timeout=180)[0]
    counts = node.wait_for("sleep reaches helloworld through the new ztunnel", lambda: (r := fetch(
        node, NS, "sleep", "http://helloworld:5000/", count=4))["ok"] and not r["errors"] and r, timeout=120)
    print(f"new connections work {time.monotonic() - started:.1f}s after the ztunnel pod was deleted")
    assert sum(counts["ok"].values()) == 4
    logs = node.kubectl("logs", "-n", "istio-system", new).stdout
    # Every pod re-sent by the agent found its rules exactly in place: nothing removed or rewritten.
    re_enrolled = [line for line in logs.splitlines() if "pod enrolled" in line]
    assert re_enrolled and all("rules=already in place" in line for line in re_enrolled), re_enrolled
    assert "pod removed" not in logs, logs


def _inbound_lines(node: TestNode, pod: str) -> int:
    return sum(1 for line in ztunnel_logs(node).splitlines()
               if "connection complete" in line and 'direction="inbound"' in line and f'dst.workload="{pod}"' in line)


def test_unlabelling_deleting_and_opting_out_leave_no_pod_captured(mesh: TestNode) -> None:
    node = mesh
    node.kubectl("apply", "-f", "-", input=_outside("outside"))
    node.kubectl("label", "--overwrite", "namespace", "outside", "istio.io/dataplane-mode=ambient")
    rollout(node, "outside", "deployment", "web")
    web = pod_name(node, "outside", "app=web")
    node.wait_for(f"{web} enrolled", lambda: enrolled(node, web, "outside"), timeout=120)
    # Unlabelling the namespace takes the running pod out: its rules and listeners go, the pod keeps running and
    # its traffic no longer reaches the ztunnel's destination side.
    node.kubectl("label", "namespace", "outside", "istio.io/dataplane-mode-")
    node.wait_for(f"{web} removed", lambda: any("pod removed" in line and f"pod=outside/{web}" in line
                                                for line in ztunnel_logs(node).splitlines()), timeout=120)
    before = _inbound_lines(node, web)
    plain = fetch(node, NS, "sleep", "http://web.outside/", count=3)
    assert plain == {"ok": {web: 3}, "errors": {}}, plain
    assert _inbound_lines(node, web) == before
    # A deleted pod is removed as well (its CNI DEL, or the agent's reconcile), and its replacement enrolled.
    victim = sorted(p["metadata"]["name"] for p in ready_pods(node, NS, "app=helloworld"))[0]
    node.kubectl("delete", "pod", victim, "-n", NS)
    node.wait_for(f"{victim} removed", lambda: any("pod removed" in line and f"pod={NS}/{victim}" in line
                                                   for line in ztunnel_logs(node).splitlines()), timeout=120)
    rollout(node, NS, "deployment", "helloworld-v1")
    for pod in ready_pods(node, NS, "app=helloworld"):
        node.wait_for(f"{pod['metadata']['name']} enrolled", lambda p=pod: enrolled(node, p["metadata"]["name"]),
                      timeout=120)
    # A pod labelled istio.io/dataplane-mode=none in an ambient namespace is never enrolled.
    node.kubectl("run", "opted-out", "-n", NS, "--image=ghcr.io/pyambient/app:0.1.0",
                 "--image-pull-policy=IfNotPresent", "--labels=app=opted-out,istio.io/dataplane-mode=none",
                 "--", "hello-server", "8080")
    try:
        node.kubectl("wait", "--for=condition=Ready", "pod/opted-out", "-n", NS, "--timeout=120s", timeout=140)
        ip = node.get_json("pod", "opted-out", "-n", NS)["status"]["podIP"]
        reply = fetch(node, NS, "sleep", f"http://{ip}:8080/")
        assert reply == {"ok": {"opted-out": 1}, "errors": {}}, reply
        assert f"pod={NS}/opted-out " not in ztunnel_logs(node)
        assert _inbound_lines(node, "opted-out") == 0
    finally:
        node.kubectl("delete", "pod", "opted-out", "-n", NS, "--wait=false")


# -- 7: metrics -------------------------------------------------------------------------------------


def test_metrics_from_the_ztunnel_pods_15020(mesh: TestNode) -> None:
    node = mesh
    fetch(node, NS, "sleep", "http://helloworld:5000/", count=2)
    opened = [line for line in ztunnel_metrics(node).splitlines()
              if line.startswith("istio_tcp_connections_opened_total{")]
    assert any('source_principal="spiffe://cluster.local/ns/default/sa/sleep"' in line
               and 'destination_workload="helloworld"' in line and 'connection_security_policy="mutual_tls"' in line
               for line in opened), opened


# -- 6: istioctl-style views ------------------------------------------------------------------------


def test_ztunnel_config_workloads_through_the_api_server_lists_the_pods(mesh: TestNode) -> None:
    node = mesh
    # No pod named: the first running ztunnel pod in istio-system, its admin port through the API server.
    out = subprocess.run(
        [sys.executable, "-m", "pyambient", "ztunnel-config", "workloads", f"--kubeconfig={node.kubeconfig}",
         "--workload-namespace", NS],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for selector in ("app=sleep", "app=helloworld"):
        for pod in ready_pods(node, NS, selector):
            assert re.search(rf"\b{pod['metadata']['name']}\b", out.stdout), out.stdout
    assert NODE_NAME in out.stdout and "HBONE" in out.stdout, out.stdout


# -- 4: the waypoint carries the HTTPRoute for pods' traffic, and a new split applies live ------------------


def _route(v1: int, v2: int) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: httpbin-split, namespace: {NS}}}
spec:
  parentRefs:
  - {{group: "", kind: Service, name: httpbin, port: 8000}}
  rules:
  - backendRefs:
    - {{name: httpbin-v1, port: 8000, weight: {v1}}}
    - {{name: httpbin-v2, port: 8000, weight: {v2}}}
"""


def _split(node: TestNode, count: int) -> tuple[int, int]:
    """(v1, v2) answers to `count` new connections from sleep to httpbin; every one must succeed."""
    result = fetch(node, NS, "sleep", "http://httpbin:8000/", count=count)
    assert not result["errors"], result
    v1 = sum(n for body, n in result["ok"].items() if body.startswith("httpbin-v1-"))
    v2 = sum(n for body, n in result["ok"].items() if body.startswith("httpbin-v2-"))
    assert v1 + v2 == count, result
    return v1, v2


SPLIT_REQUESTS = 200
# 5σ bounds for v2's share of SPLIT_REQUESTS independent weighted picks (Envoy's weighted clusters):
# 10 %: mean 20, σ 4.2 → at most 41; 50 %: mean 100, σ 7.1 → 65..135. Disjoint, so each names its split.
AT_10_PERCENT_MAX_V2 = 41
AT_50_PERCENT_V2 = range(65, 136)


def test_the_waypoint_carries_the_90_10_route_for_pods_traffic_then_50_50_applies_live(mesh: TestNode) -> None:
    node = mesh
    node.kubectl("apply", "-f", str(EXAMPLES / "40-waypoint.yaml"), "-f", str(EXAMPLES / "50-httproute.yaml"))
    node.kubectl("wait", "--for=condition=Programmed", "gateway/waypoint", "-n", NS, "--timeout=240s", timeout=260)
    rollout(node, NS, "deployment", "waypoint")
    # Without the waypoint the ztunnel alternates v1/v2 (the httpbin Service selects both): only the route skews.
    v1, v2 = node.wait_for("the 90/10 split", lambda: (s := _split(node, 20))[1] <= 8 and s, timeout=180)
    v1, v2 = _split(node, SPLIT_REQUESTS)
    assert v2 <= AT_10_PERCENT_MAX_V2, (v1, v2)
    # The client's ztunnel sent the pods' connections to the waypoint pod over HBONE.
    waypoint_ip = ready_pods(node, NS, "gateway.networking.k8s.io/gateway-name=waypoint")[0]["status"]["podIP"]
    to_waypoint = [line for line in ztunnel_logs(node).splitlines() if "type ToServerWaypoint" in line]
    assert any(f"using HBONE via {waypoint_ip}:15008" in line for line in to_waypoint), to_waypoint[-3:]
    node.kubectl("apply", "-f", "-", input=_route(50, 50))
    node.wait_for("the 50/50 split", lambda: _split(node, 40)[1] >= 10, timeout=120)
    v1, v2 = _split(node, SPLIT_REQUESTS)
    assert v2 in AT_50_PERCENT_V2, (v1, v2)


# -- 5: hairpin: a pod IP with a waypoint is reached through that waypoint ---------------------------------


def test_a_pod_dialling_a_waypoint_enabled_pod_ip_directly_is_sent_through_the_waypoint(mesh: TestNode) -> None:
    node = mesh
    manifest = str(EXAMPLES / "70-workload-waypoint.yaml")
    node.kubectl("apply", "-f", manifest)
    try:
        node.kubectl("wait", "--for=condition=Programmed", "gateway/workload-waypoint", "-n", NS,
                     "--timeout=240s", timeout=260)
        rollout(node, NS, "deployment", "workload-waypoint")
        rollout(node, NS, "deployment", "ratings")
        (ratings,) = ready_pods(node, NS, "app=ratings")
        name, ip = ratings["metadata"]["name"], ratings["status"]["podIP"]
        node.wait_for(f"{name} enrolled", lambda: enrolled(node, name), timeout=120)
        waypoint_ip = ready_pods(node, NS, "gateway.networking.k8s.io/gateway-name=workload-waypoint")[0][
            "status"]["podIP"]
        # The waypoint's L7 policy answers GET /admin with 403: only a request that went through it can get one
        # (the ztunnels enforce L4 only, and the app answers every path with 200).
        node.wait_for("GET /admin on the pod IP refused by the waypoint", lambda: fetch(
            node, NS, "sleep", f"http://{ip}:9080/admin")["errors"] == {"HTTP 403": 1}, timeout=180)
        reached_app = node.kubectl("logs", "-n", NS, name).stdout.count("/admin")
        refused = fetch(node, NS, "sleep", f"http://{ip}:9080/admin", count=3)
        assert refused == {"ok": {}, "errors": {"HTTP 403": 3}}, refused
        allowed = fetch(node, NS, "sleep", f"http://{ip}:9080/", count=5)
        assert allowed == {"ok": {name: 5}, "errors": {}}, allowed
        app_log = node.kubectl("logs", "-n", NS, name).stdout
        assert "line='GET / HTTP/1.1'" in app_log and app_log.count("/admin") == reached_app, app_log
        logs = ztunnel_logs(node).splitlines()
        # The client's ztunnel steered the pod-IP connections to the waypoint pod, the pod IP as the authority.
        assert any(f"proxying to {ip}:9080 using HBONE via {waypoint_ip}:15008 type ToServerWaypoint" in line
                   for line in logs), [line for line in logs if "ToServerWaypoint" in line][-3:]
        # The destination side saw the waypoint's identity: the connections to the pod came from the waypoint (its
        # Envoy keeps them open, so its metrics say it, not yet an access-log line, written when one closes).
        waypoint_identity = f"spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/workload-waypoint"
        opened = [line for line in ztunnel_metrics(node).splitlines()
                  if line.startswith("istio_tcp_connections_opened_total{") and 'reporter="destination"' in line
                  and 'destination_workload="ratings"' in line]
        assert any(f'source_principal="{waypoint_identity}"' in line for line in opened), opened
    finally:
        node.kubectl("delete", "-f", manifest, "--wait=false")
