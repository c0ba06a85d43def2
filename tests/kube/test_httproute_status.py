"""HTTPRoute status in cluster mode: a route the model refuses says so on its Service parents, with the field.

Pure rows first (the status function), then the controller writing it through a real kube-apiserver,
and the start-up line naming objects of kinds the model does not implement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.kube.cluster import KubeCluster
from tests.kube.waiting import eventually
from waypoint.controller import WaypointController
from waypoint.kube.api import KubeApi
from waypoint.routestatus import MESH_CONTROLLER, httproute_status, route_status_matches

pytestmark = pytest.mark.policy

NOW = "2026-12-05T00:00:00Z"


def service(name: str, ns: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": {}}


def route(
    *,
    rule_extra: dict[str, Any] | None = None,
    backend: str = "web-v1",
    parents: list[Any] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "shop", "generation": 3},
        "spec": {
            "parentRefs": parents
            if parents is not None
            else [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [{"backendRefs": [{"name": backend, "port": 80}], **(rule_extra or {})}],
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


@dataclass(frozen=True)
class StatusRow:
    scenario: str
    route: dict[str, Any]
    accepted: tuple[str, str, str]  # status, reason, message (prefix)
    resolved: tuple[str, str]


SERVICES = [service("web"), service("web-v1")]
ROWS = [
    StatusRow("valid_route", route(), ("True", "Accepted", "Route was valid"), ("True", "ResolvedRefs")),
    StatusRow(
        "unimplemented_filter",
        route(rule_extra={"filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]}),
        ("False", "InvalidFilter", "spec.rules[0].filters[0].type: value 'URLRewrite' is not implemented"),
        ("True", "ResolvedRefs"),
    ),
    StatusRow(
        "unimplemented_retry",
        route(rule_extra={"retry": {"attempts": 3}}),
        ("False", "UnsupportedValue", "spec.rules[0].retry: not implemented"),
        ("True", "ResolvedRefs"),
    ),
    StatusRow(
        "unsupported_value",
        route(rule_extra={"matches": [{"method": "FETCH"}]}),
        ("False", "UnsupportedValue", "spec.rules[0].matches[0].method: unsupported method"),
        ("True", "ResolvedRefs"),
    ),
    StatusRow(
        "missing_backend", route(backend="nope"), ("True", "Accepted", "Route was valid"), ("False", "BackendNotFound")
    ),
    StatusRow(
        "missing_parent",
        route(parents=[{"kind": "Service", "name": "gone"}]),
        ("False", "NoMatchingParent", "parent Service shop/gone not found"),
        ("True", "ResolvedRefs"),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.scenario for r in ROWS])
def test_route_status(row: StatusRow) -> None:
    status = httproute_status(row.route, SERVICES, now=NOW)
    [parent] = status["parents"]
    assert parent["controllerName"] == MESH_CONTROLLER
    accepted, resolved = parent["conditions"]
    assert (accepted["type"], accepted["status"], accepted["reason"]) == ("Accepted", *row.accepted[:2])
    assert accepted["message"].startswith(row.accepted[2])
    assert accepted["observedGeneration"] == 3
    assert (resolved["type"], resolved["status"], resolved["reason"]) == ("ResolvedRefs", *row.resolved)


def test_other_controllers_parents_are_kept_and_ours_rewritten_only_on_change() -> None:
    theirs = {
        "parentRef": {"kind": "Gateway", "name": "ingress"},
        "controllerName": "istio.io/gateway-controller",
        "conditions": [],
    }
    parents = [{"group": "", "kind": "Service", "name": "web"}, {"kind": "Gateway", "name": "ingress"}]
    first = httproute_status(route(parents=parents, status={"parents": [theirs]}), SERVICES, now=NOW)
    assert first["parents"][0] == theirs and len(first["parents"]) == 2
    again = httproute_status(route(parents=parents, status=first), SERVICES, now="2026-12-06T00:00:00Z")
    assert route_status_matches(first, again)
    assert again["parents"][1]["conditions"][0]["lastTransitionTime"] == NOW  # unchanged status keeps its time


def test_route_without_service_parent_gets_no_entry_of_ours() -> None:
    assert httproute_status(route(parents=[{"kind": "Gateway", "name": "ingress"}]), SERVICES, now=NOW) == {
        "parents": []
    }


# --------------------------------------------------------------------------------------------
# Through a real kube-apiserver


MANIFESTS = """
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec: {{selector: {{app: web}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-v1, namespace: {ns}}}
spec: {{selector: {{app: web, version: v1}}, ports: [{{name: http, port: 80}}]}}
"""

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {ns}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - matches: [{{headers: [{{name: x-canary, value: "true"}}]}}]
    backendRefs: [{{name: web-v1, port: 80}}]
{extra}
"""


def accepted_condition(kube_cluster: KubeCluster, ns: str) -> dict[str, Any] | None:
    obj = kube_cluster.get_json("httproute", "web", "-n", ns) or {}
    for parent in (obj.get("status") or {}).get("parents") or []:
        if parent.get("controllerName") == MESH_CONTROLLER:
            return next(c for c in parent["conditions"] if c["type"] == "Accepted")
    return None


@pytest.mark.kube
def test_controller_writes_refusal_then_acceptance(
    kube_cluster: KubeCluster, namespace: str, controller: WaypointController
) -> None:
    kube_cluster.apply(MANIFESTS.format(ns=namespace))
    filters = "    filters: [{type: URLRewrite, urlRewrite: {hostname: elsewhere.example}}]"
    kube_cluster.apply(ROUTE.format(ns=namespace, extra=filters))

    def refused() -> dict[str, Any] | None:
        condition = accepted_condition(kube_cluster, namespace)
        return condition if condition and condition["status"] == "False" else None

    condition = eventually(refused, what="Accepted=False on the route", timeout=30)
    assert (condition["reason"], condition["message"]) == (
        "InvalidFilter",
        "spec.rules[0].filters[0].type: value 'URLRewrite' is not implemented",
    )

    kube_cluster.apply(ROUTE.format(ns=namespace, extra=""))

    def accepted() -> dict[str, Any] | None:
        condition = accepted_condition(kube_cluster, namespace)
        return condition if condition and condition["status"] == "True" else None

    assert eventually(accepted, what="Accepted=True on the fixed route", timeout=30)["reason"] == "Accepted"


GRPC_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: grpc, namespace: {ns}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules: [{{backendRefs: [{{name: web-v1, port: 80}}]}}]
"""


@pytest.fixture
def fresh_controller(kube_api: KubeApi) -> Iterator[WaypointController]:
    running = WaypointController(kube_api)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.kube
def test_objects_of_unimplemented_kinds_are_listed_once_at_start_up(
    kube_cluster: KubeCluster, namespace: str, fresh_controller: WaypointController, caplog: pytest.LogCaptureFixture
) -> None:
    kube_cluster.apply(GRPC_ROUTE.format(ns=namespace))
    with caplog.at_level(logging.WARNING, logger="waypoint.unimplemented"):
        fresh_controller.start()
        counts = eventually(lambda: fresh_controller.unimplemented_kinds, what="the start-up report", timeout=30)
    assert counts.get("GRPCRoute", 0) >= 1
    lines = [r.getMessage() for r in caplog.records if r.name == "waypoint.unimplemented"]
    assert len(lines) == 1 and "GRPCRoute (" in lines[0] and "no effect on the mesh" in lines[0]
