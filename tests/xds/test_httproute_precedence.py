"""HTTPRoute rules in the order a waypoint tries them: the Gateway API's precedence as Istio sorts it.

One row per precedence rule, named after it; then the Envoy matchers each kind of condition becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from xds.envoy.routes import route_match
from xds.mesh.httproute import parse_httproute
from xds.mesh.model import HTTPRoute
from xds.mesh.route_precedence import attached_routes, ordered_entries

pytestmark = pytest.mark.policy


def route(
    name: str,
    rules: list[dict[str, Any]],
    *,
    creation: str = "",
    ns: str = "shop",
    parent: dict[str, Any] | None = None,
) -> HTTPRoute:
    obj = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": creation},
        "spec": {"parentRefs": [parent or {"group": "", "kind": "Service", "name": "web", "port": 80}], "rules": rules},
    }
    return parse_httproute(obj, ns)


def prefix(value: str, **extra: Any) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}, **extra}


def exact(value: str, **extra: Any) -> dict[str, Any]:
    return {"path": {"type": "Exact", "value": value}, **extra}


def regex(value: str, **extra: Any) -> dict[str, Any]:
    return {"path": {"type": "RegularExpression", "value": value}, **extra}


def headers(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "value": "1"} for n in names]


def query(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "value": "1"} for n in names]


def rule(tag: str, *matches: dict[str, Any]) -> dict[str, Any]:
    """A rule whose single backend names it, so the expected order reads as backend names."""
    out: dict[str, Any] = {"backendRefs": [{"name": tag, "port": 80}]}
    if matches:
        out["matches"] = list(matches)
    return out


@dataclass(frozen=True)
class Row:
    scenario: str
    routes: list[HTTPRoute]
    order: list[str]  # backend of each entry, in the order Envoy tries them


ROWS = [
    Row(
        "exact_path_before_a_longer_prefix",
        [route("r", [rule("prefix", prefix("/foo/bar/baz")), rule("exact", exact("/foo"))])],
        ["exact", "prefix"],
    ),
    Row(
        "longest_prefix_first",
        [route("r", [rule("short", prefix("/foo")), rule("long", prefix("/foo/bar"))])],
        ["long", "short"],
    ),
    Row(
        "prefix_trailing_slash_does_not_count_for_length",
        # "/foo/" is "/foo" (4) and ties with "/abc": rule order decides.
        [route("r", [rule("foo", prefix("/foo/")), rule("abc", prefix("/abc"))])],
        ["foo", "abc"],
    ),
    Row(
        "prefix_before_regular_expression_whatever_its_length",
        [route("r", [rule("regex", regex("/very/long/regular/expression/.*")), rule("prefix", prefix("/a"))])],
        ["prefix", "regex"],
    ),
    Row(
        "method_before_headers",
        [route("r", [rule("headers", prefix("/", headers=headers("a", "b"))), rule("method", {"method": "GET"})])],
        ["method", "headers"],
    ),
    Row(
        "most_headers_first",
        [
            route(
                "r",
                [rule("one", prefix("/", headers=headers("a"))), rule("two", prefix("/", headers=headers("a", "b")))],
            )
        ],
        ["two", "one"],
    ),
    Row(
        "headers_before_query_params",
        [
            route(
                "r",
                [
                    rule("query", prefix("/", queryParams=query("a", "b"))),
                    rule("header", prefix("/", headers=headers("a"))),
                ],
            )
        ],
        ["header", "query"],
    ),
    Row(
        "most_query_params_first",
        [
            route(
                "r",
                [
                    rule("one", prefix("/", queryParams=query("a"))),
                    rule("two", prefix("/", queryParams=query("a", "b"))),
                ],
            )
        ],
        ["two", "one"],
    ),
    Row(
        "path_before_method",
        [route("r", [rule("method", {"method": "POST"}), rule("path", prefix("/static"))])],
        ["path", "method"],
    ),
    Row(
        "oldest_route_first_on_a_tie",
        [
            route("a-new", [rule("new", prefix("/x"))], creation="2026-01-02T00:00:00Z"),
            route("b-old", [rule("old", prefix("/x"))], creation="2026-01-01T00:00:00Z"),
        ],
        ["old", "new"],
    ),
    Row(
        "alphabetical_namespace_name_on_the_same_creation_time",
        [
            route("b", [rule("b", prefix("/x"))], creation="2026-01-01T00:00:00Z"),
            route("a", [rule("a", prefix("/x"))], creation="2026-01-01T00:00:00Z"),
        ],
        ["a", "b"],
    ),
    Row(
        "rule_order_within_a_route_on_a_tie",
        [
            route(
                "r",
                [rule("first", prefix("/x", headers=headers("h"))), rule("second", prefix("/y", headers=headers("h")))],
            )
        ],
        ["first", "second"],
    ),
    Row(
        "matches_of_one_rule_are_placed_separately",
        [route("r", [rule("multi", prefix("/"), exact("/login")), rule("api", prefix("/api"))])],
        ["multi", "api", "multi"],
    ),
    Row(
        "header_canary_rule_before_the_default_rule_the_issue_probe",
        [route("r", [rule("web-canary", prefix("/", headers=[{"name": "x-canary", "value": "true"}])), rule("web")])],
        ["web-canary", "web"],
    ),
    Row(
        "default_rule_written_first_still_goes_last",
        [route("r", [rule("web"), rule("web-canary", prefix("/", headers=[{"name": "x-canary", "value": "true"}]))])],
        ["web-canary", "web"],
    ),
    Row(
        "across_routes_of_one_service_port_precedence_beats_age",
        [
            route("old-default", [rule("web")], creation="2026-01-01T00:00:00Z"),
            route(
                "new-canary",
                [rule("canary", prefix("/", headers=headers("x-canary")))],
                creation="2026-01-02T00:00:00Z",
            ),
        ],
        ["canary", "web"],
    ),
    Row(
        "nothing_after_the_first_catch_all",
        [
            route("a", [rule("first")], creation="2026-01-01T00:00:00Z"),
            route("b", [rule("shadowed")], creation="2026-01-02T00:00:00Z"),
        ],
        ["first"],
    ),
    Row(
        "method_only_match_is_not_a_catch_all",
        [route("r", [rule("get", {"method": "GET"}), rule("rest")])],
        ["get", "rest"],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.scenario for r in ROWS])
def test_precedence(row: Row) -> None:
    entries = ordered_entries(row.routes)
    assert [e.rule.backends[0].name for e in entries] == row.order


def test_routes_attach_by_service_port_and_namespace() -> None:
    any_port = route("any", [rule("a")], parent={"kind": "Service", "name": "web"})
    port_80 = route("p80", [rule("b")])
    port_81 = route("p81", [rule("c")], parent={"kind": "Service", "name": "web", "port": 81})
    other_ns = route("other", [rule("d")], ns="other", parent={"kind": "Service", "name": "web", "namespace": "shop"})
    other_service = route("svc", [rule("e")], parent={"kind": "Service", "name": "db"})
    routes = [any_port, port_80, port_81, other_ns, other_service]
    assert attached_routes(routes, "shop", "web", 80) == [any_port, port_80]
    assert attached_routes(routes, "shop", "web", 81) == [any_port, port_81]


# --------------------------------------------------------------------------------------------
# Envoy matchers


def envoy_match(match: dict[str, Any]) -> dict[str, Any]:
    parsed = route("r", [rule("b", match)]).rules[0].matches[0]
    return route_match(parsed).to_dict()


@dataclass(frozen=True)
class MatcherRow:
    scenario: str
    match: dict[str, Any]
    envoy: dict[str, Any]


MATCHER_ROWS = [
    MatcherRow("prefix_slash_is_envoy_prefix", prefix("/"), {"prefix": "/"}),
    MatcherRow("prefix_matches_whole_segments", prefix("/foo"), {"pathSeparatedPrefix": "/foo"}),
    MatcherRow("prefix_trailing_slash_is_ignored", prefix("/foo/"), {"pathSeparatedPrefix": "/foo"}),
    MatcherRow("exact_path", exact("/login"), {"path": "/login"}),
    MatcherRow("regular_expression_path", regex("/v[0-9]+/.*"), {"safeRegex": {"regex": "/v[0-9]+/.*"}}),
    MatcherRow(
        "no_path_defaults_to_prefix_slash",
        {"method": "GET"},
        {"prefix": "/", "headers": [{"name": ":method", "stringMatch": {"exact": "GET"}}]},
    ),
    MatcherRow(
        "header_exact_name_lower_cased",
        prefix("/", headers=[{"name": "X-Canary", "value": "true"}]),
        {"prefix": "/", "headers": [{"name": "x-canary", "stringMatch": {"exact": "true"}}]},
    ),
    MatcherRow(
        "header_regular_expression",
        prefix("/", headers=[{"name": "x-user", "type": "RegularExpression", "value": "admin-[0-9]+"}]),
        {"prefix": "/", "headers": [{"name": "x-user", "stringMatch": {"safeRegex": {"regex": "admin-[0-9]+"}}}]},
    ),
    MatcherRow(
        "query_param_exact_name_keeps_case",
        prefix("/", queryParams=[{"name": "Version", "value": "2"}]),
        {"prefix": "/", "queryParameters": [{"name": "Version", "stringMatch": {"exact": "2"}}]},
    ),
    MatcherRow(
        "query_param_regular_expression",
        prefix("/", queryParams=[{"name": "v", "type": "RegularExpression", "value": "[23]"}]),
        {"prefix": "/", "queryParameters": [{"name": "v", "stringMatch": {"safeRegex": {"regex": "[23]"}}}]},
    ),
    MatcherRow(
        "all_conditions_of_a_match_in_one_envoy_match",
        exact("/both", method="PUT", headers=[{"name": "a", "value": "1"}], queryParams=[{"name": "q", "value": "x"}]),
        {
            "path": "/both",
            "headers": [
                {"name": "a", "stringMatch": {"exact": "1"}},
                {"name": ":method", "stringMatch": {"exact": "PUT"}},
            ],
            "queryParameters": [{"name": "q", "stringMatch": {"exact": "x"}}],
        },
    ),
]


@pytest.mark.parametrize("row", MATCHER_ROWS, ids=[r.scenario for r in MATCHER_ROWS])
def test_envoy_matcher(row: MatcherRow) -> None:
    assert envoy_match(row.match) == row.envoy
