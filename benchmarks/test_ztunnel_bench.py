"""ztunnel benchmarks: our ztunnel pair (Cython core, and the pure-Python twin) vs the Envoy HBONE pair.

Everything runs in one network namespace (so both paths pay the same conntrack cost), in the `nodes` layout of
performance-anchors.md: client + its proxy on core 0, server + its proxy on core 1.

- ours:   client → 10.96.0.10:port (iptables DNAT → ztunnel A :15001, SO_ORIGINAL_DST) → HBONE
          → ztunnel B :15008 → server
- anchor: client → Envoy A (tcp_proxy + tunneling_config) → HBONE → Envoy B :15008 (CONNECT terminator) → server
- ceilings (bulk only): client → C relay A → C relay B → server (benchmarks/ceiling_relay.c), once without TLS
          (the kernel's share of any proxy pair: socket copies and wake-ups) and once with OpenSSL TLS 1.3 and no
          HTTP/2 — what this machine allows a proxy pair, reported beside the targets rather than as one

Same certificates (one CA, SPIFFE leaves for sleep and echo) for both. Measurements: `tput1`/`tput4` (iperf3, Gbit/s),
`rr` (1-byte ping-pong on one connection, round trips/s), `crr` (connect + 1 byte + reply + close, conns/s), each a
few seconds (CPU is shared). Results go to benchmarks/results/ztunnel-raw.json; `python -m benchmarks.report` folds
them into benchmarks/results/latest.json (ratios to the Envoy pair measured in the same run) and prints a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ztunnel.conftest import issue, proxy_section, workload, write_yaml
from tests.ztunnel.envoy import ENVOY, hbone_client_config, hbone_server_config
from tests.ztunnel.netns import NetNS
from xds.ca import CertificateAuthority

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SECONDS = float(os.environ.get("ZT_BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("ZT_BENCH_ROUNDS", "5"))
NET = "127.0.90"
IPERF_PORT = 5201
ECHO_PORT = 7000
CLIENT_CPU = "0"
SERVER_CPU = "1"

# A tiny load generator and echo server in C, so the load side costs little CPU (the anchor used one too).
LOADGEN_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static double now(void) { struct timeval t; gettimeofday(&t, 0); return t.tv_sec + t.tv_usec / 1e6; }

static int dial(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(port); inet_pton(AF_INET, ip, &a.sin_addr);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { close(s); return -1; }
    return s;
}

static void *serve(void *arg) {
    int c = (int)(long)arg, one = 1; char buf[65536]; ssize_t n;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while ((n = read(c, buf, sizeof buf)) > 0) { if (write(c, buf, n) != n) break; }
    close(c); return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: loadgen echo|rr|crr ip port [seconds]\n"); return 2; }
    const char *mode = argv[1], *ip = argv[2]; int port = atoi(argv[3]);
    double secs = argc > 4 ? atof(argv[4]) : 3;
    if (!strcmp(mode, "echo")) {
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET; a.sin_port = htons(port); inet_pton(AF_INET, ip, &a.sin_addr);
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) { perror("listen"); return 1; }
        printf("ready\n"); fflush(stdout);
        for (;;) {
            int c = accept(l, 0, 0); pthread_t t;
            if (c < 0) continue;
            pthread_create(&t, 0, serve, (void *)(long)c); pthread_detach(t);
        }
    }
    long count = 0, errors = 0; char b = 'x';
    double start = now(), end = start + secs;
    if (!strcmp(mode, "rr")) {
        int s = dial(ip, port);
        if (s < 0) { perror("connect"); return 1; }
        while (now() < end) {
            for (int i = 0; i < 100; i++) {
                if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) { errors++; goto done; }
                count++;
            }
        }
        close(s);
    } else {
        while (now() < end) {
            int s = dial(ip, port);
            if (s < 0) { errors++; continue; }
            if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) errors++; else count++;
            struct linger lg = {1, 0};
            setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);  /* RST: no TIME_WAIT pile-up */
            close(s);
        }
    }
done:
    printf("{\"count\": %ld, \"errors\": %ld, \"seconds\": %.4f}\n", count, errors, now() - start);
    return 0;
}
"""


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


class Bench:
    """Starts processes inside the namespace, pinned to a core."""

    def __init__(self, ns: NetNS, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, cpu: str, cmd: list[str], log: str, ready: str | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "wb")
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, "taskset", "-c", cpu, *cmd],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs.append(p)
        if ready:
            deadline = time.time() + 30
            while ready not in (self.tmp / log).read_text(errors="replace"):
                if p.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not start: {(self.tmp / log).read_text()[-2000:]}")
                time.sleep(0.05)
        return p

    def run(self, cpu: str, cmd: list[str], timeout: float = 60, check: bool = True) -> str:
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns.name, "taskset", "-c", cpu, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0 and check:
            raise RuntimeError(f"{cmd}: {r.stderr[-2000:]}")
        return r.stdout

    def stop(self, procs: list[subprocess.Popen[bytes]] | None = None) -> None:
        for p in procs if procs is not None else self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _measure(
    b: Bench, target: tuple[str, int, int], loadgen: Path, proxies: list[int], bulk_only: bool = False
) -> dict[str, Any]:
    """target: (ip, iperf port, echo port) as the client sees them."""
    ip, iperf_port, echo_port = target
    out: dict[str, Any] = {}
    for streams in (1, 4):
        for _attempt in range(3):
            cpu0 = _cpu_seconds(proxies)
            res = json.loads(
                b.run(
                    CLIENT_CPU,
                    [
                        "iperf3",
                        "-c",
                        ip,
                        "-p",
                        str(iperf_port),
                        "-t",
                        str(SECONDS),
                        "-P",
                        str(streams),
                        "-J",
                        "--connect-timeout",
                        "5000",
                    ],
                    timeout=SECONDS + 30,
                    check=False,
                )
            )
            cpu = _cpu_seconds(proxies) - cpu0
            if "error" not in res:
                break
            time.sleep(1.0)  # e.g. "the server is busy running a test" right after the previous run
        else:
            raise RuntimeError(f"iperf3 failed: {res.get('error')}")
        bps = res["end"]["sum_received"]["bits_per_second"]
        gbytes = res["end"]["sum_received"]["bytes"] / 1e9
        out[f"tput{streams}"] = {"value": bps / 1e9, "unit": "Gbit/s", "cpu_s_per_gb": cpu / max(gbytes, 1e-9)}
    if bulk_only:
        return out
    cpu0 = _cpu_seconds(proxies)
    rr = json.loads(b.run(CLIENT_CPU, [str(loadgen), "rr", ip, str(echo_port), str(SECONDS)]))
    cpu = _cpu_seconds(proxies) - cpu0
    out["rr"] = {"value": rr["count"] / rr["seconds"], "unit": "rt/s", "cpu_us_per_op": cpu * 1e6 / max(rr["count"], 1)}
    cpu0 = _cpu_seconds(proxies)
    crr = json.loads(b.run(CLIENT_CPU, [str(loadgen), "crr", ip, str(echo_port), str(SECONDS)]))
    cpu = _cpu_seconds(proxies) - cpu0
    out["crr"] = {
        "value": crr["count"] / crr["seconds"],
        "unit": "conn/s",
        "errors": crr["errors"],
        "cpu_us_per_op": cpu * 1e6 / max(crr["count"], 1),
    }
    return out


PAIRS = {  # name -> (node A ip, node B ip, VIP), each ztunnel pair with its own backends
    "ztunnel-cython": (f"{NET}.2", f"{NET}.3", "10.96.0.10"),
    "ztunnel-python": (f"{NET}.4", f"{NET}.5", "10.96.0.11"),
}
ENVOY_A, ENVOY_B = f"{NET}.6", f"{NET}.7"
# Ceilings for bulk throughput (benchmarks/ceiling_relay.c): C relay pairs, A on the client's core, B on the server's,
# with their own backends. name -> (A ip, B ip, backend ip, mode of A, mode of B, needs TLS)
CEILINGS = {
    "ceiling-c-plain": (f"{NET}.8", f"{NET}.9", f"{NET}.10", "plain", "plain", False),
    "ceiling-c-openssl": (f"{NET}.11", f"{NET}.12", f"{NET}.13", "tls-client", "tls-server", True),
}
CEILING_PORT_OFFSET = 10000  # B listens on the backend's port + this


def _dnat(ns: NetNS, vip: str, to: str) -> None:
    ns.ex("ip", "addr", "add", f"{vip}/32", "dev", "lo")
    for port in (IPERF_PORT, ECHO_PORT):
        ns.dnat(vip, port, f"{to}:15001")


def _backends(b: Bench, ip: str, loadgen: Path) -> None:
    b.start(
        SERVER_CPU,
        ["iperf3", "-s", "--forceflush", "-B", ip, "-p", str(IPERF_PORT)],
        f"iperf3-{ip}.log",
        ready="Server listening",
    )
    b.start(SERVER_CPU, [str(loadgen), "echo", ip, str(ECHO_PORT)], f"echo-{ip}.log", ready="ready")


def _wait(b: Bench, loadgen: Path, ip: str, port: int, what: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            b.run(CLIENT_CPU, [str(loadgen), "rr", ip, str(port), "0.05"])
            return
        except RuntimeError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up")


def _ztunnel_pair(b: Bench, tmp: Path, name: str, core: str, certs: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    a_ip, b_ip, vip = PAIRS[name]
    svc_ports = {IPERF_PORT: IPERF_PORT, ECHO_PORT: ECHO_PORT}
    wls = [
        workload("sleep", a_ip, "node-a"),
        workload("echo", b_ip, "node-b", services={"default/echo.default.svc.cluster.local": svc_ports}),
    ]
    services = [
        {
            "name": "echo",
            "namespace": "default",
            "hostname": "echo.default.svc.cluster.local",
            "vips": [f"/{vip}"],
            "ports": svc_ports,
        }
    ]
    root = Path(certs["root"])
    cfgs = {
        "a": {
            "proxy": proxy_section(a_ip, "node-a", [certs["sleep"]], root, workload="default/sleep"),
            "workloads": wls,
            "services": services,
        },
        "b": {"proxy": proxy_section(b_ip, "node-b", [certs["echo"]], root), "workloads": wls, "services": services},
    }
    procs = []
    for side, cpu in (("b", SERVER_CPU), ("a", CLIENT_CPU)):
        path = write_yaml(tmp / f"{name}-{side}.yaml", cfgs[side])
        procs.append(
            b.start(
                cpu,
                [
                    str(ROOT / ".venv/bin/python"),
                    "-m",
                    "pyambient",
                    "ztunnel",
                    "--config",
                    str(path),
                    "--core",
                    core,
                    "--log-level",
                    os.environ.get("ZT_BENCH_LOG", "warning"),
                ],
                f"{name}-{side}.log",
            )
        )
    _wait(b, certs["loadgen"], vip, ECHO_PORT, name)
    return procs


def _envoy_pair(b: Bench, tmp: Path, certs: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    cfg_b = hbone_server_config(
        admin=(ENVOY_B, 19003),
        listen=(ENVOY_B, 15008),
        cert=certs["echo"]["cert"],
        key=certs["echo"]["key"],
        root=certs["root"],
        peer_san="spiffe://cluster.local/ns/default/sa/sleep",
    )
    cfg_a = hbone_client_config(
        admin=(ENVOY_A, 19002),
        listeners=[(ENVOY_A, 15001, f"{ENVOY_B}:{IPERF_PORT}"), (ENVOY_A, 15002, f"{ENVOY_B}:{ECHO_PORT}")],
        peer=(ENVOY_B, 15008),
        cert=certs["sleep"]["cert"],
        key=certs["sleep"]["key"],
        root=certs["root"],
        peer_san="spiffe://cluster.local/ns/default/sa/echo",
    )
    procs = []
    for name, cfg, cpu in (("envoy-b", cfg_b, SERVER_CPU), ("envoy-a", cfg_a, CLIENT_CPU)):
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        procs.append(
            b.start(
                cpu,
                [
                    str(ENVOY),
                    "-c",
                    str(tmp / f"{name}.yaml"),
                    "--disable-hot-restart",
                    "--concurrency",
                    "1",
                    "-l",
                    "warning",
                ],
                f"{name}.log",
            )
        )
    _wait(b, certs["loadgen"], ENVOY_A, 15002, "envoy pair")
    return procs


def _build_ceiling_relay(tmp: Path) -> tuple[Path, bool]:
    """(binary, has TLS): with OpenSSL when its headers are there (Makefile `system-deps` installs them)."""
    binary, src = tmp / "ceiling_relay", ROOT / "benchmarks" / "ceiling_relay.c"
    tls = subprocess.run(
        ["gcc", "-O2", "-pthread", "-DWITH_TLS", "-o", str(binary), str(src), "-lssl", "-lcrypto"], capture_output=True
    )
    if tls.returncode == 0:
        return binary, True
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(src)], check=True)
    return binary, False


def _ceiling_pair(b: Bench, name: str, relay: Path, certs: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    a_ip, b_ip, backend, a_mode, b_mode, tls = CEILINGS[name]
    procs = []
    for port in (IPERF_PORT, ECHO_PORT):
        relay_port = port + CEILING_PORT_OFFSET
        b_cmd = [str(relay), b_mode, b_ip, str(relay_port), backend, str(port)]
        a_cmd = [str(relay), a_mode, a_ip, str(port), b_ip, str(relay_port)]
        if tls:
            b_cmd += [certs["echo"]["cert"], certs["echo"]["key"], certs["root"]]
            a_cmd += [certs["sleep"]["cert"], certs["sleep"]["key"], certs["root"]]
        procs.append(b.start(SERVER_CPU, b_cmd, f"{name}-b-{port}.log", ready="ready"))
        procs.append(b.start(CLIENT_CPU, a_cmd, f"{name}-a-{port}.log", ready="ready"))
    _wait(b, certs["loadgen"], a_ip, ECHO_PORT, name)
    return procs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bench, dict[str, Any]]]:
    """All pairs up at once (idle ones cost nothing), so measurements can be interleaved."""
    tmp = tmp_path_factory.mktemp("ztbench")
    ns = NetNS(f"zt-bench-{os.getpid()}")
    b = Bench(ns, tmp)
    try:
        loadgen = tmp / "loadgen"
        (tmp / "loadgen.c").write_text(LOADGEN_C)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", str(loadgen), str(tmp / "loadgen.c")], check=True)
        ca = CertificateAuthority()
        certdir = tmp / "certs"
        certs: dict[str, Any] = {
            "sleep": issue(ca, certdir, "default", "sleep"),
            "echo": issue(ca, certdir, "default", "echo"),
            "root": str(certdir / "root.crt"),
            "loadgen": loadgen,
        }
        targets: dict[str, tuple[str, int, int]] = {}
        procs: dict[str, list[int]] = {}
        for name, (a_ip, b_ip, vip) in PAIRS.items():
            _dnat(ns, vip, a_ip)
            _backends(b, b_ip, loadgen)
            ps = _ztunnel_pair(b, tmp, name, name.split("-")[1], certs)
            targets[name] = (vip, IPERF_PORT, ECHO_PORT)
            procs[name] = _children(ps)
        _backends(b, ENVOY_B, loadgen)
        ps = _envoy_pair(b, tmp, certs)
        targets["envoy"] = (ENVOY_A, 15001, 15002)
        procs["envoy"] = [p.pid for p in ps]
        relay, relay_tls = _build_ceiling_relay(tmp)
        for name, (a_ip, _b_ip, backend, _a_mode, _b_mode, tls) in CEILINGS.items():
            if tls and not relay_tls:
                continue
            _backends(b, backend, loadgen)
            ps = _ceiling_pair(b, name, relay, certs)
            targets[name] = (a_ip, IPERF_PORT, ECHO_PORT)
            procs[name] = [p.pid for p in ps]
        yield b, {"targets": targets, "procs": procs, "loadgen": loadgen}
    finally:
        b.stop()
        ns.delete()


def test_ztunnel_pairs_vs_envoy_hbone_pair(pairs: tuple[Bench, dict[str, Any]]) -> None:
    """ROUNDS interleaved rounds (every pair in turn), median per pair and metric; the ceilings run bulk only."""
    b, env = pairs
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in env["targets"]}
    for _ in range(ROUNDS):
        for name, target in env["targets"].items():
            bulk_only = name in CEILINGS
            runs[name].append(_measure(b, target, env["loadgen"], env["procs"][name], bulk_only))
    for name, results in runs.items():
        merged: dict[str, Any] = {}
        for metric in results[0]:
            ordered = sorted(results, key=lambda r: r[metric]["value"])
            merged[metric] = {**ordered[len(ordered) // 2][metric], "rounds": [r[metric]["value"] for r in results]}
        _save(name, merged)
    for name in runs:
        for metric, value in json.loads((RESULTS / "ztunnel-raw.json").read_text())[name].items():
            assert value["value"] > 0, (name, metric)


def _save(name: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / "ztunnel-raw.json"
    data = json.loads(raw.read_text()) if raw.exists() else {}
    data[name] = result
    data["_meta"] = {
        "seconds": SECONDS,
        "rounds": ROUNDS,
        "layout": "nodes",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    raw.write_text(json.dumps(data, indent=2))


def _children(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """The processes under `ip netns exec taskset ...` (exec keeps the pid, but be safe)."""
    pids = []
    for p in procs:
        pids.append(p.pid)
        try:
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            pids += [int(k) for k in kids]
        except OSError:
            pass
    return pids


# --------------------------------------------------------------------------------------- core micro-benchmarks
# pytest-benchmark over the Cython core and its pure-Python twin: the hot operations in isolation.
CORE_TIMES: dict[str, float] = {}


@pytest.mark.parametrize("impl_name", ["cython", "python"])
def test_bench_core_round_robin_pick(benchmark: Any, impl_name: str) -> None:
    impl = _impl(impl_name)
    rr = impl.RoundRobin([f"10.0.0.{i}" for i in range(8)])

    def picks() -> None:
        for _ in range(1000):
            rr.pick()

    benchmark(picks)
    _core_record("rr_pick_x1000", impl_name, benchmark)


@pytest.mark.parametrize("impl_name", ["cython", "python"])
def test_bench_core_frame_and_parse_1mib(benchmark: Any, impl_name: str) -> None:
    """Frame 1 MiB into DATA frames (send side) and split it again (receive side), TLS excluded: a pump's
    framing work per MiB, fed through an in-memory TLS pair so the real code path runs."""
    import ssl

    impl = _impl(impl_name)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"ztbench-core-{os.getpid()}"
    ca = CertificateAuthority()
    sc, sk, root = ca.issue("spiffe://cluster.local/ns/default/sa/echo").write(tmp, "s")
    cc, ck, _ = ca.issue("spiffe://cluster.local/ns/default/sa/sleep").write(tmp, "c")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.verify_mode = ssl.CERT_REQUIRED
    sctx.load_verify_locations(str(root))
    sctx.load_cert_chain(str(sc), str(sk))
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.load_verify_locations(str(root))
    cctx.load_cert_chain(str(cc), str(ck))

    class Sink:
        def __init__(self) -> None:
            self.n = 0
            self.peer: Any = None

        def write(self, data: bytes) -> None:
            if self.peer is not None:
                self.peer.data_received(data)
            else:
                self.n += len(data)

        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def close(self) -> None: ...
        def abort(self) -> None: ...

    class Owner:
        def pump_handshake_done(self) -> None: ...
        def pump_control(self, data: bytes) -> None: ...
        def pump_stream_drained(self, sid: int) -> None: ...
        def pump_stream_lost(self, sid: int, exc: BaseException | None) -> None: ...
        def pump_closed(self, exc: BaseException | None) -> None: ...
        def pump_error(self, sid: int, code: int, reason: str, detail: str) -> None:
            raise AssertionError(f"pump error {code} on stream {sid}: {detail}")

    def pump(ctx: ssl.SSLContext, server: bool) -> Any:
        i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = ctx.wrap_bio(i, o, server_side=server)
        return impl.TunnelPump(sslobj, i, o, Owner(), server, 4 << 20, 16 << 20, 1 << 20)

    client, server = pump(cctx, False), pump(sctx, True)
    to_server, to_client, plain = Sink(), Sink(), Sink()
    to_server.peer, to_client.peer = server, client
    server.connection_made(to_client)
    client.connection_made(to_server)  # the handshake runs through the sinks
    client.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    for p in (client, server):
        p.open_stream(1)
        p.set_peer_settings(2**31 - 1, 1 << 20)
        p.add_conn_send_window(2**31 - 1 - 65535)
    server.attach(1, plain)
    chunk = os.urandom(256 * 1024)

    def one_mib() -> None:
        for _ in range(4):
            client.send_data(1, chunk)

    benchmark(one_mib)
    assert plain.n > 0
    _core_record("tls_frame_parse_1MiB", impl_name, benchmark)


def _impl(name: str) -> Any:
    import _core
    import _core._reference as reference

    return _core if name == "cython" else reference


def _core_record(what: str, impl_name: str, benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None or not getattr(benchmark, "enabled", True):
        return
    mean = stats.stats.mean
    CORE_TIMES[f"{what}:{impl_name}"] = mean
    other = CORE_TIMES.get(f"{what}:{'python' if impl_name == 'cython' else 'cython'}")
    if other is not None:
        from benchmarks.results import record

        cy, py = (mean, other) if impl_name == "cython" else (other, mean)
        record(f"core-{what}", "cython_speedup_vs_python_twin", py / cy, "x", anchor=None)
