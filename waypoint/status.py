"""Gateway status for a waypoint (reference §3.4): conditions, listener status and addresses.

Pure: no I/O. The inputs are the Gateway, its Service and the Service's EndpointSlices as plain
dicts; `now` is passed in so the output is deterministic. A condition keeps its previous
`lastTransitionTime` while its status does not change, so re-running this on an unchanged cluster
yields an identical status (and the controller writes nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from waypoint.names import CLUSTER_DOMAIN, HBONE_LISTENER_NAME, HBONE_PORT, HBONE_PROTOCOL

KubeObject = Mapping[str, Any]

UNSUPPORTED_LISTENER_MESSAGE = (
    f'Expected a single listener on port {HBONE_PORT} with protocol "{HBONE_PROTOCOL}"'
)
NO_ERRORS = "No errors found"


@dataclass(frozen=True)
class Problem:
    """Why the controller could not do its part; becomes a False condition, never an exception."""

    condition: str  # "Accepted" or "Programmed"
    reason: str
    message: str


def is_valid_waypoint_listener(listener: Any) -> bool:
    return (
        isinstance(listener, Mapping)
        and listener.get("port") == HBONE_PORT
        and listener.get("protocol") == HBONE_PROTOCOL
    )


def gateway_status(
    gateway: KubeObject,
    service: KubeObject | None,
    endpoint_slices: Iterable[KubeObject],
    *,
    now: str,
    problem: Problem | None = None,
    cluster_domain: str = CLUSTER_DOMAIN,
    service_name: str | None = None,
) -> dict[str, Any]:
    """The whole `status` of a waypoint Gateway."""
    meta = gateway.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    generation = _generation(meta)
    previous = gateway.get("status") if isinstance(gateway.get("status"), Mapping) else {}
    assert isinstance(previous, Mapping)
    hostname = f"{service_name or name}.{namespace}.svc.{cluster_domain}"

    def condition(kind: str, status: bool, reason: str, message: str,
                  earlier: Iterable[Any] = previous.get("conditions") or ()) -> dict[str, Any]:
        return _condition(kind, status, reason, message, generation, now, earlier)

    if problem is not None and problem.condition == "Accepted":
        accepted = condition("Accepted", False, problem.reason, problem.message)
    else:
        accepted = condition("Accepted", True, "Accepted", "Resource accepted")

    addresses: list[dict[str, str]] | None = None
    if problem is not None and problem.condition == "Programmed":
        programmed = condition("Programmed", False, problem.reason, problem.message)
    elif problem is not None:
        programmed = condition("Programmed", False, "Pending", "Waiting for the Gateway to be accepted")
    elif service is None:
        programmed = condition(
            "Programmed", False, "AddressNotUsable",
            f'Failed to assign to any requested addresses: hostname "{hostname}" not found',
        )
    elif not has_ready_endpoints(endpoint_slices, HBONE_PORT):
        programmed = condition(
            "Programmed", False, "AddressNotAssigned",
            f'Failed to assign to any requested addresses: no instances found for hostname "{hostname}"',
        )
    else:
        programmed = condition(
            "Programmed", True, "Programmed",
            f"Resource programmed, assigned to service(s) {hostname}:{HBONE_PORT}",
        )
        addresses = [{"type": "IPAddress", "value": ip} for ip in cluster_ips(service)]
        addresses.append({"type": "Hostname", "value": hostname})
    resolved = condition("ResolvedRefs", True, "ResolvedRefs", "All references resolved")

    status: dict[str, Any] = {
        "conditions": [accepted, programmed, resolved],
        "listeners": listener_statuses(gateway, now=now, generation=generation),
    }
    # Addresses are written once instances resolve and never removed afterwards (reference §3.4):
    # the ambient index keys on them, and a brief endpoint gap must not unbind every workload.
    if addresses is not None:
        status["addresses"] = addresses
    elif isinstance(previous.get("addresses"), list) and previous["addresses"]:
        status["addresses"] = [dict(a) for a in previous["addresses"] if isinstance(a, Mapping)]
    return status


def listener_statuses(gateway: KubeObject, *, now: str, generation: int) -> list[dict[str, Any]]:
    spec = gateway.get("spec") or {}
    listeners = spec.get("listeners") if isinstance(spec, Mapping) else None
    previous_status = gateway.get("status") if isinstance(gateway.get("status"), Mapping) else {}
    assert isinstance(previous_status, Mapping)
    earlier_by_name = {
        entry.get("name"): entry.get("conditions") or ()
        for entry in previous_status.get("listeners") or ()
        if isinstance(entry, Mapping)
    }
    result = []
    seen: set[str] = set()
    for index, listener in enumerate(listeners if isinstance(listeners, list) else []):
        if not isinstance(listener, Mapping):
            continue
        name = str(listener.get("name") or f"listener-{index}")
        if name in seen:  # the CRD forbids this; stay safe if it ever gets through
            continue
        seen.add(name)
        earlier = earlier_by_name.get(name, ())

        def condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
            return _condition(kind, status, reason, message, generation, now, earlier)  # noqa: B023

        if is_valid_waypoint_listener(listener):
            conditions = [
                condition("Accepted", True, "Accepted", NO_ERRORS),
                condition("Conflicted", False, "NoConflicts", NO_ERRORS),
                condition("Programmed", True, "Programmed", NO_ERRORS),
                condition("ResolvedRefs", True, "ResolvedRefs", NO_ERRORS),
            ]
        else:
            conditions = [
                condition("Accepted", False, "UnsupportedProtocol", UNSUPPORTED_LISTENER_MESSAGE),
                condition("Conflicted", False, "NoConflicts", NO_ERRORS),
                condition("Programmed", False, "Invalid", UNSUPPORTED_LISTENER_MESSAGE),
                condition("ResolvedRefs", True, "ResolvedRefs", NO_ERRORS),
            ]
        result.append({"name": name, "attachedRoutes": 0, "supportedKinds": [], "conditions": conditions})
    return result


def has_ready_endpoints(endpoint_slices: Iterable[KubeObject], port: int) -> bool:
    """True when some slice exposes `port` (by number, or by the `mesh` name) with a ready endpoint."""
    for slice_ in endpoint_slices:
        ports = slice_.get("ports") or []
        if not any(
            isinstance(p, Mapping) and (p.get("port") == port or p.get("name") == HBONE_LISTENER_NAME)
            for p in ports
        ):
            continue
        for endpoint in slice_.get("endpoints") or []:
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions") or {}
            # An absent `ready` means ready (EndpointSlice API semantics).
            if conditions.get("ready") is not False and endpoint.get("addresses"):
                return True
    return False


def cluster_ips(service: KubeObject) -> list[str]:
    spec = service.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [str(ip) for ip in ips if ip and ip != "None"]


def gateway_class_status(gateway_class: KubeObject, *, now: str) -> dict[str, Any]:
    meta = gateway_class.get("metadata") or {}
    generation = _generation(meta)
    previous = gateway_class.get("status") if isinstance(gateway_class.get("status"), Mapping) else {}
    assert isinstance(previous, Mapping)
    return {
        "conditions": [
            _condition("Accepted", True, "Accepted", "Handled by Istio controller", generation, now,
                       previous.get("conditions") or ()),
        ]
    }


def _generation(meta: Mapping[str, Any]) -> int:
    generation = meta.get("generation")
    return generation if isinstance(generation, int) else 0


def _condition(kind: str, status: bool, reason: str, message: str, generation: int, now: str,
               earlier: Iterable[Any]) -> dict[str, Any]:
    text = "True" if status else "False"
    transition = now
    for old in earlier:
        if isinstance(old, Mapping) and old.get("type") == kind and old.get("status") == text:
            transition = str(old.get("lastTransitionTime") or now)
            break
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
