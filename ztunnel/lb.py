"""Per-service round robin over ready endpoints: one `_core.RoundRobin` per service, replaced on push.

`pick()` is O(1) and synchronous (no await between choosing and using the cursor), so concurrent
connections on one event loop are dealt endpoints strictly in turn: 100 connections over 2 endpoints
split 50/50.
"""

from __future__ import annotations

from typing import Any

from ztunnel.state import ProxyState, Service, Workload


class LoadBalancers:
    def __init__(self, rr_factory: Any = None) -> None:
        if rr_factory is None:
            from _core import RoundRobin

            rr_factory = RoundRobin
        self._factory = rr_factory
        self._rr: dict[str, Any] = {}
        self._state: ProxyState | None = None

    def update(self, state: ProxyState) -> None:
        """Rebuild the endpoint lists; existing cursors are kept so rotation continues across pushes."""
        self._state = state
        for key in list(self._rr):
            svc = state.services.get(key)
            if svc is None:
                del self._rr[key]
            else:
                self._rr[key].replace(state.ready_endpoints(svc))

    def pick(self, state: ProxyState, svc: Service) -> Workload | None:
        rr = self._rr.get(svc.key)
        if rr is None or state is not self._state:
            if state is not self._state:
                self.update(state)
                rr = self._rr.get(svc.key)
            if rr is None:
                rr = self._factory(state.ready_endpoints(svc))
                self._rr[svc.key] = rr
        picked: Workload | None = rr.pick()
        return picked
