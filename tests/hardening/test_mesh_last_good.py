"""A mesh file saved half-way keeps serving its last good version: the real control plane process and a real
Envoy waypoint, as a user runs them (`pyambient control-plane --mesh DIR`, `pyambient waypoint bootstrap`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyambient.runtime.envoy import envoy_binary, free_port, wait_until
from pyambient.runtime.processes import stop_process

pytestmark = [pytest.mark.hardening, pytest.mark.envoy]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mesh"
HTTPBIN = "inbound-vip|8000|http|httpbin.default.svc.cluster.local"
EXTRA = "inbound-vip|80|http|extra.default.svc.cluster.local"
LISTEN = "127.0.152.41"


@dataclass
class Running:
    mesh: Path
    log: Path
    admin_port: int

    def config(self) -> str:
        return _get(f"http://127.0.0.1:{self.admin_port}/config_dump")

    def clusters(self) -> str:
        """Active and warming clusters (without its certificates Envoy keeps new clusters warming)."""
        base = f"http://127.0.0.1:{self.admin_port}/config_dump?resource="
        return _get(base + "dynamic_active_clusters") + _get(base + "dynamic_warming_clusters")

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    mesh = tmp_path / "mesh"
    shutil.copytree(EXAMPLES, mesh)
    xds_port, admin_port = free_port(), free_port()
    log = tmp_path / "control-plane.log"
    control = subprocess.Popen(
        [sys.executable, "-m", "pyambient", "control-plane", "--mesh", str(mesh),
         "--xds-address", f"127.0.0.1:{xds_port}"],  # fmt: skip
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    bootstrap = tmp_path / "bootstrap.json"
    subprocess.run(
        [sys.executable, "-m", "pyambient", "waypoint", "bootstrap", "--name", "waypoint", "--namespace", "default",
         "--xds", f"127.0.0.1:{xds_port}", "--listen-address", LISTEN, "--admin-port", str(admin_port),
         "-o", str(bootstrap)],
        check=True,
    )  # fmt: skip
    envoy = subprocess.Popen(
        [envoy_binary(), "-c", str(bootstrap), "--use-dynamic-base-id", "--concurrency", "1"],
        stdout=(tmp_path / "envoy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        run = Running(mesh, log, admin_port)
        # the config is what this test is about; the waypoint's certificates (an agent's SDS) are not needed
        wait_until(lambda: HTTPBIN in run.clusters(), timeout=60, what="envoy got the waypoint's config")
        yield run
    finally:
        stop_process(envoy)
        stop_process(control)


def _extra_service(name: str, ip: str) -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, "
        "labels: {istio.io/use-waypoint: waypoint}}\n"
        f"spec: {{clusterIP: {ip}, selector: {{app: {name}}}, ports: [{{name: http, port: 80}}]}}\n"
    )


def test_a_truncated_save_keeps_the_last_good_objects_in_force_and_deleting_the_file_removes_them(
    running: Running,
) -> None:
    httpbin = running.mesh / "30-httpbin.yaml"
    good = httpbin.read_text()
    cut = good.index("istio.io/use-wa")  # the save stops inside the first Service's labels (line 7)
    httpbin.write_text(good[:cut])
    wait_until(lambda: "30-httpbin.yaml" in running.logged(), what="the truncated file is reported")
    line = next(x for x in running.logged().splitlines() if "30-httpbin.yaml" in x)
    assert "line 7: cannot parse" in line and "keeping its last good version (5 objects)" in line, line

    # a later good edit elsewhere makes the control plane push again, with the truncated file still broken:
    # httpbin's objects are in that push
    (running.mesh / "70-extra.yaml").write_text(_extra_service("extra", "127.96.0.70"))
    wait_until(lambda: EXTRA in running.clusters(), what="the next push reaches envoy")
    assert HTTPBIN in running.clusters()

    # a new file that does not parse adds nothing
    (running.mesh / "80-new.yaml").write_text(_extra_service("newbad", "127.96.0.80")[:60])
    wait_until(lambda: "nothing from it is served" in running.logged(), what="the new bad file is reported")
    (running.mesh / "71-more.yaml").write_text(_extra_service("more", "127.96.0.71"))
    wait_until(lambda: "more.default.svc.cluster.local" in running.clusters(), what="the next push reaches envoy")
    assert "newbad" not in running.config() and HTTPBIN in running.clusters()

    # the save completes: the file's new version is served
    httpbin.write_text(good.replace("port: 8000", "port: 8001", 1))
    wait_until(lambda: "inbound-vip|8001|http|httpbin.default" in running.clusters(), what="the fixed file is served")

    # deleting the file deletes its objects, last good version included
    httpbin.write_text(good[:cut])
    wait_until(lambda: running.logged().count("keeping its last good version") >= 2, what="the second bad save")
    httpbin.unlink()
    gone = ("inbound-vip|8001|http|httpbin.default", "httpbin-v1.default", "httpbin-v2.default")
    wait_until(lambda: not any(g in running.clusters() for g in gone), what="the deleted file's clusters are gone")
