"""Hands the whole watched object set to the control plane, debounced.

Watch events only mark the set dirty; a single thread waits for a quiet period, takes a snapshot
of the informer caches and publishes it. A burst of events (initial lists, 100 Gateways applied
together) therefore costs one publish, and the publisher never runs on an informer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from waypoint.settings import MeshFeedSettings

log = logging.getLogger(__name__)

Snapshot = Callable[[], list[dict[str, Any]]]
Publisher = Callable[[list[dict[str, Any]]], None]


class MeshFeed:
    def __init__(self, snapshot: Snapshot, publish: Publisher, settings: MeshFeedSettings) -> None:
        self._snapshot = snapshot
        self._publish = publish
        self._settings = settings
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._first_change: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Observability for tests and the benchmark.
        self.publishes = 0
        self.last_latency_seconds: float | None = None  # oldest unpublished change → publish done

    def changed(self) -> None:
        with self._lock:
            if self._first_change is None:
                self._first_change = time.monotonic()
        self._dirty.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mesh-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            # Quiet period: keep absorbing events until none arrived for `debounce_seconds`, but
            # publish after `max_delay_seconds` even under a steady stream of events.
            started = time.monotonic()
            while True:
                self._dirty.clear()
                if self._stop.wait(self._settings.debounce_seconds) or not self._dirty.is_set():
                    break
                if time.monotonic() - started >= self._settings.max_delay_seconds:
                    break
            if self._stop.is_set():
                return
            with self._lock:
                first_change, self._first_change = self._first_change, None
            try:
                self._publish(self._snapshot())
            except Exception:  # the control plane must not take the controller down
                log.exception("publishing the mesh failed")
                continue
            self.publishes += 1
            if first_change is not None:
                self.last_latency_seconds = time.monotonic() - first_change
