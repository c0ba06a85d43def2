"""HTTPRoute status for Service parents (GAMMA): one `parents[]` entry per Service parentRef.

Pure: the route, the Services of the cluster and `now` in; the whole `status` out. The verdict is
the mesh model's own (`xds.mesh.fields` + `xds.mesh.httproute`), so a route the model refuses says
so here with the field and reason, as Istio reports a route it could not convert:

- `Accepted`: True/`Accepted`; or False with `InvalidFilter` (a filter the model does not
  implement, as Istio names unsupported filter types), `UnsupportedValue` (any other field or value
  it does not implement), or `NoMatchingParent` when the parent Service does not exist.
- `ResolvedRefs`: True/`ResolvedRefs`; or False/`BackendNotFound` naming the missing backends.

Entries of other controllers (Gateway parents) are kept as they are: `status.parents` is written
whole, so ours are replaced and theirs carried over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from waypoint.status import _condition
from xds.mesh.fields import unhandled_fields
from xds.mesh.httproute import INVALID_FILTER, UNSUPPORTED_VALUE, RouteRefused, parse_httproute

MESH_CONTROLLER = "istio.io/mesh-controller"

KubeObject = Mapping[str, Any]


def route_verdict(route: KubeObject) -> tuple[str, str] | None:
    """Why the model refuses the route (reason, message), or None when it serves it."""
    unhandled = unhandled_fields(route)
    if unhandled:
        first = unhandled[0]
        reason = INVALID_FILTER if ".filters" in first.path else UNSUPPORTED_VALUE
        return reason, f"{first.path}: {first.message()}"
    namespace = str((route.get("metadata") or {}).get("namespace") or "default")
    try:
        parse_httproute(route, namespace)
    except RouteRefused as e:
        return e.reason, f"{e.field}: {e.message}"
    return None


def _service_parents(route: KubeObject) -> list[Mapping[str, Any]]:
    spec = route.get("spec") or {}
    return [
        ref
        for ref in spec.get("parentRefs") or []
        if isinstance(ref, Mapping) and ref.get("kind") == "Service" and ref.get("group", "") in ("", "core")
    ]


def _missing_backends(route: KubeObject, namespace: str, services: set[tuple[str, str]]) -> list[str]:
    missing: list[str] = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        for ref in (rule or {}).get("backendRefs") or []:
            key = (str(ref.get("namespace") or namespace), str(ref.get("name")))
            if key not in services and f"{key[0]}/{key[1]}" not in missing:
                missing.append(f"{key[0]}/{key[1]}")
    return missing


def httproute_status(route: KubeObject, services: Iterable[KubeObject], *, now: str) -> dict[str, Any]:
    meta = route.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    generation = meta.get("generation") if isinstance(meta.get("generation"), int) else 0
    assert isinstance(generation, int)
    previous = route.get("status") if isinstance(route.get("status"), Mapping) else {}
    assert isinstance(previous, Mapping)
    earlier = [p for p in previous.get("parents") or [] if isinstance(p, Mapping)]
    known = {
        (str((s.get("metadata") or {}).get("namespace")), str((s.get("metadata") or {}).get("name"))) for s in services
    }
    verdict = route_verdict(route)
    missing = _missing_backends(route, namespace, known)

    ours: list[dict[str, Any]] = []
    for ref in _service_parents(route):
        parent = (str(ref.get("namespace") or namespace), str(ref.get("name")))
        before = next((p.get("conditions") or [] for p in earlier if p.get("parentRef") == dict(ref)), [])

        def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            return _condition(kind, ok, reason, message, generation, now, before)  # noqa: B023

        if parent not in known:
            accepted = condition(
                "Accepted", False, "NoMatchingParent", f"parent Service {parent[0]}/{parent[1]} not found"
            )
        elif verdict is not None:
            accepted = condition("Accepted", False, verdict[0], verdict[1])
        else:
            accepted = condition("Accepted", True, "Accepted", "Route was valid")
        if missing:
            resolved = condition(
                "ResolvedRefs", False, "BackendNotFound", f"backend(s) not found: {', '.join(missing)}"
            )
        else:
            resolved = condition("ResolvedRefs", True, "ResolvedRefs", "All references resolved")
        ours.append({"parentRef": dict(ref), "controllerName": MESH_CONTROLLER, "conditions": [accepted, resolved]})
    others = [dict(p) for p in earlier if p.get("controllerName") != MESH_CONTROLLER]
    return {"parents": others + ours}


def route_status_matches(current: Any, desired: Mapping[str, Any]) -> bool:
    """Whether the current status already says what `desired` says (transition times aside)."""
    if not isinstance(current, Mapping):
        return False

    def essence(status: Mapping[str, Any]) -> list[Any]:
        return [
            (
                p.get("controllerName"),
                p.get("parentRef"),
                [
                    (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
                    for c in p.get("conditions") or []
                ],
            )
            for p in status.get("parents") or []
        ]

    return essence(current) == essence(desired)
