"""A keyed work queue for level-triggered reconciling (client-go workqueue semantics).

- A key queued many times before a worker takes it is processed once (dedupe).
- A key is never processed by two workers at once; one added while in flight runs again after.
- `retry(key)` re-adds after a per-key exponential backoff; `forget(key)` resets it on success.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from waypoint.settings import QueueSettings

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._cond = threading.Condition()
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._in_flight: set[Key] = set()
        self._dirty_in_flight: set[Key] = set()
        self._delayed: list[tuple[float, int, Key]] = []
        self._sequence = 0
        self._failures: dict[Key, int] = {}
        self._shutdown = False

    def add(self, key: Key) -> None:
        with self._cond:
            self._add_locked(key)

    def add_after(self, key: Key, delay: float) -> None:
        with self._cond:
            self._sequence += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._sequence, key))
            self._cond.notify()

    def retry(self, key: Key) -> float:
        """Re-add `key` after its backoff; returns the delay chosen."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self._settings.retry_initial_seconds * (2**failures), self._settings.retry_max_seconds)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self) -> Key | None:
        """Block until a key is ready; None once the queue is shut down."""
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                self._promote_delayed_locked()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._in_flight.add(key)
                    return key
                timeout = None
                if self._delayed:
                    timeout = max(0.0, self._delayed[0][0] - time.monotonic())
                self._cond.wait(timeout)

    def done(self, key: Key) -> None:
        with self._cond:
            self._in_flight.discard(key)
            if key in self._dirty_in_flight:
                self._dirty_in_flight.discard(key)
                self._add_locked(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not (self._ready or self._in_flight or self._delayed)

    def _add_locked(self, key: Key) -> None:
        if key in self._in_flight:
            self._dirty_in_flight.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def _promote_delayed_locked(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add_locked(key)
