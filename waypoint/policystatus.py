"""AuthorizationPolicy status in cluster mode: Istio's `ZtunnelAccepted` / `WaypointAccepted` conditions,
derived from the mesh by `xds.mesh.policy_status` (the same function local mode logs), written to each
policy's status subresource when they change."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from waypoint.kube.api import AUTHORIZATION_POLICIES, ApiError, KubeApi
from waypoint.status import _condition, _generation
from xds.mesh.model import Mesh, PolicyCondition

log = logging.getLogger(__name__)

# Istio's status writer owns these condition types; other conditions on the object are left alone.
OWNED_TYPES = ("ZtunnelAccepted", "WaypointAccepted")


def authorization_policy_status(
    obj: Mapping[str, Any], conditions: Iterable[PolicyCondition], *, now: str
) -> dict[str, Any] | None:
    """The `status` to write on the policy, or None when it already carries exactly these conditions."""
    meta = obj.get("metadata") or {}
    generation = _generation(meta)
    previous = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(previous, Mapping)
    earlier = [c for c in previous.get("conditions") or () if isinstance(c, Mapping)]
    wanted = [_condition(c.type, c.status, c.reason, c.message, generation, now, earlier) for c in conditions]
    kept = [c for c in earlier if c.get("type") not in OWNED_TYPES]
    new = kept + wanted
    if new == earlier:
        return None
    return {**previous, "conditions": new}


class PolicyStatusWriter:
    """Writes each AuthorizationPolicy's conditions after a mesh publish; failures are logged, retried next time."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    def write(self, objects: Iterable[Mapping[str, Any]], mesh: Mesh) -> int:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        written = 0
        for obj in objects:
            if obj.get("kind") != "AuthorizationPolicy":
                continue
            meta = obj.get("metadata") or {}
            key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
            conditions = mesh.policy_status.get(key)
            if conditions is None:
                continue  # refused by the model: its ModelError is logged by the control plane
            status = authorization_policy_status(obj, conditions, now=now)
            if status is None:
                continue
            body = {
                "apiVersion": AUTHORIZATION_POLICIES.api_version,
                "kind": "AuthorizationPolicy",
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                "status": status,
            }
            try:
                self._api.apply(AUTHORIZATION_POLICIES, body, subresource="status")
                written += 1
            except ApiError as exc:
                log.warning("writing status of AuthorizationPolicy %s failed: %s", key, exc)
        return written
