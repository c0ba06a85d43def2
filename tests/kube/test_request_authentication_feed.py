"""Cluster mode: RequestAuthentications reach the mesh model through the controller's watch."""

from __future__ import annotations

import pytest

from tests.kube.cluster import KubeCluster
from tests.kube.conftest import PublishedObjects
from tests.kube.waiting import eventually
from waypoint.controller import WaypointController
from xds.mesh.model import RequestAuthentication
from xds.mesh.objects import mesh_from_objects

pytestmark = [pytest.mark.kube, pytest.mark.policy]


def test_request_authentication_is_watched_and_feeds_the_mesh(
    kube_cluster: KubeCluster, controller: WaypointController, published: PublishedObjects, namespace: str
) -> None:
    kube_cluster.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: web-jwt, namespace: {namespace}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web}}]
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: http://127.0.0.1:8000/jwks
    forwardOriginalToken: true
""")

    def fed() -> tuple[RequestAuthentication, ...]:
        mesh = mesh_from_objects(published.latest())
        return tuple(p for p in mesh.request_authentications if p.namespace == namespace)

    (policy,) = eventually(fed, what="the RequestAuthentication in the mesh")
    assert policy.target_refs == (("Service", "web"),)
    assert policy.jwt_rules[0].forward_original_token is True

    kube_cluster.kubectl("delete", "requestauthentication", "web-jwt", "-n", namespace)
    eventually(lambda: not fed(), what="the deleted RequestAuthentication gone from the mesh")
