"""deploy/ is accepted by a real apiserver, and its RBAC is enough for `pyambient controller`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kube.cluster import ROOT, KubeCluster, free_port
from tests.kube.test_gateway_children import children, condition, gateway_yaml
from tests.kube.waiting import eventually

pytestmark = pytest.mark.kube

DEPLOY = ROOT / "deploy"


def test_deploy_manifests_pass_server_side_dry_run(kube_cluster: KubeCluster) -> None:
    # The namespace must exist for a dry run of the objects inside it (a dry-run create persists
    # nothing); a real `kubectl apply -f deploy/` creates it first, as the files are ordered.
    kube_cluster.kubectl("apply", "-f", str(DEPLOY / "00-namespace.yaml"))
    result = kube_cluster.kubectl("apply", "--dry-run=server", "-f", str(DEPLOY))
    applied = result.stdout.splitlines()
    for expected in ("clusterrole.rbac.authorization.k8s.io/pyambient-controller",
                     "deployment.apps/pyambient-controller", "daemonset.apps/ztunnel",
                     "gatewayclass.gateway.networking.k8s.io/istio-waypoint"):
        assert any(line.startswith(expected) for line in applied), (expected, applied)


def _token_kubeconfig(cluster: KubeCluster, path: Path) -> Path:
    token = cluster.kubectl("create", "token", "pyambient-controller", "-n", "istio-system").stdout.strip()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "controller",
        "clusters": [{"name": "test", "cluster": {"server": cluster.server,
                                                  "certificate-authority": str(cluster.pki.ca_cert)}}],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "controller", "context": {"cluster": "test", "user": "controller"}}],
    }
    path.write_text(json.dumps(config))
    return path


def test_controller_command_runs_with_the_deploy_rbac_only(kube_cluster: KubeCluster, namespace: str,
                                                           tmp_path: Path) -> None:
    """`pyambient controller` as its own process, authenticated as the deploy/ ServiceAccount:
    it reconciles a Gateway, serves xDS, and exits cleanly on SIGTERM."""
    kube_cluster.kubectl("apply", "-f", str(DEPLOY / "00-namespace.yaml"),
                         "-f", str(DEPLOY / "10-controller-rbac.yaml"))
    kubeconfig = _token_kubeconfig(kube_cluster, tmp_path / "controller.kubeconfig")
    denied = kube_cluster.kubectl(f"--kubeconfig={kubeconfig}", "delete", "gateway", "x", "-n", namespace,
                                  check=False)
    assert "forbidden" in denied.stderr  # least privilege: no delete

    xds_port = free_port()
    log_path = tmp_path / "controller.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyambient.commands.controller", f"--kubeconfig={kubeconfig}",
             f"--xds-address=127.0.0.1:{xds_port}", f"--secure-address=127.0.0.1:{free_port()}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        kube_cluster.apply(gateway_yaml(namespace, "from-command"))
        eventually(lambda: children(kube_cluster, namespace, "from-command"), what="children", timeout=30)

        def accepted() -> bool:
            gw = kube_cluster.get_json("gateway", "from-command", "-n", namespace)
            accepted = condition(gw, "Accepted")
            return bool(accepted and accepted["status"] == "True")

        eventually(accepted, what="Gateway status written with the deploy RBAC", timeout=30)

        def xds_listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", xds_port)) == 0

        eventually(xds_listening, what="xDS port open")
        eventually(lambda: kube_cluster.get_json("configmap", "istio-ca-root-cert", "-n", namespace),
                   what="the root published with the deploy RBAC", timeout=30)
        assert "Forbidden" not in log_path.read_text() and "forbidden" not in log_path.read_text()
        # The CA is istio-system's istio-ca-secret (read, or created on the first start) under the deploy Role.
        assert kube_cluster.get_json("secret", "istio-ca-secret", "-n", "istio-system") is not None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert returncode == 0, log_path.read_text()[-3000:]


def test_manifests_name_only_known_commands() -> None:
    """The Deployment runs `pyambient controller`, whose flags exist."""
    manifest = (DEPLOY / "20-controller.yaml").read_text()
    assert "command: [pyambient, controller]" in manifest
    help_text = subprocess.run([sys.executable, "-m", "pyambient.commands.controller", "--help"],
                               capture_output=True, text=True, check=True, cwd=ROOT).stdout
    for flag in ("--xds-address", "--secure-address", "--waypoint-xds-address", "--proxy-image"):
        assert flag in help_text and flag in manifest, flag
