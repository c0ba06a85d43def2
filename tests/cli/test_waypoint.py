"""`pyambient waypoint` in local mode (a mesh directory of YAML files) and `generate`."""

# ruff: noqa: E501  (expected tables and YAML are kept verbatim, one output line per source line)

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.runner import run_cli

GENERATE = [
    (
        "default-no-namespace",
        ["waypoint", "generate"],
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: waypoint\nspec:\n"
        "  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n",
    ),
    (
        "for-all-with-revision",
        ["waypoint", "generate", "-n", "default", "--for", "all", "-r", "canary"],
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  labels:\n    istio.io/rev: canary\n"
        "    istio.io/waypoint-for: all\n  name: waypoint\n  namespace: default\nspec:\n"
        "  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in GENERATE], ids=[c[0] for c in GENERATE])
def test_generate(argv: list[str], expected: str) -> None:
    result = run_cli(*argv)
    assert result.code == 0, result.err
    assert result.out == expected


@pytest.fixture()
def mesh(tmp_path: Path) -> Path:
    (tmp_path / "namespaces.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels:\n"
        "    istio.io/dataplane-mode: ambient\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n"
    )
    return tmp_path


def test_apply_writes_gateway_file_and_enrolls_namespace(mesh: Path) -> None:
    result = run_cli(
        "waypoint",
        "apply",
        "--mesh",
        str(mesh),
        "-n",
        "default",
        "--enroll-namespace",
        "--wait",
        "--for",
        "service",
    )
    assert result.code == 0, result.err
    assert result.out == (
        "✅ waypoint default/waypoint applied\n"
        '✅ namespace default labeled with "istio.io/use-waypoint: waypoint"\n'
        "✅ waypoint default/waypoint is ready!\n"
    )
    gw = yaml.safe_load((mesh / "default-waypoint-gateway.yaml").read_text())
    assert gw["spec"]["gatewayClassName"] == "istio-waypoint"
    assert gw["metadata"]["labels"] == {"istio.io/waypoint-for": "service"}
    namespaces = list(yaml.safe_load_all((mesh / "namespaces.yaml").read_text()))
    assert namespaces[0]["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint"
    assert "labels" not in namespaces[1]["metadata"]


def test_apply_warns_for_non_ambient_namespace(mesh: Path) -> None:
    result = run_cli("waypoint", "apply", "--mesh", str(mesh), "-n", "plain", "--name", "wp")
    assert result.code == 0
    assert result.out == "✅ waypoint plain/wp applied\n"
    assert "kubectl label namespace plain istio.io/dataplane-mode=ambient" in result.err
    assert (mesh / "plain-wp-gateway.yaml").is_file()


def test_enroll_does_not_replace_other_waypoint_without_overwrite(mesh: Path) -> None:
    run_cli("waypoint", "apply", "--mesh", str(mesh), "--enroll-namespace")
    result = run_cli("waypoint", "apply", "--mesh", str(mesh), "--name", "second", "--enroll-namespace")
    assert "already uses waypoint waypoint; use --overwrite" in result.err
    result = run_cli(
        "waypoint", "apply", "--mesh", str(mesh), "--name", "second", "--enroll-namespace", "--overwrite"
    )
    assert '✅ namespace default labeled with "istio.io/use-waypoint: second"' in result.out


def test_list_and_status(mesh: Path) -> None:
    assert run_cli("waypoint", "list", "--mesh", str(mesh)).out == "No waypoints found.\n"
    run_cli("waypoint", "apply", "--mesh", str(mesh), "--for", "all")
    run_cli("waypoint", "apply", "--mesh", str(mesh), "-n", "plain", "--name", "wp", "-r", "canary")
    assert run_cli("waypoint", "list", "--mesh", str(mesh)).out == (
        "NAME       REVISION   TRAFFIC TYPE   PROGRAMMED\nwaypoint   default    all            True\n"
    )
    assert run_cli("waypoint", "list", "--mesh", str(mesh), "-A").out == (
        "NAMESPACE   NAME       REVISION   TRAFFIC TYPE   PROGRAMMED\n"
        "default     waypoint   default    all            True\n"
        "plain       wp         canary     none           True\n"
    )
    status = run_cli("waypoint", "status", "--mesh", str(mesh), "-n", "plain", "--name", "wp")
    assert status.code == 0
    assert status.out.splitlines()[0].split() == ["NAME", "STATUS", "TYPE", "REASON", "MESSAGE"]
    assert status.out.splitlines()[1].split()[:4] == ["wp", "True", "Programmed", "Programmed"]


def test_status_of_malformed_gateway_is_not_programmed(mesh: Path) -> None:
    (mesh / "default-broken-gateway.yaml").write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: broken\n  namespace: default\n"
        "spec:\n  gatewayClassName: istio-waypoint\n  listeners: []\n"
    )
    result = run_cli("waypoint", "status", "--mesh", str(mesh), "--name", "broken", "--wait=false")
    assert result.out.splitlines()[1].split()[:4] == ["broken", "False", "Programmed", "Invalid"]


def test_delete(mesh: Path) -> None:
    run_cli("waypoint", "apply", "--mesh", str(mesh))
    result = run_cli("waypoint", "delete", "--mesh", str(mesh), "waypoint", "missing")
    assert result.out == "waypoint default/waypoint deleted\nwaypoint default/missing not found\n"
    assert not (mesh / "default-waypoint-gateway.yaml").exists()


def test_delete_by_revision(mesh: Path) -> None:
    run_cli("waypoint", "apply", "--mesh", str(mesh), "--name", "a", "-r", "canary")
    run_cli("waypoint", "apply", "--mesh", str(mesh), "--name", "b")
    result = run_cli("waypoint", "delete", "--mesh", str(mesh), "-r", "canary")
    assert result.out == "waypoint default/a deleted\n"
    assert (mesh / "default-b-gateway.yaml").exists()


ERRORS = [
    ("name-none", ["waypoint", "apply", "--name", "none"], '"none" is a reserved value'),
    ("generate-name-none", ["waypoint", "generate", "--name", "none"], '"none" is a reserved value'),
    ("missing-dir", ["waypoint", "list"], "mesh directory"),
    (
        "status-not-found",
        ["waypoint", "status", "--name", "nope", "--wait=false"],
        "waypoint default/nope not found",
    ),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors(mesh: Path, argv: list[str], message: str) -> None:
    mesh_dir = str(mesh / "absent") if "missing-dir" in message or argv[1] == "list" else str(mesh)
    result = run_cli(*argv, "--mesh", mesh_dir)
    assert result.code == 1
    assert result.err.count("\n") == 1 and message in result.err


def test_local_mode_reads_nested_and_json_files(mesh: Path) -> None:
    (mesh / "infra").mkdir()
    (mesh / "infra" / "gw.json").write_text(
        '{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "shared", '
        '"namespace": "infra", "labels": {"istio.io/waypoint-for": "all"}}, "spec": {"gatewayClassName": '
        '"istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}'
    )
    (mesh / "infra" / "ns.json").write_text(
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}}'
    )
    assert run_cli("waypoint", "list", "--mesh", str(mesh), "-n", "infra").out == (
        "NAME     REVISION   TRAFFIC TYPE   PROGRAMMED\nshared   default    all            True\n"
    )
    result = run_cli(
        "waypoint", "apply", "--mesh", str(mesh), "-n", "infra", "--name", "shared", "--enroll-namespace"
    )
    assert '✅ namespace infra labeled with "istio.io/use-waypoint: shared"' in result.out
    assert '"istio.io/use-waypoint": "shared"' in (mesh / "infra" / "ns.json").read_text()
    assert run_cli("waypoint", "delete", "--mesh", str(mesh), "-n", "infra", "--all").out == (
        "waypoint infra/shared deleted\n"
    )
