"""A node's whole life leaves the machine as it found it (runs before the session's node: file order)."""

from __future__ import annotations

import pytest

from tests.node.hostns import HostNamespaces
from tests.node.hoststate import snapshot
from tests.node.node import TestNode
from tests.node.test_node import _ready_pods, _web

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
            node.wait_for("a running pod", lambda: _ready_pods(node, "trace", "app=web"))
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
    assert during["sysctls"] != before["sysctls"]  # the kubelet's vm.overcommit_memory and panic settings
    for key in before:
        assert after[key] == before[key], key
