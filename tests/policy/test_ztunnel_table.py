"""The policy table at the ztunnel: the control plane's `istio.security.Authorization` for each row,
decoded the way our ztunnel decodes it from xDS, then decided by the ztunnel's RBAC (both pure)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.harness.meshes import ambient_namespace, pod
from tests.policy.table import ALT_PORT, NAMESPACE, POD_IP, PORT, ZTUNNEL, Req, Row, cases, row_ids
from xds.mesh.objects import mesh_from_objects
from xds.workloadapi import Authorization
from xds.ztunnel_authz import authorization
from ztunnel.identity import Identity
from ztunnel.rbac import ConnInfo, authorize
from ztunnel.xdsfeed import policy_from_xds

pytestmark = pytest.mark.policy


def _policy_object(row: Row) -> dict[str, object]:
    spec = row.policy_spec(dst_ip=POD_IP, port=PORT, alt_port=ALT_PORT)
    spec["selector"] = {"matchLabels": {"app": "backend"}}
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "row", "namespace": NAMESPACE},
        "spec": spec,
    }


def _conn(req: Req) -> ConnInfo:
    return ConnInfo(
        src_ip=ipaddress.ip_address(req.src_ip),
        dst_ip=ipaddress.ip_address(POD_IP),
        dst_port=ALT_PORT if req.alt_port else PORT,
        src_identity=Identity("cluster.local", req.namespace, req.service_account),
    )


@pytest.mark.parametrize(("row", "req", "allowed"), cases(ZTUNNEL), ids=row_ids(ZTUNNEL))
def test_ztunnel_enforces(row: Row, req: Req, allowed: bool) -> None:
    mesh = mesh_from_objects(
        [ambient_namespace(NAMESPACE), pod(NAMESPACE, "backend-0", POD_IP, {"app": "backend"}), _policy_object(row)]
    )
    assert mesh.errors == ()
    (policy,) = mesh.policies
    resource = authorization(mesh, policy)
    # Round trip through the wire format, as a ztunnel receives it.
    policies = [] if resource is None else [policy_from_xds(Authorization.parse(bytes(resource)), "row")]
    verdict = authorize(policies, _conn(req))
    assert verdict.allowed is allowed, f"{req}: {verdict.reason or 'allowed'}"
