"""Which HTTPRoute rule a waypoint tries first for one service port: the Gateway API's precedence as Istio sorts it.

Pure. Istio (`pilot/pkg/config/kube/gateway/conversion.go`) orders the HTTPRoutes of a namespace by
creation time, then `namespace/name`; splits every rule into one route per match; merges the routes
of one host and stable-sorts them by:

1. path match type: Exact > PathPrefix > RegularExpression;
2. path length (a PathPrefix without its trailing `/`), longest first;
3. a method match before none;
4. more header matches first;
5. more query parameter matches first;

ties keep the order above (oldest route, then alphabetical, then rule and match order). The waypoint
(`waypointInboundRoute`) then stops at the first catch-all: PathPrefix "/" with no other condition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xds.mesh.model import HTTPMatch, HTTPRoute, RouteRule

_PATH_RANK = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}


@dataclass(frozen=True)
class RouteEntry:
    """One (route, rule, match): what becomes one Envoy route."""

    route: HTTPRoute
    rule_index: int
    rule: RouteRule
    match: HTTPMatch

    @property
    def name(self) -> str:
        return f"{self.route.namespace}.{self.route.name}.{self.rule_index}"


def prefix_value(value: str) -> str:
    """A PathPrefix as matched: "When specified, a trailing `/` is ignored" (but "/" stays "/")."""
    return value if value == "/" else value.rstrip("/") or "/"


def path_length(match: HTTPMatch) -> int:
    value = match.path.value
    return len(prefix_value(value)) if match.path.kind == "PathPrefix" else len(value)


def precedence_key(match: HTTPMatch) -> tuple[int, int, int, int, int]:
    """Sorts ascending into Istio's order (every term negated: larger wins)."""
    return (
        -_PATH_RANK[match.path.kind],
        -path_length(match),
        0 if match.method is not None else 1,
        -len(match.headers),
        -len(match.query_params),
    )


def is_catch_all(match: HTTPMatch) -> bool:
    return (
        match.path.kind == "PathPrefix"
        and prefix_value(match.path.value) == "/"
        and not match.headers
        and not match.query_params
        and match.method is None
    )


def route_order(routes: Iterable[HTTPRoute]) -> list[HTTPRoute]:
    """Oldest first, then `namespace/name` (RFC 3339 timestamps compare as text)."""
    return sorted(routes, key=lambda r: (r.creation, f"{r.namespace}/{r.name}"))


def ordered_entries(routes: Iterable[HTTPRoute]) -> list[RouteEntry]:
    """Every match of every rule, in the order the waypoint tries them; nothing after a catch-all."""
    entries = [
        RouteEntry(route, index, rule, match)
        for route in route_order(routes)
        for index, rule in enumerate(route.rules)
        for match in rule.matches
    ]
    entries.sort(key=lambda e: precedence_key(e.match))  # stable: ties keep route, rule, match order
    for position, entry in enumerate(entries):
        if is_catch_all(entry.match):
            return entries[: position + 1]
    return entries


def attached_routes(routes: Iterable[HTTPRoute], namespace: str, service: str, port: int) -> list[HTTPRoute]:
    """Routes of the service's namespace with a parentRef to the service (on this port, or on all)."""
    return [
        r
        for r in routes
        if r.namespace == namespace
        and any(ns == namespace and name == service and p in (None, port) for ns, name, p in r.parents)
    ]


__all__ = ["RouteEntry", "attached_routes", "is_catch_all", "ordered_entries", "precedence_key", "route_order"]
