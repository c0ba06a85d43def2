"""RequestAuthentication through a real Envoy waypoint: tokens signed here, keys inline or from a JWKS server."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from pyambient.runtime.backends import HttpAnswer, HttpBackend
from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.harness.hbone import HboneClient, HboneTerminator
from tests.harness.jwt import JwksServer, SigningKey, claims, jwks
from tests.harness.meshes import Obj, ambient_namespace, pod, service, waypoint
from xds import resources
from xds.ca import CertificateAuthority, spiffe_id
from xds.envoy.bootstrap import WaypointNode
from xds.mesh.objects import mesh_from_objects

pytestmark = [pytest.mark.envoy, pytest.mark.policy]

WAYPOINT = WaypointNode("waypoint", "auth", "127.0.15.1")
WEB_POD = "127.0.14.11"
WEB_VIP = "127.96.14.10"
JWKS_IP = "127.0.14.50"
INLINE_ISSUER = "https://inline.example"
REMOTE_ISSUER = "https://remote.example"
ALL_TYPES = (resources.LISTENER, resources.CLUSTER, resources.ENDPOINT)  # certificates come from the agent


def header_echo_answer(_path: str, headers: Message) -> HttpAnswer:
    """The destination pod: answers with the request headers it received, as JSON (names lower-cased)."""
    return HttpAnswer(json.dumps({k.lower(): v for k, v in headers.items()}).encode())


def base_mesh() -> list[Obj]:
    return [
        ambient_namespace("auth"),
        service("auth", "web", WEB_VIP, [("http", 80, 8080)], {"app": "web"}),
        pod("auth", "web-0", WEB_POD, {"app": "web"}, "web"),
        waypoint("auth", "waypoint"),
    ]


def request_authentication(rules: list[dict[str, Any]]) -> Obj:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "web-jwt", "namespace": "auth"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}], "jwtRules": rules},
    }


@dataclass
class Reply:
    status: int
    body: bytes

    @property
    def headers_seen(self) -> dict[str, str]:
        return dict(json.loads(self.body))


@dataclass
class AuthMesh:
    control: ControlPlaneThread
    envoy: EnvoyProcess
    ca: CertificateAuthority
    inline_key: SigningKey
    remote_key: SigningKey
    jwks_server: JwksServer

    def acked(self) -> bool:
        cp = self.control.control_plane
        snapshot = cp.snapshot_for(self.envoy.node.to_node())
        acked = all(cp.acks.get((self.envoy.node.node_id, t)) == snapshot.version(t) for t in ALL_TYPES)
        return acked and self.envoy.serving()  # serving: the agent's certificate is loaded too

    def apply(self, objects: list[Obj]) -> None:
        cp = self.control.control_plane
        mesh = mesh_from_objects(objects)
        assert mesh.errors == ()
        cp.update(mesh)
        wait_until(lambda: cp.mesh is mesh and self.acked(), what="envoy ACKs the new config")
        assert len(cp.nacks) == 0, cp.nacks

    def get(self, headers: dict[str, str] | None = None, path: str = "/") -> Reply:
        lines = [f"GET {path} HTTP/1.1", "Host: web.auth", "Content-Length: 0", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        with HboneClient((WAYPOINT.listen_address, 15008), self.ca.issue(spiffe_id("auth", "sleep"))) as client:
            result = client.exchange(f"{WEB_VIP}:80", request)
        assert result.status == 200, result
        head, _, body = result.body.partition(b"\r\n\r\n")
        return Reply(int(head.split(b" ", 2)[1]), body)

    def bearer(self, token: str, path: str = "/") -> Reply:
        return self.get({"Authorization": f"Bearer {token}"}, path)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMesh]:
    ca = CertificateAuthority()
    inline_key, remote_key = SigningKey.es256("inline-es"), SigningKey.rs256("remote-rs")
    jwks_server = JwksServer(JWKS_IP, 0, jwks(remote_key))
    backend = HttpBackend(WEB_POD, 8080, header_echo_answer)
    terminator = HboneTerminator(WEB_POD, ca.issue(spiffe_id("istio-system", "ztunnel")))
    control = ControlPlaneThread(base_mesh(), ca=ca).start()
    workdir: Path = tmp_path_factory.mktemp("envoy-jwt")
    envoy = EnvoyProcess(workdir, WAYPOINT, credentials=control.waypoint_credentials(WAYPOINT)).start()
    m = AuthMesh(control, envoy, ca, inline_key, remote_key, jwks_server)
    try:
        wait_until(m.acked, timeout=60, what="envoy ACKs every type")
        yield m
    finally:
        envoy.stop()
        terminator.close()
        backend.close()
        jwks_server.close()
        control.stop()


def inline_rule(key: SigningKey, **extra: Any) -> dict[str, Any]:
    return {"issuer": INLINE_ISSUER, "jwks": jwks(key), **extra}


def test_inline_jwks_invalid_tokens_are_401_missing_token_passes(mesh: AuthMesh) -> None:
    mesh.apply([*base_mesh(), request_authentication([inline_rule(mesh.inline_key)])])
    key = mesh.inline_key
    assert mesh.get().status == 200  # RequestAuthentication alone never requires a token
    assert mesh.bearer(key.token(claims(INLINE_ISSUER, "alice"))).status == 200
    assert mesh.bearer(SigningKey.es256("inline-es").token(claims(INLINE_ISSUER, "alice"))).status == 401
    assert mesh.bearer(key.token(claims("https://elsewhere.example", "alice"))).status == 401
    assert mesh.bearer(key.token(claims(INLINE_ISSUER, "alice", lifetime=-120))).status == 401
    assert mesh.bearer("not-a-jwt").status == 401


def test_audiences_and_token_locations(mesh: AuthMesh) -> None:
    rule = inline_rule(
        mesh.inline_key,
        audiences=["web"],
        fromHeaders=[{"name": "x-token", "prefix": "Token "}],
        fromParams=["access_token"],
    )
    mesh.apply([*base_mesh(), request_authentication([rule])])
    good = mesh.inline_key.token(claims(INLINE_ISSUER, "alice", aud="web"))
    wrong_audience = mesh.inline_key.token(claims(INLINE_ISSUER, "alice", aud="billing"))
    # A verified token for another audience: Envoy (so Istio) answers 403, not 401.
    refused = Reply(403, b"Audiences in Jwt are not allowed")
    assert mesh.get({"x-token": f"Token {good}"}).status == 200
    assert mesh.get({"x-token": f"Token {wrong_audience}"}) == refused
    assert mesh.get(path=f"/?access_token={good}").status == 200
    assert mesh.get(path=f"/?access_token={wrong_audience}") == refused
    # The default location is replaced by the configured ones.
    assert mesh.bearer(good).status == 200  # not read at all: no token, let through


def test_outputs_claims_payload_and_forwarding(mesh: AuthMesh) -> None:
    rule = inline_rule(
        mesh.inline_key,
        outputPayloadToHeader="x-jwt-payload",
        outputClaimToHeaders=[{"header": "x-jwt-sub", "claim": "sub"}],
    )
    mesh.apply([*base_mesh(), request_authentication([rule])])
    token = mesh.inline_key.token(claims(INLINE_ISSUER, "alice"))
    seen = mesh.bearer(token).headers_seen
    assert seen["x-jwt-sub"] == "alice"
    assert "x-jwt-payload" in seen
    assert "authorization" not in seen  # Envoy strips the token unless forwardOriginalToken
    mesh.apply([*base_mesh(), request_authentication([{**rule, "forwardOriginalToken": True}])])
    assert mesh.bearer(token).headers_seen["authorization"] == f"Bearer {token}"


def test_jwks_uri_is_fetched_by_envoy_through_its_cluster(mesh: AuthMesh) -> None:
    rules = [
        inline_rule(mesh.inline_key),
        {"issuer": REMOTE_ISSUER, "jwksUri": mesh.jwks_server.uri, "timeout": "5s"},
    ]
    mesh.apply([*base_mesh(), request_authentication(rules)])
    assert f"outbound|{mesh.jwks_server.uri.split(':')[2].split('/')[0]}||{JWKS_IP}" in mesh.envoy.dynamic_names(
        "clusters"
    )
    remote, inline = mesh.remote_key, mesh.inline_key

    # Envoy fetches the JWKS when it needs it; the first request may arrive before the fetch ends.
    wait_until(
        lambda: mesh.bearer(remote.token(claims(REMOTE_ISSUER, "bob"))).status == 200,
        timeout=30,
        what="a token signed by the JWKS server's key verifies",
    )
    assert mesh.jwks_server.fetches >= 1
    assert mesh.bearer(inline.token(claims(INLINE_ISSUER, "alice"))).status == 200  # either issuer
    assert mesh.bearer(SigningKey.rs256("remote-rs").token(claims(REMOTE_ISSUER, "bob"))).status == 401
    assert mesh.bearer(remote.token(claims(INLINE_ISSUER, "bob"))).status == 401  # right issuer, wrong key
    assert mesh.get().status == 200


def test_https_jwks_server_not_trusted_by_the_os_bundle_fails_closed(mesh: AuthMesh, tmp_path: Path) -> None:
    """The https cluster verifies the server (OS trust bundle + host name): a server whose certificate
    those do not vouch for is never believed, so its keys verify nothing (401), and nothing is NACKed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key, _ = mesh.ca.issue(spiffe_id("auth", "jwks")).write(tmp_path)
    context.load_cert_chain(cert, key)
    server = JwksServer(JWKS_IP, 0, jwks(mesh.remote_key), tls=context)
    try:
        mesh.apply([*base_mesh(), request_authentication([{"issuer": REMOTE_ISSUER, "jwksUri": server.uri}])])
        token = mesh.remote_key.token(claims(REMOTE_ISSUER, "bob"))
        assert mesh.bearer(token).status == 401
        assert mesh.get().status == 200
        assert server.fetches == 0
    finally:
        server.close()


def allow_policy(rule: dict[str, Any], action: str = "ALLOW", name: str = "web-authz") -> Obj:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "auth"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}], "action": action, "rules": [rule]},
    }


@pytest.mark.parametrize("keys", ["inline", "jwksUri"])
def test_request_principals_need_a_valid_token_of_that_principal(mesh: AuthMesh, keys: str) -> None:
    key = mesh.inline_key if keys == "inline" else mesh.remote_key
    issuer = INLINE_ISSUER if keys == "inline" else REMOTE_ISSUER
    rule = inline_rule(key) if keys == "inline" else {"issuer": REMOTE_ISSUER, "jwksUri": mesh.jwks_server.uri}
    policy = allow_policy({"from": [{"source": {"requestPrincipals": [f"{issuer}/alice"]}}]})
    mesh.apply([*base_mesh(), request_authentication([rule]), policy])
    good = key.token(claims(issuer, "alice"))
    wait_until(lambda: mesh.bearer(good).status == 200, timeout=30, what="alice's token is accepted")
    assert mesh.get().status == 403  # no token: no request principal, the ALLOW matches nothing
    assert mesh.bearer(key.token(claims(issuer, "bob"))).status == 403
    forged = SigningKey.es256(key.kid) if keys == "inline" else SigningKey.rs256(key.kid)
    assert mesh.bearer(forged.token(claims(issuer, "alice"))).status == 401
    assert mesh.bearer(key.token(claims("https://elsewhere.example", "alice"))).status == 401
    assert mesh.bearer(key.token(claims(issuer, "alice", lifetime=-120))).status == 401


def test_when_request_auth_claims_allow_and_deny(mesh: AuthMesh) -> None:
    key = mesh.inline_key
    allow = allow_policy({"when": [{"key": "request.auth.claims[groups]", "values": ["admin", "ops"]}]})
    deny = allow_policy(
        {"when": [{"key": "request.auth.claims[groups]", "values": ["banned"]}]}, action="DENY", name="web-deny"
    )
    mesh.apply([*base_mesh(), request_authentication([inline_rule(key)]), allow, deny])
    assert mesh.bearer(key.token(claims(INLINE_ISSUER, "alice", groups=["dev", "admin"]))).status == 200
    assert mesh.bearer(key.token(claims(INLINE_ISSUER, "carol", groups=["ops"]))).status == 200
    assert mesh.bearer(key.token(claims(INLINE_ISSUER, "bob", groups=["dev"]))).status == 403
    assert mesh.bearer(key.token(claims(INLINE_ISSUER, "eve", groups=["admin", "banned"]))).status == 403
    assert mesh.get().status == 403
