"""An HTTPRoute match as an Envoy `RouteMatch`, the way Istio translates it (`core/route/route.go`).

Pure. All conditions of one match go into one `RouteMatch` (Envoy ANDs them); the matches of a rule
become separate routes (ORed, in precedence order, see `xds.mesh.route_precedence`).

- PathPrefix "/" → `prefix: /`; any other PathPrefix → `path_separated_prefix` without the trailing
  `/`, so `/foo` matches `/foo` and `/foo/bar` but not `/foobar` (Gateway API segment semantics);
  Exact → `path`; RegularExpression → `safe_regex` (RE2, whole path; Envoy matches paths without
  the query string).
- headers → `HeaderMatcher` with an exact or RE2 `string_match` (Envoy compares names
  case-insensitively; the model lower-cases them); method → the `:method` pseudo-header, exact.
- queryParams → `QueryParameterMatcher` with an exact or RE2 `string_match`.

A rule's RequestHeaderModifier / ResponseHeaderModifier become the route's
`request_headers_to_add`/`_remove` and `response_headers_to_add`/`_remove`: `set` overwrites
(`OVERWRITE_IF_EXISTS_OR_ADD`), `add` appends (`APPEND_IF_EXISTS_OR_ADD`), `remove` drops.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import HeaderValue, HeaderValueOption, HeaderValueOptionHeaderAppendAction
from envoy_data_plane.envoy.config.route.v3 import HeaderMatcher, QueryParameterMatcher, Route, RouteMatch
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher

from xds.mesh.model import HeaderModifier, HTTPMatch, PathMatch, ValueMatch
from xds.mesh.route_precedence import prefix_value


def _string_matcher(kind: str, value: str) -> StringMatcher:
    if kind == "RegularExpression":
        return StringMatcher(safe_regex=RegexMatcher(regex=value))
    return StringMatcher(exact=value)


def _path(match: RouteMatch, path: PathMatch) -> None:
    if path.kind == "Exact":
        match.path = path.value
    elif path.kind == "RegularExpression":
        match.safe_regex = RegexMatcher(regex=path.value)
    elif prefix_value(path.value) == "/":
        match.prefix = "/"
    else:
        match.path_separated_prefix = prefix_value(path.value)


def _header(condition: ValueMatch) -> HeaderMatcher:
    return HeaderMatcher(name=condition.name, string_match=_string_matcher(condition.kind, condition.value))


def route_match(match: HTTPMatch) -> RouteMatch:
    out = RouteMatch()
    _path(out, match.path)
    headers = [_header(h) for h in match.headers]
    if match.method is not None:
        headers.append(HeaderMatcher(name=":method", string_match=StringMatcher(exact=match.method)))
    out.headers = headers
    out.query_parameters = [
        QueryParameterMatcher(name=q.name, string_match=_string_matcher(q.kind, q.value)) for q in match.query_params
    ]
    return out


def _header_options(modifier: HeaderModifier) -> list[HeaderValueOption]:
    # As Istio: `set` entries (overwrite) then `add` entries (append), each sorted by name.
    return [
        HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=action)
        for pairs, action in (
            (modifier.set, HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD),
            (modifier.add, HeaderValueOptionHeaderAppendAction.APPEND_IF_EXISTS_OR_ADD),
        )
        for name, value in sorted(pairs)
    ]


def apply_header_filters(route: Route, request: HeaderModifier | None, response: HeaderModifier | None) -> None:
    """RequestHeaderModifier / ResponseHeaderModifier as route-level header operations."""
    if request is not None:
        route.request_headers_to_add = _header_options(request)
        route.request_headers_to_remove = list(request.remove)
    if response is not None:
        route.response_headers_to_add = _header_options(response)
        route.response_headers_to_remove = list(response.remove)


__all__ = ["apply_header_filters", "route_match"]
