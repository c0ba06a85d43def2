"""Waypoint Gateway objects and the backend interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

WAYPOINT_CLASS = "istio-waypoint"
LABEL_WAYPOINT_FOR = "istio.io/waypoint-for"
LABEL_REV = "istio.io/rev"
LABEL_USE_WAYPOINT = "istio.io/use-waypoint"
LABEL_DATAPLANE = "istio.io/dataplane-mode"
FOR_VALUES = ("service", "workload", "all", "none")


class WaypointError(Exception):
    """A user-facing error: one line on stderr, exit status 1."""


def gateway(
    name: str, namespace: str | None, traffic_for: str | None, revision: str | None
) -> dict[str, Any]:
    """The Gateway `istioctl waypoint generate` prints (no creationTimestamp, no status)."""
    labels: dict[str, str] = {}
    if revision:
        labels[LABEL_REV] = revision
    if traffic_for:
        labels[LABEL_WAYPOINT_FOR] = traffic_for
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": metadata,
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }


@dataclass
class Condition:
    status: str
    type: str
    reason: str
    message: str


@dataclass
class WaypointInfo:
    namespace: str
    name: str
    revision: str
    traffic_type: str
    programmed: Condition | None


def info_from_object(obj: dict[str, Any]) -> WaypointInfo:
    meta = obj.get("metadata", {}) or {}
    labels = meta.get("labels", {}) or {}
    programmed = None
    for cond in (obj.get("status", {}) or {}).get("conditions", []) or []:
        if cond.get("type") == "Programmed":
            programmed = Condition(
                str(cond.get("status", "")),
                "Programmed",
                str(cond.get("reason", "")),
                str(cond.get("message", "")),
            )
    return WaypointInfo(
        str(meta.get("namespace", "default")),
        str(meta.get("name", "")),
        str(labels.get(LABEL_REV, "default")),
        str(labels.get(LABEL_WAYPOINT_FOR, "none")),
        programmed,
    )


def is_waypoint(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("kind") == "Gateway"
        and (obj.get("spec", {}) or {}).get("gatewayClassName") == WAYPOINT_CLASS
    )


class Backend(Protocol):
    def apply(self, gw: dict[str, Any]) -> None: ...

    def namespace_labels(self, namespace: str) -> dict[str, str] | None: ...

    def label_namespace(self, namespace: str, key: str, value: str) -> None: ...

    def list(self, namespace: str | None) -> list[WaypointInfo]: ...

    def get(self, namespace: str, name: str) -> WaypointInfo | None: ...

    def delete(self, namespace: str, name: str) -> bool: ...
