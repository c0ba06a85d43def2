"""Fixtures for the ztunnel tests: certificates, config files, ztunnel processes, backends, clients.

Everything is real: ztunnels run as `pyambient ztunnel` processes on 127.0.0.x, backends are TCP servers,
clients speak SOCKS5 to 15080 or connect through an iptables REDIRECT in a network namespace.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyambient.runtime.processes import stop_process
from tests.ztunnel.envoy import EnvoyProc
from xds.ca import CertificateAuthority

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

pytestmark = pytest.mark.ztunnel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ztunnel" in str(item.fspath):
            item.add_marker(pytest.mark.ztunnel)


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def issue(ca: CertificateAuthority, directory: Path, ns: str, sa: str) -> dict[str, str]:
    cert = ca.issue(f"spiffe://cluster.local/ns/{ns}/sa/{sa}")
    c, k, _root = cert.write(directory, stem=f"{ns}-{sa}")
    return {"cert": str(c), "key": str(k)}


def hbone_client_context(cert: dict[str, str], root: Path) -> ssl.SSLContext:
    """What a source ztunnel presents on 15008: TLS 1.3, ALPN h2, the certificate `issue` wrote, trusting `root`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(str(root))
    ctx.load_cert_chain(cert["cert"], cert["key"])
    ctx.set_alpn_protocols(["h2"])
    return ctx


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def resident_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def workload(
    name: str,
    ip: str,
    node: str,
    *,
    ns: str = "default",
    sa: str | None = None,
    protocol: str = "HBONE",
    services: dict[str, dict[int, int]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    w: dict[str, Any] = {
        "uid": f"cluster1//v1/Pod/{ns}/{name}",
        "name": name,
        "namespace": ns,
        "serviceAccount": sa or name,
        "trustDomain": "cluster.local",
        "workloadIps": [ip],
        "protocol": protocol,
        "node": node,
        "canonicalName": name,
        "canonicalRevision": "v1",
        "workloadName": name,
    }
    if services:
        w["services"] = services
    w.update(extra)
    return w


def proxy_section(ip: str, node: str, certs: list[dict[str, str]], root: Path, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "node": node,
        "bindIp": ip,
        "rootCert": str(root),
        "certificates": certs,
        "keepaliveInterval": 10.0,
        "handshakeTimeout": 2.0,
    }
    p.update(extra)
    return p


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class ZtunnelProc:
    def __init__(
        self,
        config: Path,
        ip: str,
        log: Path,
        core: str = "cython",
        netns: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.ip = ip
        self.log_path = log
        cmd = [PY, "-m", "pyambient", "ztunnel", "--config", str(config), "--core", core, *extra_args]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        self.netns = netns

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ztunnel exited {self.proc.returncode}:\n{self.log()}")
            if "ztunnel ready" in self.log():
                return
            time.sleep(0.05)
        raise TimeoutError(f"ztunnel not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in log:\n{self.log()[-4000:]}")

    def http(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.ip}:{port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


class Backend:
    """A TCP server on ip:port that answers every chunk with `<name>:` + the chunk (or echoes when raw)."""

    def __init__(self, ip: str, port: int, name: str, raw: bool = False) -> None:
        outer = self
        self.name = name
        self.connections = 0
        self.peers: list[tuple[str, int]] = []

        class H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                outer.peers.append(self.client_address)
                sock: socket.socket = self.request
                prefix = b"" if raw else name.encode() + b":"
                while True:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
                        return
                    sock.sendall(prefix + data)

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = S((ip, port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def socks_connect(
    proxy: tuple[str, int], dst: tuple[str, int], src_ip: str | None = None, timeout: float = 10.0
) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    if src_ip:
        s.bind((src_ip, 0))
    s.connect(proxy)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(dst[0]) + dst[1].to_bytes(2, "big"))
    reply = b""
    while len(reply) < 10:
        chunk = s.recv(10 - len(reply))
        if not chunk:
            raise ConnectionError("socks closed")
        reply += chunk
    assert reply[1] == 0, reply
    return s


def closed_by_peer(s: socket.socket) -> bool:
    """True once the proxy has closed (or reset) this client connection: a write then sees EOF or an error."""
    try:
        s.sendall(b"x")
        return s.recv(100) == b""
    except OSError:
        return True


def roundtrip(s: socket.socket, payload: bytes) -> bytes:
    s.sendall(payload)
    out = b""
    while not out.endswith(payload):
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path


@pytest.fixture
def procs() -> Iterator[list[ZtunnelProc]]:
    started: list[ZtunnelProc] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    started: list[Backend] = []
    yield started
    for b in started:
        b.close()


@pytest.fixture
def envoys() -> Iterator[list[EnvoyProc]]:
    started: list[EnvoyProc] = []
    yield started
    for e in started:
        e.stop()
