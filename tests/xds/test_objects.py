"""Kubernetes objects → mesh model: what is read, and what bad input turns into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness.meshes import http_route, pod, service, shop_mesh, waypoint
from xds.mesh.files import load_directory
from xds.mesh.model import Protocol, TrafficType
from xds.mesh.objects import mesh_from_objects, port_protocol


@pytest.mark.parametrize(
    ("name", "app_protocol", "l4", "expected"),
    [
        ("http", None, "TCP", Protocol.HTTP),
        ("http-web", None, "TCP", Protocol.HTTP),
        ("grpc-api", None, "TCP", Protocol.GRPC),
        ("tcp-db", None, "TCP", Protocol.TCP),
        ("web", "http", "TCP", Protocol.HTTP),
        ("web", "kubernetes.io/h2c", "TCP", Protocol.HTTP2),
        ("dns", None, "UDP", Protocol.UDP),
        ("whatever", None, "TCP", Protocol.UNKNOWN),
    ],
)
def test_port_protocol_follows_istio_selection(
    name: str, app_protocol: str | None, l4: str, expected: Protocol
) -> None:
    assert port_protocol(name, app_protocol, l4) is expected


def test_shop_mesh_reads_everything_without_errors() -> None:
    mesh = mesh_from_objects(shop_mesh())
    assert mesh.errors == ()
    assert len(mesh.services) == 6 and len(mesh.workloads) == 5 and len(mesh.waypoints) == 3
    web = mesh.service("shop", "web")
    assert web is not None and web.vips == ("127.96.0.10",) and web.ports[0].target_port == 8080
    assert all(w.captured for w in mesh.workloads)
    route = mesh.routes[0]
    assert [(b.name, b.weight) for b in route.rules[0].backends] == [("web-v1", 90), ("web-v2", 10)]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("service_port_out_of_range", service("a", "s", "127.96.0.1", [("http", 70000, 80)], {}), "spec.ports[0].port"),
    (
        "gateway_wrong_listener",
        waypoint("a", "w", listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}]),
        "spec.listeners",
    ),
    (
        "route_without_service_parent",
        {
            **http_route("a", "r", "s", 80, [("s", 1)]),
            "spec": {"parentRefs": [{"kind": "Gateway", "name": "gw"}], "rules": []},
        },
        "spec.parentRefs",
    ),
    ("route_negative_weight", http_route("a", "r", "s", 80, [("s", -1)]), "spec.rules[0].backendRefs[0].weight"),
    ("object_without_name", {"apiVersion": "v1", "kind": "Service", "metadata": {}}, "metadata.name"),
    (
        "policy_unknown_action",
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "a"},
            "spec": {"action": "LOG"},
        },
        "spec.action",
    ),
]


@pytest.mark.parametrize(("name", "obj", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_object_becomes_an_error_naming_the_field(name: str, obj: dict[str, Any], field: str) -> None:
    good = pod("a", "p", "127.0.1.1", {"app": "x"})
    mesh = mesh_from_objects([obj, good])
    assert [e.field for e in mesh.errors] == [field]
    assert len(mesh.workloads) == 1, "the rest of the mesh is still built"


def test_waypoint_traffic_type_label() -> None:
    mesh = mesh_from_objects([waypoint("a", "w", labels={"istio.io/waypoint-for": "all"})])
    assert mesh.waypoints[0].traffic_type is TrafficType.ALL


def test_directory_source_reports_file_and_line_of_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{port: 80}]}\n"
    )
    (tmp_path / "bad.yaml").write_text("kind: Service\nmetadata: {name: [unclosed\n")
    mesh = load_directory(tmp_path)
    assert mesh.service("a", "s") is not None
    assert len(mesh.errors) == 1
    message = str(mesh.errors[0])
    assert "bad.yaml" in message and "line" in message


def test_directory_source_names_file_of_bad_object(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{port: -1}]}\n"
    )
    (error,) = load_directory(tmp_path).errors
    assert error.source.endswith("svc.yaml") and error.field == "spec.ports[0].port"
