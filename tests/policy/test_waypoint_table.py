"""The policy table at a real Envoy waypoint: every row at once, each on its own Service with the
row's policy attached by `targetRefs`, one config push; then real HBONE requests from clients with
the row's identity (certificate from our CA) and source address, to a backend behind a stand-in
destination ztunnel. Allowed = the backend answered; denied = Envoy's 403 (HTTP) or a closed
connection (TCP)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyambient.runtime.backends import NamedHttpBackend
from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.harness.hbone import HboneClient, HboneTerminator
from tests.harness.meshes import ambient_namespace, pod, service, waypoint
from tests.policy.table import (
    ALT_PORT,
    ALT_SERVICE_PORT,
    NAMESPACE,
    POD_IP,
    PORT,
    ROWS,
    SERVICE_PORT,
    WAYPOINT,
    Req,
    Row,
    cases,
    row_ids,
)
from xds import resources
from xds.ca import CertificateAuthority, IssuedCertificate, spiffe_id
from xds.envoy.bootstrap import WaypointNode

pytestmark = [pytest.mark.policy, pytest.mark.envoy]

NODE = WaypointNode("waypoint", NAMESPACE, "127.0.13.1")
WAYPOINT_ROWS = [row for row in ROWS if WAYPOINT in row.points]


def _vip(index: int) -> str:
    return f"127.96.{13 + index // 200}.{index % 200 + 1}"


def _objects() -> list[dict[str, object]]:
    objs: list[dict[str, object]] = [
        ambient_namespace(NAMESPACE),
        waypoint(NAMESPACE),
        pod(NAMESPACE, "backend-0", POD_IP, {"app": "backend"}, "backend"),
    ]
    for i, row in enumerate(WAYPOINT_ROWS):
        kind = "tcp" if row.tcp else "http"
        ports = [(kind, SERVICE_PORT, PORT), (f"{kind}-alt", ALT_SERVICE_PORT, ALT_PORT)]
        objs.append(service(NAMESPACE, f"row-{i}", _vip(i), ports, {"app": "backend"}))
        spec = row.policy_spec(dst_ip=_vip(i), port=SERVICE_PORT, alt_port=ALT_SERVICE_PORT)
        spec["targetRefs"] = [{"group": "", "kind": "Service", "name": f"row-{i}"}]
        objs.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": f"row-{i}", "namespace": NAMESPACE},
                "spec": spec,
            }
        )
    return objs


@dataclass
class Waypoint:
    control: ControlPlaneThread
    envoy: EnvoyProcess
    ca: CertificateAuthority
    certs: dict[str, IssuedCertificate] = field(default_factory=dict)

    def cert(self, identity: str) -> IssuedCertificate:
        if identity not in self.certs:
            self.certs[identity] = self.ca.issue(identity)
        return self.certs[identity]

    def allowed(self, row: Row, req: Req) -> bool:
        vip = _vip(WAYPOINT_ROWS.index(row))
        port = ALT_SERVICE_PORT if req.alt_port else SERVICE_PORT
        headers = "".join(f"{k}: {v}\r\n" for k, v in req.headers)
        request = (
            f"{req.method} {req.path} HTTP/1.1\r\nHost: {req.host}\r\n{headers}"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode()
        with HboneClient((NODE.listen_address, 15008), self.cert(req.identity), source=req.src_ip) as client:
            result = client.exchange(f"{vip}:{port}", request)
        assert result.status == 200, f"CONNECT to the waypoint answered {result.status}"
        if not result.body.startswith(b"HTTP/1."):
            return False  # the TCP chain's RBAC closed the connection
        return result.body.split(b" ", 2)[1] != b"403"


@pytest.fixture(scope="module")
def wp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Waypoint]:
    ca = CertificateAuthority()
    control = ControlPlaneThread(_objects(), ca=ca).start()
    workdir: Path = tmp_path_factory.mktemp("policy-envoy")
    terminator = HboneTerminator(POD_IP, ca.issue(spiffe_id("istio-system", "ztunnel")))
    backends = [NamedHttpBackend(POD_IP, port, "backend") for port in (PORT, ALT_PORT)]
    envoy = EnvoyProcess(workdir, NODE, control.port, credentials=control.waypoint_credentials(NODE))
    try:
        envoy.start_agent()
        envoy.start()
        cp = control.control_plane
        types = (resources.LISTENER, resources.CLUSTER, resources.ENDPOINT)

        def acked() -> bool:
            snapshot = cp.snapshot_for(NODE.to_node())
            acked = all(cp.acks.get((NODE.node_id, t)) == snapshot.version(t) for t in types)
            return acked and envoy.serving()  # serving: its certificate is loaded too

        wait_until(acked, timeout=60, what="the waypoint ACKs every resource")
        assert cp.mesh.errors == ()
        assert len(cp.nacks) == 0
        yield Waypoint(control, envoy, ca)
        assert len(cp.nacks) == 0
    finally:
        envoy.stop()
        terminator.close()
        for b in backends:
            b.close()
        control.stop()


@pytest.mark.parametrize(("row", "req", "allowed"), cases(WAYPOINT), ids=row_ids(WAYPOINT))
def test_waypoint_enforces(wp: Waypoint, row: Row, req: Req, allowed: bool) -> None:
    assert wp.allowed(row, req) is allowed, str(req)
