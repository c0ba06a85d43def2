"""The in-pod capture node agent against a real kube-apiserver: pods are objects in the API server plus
network namespaces on a bridge (no kubelet); the CNI plugin runs as the kubelet would run it (env + stdin);
the ztunnel is a real process receiving netns fds from the agent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyambient.cni import plugin as plugin_module
from pyambient.cni.agent import NodeAgent, install_plugin
from tests.kube.cluster import KubeCluster
from tests.ztunnel.conftest import Backend, ZtunnelProc, issue, proxy_section, roundtrip, write_yaml
from tests.ztunnel.inpod_topology import PROBE_SOURCE, Node
from waypoint.kube.api import KubeApi
from xds.ca import CertificateAuthority

pytestmark = [pytest.mark.kube, pytest.mark.ztunnel]

PREFIX = "10.213.57"  # unusual on purpose: the agent finds running pods' netns by IP among all the host's
IPS = {"sleep": f"{PREFIX}.11", "late": f"{PREFIX}.12", "optout": f"{PREFIX}.13"}
NODE = "node-1"


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _pod(cluster: KubeCluster, ns: str, name: str, labels: dict[str, str] | None = None) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "app:1"}]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    return str(cluster.get_json("pod", "-n", ns, name)["metadata"]["uid"])


def _running(cluster: KubeCluster, ns: str, name: str) -> None:
    ip = IPS[name]
    status = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
    cluster.kubectl("patch", "pod", "-n", ns, name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def _cni(env: dict[str, str], conf: dict[str, Any]) -> tuple[int, str]:
    p = subprocess.run(
        ["python3", plugin_module.__file__], input=json.dumps(conf), capture_output=True, text=True,
        env={"PATH": os.environ.get("PATH", ""), **env}, timeout=120,
    )  # fmt: skip
    return p.returncode, p.stdout


def _host_nat(node: Node) -> str:
    return subprocess.run(["ip", "netns", "exec", node.host.name, "iptables-save", "-t", "nat"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node("c", IPS, prefix=PREFIX)
    yield n
    n.delete()


def test_cni_agent_enrols_by_label_cni_add_and_removes(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str, node: Node, tmp_path: Path, ca: CertificateAuthority
) -> None:
    zsock, asock = tmp_path / "ztunnel.sock", tmp_path / "agent.sock"
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root_pem)
    cfg = write_yaml(
        tmp_path / "zt.yaml",
        {"proxy": proxy_section(f"{PREFIX}.1", NODE, [issue(ca, tmp_path, namespace, "sleep")], root,
                                inpodSocket=str(zsock))},
    )  # fmt: skip
    zt = ZtunnelProc(cfg, f"{PREFIX}.1", tmp_path / "zt.log", netns=node.host.name)
    agent = NodeAgent(kube_api, NODE, zsock, asock, host_netns=Path(f"/var/run/netns/{node.host.name}"))
    app = node.pods["sleep"].run_in(lambda: Backend("0.0.0.0", 8080, "sleep"))
    try:
        zt.wait_ready(60)
        sleep_uid = _pod(kube_cluster, namespace, "sleep")
        _running(kube_cluster, namespace, "sleep")
        agent.start()

        # the namespace is not ambient: the running pod is untouched
        _until(lambda: "connected to the ztunnel" in zt.log() or "node agent connected" in zt.log(), "agent link")
        time.sleep(2)
        assert "pod enrolled" not in zt.log()
        assert "ISTIO" not in node.iptables_save("sleep")

        # labelling the namespace enrols the running pod (its netns found by IP), without restarting it
        kube_cluster.kubectl("label", "namespace", namespace, "istio.io/dataplane-mode=ambient")
        zt.wait_log(f"pod enrolled uid={sleep_uid} pod={namespace}/sleep", timeout=60)
        assert "REDIRECT --to-ports 15001" in node.iptables_save("sleep")

        # the kubelet's probes (local sockets on the node) are SNATed to 169.254.7.127 and reach the app uncaptured
        _until(lambda: f"-d {IPS['sleep']}/32" in _host_nat(node), "the node's probe SNAT rule")
        probe = node.host.run_in(lambda: socket.create_connection((IPS["sleep"], 8080), timeout=10))
        assert roundtrip(probe, b"probe") == b"sleep:probe"
        probe.close()
        assert app.peers[-1][0] == PROBE_SOURCE

        # a ztunnel restart: the agent reconnects and re-sends its snapshot; the pod's rules were never removed
        before = node.iptables_save("sleep")
        zt.stop()
        assert node.iptables_save("sleep") == before
        zt = ZtunnelProc(cfg, f"{PREFIX}.1", tmp_path / "zt-2.log", netns=node.host.name)
        zt.wait_ready(60)
        zt.wait_log(f"pod enrolled uid={sleep_uid} pod={namespace}/sleep ips={IPS['sleep']} rules=already in place", 60)
        zt.wait_log("snapshot received pods=1")
        assert node.iptables_save("sleep") == before

        # a new pod: the CNI plugin (as the kubelet runs it) enrols it before its app starts; prevResult passes
        late_uid = _pod(kube_cluster, namespace, "late")
        conf = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "pyambient-cni", "agentSocket": str(asock),
                "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": f"{IPS['late']}/24"}]}}  # fmt: skip
        env = {
            "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": node.netns_path("late"), "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME=late;K8S_POD_UID={late_uid}",
        }  # fmt: skip
        code, out = _cni(env, conf)
        assert code == 0, out
        assert json.loads(out) == conf["prevResult"]
        assert f"pod enrolled uid={late_uid}" in zt.log()
        assert "REDIRECT --to-ports 15001" in node.iptables_save("late")

        # a pod that opts out is passed through untouched
        opt_uid = _pod(kube_cluster, namespace, "optout", {"istio.io/dataplane-mode": "none"})
        code, out = _cni({**env, "CNI_NETNS": node.netns_path("optout"), "CNI_ARGS": env["CNI_ARGS"].replace(
            f"late;K8S_POD_UID={late_uid}", f"optout;K8S_POD_UID={opt_uid}")},
            {**conf, "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": f"{IPS['optout']}/24"}]}})  # fmt: skip
        assert code == 0, out
        assert "ISTIO" not in node.iptables_save("optout")

        # CNI DEL removes the pod's enrolment
        code, out = _cni({**env, "CNI_COMMAND": "DEL"}, conf)
        assert code == 0 and out == ""
        zt.wait_log(f"pod removed uid={late_uid}", timeout=60)

        # unlabelling the namespace removes everything
        kube_cluster.kubectl("label", "namespace", namespace, "istio.io/dataplane-mode-")
        zt.wait_log(f"pod removed uid={sleep_uid}", timeout=60)
        assert "ISTIO" not in node.iptables_save("sleep")
    finally:
        agent.stop()
        zt.stop()
        app.close()


def test_install_chains_the_plugin_atomically_and_idempotently(tmp_path: Path) -> None:
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    node_cni = {"cniVersion": "1.0.0", "name": "k8s-pod-network",
                "plugins": [{"type": "bridge", "bridge": "cni0"}, {"type": "portmap"}]}  # fmt: skip
    (conf_dir / "10-bridge.conflist").write_text(json.dumps(node_cni))
    path = install_plugin(bin_dir, conf_dir, tmp_path / "agent.sock")
    installed = json.loads(path.read_text())
    assert installed["plugins"][:2] == node_cni["plugins"]
    assert installed["plugins"][2] == {"type": "pyambient-cni", "agentSocket": str(tmp_path / "agent.sock")}
    assert os.access(bin_dir / "pyambient-cni", os.X_OK)
    before = path.stat().st_mtime_ns
    install_plugin(bin_dir, conf_dir, tmp_path / "agent.sock")
    assert path.stat().st_mtime_ns == before  # already chained: not rewritten
    assert [p.name for p in conf_dir.iterdir()] == ["10-bridge.conflist"]  # no temp files left
    # the installed plugin answers VERSION as the spec asks
    out = subprocess.run([str(bin_dir / "pyambient-cni")], env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, input="", check=True).stdout  # fmt: skip
    assert "1.0.0" in json.loads(out)["supportedVersions"]
