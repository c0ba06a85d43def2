"""Issue 4 item 5: interop both ways with a real Envoy as the HBONE peer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.ztunnel.conftest import (
    Backend,
    ZtunnelProc,
    issue,
    proxy_section,
    roundtrip,
    socks_connect,
    workload,
    write_yaml,
)
from tests.ztunnel.envoy import EnvoyProc, hbone_client_config, hbone_server_config
from xds.ca import CertificateAuthority

pytestmark = [pytest.mark.ztunnel, pytest.mark.envoy]


def _sleep_to_echo(
    tmp_path: Path, ca: CertificateAuthority, backends: list[Backend], net: str
) -> tuple[dict[str, str], dict[str, str], str]:
    """Certificates for the client (sleep) and the destination (echo), the root's path, and echo's backend on .3."""
    certdir = tmp_path / "certs"
    sleep = issue(ca, certdir, "default", "sleep")
    echo = issue(ca, certdir, "default", "echo")
    backends.append(Backend(f"{net}.3", 8080, "echo"))
    return sleep, echo, str(certdir / "root.crt")


def test_envoy_hbone_client_reaches_backend_through_our_15008(
    tmp_path: Path,
    ca: CertificateAuthority,
    procs: list[ZtunnelProc],
    backends: list[Backend],
    envoys: list[EnvoyProc],
) -> None:
    net = "127.0.40"
    sleep, echo, root = _sleep_to_echo(tmp_path, ca, backends, net)
    cfg = {
        "proxy": proxy_section(f"{net}.3", "node-b", [echo], Path(root)),
        "workloads": [workload("echo", f"{net}.3", "node-b")],
    }
    zt = ZtunnelProc(write_yaml(tmp_path / "b.yaml", cfg), f"{net}.3", tmp_path / "b.log")
    procs.append(zt)
    zt.wait_ready()
    env = EnvoyProc(
        hbone_client_config(
            admin=(f"{net}.2", 19000),
            listeners=[(f"{net}.2", 15001, f"{net}.3:8080")],
            peer=(f"{net}.3", 15008),
            cert=sleep["cert"],
            key=sleep["key"],
            root=root,
            peer_san="spiffe://cluster.local/ns/default/sa/echo",
        ),
        tmp_path / "envoy-a.yaml",
        (f"{net}.2", 19000),
    )
    envoys.append(env)
    env.wait_ready()
    with socket.create_connection((f"{net}.2", 15001), timeout=10) as s:
        assert roundtrip(s, b"from-envoy") == b"echo:from-envoy"
    zt.wait_log('src.identity="spiffe://cluster.local/ns/default/sa/sleep"')
    zt.wait_log(f"dst.hbone_addr={net}.3:8080")


def test_our_hbone_client_reaches_backend_through_envoy_connect_terminator(
    tmp_path: Path,
    ca: CertificateAuthority,
    procs: list[ZtunnelProc],
    backends: list[Backend],
    envoys: list[EnvoyProc],
) -> None:
    net = "127.0.41"
    sleep, echo, root = _sleep_to_echo(tmp_path, ca, backends, net)
    env = EnvoyProc(
        hbone_server_config(
            admin=(f"{net}.3", 19001),
            listen=(f"{net}.3", 15008),
            cert=echo["cert"],
            key=echo["key"],
            root=root,
            peer_san="spiffe://cluster.local/ns/default/sa/sleep",
        ),
        tmp_path / "envoy-b.yaml",
        (f"{net}.3", 19001),
    )
    envoys.append(env)
    env.wait_ready()
    cfg = {
        "proxy": proxy_section(f"{net}.2", "node-a", [sleep], Path(root)),
        "workloads": [workload("sleep", f"{net}.2", "node-a"), workload("echo", f"{net}.3", "node-b", sa="echo")],
    }
    zt = ZtunnelProc(write_yaml(tmp_path / "a.yaml", cfg), f"{net}.2", tmp_path / "a.log")
    procs.append(zt)
    zt.wait_ready()
    for i in range(3):  # several streams on one pooled connection
        s = socks_connect((f"{net}.2", 15080), (f"{net}.3", 8080), src_ip=f"{net}.2")
        assert roundtrip(s, b"to-envoy%d" % i) == b"echo:to-envoy%d" % i
        s.close()
    zt.wait_log(f"proxying to {net}.3:8080 using HBONE via {net}.3:15008 type Direct")
    stats = env.stats().splitlines()
    assert "http.hbone_inbound.downstream_cx_total: 1" in stats  # three streams, one pooled HBONE connection
    assert "http.hbone_inbound.downstream_rq_total: 3" in stats


def test_inbound_for_waypoint_enabled_destination_not_from_its_waypoint_is_hairpinned_to_the_waypoint(
    tmp_path: Path,
    ca: CertificateAuthority,
    procs: list[ZtunnelProc],
    backends: list[Backend],
    envoys: list[EnvoyProc],
) -> None:
    """Node A does not know about the waypoint (an old config), so it sends straight to node B; B sends the
    stream to the waypoint (here a real Envoy CONNECT terminator standing in for the waypoint)."""
    net = "127.0.42"
    certdir = tmp_path / "certs"
    sleep = issue(ca, certdir, "default", "sleep")
    ratings = issue(ca, certdir, "default", "ratings")
    wp = issue(ca, certdir, "default", "waypoint")
    root = certdir / "root.crt"
    backends.append(Backend(f"{net}.3", 8080, "ratings"))
    env = EnvoyProc(
        hbone_server_config(
            admin=(f"{net}.9", 19004),
            listen=(f"{net}.9", 15008),
            cert=wp["cert"],
            key=wp["key"],
            root=str(root),
            peer_san="spiffe://cluster.local/ns/default/sa/ratings",
        ),
        tmp_path / "waypoint.yaml",
        (f"{net}.9", 19004),
    )
    envoys.append(env)
    env.wait_ready()
    waypoint = workload("waypoint", f"{net}.9", "node-w")
    plain_ratings = workload("ratings", f"{net}.3", "node-b")
    cfg_b = {
        "proxy": proxy_section(f"{net}.3", "node-b", [ratings], root),
        "workloads": [
            workload("sleep", f"{net}.2", "node-a"),
            waypoint,
            {**plain_ratings, "waypoint": {"destination": f"/{net}.9", "hboneMtlsPort": 15008}},
        ],
    }
    cfg_a = {
        "proxy": proxy_section(f"{net}.2", "node-a", [sleep], root),
        "workloads": [workload("sleep", f"{net}.2", "node-a"), plain_ratings],
    }
    b = ZtunnelProc(write_yaml(tmp_path / "b.yaml", cfg_b), f"{net}.3", tmp_path / "b.log")
    a = ZtunnelProc(write_yaml(tmp_path / "a.yaml", cfg_a), f"{net}.2", tmp_path / "a.log")
    procs += [b, a]
    b.wait_ready()
    a.wait_ready()
    s = socks_connect((f"{net}.2", 15080), (f"{net}.3", 8080), src_ip=f"{net}.2")
    assert roundtrip(s, b"hairpin") == b"ratings:hairpin"
    s.close()
    b.wait_log(
        f"proxying to {net}.3:8080 using HBONE via {net}.9:15008 type ToServerWaypoint "
        "(hairpin from spiffe://cluster.local/ns/default/sa/sleep)"
    )
    assert "http.hbone_inbound.downstream_rq_total: 1" in env.stats().splitlines()
