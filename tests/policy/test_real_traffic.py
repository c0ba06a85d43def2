"""AuthorizationPolicy through the whole data plane: clients' ztunnel → the real Envoy waypoint (policies
with targetRefs) → the destination ztunnel (policies with a selector) → the backend, all configured by our
control plane from mesh files (the demo mesh plus the policies here), with real requests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyambient.demo import socks
from pyambient.demo.runtime import DemoMesh
from pyambient.demo.scenarios import Mesh
from pyambient.runtime.envoy import wait_until

pytestmark = [pytest.mark.policy, pytest.mark.ztunnel, pytest.mark.envoy]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mesh"

# One more `sleep` pod at another address, to tell ipBlocks from principals.
SLEEP_ELSEWHERE = """
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, nodeName: node-a}
status: {podIP: 127.0.1.12}
"""

# At httpbin's waypoint: sleep may GET /get* from its own address; anyone else only with x-user: alice on
# an httpbin host.
WAYPOINT_POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-policy, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: httpbin}]
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep], ipBlocks: [127.0.1.10/32]}}]
    to: [{operation: {methods: [GET], paths: ["/get*"]}}]
  - from: [{source: {notPrincipals: [cluster.local/ns/default/sa/sleep]}}]
    to: [{operation: {hosts: ["httpbin*"]}}]
    when: [{key: "request.headers[x-user]", values: [alice]}]
"""

# At helloworld's ztunnels: only 127.0.1.12 (the probe: ipBlocks reach the ztunnels as source_ips).
ZTUNNEL_POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: helloworld-allow-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: helloworld}}
  action: ALLOW
  rules:
  - from: [{source: {ipBlocks: [127.0.1.12/32]}}]
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("policy-mesh")
    mesh_dir = tmp / "mesh"
    shutil.copytree(EXAMPLES, mesh_dir)
    (mesh_dir / "11-sleep-elsewhere.yaml").write_text(SLEEP_ELSEWHERE)
    (mesh_dir / "60-authz.yaml").write_text(ZTUNNEL_POLICY)
    (mesh_dir / "70-waypoint-authz.yaml").write_text(WAYPOINT_POLICY)
    demo = DemoMesh(mesh_dir, tmp).start()
    try:
        assert demo.control is not None
        assert demo.control.control_plane.mesh.errors == ()
        yield Mesh(demo)
    finally:
        demo.stop()


def _request(mesh: Mesh, client: str, destination: tuple[str, int], raw: str) -> int:
    """The HTTP status the client gets, or 0 when the connection is refused or closed without a response."""
    try:
        sock = socks.connect(mesh.ztunnel_of(client).address("socks5"), mesh.pod(client).ip, destination)
    except (socks.SocksError, OSError):
        return 0
    try:
        sock.sendall(raw.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        return 0
    finally:
        sock.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0


def _http(method: str = "GET", path: str = "/get", host: str = "httpbin", **headers: str) -> str:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"


WAYPOINT_CASES = [
    ("sleep_GET_get_from_its_address", "sleep-0", _http(), 200),
    ("sleep_from_another_address_ipBlocks", "sleep-1", _http(), 403),
    ("sleep_POST_methods", "sleep-0", _http("POST"), 403),
    ("sleep_GET_admin_paths", "sleep-0", _http(path="/admin"), 403),
    ("notsleep_without_header_when", "notsleep-0", _http(path="/anything"), 403),
    ("notsleep_with_header_notPrincipals", "notsleep-0", _http(path="/anything", x_user="alice"), 200),
    ("notsleep_other_host_hosts", "notsleep-0", _http(path="/anything", host="evil", x_user="alice"), 403),
    ("sleep_with_header_is_not_notPrincipals", "sleep-0", _http(path="/anything", x_user="alice"), 403),
]


@pytest.mark.parametrize(("name", "client", "raw", "status"), WAYPOINT_CASES, ids=[c[0] for c in WAYPOINT_CASES])
def test_waypoint_policy_through_ztunnels(mesh: Mesh, name: str, client: str, raw: str, status: int) -> None:
    assert _request(mesh, client, mesh.vip("httpbin"), raw) == status


def test_ztunnel_policy_ipBlocks_from_the_control_plane(mesh: Mesh) -> None:  # noqa: N802
    target = mesh.pod("helloworld-v1-1")  # on node-b: the destination ztunnel decides
    destination = (target.ip, 5000)
    assert _request(mesh, "sleep-1", destination, _http(host="helloworld")) == 200
    assert _request(mesh, "sleep-0", destination, _http(host="helloworld")) == 0, "not in ipBlocks"
    zt = mesh.ztunnel_of("helloworld-v1-1")
    wait_until(
        lambda: any("RBAC rejected" in line and "127.0.1.10" in line for line in zt.log_lines()),
        timeout=10,
        what="the destination ztunnel logs the RBAC rejection",
    )


def test_ztunnel_fails_closed_on_http_attributes_live(mesh: Mesh) -> None:
    """The issue's probe: `when` on a JWT claim + GET at a ztunnel is not "any GET from anyone"."""
    assert mesh.demo.control is not None
    policy_file = mesh.demo.mesh_dir / "60-authz.yaml"
    target = mesh.pod("helloworld-v1-1")
    try:
        policy_file.write_text(
            ZTUNNEL_POLICY.replace(
                "- from: [{source: {ipBlocks: [127.0.1.12/32]}}]",
                '- to: [{operation: {methods: [GET]}}]\n'
                '    when: [{key: "request.auth.claims[groups]", values: [admin]}]',
            )
        )
        wait_until(
            lambda: _request(mesh, "sleep-1", (target.ip, 5000), _http(host="helloworld")) == 0,
            timeout=30,
            what="the ALLOW rule with HTTP attributes matches nothing at the ztunnel",
        )
        assert _request(mesh, "sleep-0", (target.ip, 5000), _http(host="helloworld")) == 0
    finally:
        policy_file.write_text(ZTUNNEL_POLICY)
        wait_until(
            lambda: _request(mesh, "sleep-1", (target.ip, 5000), _http(host="helloworld")) == 200,
            timeout=30,
            what="the policy restored",
        )

