"""Cluster mode writes Istio's AuthorizationPolicy conditions to the status subresource (real API server)."""

from __future__ import annotations

from typing import Any

import pytest

from waypoint.kube.api import AUTHORIZATION_POLICIES, KubeApi
from waypoint.policystatus import PolicyStatusWriter
from xds.mesh.objects import mesh_from_objects

pytestmark = [pytest.mark.kube, pytest.mark.policy]


def _policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _conditions(api: KubeApi, namespace: str, name: str) -> list[tuple[str, str, str]]:
    obj = api.get(AUTHORIZATION_POLICIES, namespace, name)
    assert obj is not None
    return [(c["type"], c["status"], c["reason"]) for c in (obj.get("status") or {}).get("conditions") or []]


def test_conditions_are_written_once_and_follow_changes(kube_api: KubeApi, namespace: str) -> None:
    kube_api.create(
        AUTHORIZATION_POLICIES,
        _policy(namespace, "l7-at-ztunnel", {"selector": {"matchLabels": {"app": "x"}},
                                             "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
    )
    kube_api.create(
        AUTHORIZATION_POLICIES,
        _policy(namespace, "missing-target", {"targetRefs": [{"group": "", "kind": "Service", "name": "nope"}]}),
    )
    writer = PolicyStatusWriter(kube_api)

    def publish() -> int:
        objects, _ = kube_api.list_objects(AUTHORIZATION_POLICIES)
        mine = [o for o in objects if o["metadata"]["namespace"] == namespace]
        return writer.write(mine, mesh_from_objects(mine))

    assert publish() == 2
    assert _conditions(kube_api, namespace, "l7-at-ztunnel") == [("ZtunnelAccepted", "True", "UnsupportedValue")]
    assert _conditions(kube_api, namespace, "missing-target") == [("WaypointAccepted", "False", "TargetNotFound")]
    assert publish() == 0, "an unchanged mesh writes nothing"

    kube_api.apply(
        AUTHORIZATION_POLICIES,
        _policy(namespace, "l7-at-ztunnel", {"selector": {"matchLabels": {"app": "x"}},
                                             "rules": [{"to": [{"operation": {"ports": ["80"]}}]}]}),
    )
    assert publish() == 1
    assert _conditions(kube_api, namespace, "l7-at-ztunnel") == [("ZtunnelAccepted", "True", "Accepted")]
