"""Cluster mode's caller authentication: the API server's TokenReview, as istiod does.

The token must be a ServiceAccount token valid for audience `istio-ca`. A token bound to a pod
(projected tokens are) names the pod and, since Kubernetes 1.30, its node in the review's `extra`;
the node is what a ztunnel may impersonate workloads on. Any failure to ask (API server down,
RBAC) refuses the caller: authentication fails closed.
"""

from __future__ import annotations

from typing import Any

from waypoint.kube.api import TOKEN_REVIEWS, ApiError, ApiUnavailable, KubeApi
from xds.tokens import ISTIO_CA_AUDIENCE, AuthenticationError, Caller, caller_from_username

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


class TokenReviewAuthenticator:
    def __init__(self, api: KubeApi, audience: str = ISTIO_CA_AUDIENCE) -> None:
        self._api = api
        self.audience = audience

    def authenticate(self, token: str) -> Caller:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            review = self._api.create(TOKEN_REVIEWS, body)
        except (ApiError, ApiUnavailable) as exc:
            raise AuthenticationError(f"TokenReview failed: {exc}") from None
        status = review.get("status") or {}
        if not status.get("authenticated"):
            raise AuthenticationError(f"TokenReview: {status.get('error') or 'token not authenticated'}")
        if self.audience not in (status.get("audiences") or []):
            raise AuthenticationError(f"token audience does not include {self.audience!r}")
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        return caller_from_username(str(user.get("username", "")), _first(extra, POD_NAME_EXTRA),
                                    _first(extra, NODE_NAME_EXTRA))


def _first(extra: dict[str, Any], key: str) -> str:
    values = extra.get(key) or []
    return str(values[0]) if values else ""
