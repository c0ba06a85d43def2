"""Pure identity decisions: who may get which certificate, whose xDS config, and what a token proves."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from tests.harness.meshes import pod, shop_mesh, waypoint
from xds.authz import Granted, Refusal, certificate_decision, node_decision
from xds.ca import CertificateAuthority, spiffe_id
from xds.caapi import IstioCertificateResponse
from xds.caclient import certificate_from_response, new_key_and_csr
from xds.mesh.objects import mesh_from_objects
from xds.tokens import AuthenticationError, Caller, LocalTokenIssuer, caller_from_username

MESH = mesh_from_objects(
    [
        *shop_mesh(),
        pod("shop", "far-0", "127.0.11.31", {"app": "far"}, "far", node="node-b"),
        waypoint("shop", "sa-waypoint", for_service_account="db"),
    ]
)
WEB = Caller("shop", "web", "web-v1-0", "node-a")
ZTUNNEL_A = Caller("istio-system", "ztunnel", "ztunnel-a", "node-a")
ZTUNNEL_NO_NODE = Caller("istio-system", "ztunnel")

# scenario -> (caller, CSR SANs, impersonated, expected identity or refusal text)
CERTIFICATES: dict[str, tuple[Caller, list[str], str | None, str]] = {
    "own identity": (WEB, [spiffe_id("shop", "web")], None, spiffe_id("shop", "web")),
    "own identity, impersonation header naming itself": (
        WEB,
        [spiffe_id("shop", "web")],
        spiffe_id("shop", "web"),
        spiffe_id("shop", "web"),
    ),
    "another account's SAN": (WEB, [spiffe_id("shop", "db")], None, "may get only"),
    "two SANs": (WEB, [spiffe_id("shop", "web"), spiffe_id("shop", "db")], None, "may get only"),
    "no SAN": (WEB, [], None, "no URI SAN"),
    "workload impersonating": (WEB, [spiffe_id("shop", "db")], spiffe_id("shop", "db"), "not a node proxy"),
    "ztunnel for a pod on its node": (
        ZTUNNEL_A,
        [spiffe_id("shop", "db")],
        spiffe_id("shop", "db"),
        spiffe_id("shop", "db"),
    ),
    "ztunnel for a pod on another node": (
        ZTUNNEL_A,
        [spiffe_id("shop", "far")],
        spiffe_id("shop", "far"),
        "no such pod on its node",
    ),
    "ztunnel whose node is unknown": (
        ZTUNNEL_NO_NODE,
        [spiffe_id("shop", "db")],
        spiffe_id("shop", "db"),
        "its node is unknown",
    ),
    "ztunnel CSR differs from the impersonated identity": (
        ZTUNNEL_A,
        [spiffe_id("shop", "web")],
        spiffe_id("shop", "db"),
        "may get only spiffe://cluster.local/ns/shop/sa/db",
    ),
}


@pytest.mark.parametrize("scenario", sorted(CERTIFICATES))
def test_certificate_decision(scenario: str) -> None:
    caller, sans, impersonated, expected = CERTIFICATES[scenario]
    decision = certificate_decision(caller, sans, impersonated, caller.node, MESH.workloads)
    if expected.startswith("spiffe://"):
        assert decision == Granted(expected)
    else:
        assert isinstance(decision, Refusal) and decision.code == "PERMISSION_DENIED"
        assert expected in decision.message


# scenario -> (caller, node id, waypoint (namespace, name) or None, allowed)
NODES: dict[str, tuple[Caller, str, tuple[str, str] | None, bool]] = {
    "waypoint with its own account": (Caller("shop", "waypoint"), "waypoint~x", ("shop", "waypoint"), True),
    "service-account waypoint with its own account": (
        Caller("shop", "sa-waypoint"),
        "waypoint~x",
        ("shop", "sa-waypoint"),
        True,
    ),
    "waypoint config for a workload account": (Caller("shop", "web"), "waypoint~x", ("shop", "waypoint"), False),
    "waypoint of another namespace": (Caller("shop", "waypoint"), "waypoint~x", ("other", "waypoint"), False),
    "unknown waypoint named like the account": (Caller("shop", "new-wp"), "waypoint~x", ("shop", "new-wp"), True),
    "ztunnel with the ztunnel account": (
        ZTUNNEL_A,
        "ztunnel~10.0.0.1~z.istio-system~istio-system.svc.cluster.local",
        None,
        True,
    ),
    "ztunnel config for a workload": (
        WEB,
        "ztunnel~10.0.0.1~z.istio-system~istio-system.svc.cluster.local",
        None,
        False,
    ),
    "node of its own namespace": (WEB, "sidecar~10.0.0.1~web-v1-0.shop~shop.svc.cluster.local", None, True),
    "node of another namespace": (WEB, "sidecar~10.0.0.1~echo-0.other~other.svc.cluster.local", None, False),
    "malformed node id": (WEB, "garbage", None, False),
}


@pytest.mark.parametrize("scenario", sorted(NODES))
def test_node_decision(scenario: str) -> None:
    caller, node_id, wp, allowed = NODES[scenario]
    refusal = node_decision(caller, node_id, MESH, wp)
    assert (refusal is None) == allowed, refusal


def test_local_token_round_trip_carries_pod_and_node() -> None:
    issuer = LocalTokenIssuer()
    caller = issuer.authenticate(issuer.issue("istio-system", "ztunnel", pod="ztunnel-a", node="node-a"))
    assert caller == ZTUNNEL_A
    assert caller.identity() == "spiffe://cluster.local/ns/istio-system/sa/ztunnel"


TOKEN_REFUSALS = {
    "expired": (lambda i: i.issue("shop", "web", ttl_seconds=-1), "expired"),
    "wrong audience": (lambda i: i.issue("shop", "web", audience="kubernetes"), "audience"),
    "other issuer's key": (lambda i: LocalTokenIssuer().issue("shop", "web"), "signature"),
    "tampered payload": (lambda i: _tamper(i.issue("shop", "web")), "signature"),
    "not a JWT": (lambda i: "hello", "not a JWT"),
}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    return ".".join([header, payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1], signature])


@pytest.mark.parametrize("scenario", sorted(TOKEN_REFUSALS))
def test_bad_tokens_are_refused(scenario: str) -> None:
    make, text = TOKEN_REFUSALS[scenario]
    issuer = LocalTokenIssuer()
    with pytest.raises(AuthenticationError, match=text):
        issuer.authenticate(make(issuer))


def test_username_that_is_not_a_service_account_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="not a ServiceAccount"):
        caller_from_username("system:node:node-a")


def test_client_checks_the_chain_and_renews_at_half_the_received_lifetime() -> None:
    ca = CertificateAuthority()
    identity = spiffe_id("shop", "web")
    key_pem, csr = new_key_and_csr(identity)
    leaf = ca.sign_csr(x509.load_pem_x509_csr(csr.encode()), identity, datetime.timedelta(seconds=600))
    cert = certificate_from_response(
        identity, key_pem, IstioCertificateResponse(cert_chain=[leaf.decode(), ca.root_pem.decode()])
    )
    assert abs((cert.renew_at - cert.received_at).total_seconds() - 300) < 5
    other_key, _ = new_key_and_csr(identity)
    with pytest.raises(ValueError, match="another key"):
        certificate_from_response(
            identity, other_key, IstioCertificateResponse(cert_chain=[leaf.decode(), ca.root_pem.decode()])
        )
    with pytest.raises(ValueError, match="asked for"):
        certificate_from_response(
            spiffe_id("shop", "db"), key_pem, IstioCertificateResponse(cert_chain=[leaf.decode(), ca.root_pem.decode()])
        )
