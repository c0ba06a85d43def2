"""`pyambient control-plane`, `token`, `waypoint agent`, `waypoint bootstrap` and `envoy -c`, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyambient.runtime.envoy import envoy_binary, free_port, wait_until

pytestmark = pytest.mark.envoy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mesh"


def _pyambient(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pyambient", *args], **kwargs)  # type: ignore[call-overload]


def _control_plane(
    mesh: Path, xds_port: int, metrics_port: int, ca_dir: Path, log: Path, secure_port: int
) -> subprocess.Popen[bytes]:
    return _pyambient(
        "control-plane",
        "--mesh",
        str(mesh),
        "--xds-address",
        f"127.0.0.1:{xds_port}",
        "--secure-address",
        f"127.0.0.1:{secure_port}",
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        "--ca-dir",
        str(ca_dir),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def processes() -> dict[str, subprocess.Popen[bytes]]:
    return {}


@pytest.fixture
def running(tmp_path: Path, processes: dict[str, subprocess.Popen[bytes]]) -> Iterator[tuple[Path, Path, int, int]]:
    mesh = tmp_path / "mesh"
    shutil.copytree(EXAMPLES, mesh)
    xds_port, metrics_port, admin_port, secure_port = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "control-plane.log"
    ca_dir = tmp_path / "ca"
    control = processes["control-plane"] = _control_plane(mesh, xds_port, metrics_port, ca_dir, log, secure_port)
    wait_until(lambda: (ca_dir / "token-signing.key").exists(), what="the control plane's CA directory")
    # The waypoint pod: a token for its service account, the published root, the agent on a socket.
    pod = Path(tempfile.mkdtemp(prefix="pa-pod-"))  # short: Unix socket paths are limited to 107 bytes
    token = pod / "istio-token"
    subprocess.run(
        [sys.executable, "-m", "pyambient", "token", "--ca-dir", str(ca_dir), "-n", "default"]
        + ["--service-account", "waypoint", "-o", str(token)],
        check=True,
    )
    agent = processes["agent"] = _pyambient(
        "waypoint",
        "agent",
        "--ca-address",
        f"127.0.0.1:{secure_port}",
        "--ca-server-name",
        "istiod.istio-system.svc",
        "--root-cert",
        str(ca_dir / "root-cert.pem"),
        "--token-path",
        str(token),
        "-n",
        "default",
        "--service-account",
        "waypoint",
        "--sds-socket",
        str(pod / "sds.sock"),
        stdout=(tmp_path / "agent.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until((pod / "sds.sock").exists, timeout=60, what="the agent serving SDS")  # as pilot-agent: then Envoy
    bootstrap = tmp_path / "bootstrap.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pyambient",
            "waypoint",
            "bootstrap",
            "--name",
            "waypoint",
            "--namespace",
            "default",
            "--xds",
            f"127.0.0.1:{xds_port}",
            "--listen-address",
            "127.0.12.41",
            "--admin-port",
            str(admin_port),
            "--sds-socket",
            str(pod / "sds.sock"),
            "-o",
            str(bootstrap),
        ],
        check=True,
    )
    envoy = subprocess.Popen(
        [envoy_binary(), "-c", str(bootstrap), "--use-dynamic-base-id", "--concurrency", "1"],
        stdout=(tmp_path / "envoy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield mesh, log, admin_port, metrics_port
    finally:
        for process in (envoy, agent, control):
            process.terminate()
        for process in (envoy, agent, control):
            process.wait(10)
        shutil.rmtree(pod, ignore_errors=True)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return str(resp.read().decode())


def _clusters(admin_port: int) -> str:
    return _get(f"http://127.0.0.1:{admin_port}/config_dump")


def _wait_live(admin_port: int) -> None:
    # Clusters land before Envoy's init finishes (it still waits for EDS, LDS and SDS), so poll for LIVE.
    wait_until(lambda: _get(f"http://127.0.0.1:{admin_port}/ready").strip() == "LIVE", what="envoy is LIVE")


def test_envoy_from_printed_bootstrap_gets_config_and_follows_file_edits(running: tuple[Path, Path, int, int]) -> None:
    mesh, log, admin_port, metrics_port = running
    wait_until(
        lambda: "inbound-vip|8000|http|httpbin.default.svc.cluster.local" in _clusters(admin_port),
        what="envoy got the waypoint's config",
    )
    _wait_live(admin_port)
    (mesh / "70-extra.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: default, "
        "labels: {istio.io/use-waypoint: waypoint}}\n"
        "spec: {clusterIP: 127.96.0.70, selector: {app: extra}, ports: [{name: http, port: 80}]}\n"
    )
    wait_until(
        lambda: "inbound-vip|80|http|extra.default.svc.cluster.local" in _clusters(admin_port),
        what="a new file is picked up live",
    )
    metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert "pyambient_xds_pushes_total" in metrics and "pyambient_xds_connections 1.0" in metrics


def test_bad_file_is_reported_with_path_and_field_and_the_rest_keeps_serving(
    running: tuple[Path, Path, int, int],
) -> None:
    mesh, log, admin_port, _ = running
    wait_until(lambda: "httpbin.default" in _clusters(admin_port), what="initial config")
    _wait_live(admin_port)
    (mesh / "80-bad.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: default}\n"
        "spec: {ports: [{name: http, port: 99999}]}\n"
    )
    wait_until(lambda: "80-bad.yaml" in log.read_text(), what="the error is logged")
    line = next(x for x in log.read_text().splitlines() if "80-bad.yaml" in x)
    assert "Service default/broken" in line and "spec.ports[0].port" in line
    time.sleep(0.5)
    assert "httpbin.default" in _clusters(admin_port)
    assert json.loads(_get(f"http://127.0.0.1:{admin_port}/server_info"))["state"] == "LIVE"


def _root_ca(admin_port: int) -> str:
    dump = json.loads(_get(f"http://127.0.0.1:{admin_port}/config_dump?resource=dynamic_active_secrets"))
    for config in dump["configs"]:
        if config.get("name") == "ROOTCA":
            return str(config["secret"]["validation_context"]["trusted_ca"]["inline_bytes"])
    return ""


def test_envoy_survives_a_control_plane_restart_and_keeps_its_identities(
    running: tuple[Path, Path, int, int], processes: dict[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    mesh, log, admin_port, _ = running
    wait_until(lambda: bool(_root_ca(admin_port)), what="initial config and secrets")
    _wait_live(admin_port)
    root_before = _root_ca(admin_port)
    xds_port = int(log.read_text().split("serving xDS on 127.0.0.1:", 1)[1].split()[0])
    first = processes["control-plane"]
    first.terminate()
    assert first.wait(10) is not None
    time.sleep(1.0)
    # The control plane is gone: Envoy keeps its last config and keeps serving.
    assert "inbound-vip|8000|http|httpbin.default.svc.cluster.local" in _clusters(admin_port)
    assert json.loads(_get(f"http://127.0.0.1:{admin_port}/server_info"))["state"] == "LIVE"
    (mesh / "75-later.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: later, namespace: default, "
        "labels: {istio.io/use-waypoint: waypoint}}\n"
        "spec: {clusterIP: 127.96.0.75, selector: {app: later}, ports: [{name: http, port: 80}]}\n"
    )
    secure_port = int(log.read_text().split("serving the secure port (TLS: ADS, CA) on 127.0.0.1:", 1)[1].split(";")[0])
    restarted = _control_plane(mesh, xds_port, free_port(), tmp_path / "ca", log, secure_port)
    try:
        wait_until(
            lambda: "later.default.svc.cluster.local" in _clusters(admin_port),
            timeout=40,
            what="envoy reconnects to the restarted control plane and gets the edit",
        )
        assert _root_ca(admin_port) == root_before, "the persisted CA root survives the restart"
    finally:
        restarted.terminate()
        restarted.wait(10)
