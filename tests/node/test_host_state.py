"""A node's whole life leaves the machine as it found it (runs before the session's node: file order)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.kube.cluster import ROOT
from tests.node.ambient import ready_pods
from tests.node.hostns import HostNamespaces
from tests.node.hoststate import snapshot
from tests.node.node import NODE_NAME, TestNode
from tests.node.test_node import _web

pytestmark = pytest.mark.node


def test_a_node_with_a_running_pod_leaves_no_trace() -> None:
    ns = HostNamespaces()
    try:
        before = snapshot(ns)
        node = TestNode()
        try:
            node.start()
            node.kubectl("create", "namespace", "trace")
            node.kubectl("apply", "-f", "-", input=_web("trace"))
            node.wait_for("a running pod", lambda: ready_pods(node, "trace", "app=web"))
            during = snapshot(ns)
        finally:
            node.stop()
        after = snapshot(ns)
    finally:
        ns.close()
    # The snapshot does see a node: its processes, pod mounts and network namespace, kubepods cgroups.
    assert during["processes"] != before["processes"]
    assert during["mounts"] != before["mounts"]
    assert during["netns"] != before["netns"]
    assert during["cgroups"] != before["cgroups"]
    # the kubelet's vm.overcommit_memory and panic settings (whatever the machine had before)
    assert during["sysctls"] == {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
    for key in before:
        assert after[key] == before[key], key


def test_a_crashed_run_is_cleaned_up_by_the_next_start() -> None:
    """A node whose test process was SIGKILLed (no teardown) leaves its daemons running; the next start
    kills them, unmounts, restores, and comes up; its stop leaves the machine as before the crash."""
    ns = HostNamespaces()
    try:
        before = snapshot(ns)
        crashed = subprocess.Popen([sys.executable, "-m", "tests.node"], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            assert crashed.stdout is not None
            for line in crashed.stdout:
                if line.startswith("export KUBECONFIG="):
                    break
            else:
                raise AssertionError("the node in the subprocess did not come up")
        finally:
            crashed.kill()
            crashed.wait()
        assert snapshot(ns)["processes"] != before["processes"]  # its daemons outlive it
        node = TestNode()
        try:
            node.start()
            assert node.get_json("node", NODE_NAME) is not None
        finally:
            node.stop()
        after = snapshot(ns)
    finally:
        ns.close()
    for key in before:
        assert after[key] == before[key], key
