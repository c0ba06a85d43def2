"""Which waypoint serves a service or workload: one table row per scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.harness.meshes import ambient_namespace, pod, service, waypoint
from xds.mesh.binding import service_waypoint, workload_waypoint
from xds.mesh.objects import mesh_from_objects


@dataclass(frozen=True)
class Case:
    name: str
    objects: list[dict[str, Any]]
    service: str | None = "web"
    workload: str | None = "web-0"
    service_waypoint: str | None = None
    workload_waypoint: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def web(**labels: str) -> list[dict[str, Any]]:
    return [
        service("ns", "web", "127.96.0.1", [("http", 80, 8080)], {"app": "web"}, **labels),
        pod("ns", "web-0", "127.0.1.1", {"app": "web"}, "web"),
    ]


def labelled(name: str, **labels: str) -> dict[str, Any]:
    obj = ambient_namespace(name)
    obj["metadata"]["labels"].update(labels)
    return obj


def pod_labelled(**labels: str) -> dict[str, Any]:
    return pod("ns", "web-0", "127.0.1.1", {"app": "web", **labels}, "web")


CASES = [
    Case("no_waypoint_nothing_binds", [ambient_namespace("ns"), *web()]),
    Case(
        "implicit_namespace_waypoint_serves_services_and_workloads",
        [ambient_namespace("ns"), *web(), waypoint("ns", "wp")],
        service_waypoint="ns/wp",
        workload_waypoint="ns/wp",
    ),
    Case(
        "implicit_service_account_waypoint_wins_for_its_account",
        [ambient_namespace("ns"), *web(), waypoint("ns", "wp"), waypoint("ns", "web-wp", for_service_account="web")],
        service_waypoint="ns/web-wp",
        workload_waypoint="ns/web-wp",
    ),
    Case(
        "implicit_service_account_waypoint_ignores_other_accounts",
        [ambient_namespace("ns"), *web(), waypoint("ns", "other-wp", for_service_account="other")],
    ),
    Case(
        "implicit_waypoint_with_bad_listener_binds_nothing",
        [
            ambient_namespace("ns"),
            *web(),
            waypoint("ns", "wp", listeners=[{"name": "x", "port": 80, "protocol": "HTTP"}]),
        ],
    ),
    Case(
        "label_on_namespace_binds_services_only_by_default",
        [labelled("ns", **{"istio.io/use-waypoint": "wp"}), *web(), waypoint("ns", "wp")],
        service_waypoint="ns/wp",
    ),
    Case(
        "label_mode_turns_off_implicit_binding",
        [ambient_namespace("ns"), *web(**{"istio.io/use-waypoint": "none"}), waypoint("ns", "wp")],
    ),
    Case(
        "label_on_service_binds_it",
        [ambient_namespace("ns"), *web(**{"istio.io/use-waypoint": "wp"}), waypoint("ns", "wp")],
        service_waypoint="ns/wp",
    ),
    Case(
        "service_label_none_opts_out_of_namespace_label",
        [
            labelled("ns", **{"istio.io/use-waypoint": "wp"}),
            *web(**{"istio.io/use-waypoint": "none"}),
            waypoint("ns", "wp"),
        ],
    ),
    Case(
        "waypoint_for_workload_binds_pods_not_services",
        [
            labelled("ns", **{"istio.io/use-waypoint": "wp"}),
            *web(),
            waypoint("ns", "wp", labels={"istio.io/waypoint-for": "workload"}),
        ],
        workload_waypoint="ns/wp",
    ),
    Case(
        "waypoint_for_all_binds_both",
        [
            labelled("ns", **{"istio.io/use-waypoint": "wp"}),
            *web(),
            waypoint("ns", "wp", labels={"istio.io/waypoint-for": "all"}),
        ],
        service_waypoint="ns/wp",
        workload_waypoint="ns/wp",
    ),
    Case(
        "pod_label_binds_pod",
        [
            ambient_namespace("ns"),
            service("ns", "web", "127.96.0.1", [("http", 80, 8080)], {"app": "web"}),
            pod_labelled(**{"istio.io/use-waypoint": "wp"}),
            waypoint("ns", "wp", labels={"istio.io/waypoint-for": "workload"}),
        ],
        workload_waypoint="ns/wp",
    ),
    Case(
        "cross_namespace_needs_allowed_routes",
        [
            ambient_namespace("infra"),
            labelled("ns", **{"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "infra"}),
            *web(),
            waypoint("infra", "wp"),
        ],
    ),
    Case(
        "cross_namespace_with_allowed_routes_all",
        [
            ambient_namespace("infra"),
            labelled("ns", **{"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "infra"}),
            *web(),
            waypoint(
                "infra",
                "wp",
                listeners=[
                    {
                        "name": "mesh",
                        "port": 15008,
                        "protocol": "HBONE",
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            ),
        ],
        service_waypoint="infra/wp",
    ),
    Case("label_naming_missing_waypoint_binds_nothing", [labelled("ns", **{"istio.io/use-waypoint": "ghost"}), *web()]),
    Case(
        "waypoint_pods_never_get_a_waypoint",
        [
            ambient_namespace("ns"),
            waypoint("ns", "wp"),
            pod("ns", "wp-0", "127.0.2.1", {"gateway.networking.k8s.io/gateway-name": "wp"}, "wp"),
        ],
        service=None,
        workload="wp-0",
    ),
]


def _key(wp: Any) -> str | None:
    return f"{wp.namespace}/{wp.name}" if wp else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_binding(case: Case) -> None:
    mesh = mesh_from_objects(case.objects)
    if case.service:
        svc = mesh.service("ns", case.service)
        assert svc is not None
        assert _key(service_waypoint(mesh, svc)) == case.service_waypoint
    if case.workload:
        wl = next(w for w in mesh.workloads if w.name == case.workload)
        assert _key(workload_waypoint(mesh, wl)) == case.workload_waypoint
