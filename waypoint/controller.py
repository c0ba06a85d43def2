"""The waypoint controller: informers → work queue → reconcile, plus the mesh feed.

Watch events are only turned into keys (which Gateway, which GatewayClass might now differ from
what it should be); workers then reconcile each key from the caches. That makes the controller
level-triggered: a missed or duplicated event, a relist, or a restart all end in the same state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from waypoint.gatewayclass import BUILTIN_CLASSES
from waypoint.kube.api import (
    AUTHORIZATION_POLICIES,
    CONFIG_MAPS,
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    GATEWAY_CLASSES,
    GATEWAYS,
    HTTP_ROUTES,
    NAMESPACES,
    PEER_AUTHENTICATIONS,
    PODS,
    REQUEST_AUTHENTICATIONS,
    SERVICE_ACCOUNTS,
    SERVICES,
    ApiError,
    ApiUnavailable,
    KubeApi,
    Resource,
)
from waypoint.kube.watch import Informer
from waypoint.meshfeed import MeshFeed, Publisher
from waypoint.names import NAME_OVERRIDE, SERVICE_NAME_LABEL
from waypoint.queue import WorkQueue
from waypoint.reconcile import GatewayClassKey, GatewayKey, HTTPRouteKey, Reconciler, manual_deployment_service
from waypoint.rootcert import SKIPPED_NAMESPACES, root_cert_config_map
from waypoint.settings import ControllerSettings
from waypoint.unimplemented import report_unimplemented

log = logging.getLogger(__name__)

# What the mesh model is built from (plain dicts, as `kubectl get -o json` shows them).
MESH_RESOURCES: tuple[Resource, ...] = (
    NAMESPACES, SERVICES, ENDPOINT_SLICES, PODS, SERVICE_ACCOUNTS, HTTP_ROUTES, AUTHORIZATION_POLICIES,
    PEER_AUTHENTICATIONS, GATEWAYS, REQUEST_AUTHENTICATIONS,
)
# Watched only to reconcile: a changed child or class requeues its Gateways.
RECONCILE_ONLY_RESOURCES: tuple[Resource, ...] = (DEPLOYMENTS, GATEWAY_CLASSES)
# Children whose changes requeue their owning Gateway.
CHILD_KINDS = frozenset({"Service", "Deployment", "ServiceAccount"})

@dataclass(frozen=True)
class RootCertKey:
    """Publish the mesh root (`istio-ca-root-cert`) in this namespace."""

    namespace: str


WorkKey = GatewayKey | GatewayClassKey | HTTPRouteKey | RootCertKey


class WaypointController:
    def __init__(self, api: KubeApi, settings: ControllerSettings | None = None,
                 publish: Publisher | None = None, root_cert: bytes | None = None) -> None:
        self.settings = settings or ControllerSettings()
        self.root_cert = root_cert  # the CA root to publish in every namespace (None: publish nothing)
        self._api = api
        self.informers: dict[str, Informer] = {
            r.kind: Informer(api, r, self._on_change, self.settings.watch)
            for r in MESH_RESOURCES + RECONCILE_ONLY_RESOURCES
        }
        self.queue: WorkQueue[WorkKey] = WorkQueue(self.settings.queue)
        self.reconciler = Reconciler(api, self, self.settings.render)
        self.mesh_feed = MeshFeed(self.mesh_objects, publish, self.settings.mesh_feed) if publish else None
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.reconcile_errors = 0
        self.unimplemented_kinds: dict[str, int] | None = None  # set once at start-up

    # -- ClusterView (the reconciler reads the caches through these) --------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return self.informers[resource.kind].get(namespace, name)

    def items(self, resource: Resource) -> list[dict[str, Any]]:
        return self.informers[resource.kind].items()

    def mesh_objects(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        for resource in MESH_RESOURCES:
            objects.extend(self.informers[resource.kind].items())
        return objects

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()
        for name in BUILTIN_CLASSES:
            self.queue.add(GatewayClassKey(name))
        for index in range(self.settings.queue.workers):
            worker = threading.Thread(target=self._work, name=f"reconcile-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        if self.mesh_feed is not None:
            threading.Thread(target=self._start_feed_when_synced, name="mesh-feed-start", daemon=True).start()
        threading.Thread(target=self._report_unimplemented_kinds, name="unimplemented-kinds", daemon=True).start()

    def _report_unimplemented_kinds(self) -> None:
        self.unimplemented_kinds = report_unimplemented(self._api)

    def wait_synced(self, timeout: float | None = None) -> bool:
        return all(informer.synced.wait(timeout) for informer in self.informers.values())

    def stop(self) -> None:
        self._stopping.set()
        self.queue.shutdown()
        for informer in self.informers.values():
            informer.stop()
        if self.mesh_feed is not None:
            self.mesh_feed.stop()
        for informer in self.informers.values():
            informer.join(5)
        for worker in self._workers:
            worker.join(5)

    def _start_feed_when_synced(self) -> None:
        # Publishing before every cache is filled would push a partial mesh to the data plane.
        while not self.wait_synced(1.0):
            if self._stopping.is_set():
                return
        assert self.mesh_feed is not None
        if not self._stopping.is_set():
            self.mesh_feed.start()
            self.mesh_feed.changed()

    # -- events → keys -----------------------------------------------------------------------

    def _on_change(self, resource: Resource, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        kind = resource.kind
        if kind == "Gateway":
            if old is None or new is None or _spec_or_metadata_changed(old, new):
                self.queue.add(GatewayKey(namespace, str(meta.get("name"))))
        elif kind == "GatewayClass":
            name = str(meta.get("name"))
            self.queue.add(GatewayClassKey(name))
            for gateway in self.items(GATEWAYS):
                if (gateway.get("spec") or {}).get("gatewayClassName") == name:
                    self._enqueue_gateway(gateway)
        elif kind == "EndpointSlice":
            service_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            self._enqueue_gateways_using_service(namespace, service_name)
        elif kind == "Namespace":
            name = str(meta.get("name") or "")
            if new is not None and self.root_cert is not None and name not in SKIPPED_NAMESPACES:
                self.queue.add(RootCertKey(name))
            for gateway in self.items(GATEWAYS):
                if (gateway.get("metadata") or {}).get("namespace") == meta.get("name"):
                    self._enqueue_gateway(gateway)
        elif kind == "HTTPRoute":
            self.queue.add(HTTPRouteKey(namespace, str(meta.get("name"))))
        if kind == "Service" and (old is None or new is None):
            # A Service appearing or going changes whether routes' parents and backends resolve.
            for route in self.items(HTTP_ROUTES):
                if (route.get("metadata") or {}).get("namespace") == namespace:
                    self.queue.add(HTTPRouteKey(namespace, str((route.get("metadata") or {}).get("name"))))
        if kind in CHILD_KINDS:
            for owner in meta.get("ownerReferences") or ():
                if owner.get("kind") == "Gateway" and str(owner.get("apiVersion", "")).startswith("gateway."):
                    self.queue.add(GatewayKey(namespace, str(owner.get("name"))))
            if kind == "Service":
                # Also a Service the controller does not own: the one a manual Gateway points at.
                self._enqueue_gateways_using_service(namespace, meta.get("name"))
        if self.mesh_feed is not None and resource in MESH_RESOURCES:
            self.mesh_feed.changed()

    def _enqueue_gateways_using_service(self, namespace: str, service_name: Any) -> None:
        if not service_name:
            return
        for gateway in self.items(GATEWAYS):
            if (gateway.get("metadata") or {}).get("namespace") == namespace and \
                    _gateway_service_name(gateway) == service_name:
                self._enqueue_gateway(gateway)

    def _enqueue_gateway(self, gateway: Mapping[str, Any]) -> None:
        meta = gateway.get("metadata") or {}
        self.queue.add(GatewayKey(str(meta.get("namespace")), str(meta.get("name"))))

    # -- workers -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                if not self.wait_synced(0):
                    # Reconciling from half-filled caches could re-create what exists; wait.
                    self.queue.add_after(key, 0.1)
                elif isinstance(key, GatewayKey):
                    self.reconciler.reconcile_gateway(key)
                    self.queue.forget(key)
                elif isinstance(key, HTTPRouteKey):
                    self.reconciler.reconcile_httproute(key)
                    self.queue.forget(key)
                elif isinstance(key, RootCertKey):
                    assert self.root_cert is not None
                    self._api.apply(CONFIG_MAPS, root_cert_config_map(key.namespace, self.root_cert))
                    self.queue.forget(key)
                else:
                    self.reconciler.reconcile_gateway_class(key)
                    self.queue.forget(key)
            except (ApiUnavailable, ApiError) as e:
                self.reconcile_errors += 1
                delay = self.queue.retry(key)
                log.info("reconcile %s failed (%s); retrying in %.1fs", key, e, delay)
            except Exception:  # a bug for one key must not stop the others
                self.reconcile_errors += 1
                delay = self.queue.retry(key)
                log.exception("reconcile %s crashed; retrying in %.1fs", key, delay)
            finally:
                self.queue.done(key)


def _spec_or_metadata_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Gateway updates that matter: spec (generation), labels, annotations. Status-only is skipped."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return any(old_meta.get(f) != new_meta.get(f) for f in ("generation", "labels", "annotations", "uid"))


def _gateway_service_name(gateway: Mapping[str, Any]) -> str:
    """The Service whose endpoints decide the Gateway's Programmed condition."""
    manual = manual_deployment_service(gateway)
    if manual is not None:
        return manual
    meta = gateway.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(NAME_OVERRIDE) or meta.get("name"))
