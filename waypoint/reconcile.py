"""Level-triggered reconcile of one Gateway or GatewayClass against the informer caches.

Reads come from the caches (`ClusterView`); writes go through `KubeApi` and are all server-side
apply with our field manager, so running a reconcile twice, or from a restarted controller, gives
the same objects and never duplicates. Nothing is ever deleted: children go away with their Gateway
through ownerReferences (Kubernetes garbage collection).

Error policy: an invalid input becomes a condition in the Gateway's status; only transient API
failures (unreachable, 409, 429, 5xx) are raised so the queue retries the key with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from waypoint.gatewayclass import (
    BUILTIN_CLASSES,
    controller_for_class,
    default_waypoint_class,
    is_handled_class,
)
from waypoint.kube.api import (
    ENDPOINT_SLICES,
    GATEWAY_CLASSES,
    GATEWAYS,
    HTTP_ROUTES,
    RESOURCES_BY_KIND,
    SERVICES,
    ApiError,
    KubeApi,
    Resource,
)
from waypoint.names import (
    GATEWAY_API_VERSION,
    MANAGED_LABEL,
    MANAGED_VALUE,
    SERVICE_NAME_LABEL,
    WAYPOINT_CONTROLLER,
)
from waypoint.render import RenderError, render_waypoint, waypoint_names
from waypoint.routestatus import httproute_status, route_status_matches, route_verdict
from waypoint.settings import RenderSettings
from waypoint.status import Problem, gateway_class_status, gateway_status

log = logging.getLogger(__name__)


class ClusterView(Protocol):
    """Read access to the informer caches."""

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None: ...

    def items(self, resource: Resource) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, order=True)
class GatewayKey:
    namespace: str
    name: str


@dataclass(frozen=True, order=True)
class GatewayClassKey:
    name: str


@dataclass(frozen=True, order=True)
class HTTPRouteKey:
    namespace: str
    name: str


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, api: KubeApi, view: ClusterView, settings: RenderSettings) -> None:
        self._api = api
        self._view = view
        self._settings = settings
        # Counted for tests and the benchmark: how many writes reconciles actually made.
        self.applies = 0
        self.status_writes = 0

    # -- Gateway -----------------------------------------------------------------------------

    def reconcile_gateway(self, key: GatewayKey) -> None:
        gateway = self._view.get(GATEWAYS, key.namespace, key.name)
        if gateway is None:
            return  # deleted: garbage collection removes the children through their ownerReferences
        spec = gateway.get("spec") if isinstance(gateway.get("spec"), Mapping) else {}
        assert isinstance(spec, Mapping)
        class_name = str(spec.get("gatewayClassName") or "")
        gateway_class = self._view.get(GATEWAY_CLASSES, "", class_name)
        if controller_for_class(class_name, gateway_class) != WAYPOINT_CONTROLLER:
            return

        problem: Problem | None = None
        service: Mapping[str, Any] | None = None
        service_name = key.name
        manual_service = manual_deployment_service(gateway)
        if manual_service is not None:
            # A Hostname in spec.addresses means the user runs the waypoint; only status is ours.
            service_name = manual_service
            service = self._view.get(SERVICES, key.namespace, service_name)
        else:
            try:
                service_name = waypoint_names(gateway).service
                children = render_waypoint(gateway, self._settings)
            except RenderError as e:
                problem = Problem("Accepted", "InvalidParameters", str(e))
                children = []
            for child in children:
                applied, child_problem = self._apply_child(child)
                problem = problem or child_problem
                if child["kind"] == "Service":
                    service = applied
        slices = [
            s for s in self._view.items(ENDPOINT_SLICES)
            if (s.get("metadata") or {}).get("namespace") == key.namespace
            and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == service_name
        ]
        desired = gateway_status(
            gateway, service, slices, now=utc_now(), problem=problem,
            cluster_domain=self._settings.cluster_domain, service_name=service_name,
        )
        if not status_matches(gateway.get("status"), desired):
            self._write_status(GATEWAYS, gateway, desired)

    def _apply_child(self, child: dict[str, Any]) -> tuple[Mapping[str, Any] | None, Problem | None]:
        resource = RESOURCES_BY_KIND[child["kind"]]
        meta = child["metadata"]
        existing = self._view.get(resource, meta["namespace"], meta["name"])
        if existing is not None:
            labels = (existing.get("metadata") or {}).get("labels") or {}
            if labels.get(MANAGED_LABEL) != MANAGED_VALUE:
                message = (f"{child['kind']} {meta['namespace']}/{meta['name']} already exists without label "
                           f"{MANAGED_LABEL}={MANAGED_VALUE}; it is left untouched")
                log.warning("%s", message)
                return existing, Problem("Programmed", "Invalid", message)
            if contains(existing, child):
                return existing, None  # already as we want it: skip the write
        try:
            applied = self._api.apply(resource, child)
        except ApiError as e:
            if e.retriable:
                raise
            return existing, Problem("Programmed", "Invalid", f"{child['kind']} {meta['name']}: {e.message}")
        self.applies += 1
        return applied, None

    # -- GatewayClass ------------------------------------------------------------------------

    def reconcile_gateway_class(self, key: GatewayClassKey) -> None:
        gateway_class = self._view.get(GATEWAY_CLASSES, "", key.name)
        if gateway_class is None and key.name in BUILTIN_CLASSES:
            try:
                gateway_class = self._api.create(GATEWAY_CLASSES, default_waypoint_class())
                log.info("created GatewayClass %s", key.name)
            except ApiError as e:
                if e.status != 409:  # 409: it exists after all (cache lag); never overwrite it
                    raise
                gateway_class = self._api.get(GATEWAY_CLASSES, None, key.name)
        if gateway_class is None or not is_handled_class(gateway_class):
            return
        desired = gateway_class_status(gateway_class, now=utc_now())
        if not status_matches(gateway_class.get("status"), desired):
            self._write_status(GATEWAY_CLASSES, gateway_class, desired)

    # -- HTTPRoute (Service parents) ------------------------------------------------------------

    def reconcile_httproute(self, key: HTTPRouteKey) -> None:
        route = self._view.get(HTTP_ROUTES, key.namespace, key.name)
        if route is None:
            return
        desired = httproute_status(route, self._view.items(SERVICES), now=utc_now())
        if not desired["parents"] and not (route.get("status") or {}).get("parents"):
            return  # no Service parent: another controller's route
        if not route_status_matches(route.get("status"), desired):
            verdict = route_verdict(route)
            if verdict is not None:
                log.warning("HTTPRoute %s/%s refused: %s (%s)", key.namespace, key.name, verdict[1], verdict[0])
            self._write_status(HTTP_ROUTES, route, desired)

    def _write_status(self, resource: Resource, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        patch_meta = {"name": meta.get("name")}
        if meta.get("namespace"):
            patch_meta["namespace"] = meta["namespace"]
        body = {"apiVersion": GATEWAY_API_VERSION, "kind": resource.kind, "metadata": patch_meta,
                "status": status}
        try:
            self._api.apply(resource, body, subresource="status")
        except ApiError as e:
            if e.retriable or e.status == 404:
                if e.status == 404:
                    return  # deleted meanwhile
                raise
            # The CRD rejected our status: a bug on our side, not the user's; log, do not loop.
            log.error("status of %s %s rejected: %s", resource.kind, meta.get("name"), e)
            return
        self.status_writes += 1


def manual_deployment_service(gateway: Mapping[str, Any]) -> str | None:
    """For a Gateway with a Hostname address (manual deployment), the Service name it points at."""
    spec = gateway.get("spec") or {}
    for address in spec.get("addresses") or []:
        if isinstance(address, Mapping) and address.get("type") == "Hostname" and address.get("value"):
            return str(address["value"]).split(".", 1)[0]
    return None


def contains(actual: Any, wanted: Any) -> bool:
    """Whether `actual` already has every field of `wanted` (server-added defaults are ignored)."""
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(contains(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(actual, list) and len(actual) == len(wanted)
                and all(contains(a, w) for a, w in zip(actual, wanted, strict=True)))
    return bool(actual == wanted)


def status_matches(current: Any, desired: Mapping[str, Any]) -> bool:
    """Whether `current` status already shows everything in `desired` (other writers' fields aside)."""
    if not isinstance(current, Mapping):
        return False

    def by_key(entries: Any, field: str) -> dict[Any, Any]:
        return {e.get(field): e for e in entries or () if isinstance(e, Mapping)}

    for field, key_field in (("conditions", "type"), ("listeners", "name")):
        if field not in desired:
            continue
        have, want = by_key(current.get(field), key_field), by_key(desired[field], key_field)
        # Listener entries are all ours (stale ones must go); conditions may include other writers'.
        stale_or_missing = set(have) != set(want) if field == "listeners" else not set(want) <= set(have)
        if stale_or_missing:
            return False
        if any(not contains(have[k], v) for k, v in want.items()):
            return False
    return bool(current.get("addresses") == desired.get("addresses"))
