"""`pyambient control-plane --mesh DIR` + `pyambient waypoint bootstrap` + `envoy -c`, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, Path, int, int]]:
    mesh = tmp_path / "mesh"
    shutil.copytree(EXAMPLES, mesh)
    xds_port, metrics_port, admin_port = free_port(), free_port(), free_port()
    log = tmp_path / "control-plane.log"
    control = _pyambient(
        "control-plane",
        "--mesh",
        str(mesh),
        "--xds-address",
        f"127.0.0.1:{xds_port}",
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
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
        envoy.terminate()
        control.terminate()
        envoy.wait(10)
        control.wait(10)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return str(resp.read().decode())


def _clusters(admin_port: int) -> str:
    return _get(f"http://127.0.0.1:{admin_port}/config_dump")


def test_envoy_from_printed_bootstrap_gets_config_and_follows_file_edits(running: tuple[Path, Path, int, int]) -> None:
    mesh, log, admin_port, metrics_port = running
    wait_until(
        lambda: "inbound-vip|8000|http|httpbin.default.svc.cluster.local" in _clusters(admin_port),
        what="envoy got the waypoint's config",
    )
    assert _get(f"http://127.0.0.1:{admin_port}/ready").strip() == "LIVE"
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
