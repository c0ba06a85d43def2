"""List+watch informer: a local cache of one kind of object, kept current by a watch.

The loop: LIST (remember its resourceVersion) → WATCH from there → on the server's timeout,
WATCH again from the last seen resourceVersion (bookmarks keep it fresh) → on 410 Gone, LIST again
and diff against the cache so deletions missed meanwhile are still reported → on a connection
error (apiserver restarting), back off and resume from the last resourceVersion.

Every change is reported to the handler as (old, new); `new` is None for a deletion. The handler
runs on the informer's thread and must be quick (enqueue, mark dirty).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from waypoint.kube.api import (
    ApiError,
    ApiUnavailable,
    KubeApi,
    Resource,
    ResourceVersionExpired,
    WatchStream,
)
from waypoint.settings import WatchSettings

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds
ChangeHandler = Callable[[Resource, "dict[str, Any] | None", "dict[str, Any] | None"], None]


def object_key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Informer:
    def __init__(self, api: KubeApi, resource: Resource, handler: ChangeHandler,
                 settings: WatchSettings, *, resume_from: str = "") -> None:
        """`resume_from`: a resourceVersion to watch from instead of listing first (the cache then
        fills from the events, or from a relist if that version has expired)."""
        self.resource = resource
        self._resume_from = resume_from
        self._api = api
        self._handler = handler
        self._settings = settings
        self._cache: dict[ObjectKey, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: WatchStream | None = None
        self.synced = threading.Event()
        # Counters that tests and benchmarks read to prove the loop did what it claims.
        self.relists = 0
        self.reconnects = 0

    # -- cache reads (any thread) ------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._cache.get((namespace, name))

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._cache.values())

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.resource.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        resource_version = self._resume_from
        delay = self._settings.backoff_initial_seconds
        while not self._stop.is_set():
            try:
                if not resource_version:
                    resource_version = self._relist()
                self._stream = self._api.watch(
                    self.resource,
                    resource_version,
                    timeout_seconds=self._settings.server_timeout_seconds,
                    read_timeout=self._settings.read_timeout_seconds,
                    connect_timeout=self._settings.connect_timeout_seconds,
                )
                if self._stop.is_set():
                    self._stream.close()
                for event in self._stream:
                    if self._stop.is_set():
                        return
                    resource_version = self._apply_event(event.type, event.object) or resource_version
                    delay = self._settings.backoff_initial_seconds
            except ResourceVersionExpired:
                log.info("%s watch expired (410); relisting", self.resource.kind)
                resource_version = ""
            except (ApiUnavailable, ApiError) as e:
                if isinstance(e, ApiError) and e.status == 404:
                    # The CRD is not installed (yet): keep an empty, synced cache and look again later.
                    self.synced.set()
                self.reconnects += 1
                log.info("%s watch interrupted (%s); retrying in %.1fs", self.resource.kind, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._settings.backoff_max_seconds)
            except Exception:  # a bug must not kill the informer silently: log and resume
                log.exception("%s informer failed; relisting", self.resource.kind)
                resource_version = ""
                self._stop.wait(delay)
                delay = min(delay * 2, self._settings.backoff_max_seconds)

    def _relist(self) -> str:
        items, resource_version = self._api.list_objects(self.resource)
        self.relists += 1
        fresh = {object_key(obj): obj for obj in items}
        with self._lock:
            old_cache = self._cache
            self._cache = fresh
        for key, obj in fresh.items():
            old = old_cache.get(key)
            if old is None or _resource_version(old) != _resource_version(obj):
                self._handler(self.resource, old, obj)
        for key, old in old_cache.items():
            if key not in fresh:
                self._handler(self.resource, old, None)
        self.synced.set()
        return resource_version

    def _apply_event(self, event_type: str, obj: dict[str, Any]) -> str:
        if event_type == "BOOKMARK":
            return _resource_version(obj)
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        key = object_key(obj)
        with self._lock:
            old = self._cache.get(key)
            if event_type == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
        self._handler(self.resource, old, None if event_type == "DELETED" else obj)
        return _resource_version(obj)


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
