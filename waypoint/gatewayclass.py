"""The built-in GatewayClass `istio-waypoint` and which classes this controller handles (reference §2).

Pure: no I/O. The class is created when missing and never updated, so a user's edits survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waypoint.names import GATEWAY_API_VERSION, WAYPOINT_CLASS, WAYPOINT_CONTROLLER

KubeObject = Mapping[str, Any]

# Classes that exist even before their object does: a Gateway of this class is ours even while
# the GatewayClass object is missing (it is being created, or was deleted and will be again).
BUILTIN_CLASSES: Mapping[str, str] = {WAYPOINT_CLASS: WAYPOINT_CONTROLLER}


def default_waypoint_class() -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "GatewayClass",
        "metadata": {"name": WAYPOINT_CLASS},
        "spec": {
            "controllerName": WAYPOINT_CONTROLLER,
            "description": "The default Istio waypoint GatewayClass",
        },
    }


def controller_for_class(class_name: str, gateway_class: KubeObject | None) -> str | None:
    """The controllerName that handles `class_name`: the object's if it exists, else the built-in one."""
    if gateway_class is not None:
        spec = gateway_class.get("spec") or {}
        controller = spec.get("controllerName") if isinstance(spec, Mapping) else None
        return controller if isinstance(controller, str) else None
    return BUILTIN_CLASSES.get(class_name)


def is_handled_class(gateway_class: KubeObject) -> bool:
    return controller_for_class("", gateway_class) == WAYPOINT_CONTROLLER
