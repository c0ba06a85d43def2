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
        self._rr: dict[tuple[str, int], Any] = {}  # (service key, per-workload service port or 0)
        self._state: ProxyState | None = None

    def update(self, state: ProxyState) -> None:
        """Rebuild the endpoint lists; existing cursors are kept so rotation continues across pushes."""
        self._state = state
        for key in list(self._rr):
            svc_key, port = key
            svc = state.services.get(svc_key)
            if svc is None or (port and not state.per_workload_port(svc, port)):
                del self._rr[key]
            else:
                self._rr[key].replace(state.ready_endpoints(svc, port))

    def pick(self, state: ProxyState, svc: Service, service_port: int = 0) -> Workload | None:
        """Next endpoint of `svc`; with `service_port` whose target is per workload (a named targetPort), next
        among the endpoints that serve that port (one rotation per such port)."""
        port = service_port if service_port and state.per_workload_port(svc, service_port) else 0
        key = (svc.key, port)
        rr = self._rr.get(key)
        if rr is None or state is not self._state:
            if state is not self._state:
                self.update(state)
                rr = self._rr.get(key)
            if rr is None:
                rr = self._factory(state.ready_endpoints(svc, port))
                self._rr[key] = rr
        picked: Workload | None = rr.pick()
        return picked
