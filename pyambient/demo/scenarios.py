"""The demo's scenarios: each drives real traffic through the running mesh and returns its evidence."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from pyambient.demo import socks
from pyambient.demo.runtime import DemoMesh, ZtunnelProcess
from xds.mesh.model import Workload


@dataclass
class Result:
    title: str
    ok: bool = True
    evidence: list[str] = field(default_factory=list)

    def check(self, condition: bool, message: str) -> None:
        self.evidence.append(("✔ " if condition else "✘ ") + message)
        self.ok = self.ok and condition

    def note(self, message: str) -> None:
        self.evidence.append("  " + message)


class Mesh:
    """Lookups into the running demo by the names users see in the YAML."""

    def __init__(self, demo: DemoMesh) -> None:
        assert demo.control is not None and demo.plan is not None
        self.demo = demo
        self.model = demo.control.control_plane.mesh

    def pod(self, name: str) -> Workload:
        return next(w for w in self.model.workloads if w.name == name)

    def vip(self, service: str, namespace: str = "default") -> tuple[str, int]:
        svc = self.model.service(namespace, service)
        assert svc is not None, f"service {namespace}/{service} is not in the mesh"
        return svc.vips[0], svc.ports[0].port

    def ztunnel_of(self, pod: str) -> ZtunnelProcess:
        node = self.pod(pod).node
        return self.demo.ztunnels[node]

    def get(self, client: str, destination: tuple[str, int]) -> tuple[int, str]:
        status, body = socks.http_get(self.ztunnel_of(client).address("socks5"), self.pod(client).ip, destination)
        return status, body.decode(errors="replace").strip()


def _wait_for_log(zt: ZtunnelProcess, pattern: str, timeout: float = 3.0) -> str | None:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in reversed(zt.log_lines()):
            if regex.search(line):
                return line.strip()
        time.sleep(0.1)
    return None


def l4_mtls_between_nodes(demo: DemoMesh) -> Result:
    result = Result("L4 mTLS between nodes: sleep (node-a) → helloworld-v1-1 (node-b) over HBONE")
    mesh = Mesh(demo)
    target = mesh.pod("helloworld-v1-1")
    status, body = mesh.get("sleep-0", (target.ip, 5000))
    result.check(status == 200 and body == "helloworld-v1-1", f"sleep-0 got HTTP {status} from {body!r}")
    src = mesh.ztunnel_of("sleep-0")
    line = _wait_for_log(src, rf"proxying to {re.escape(target.ip)}:5000 using HBONE")
    result.check(line is not None, f"ztunnel {src.node.name}: {line or 'no proxying line'}")
    dst = mesh.ztunnel_of("helloworld-v1-1")
    sleep_id = mesh.pod("sleep-0").identity
    line = _wait_for_log(dst, re.escape(sleep_id))
    result.check(line is not None, f"ztunnel {dst.node.name} saw peer identity {sleep_id}: {line or 'not logged'}")
    return result


def round_robin(demo: DemoMesh, connections: int = 20) -> Result:
    result = Result(f"Round robin: {connections} connections sleep → helloworld (2 replicas, no waypoint)")
    mesh = Mesh(demo)
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(connections):
        status, body = mesh.get("sleep-0", mesh.vip("helloworld"))
        counts[body if status == 200 else f"HTTP {status}"] += 1
    result.check(
        set(counts) == {"helloworld-v1-0", "helloworld-v1-1"} and min(counts.values()) >= connections // 2 - 2,
        "per replica: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
    )
    return result


def l4_authorization(demo: DemoMesh) -> Result:
    result = Result("L4 authorization: only sleep may call helloworld (AuthorizationPolicy at the destination)")
    mesh = Mesh(demo)
    status, body = mesh.get("sleep-0", mesh.vip("helloworld"))
    result.check(status == 200, f"sleep-0 → helloworld: HTTP {status} from {body!r}")
    denied_at: list[str] = []
    for _ in range(2):  # two connections: round robin sends one to each replica's node
        try:
            status, body = mesh.get("notsleep-0", mesh.vip("helloworld"))
            denied_at.append(f"HTTP {status}")
        except (ConnectionError, OSError) as exc:
            denied_at.append(f"refused ({type(exc).__name__})")
    result.check(all(not d.startswith("HTTP 2") for d in denied_at), f"notsleep-0 → helloworld: {', '.join(denied_at)}")
    lines = [line for zt in demo.ztunnels.values() if (line := _wait_for_log(zt, r"RBAC rejected conn=.*notsleep"))]
    result.check(bool(lines), lines[0] if lines else "no RBAC log line")
    return result


def _split(mesh: Mesh, requests: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(requests):
        status, body = mesh.get("sleep-0", mesh.vip("httpbin"))
        counts[body.rsplit("-", 1)[0] if status == 200 else f"HTTP {status}"] += 1
    return counts


def waypoint_split(demo: DemoMesh, requests: int = 500) -> Result:
    """The waypoint picks a backend per request at random: over 500 requests σ of the 90/10 share is 1.3 % and
    of the 50/50 share 2.2 %, so the bounds below are ≥5σ (a correct mesh does not fail them by chance)."""
    result = Result("Waypoint: HTTPRoute 90/10 between httpbin v1 and v2, then changed live to 50/50")
    mesh = Mesh(demo)
    route_file = demo.mesh_dir / "50-httproute.yaml"
    original = route_file.read_text()
    counts = _split(mesh, requests)
    v1 = counts.get("httpbin-v1", 0) / requests
    result.check(
        0.83 <= v1 <= 0.97, f"{requests} requests: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    )
    try:
        route_file.write_text(original.replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50"))
        result.note(f"edited {route_file} to 50/50")
        deadline = time.monotonic() + 15
        chain = "inbound-vip|8000|http|httpbin.default.svc.cluster.local"
        envoy = demo.envoys["waypoint"]
        while time.monotonic() < deadline and envoy.route_weights(chain) != [50, 50]:
            time.sleep(0.2)
        weights = envoy.route_weights(chain)
        result.check(weights == [50, 50], f"Envoy waypoint route weights now {weights} (same Envoy process)")
        counts = _split(mesh, requests)
        v1 = counts.get("httpbin-v1", 0) / requests
        result.check(
            0.38 <= v1 <= 0.62, f"{requests} requests: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        )
    finally:
        route_file.write_text(original)
    return result


def _run_cli(args: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "pyambient", *args], capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).rstrip()


def cli_views(demo: DemoMesh) -> Result:
    result = Result("istioctl-style views: proxy-config of the waypoint, ztunnel-config workloads")
    envoy = demo.envoys["waypoint"]
    code, out = _run_cli(["proxy-config", "listener", f"127.0.0.1:{envoy.admin_port}", "--waypoint"])
    result.check(
        code == 0 and "inbound-vip" in out, f"pyambient proxy-config listener 127.0.0.1:{envoy.admin_port} --waypoint"
    )
    result.evidence.extend("    " + line for line in out.splitlines()[:14])
    zt = next(iter(demo.ztunnels.values()))
    code, out = _run_cli(["ztunnel-config", "workloads", "--address", f"{zt.node.ip}:15000"])
    result.check(code == 0 and "sleep-0" in out, f"pyambient ztunnel-config workloads --address {zt.node.ip}:15000")
    result.evidence.extend("    " + line for line in out.splitlines()[:12])
    return result


def metrics(demo: DemoMesh) -> Result:
    result = Result("Metrics scraped from the ztunnels' :15020/metrics")
    for zt in demo.ztunnels.values():
        with urllib.request.urlopen(zt.url("metrics", "/metrics"), timeout=5) as resp:
            text = resp.read().decode()
        opened = [line for line in text.splitlines() if line.startswith("istio_tcp_connections_opened_total{")]
        total = sum(float(line.rsplit(" ", 1)[1]) for line in opened)
        result.check(total > 0, f"ztunnel {zt.node.name}: istio_tcp_connections_opened_total = {total:g}")
        for line in opened[:2]:
            result.note(line[:200])
    return result


SCENARIOS: tuple[Callable[[DemoMesh], Result], ...] = (
    l4_mtls_between_nodes,
    round_robin,
    l4_authorization,
    waypoint_split,
    cli_views,
    metrics,
)
