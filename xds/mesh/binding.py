"""Which waypoint serves a service or a workload: pure functions of the mesh.

Two styles, one rule between them (see README "Waypoint binding"):
- **Labels** (current Istio): `istio.io/use-waypoint: <gw>` (+ `istio.io/use-waypoint-namespace`) on
  the object, else on its Namespace; `none` opts out. The waypoint's `istio.io/waypoint-for` must
  cover the traffic (service, workload, all).
- **Implicit** (the seeds, Istio ≤1.21): an unannotated waypoint Gateway serves every service and
  workload of its namespace; one annotated `istio.io/for-service-account: <sa>` serves that
  account's workloads (and services whose endpoints all run as it) and wins over the namespace one.

In a namespace where any Namespace, Service or Pod object carries `istio.io/use-waypoint`, only the
labels bind; elsewhere the implicit binding applies.
"""

from __future__ import annotations

from collections.abc import Mapping

from xds.mesh.model import (
    GATEWAY_NAME_LABEL,
    USE_WAYPOINT,
    USE_WAYPOINT_NAMESPACE,
    Mesh,
    Service,
    Waypoint,
    Workload,
)


def uses_labels(mesh: Mesh, namespace: str) -> bool:
    """True when the namespace is in label mode: some object in it carries `istio.io/use-waypoint`."""
    return namespace in mesh.label_mode_namespaces


def _is_waypoint_service(service: Service, mesh: Mesh) -> bool:
    return mesh.waypoint(service.namespace, service.name) is not None or GATEWAY_NAME_LABEL in service.labels


def _is_waypoint_pod(workload: Workload) -> bool:
    return GATEWAY_NAME_LABEL in workload.labels


def _allowed(waypoint: Waypoint, namespace: str) -> bool:
    return waypoint.allowed_routes_from == "All" or waypoint.namespace == namespace


def _labelled(mesh: Mesh, labels: Mapping[str, str], namespace: str) -> tuple[Waypoint | None, bool]:
    """(waypoint, explicit): resolve `use-waypoint` on the object, else on its namespace."""
    explicit = USE_WAYPOINT in labels
    source = labels if explicit else mesh.namespace_labels(namespace)
    name = source.get(USE_WAYPOINT)
    if not name or name == "none":
        return None, explicit
    waypoint = mesh.waypoint(source.get(USE_WAYPOINT_NAMESPACE, namespace), name)
    if waypoint is None or not waypoint.listener_valid or not _allowed(waypoint, namespace):
        return None, explicit
    return waypoint, explicit


def _namespace_waypoint(mesh: Mesh, namespace: str) -> Waypoint | None:
    return next(
        (w for w in mesh.waypoints if w.namespace == namespace and not w.for_service_account and w.listener_valid),
        None,
    )


def _account_waypoint(mesh: Mesh, namespace: str, service_account: str) -> Waypoint | None:
    return next(
        (
            w
            for w in mesh.waypoints
            if w.namespace == namespace and w.for_service_account == service_account and w.listener_valid
        ),
        None,
    )


def service_waypoint(mesh: Mesh, service: Service) -> Waypoint | None:
    """The waypoint that VIP-addressed traffic to `service` goes through, if any."""
    if _is_waypoint_service(service, mesh):
        return None
    if uses_labels(mesh, service.namespace):
        waypoint, _ = _labelled(mesh, service.labels, service.namespace)
        return waypoint if waypoint and waypoint.traffic_type.serves_services else None
    accounts = {w.service_account for w in mesh.endpoints(service)}
    if len(accounts) == 1:
        by_account = _account_waypoint(mesh, service.namespace, next(iter(accounts)))
        if by_account:
            return by_account
    return _namespace_waypoint(mesh, service.namespace)


def workload_waypoint(mesh: Mesh, workload: Workload) -> Waypoint | None:
    """The waypoint that pod-addressed traffic to `workload` goes through, if any."""
    if _is_waypoint_pod(workload):
        return None
    if uses_labels(mesh, workload.namespace):
        waypoint, _ = _labelled(mesh, workload.labels, workload.namespace)
        return waypoint if waypoint and waypoint.traffic_type.serves_workloads else None
    return _account_waypoint(mesh, workload.namespace, workload.service_account) or _namespace_waypoint(
        mesh, workload.namespace
    )


def services_for_waypoint(mesh: Mesh, waypoint: Waypoint) -> tuple[Service, ...]:
    """Services bound to the waypoint: what its Envoy gets chains and clusters for."""
    return tuple(s for s in mesh.services if service_waypoint(mesh, s) == waypoint)


def workloads_for_waypoint(mesh: Mesh, waypoint: Waypoint) -> tuple[Workload, ...]:
    return tuple(w for w in mesh.workloads if workload_waypoint(mesh, w) == waypoint)
