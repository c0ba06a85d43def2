"""An HTTPRoute (Gateway API v1.3, GAMMA: Service parents) → `model.HTTPRoute`, or a refusal.

Pure. Local files get the defaults the CRD would give them on a real API server (a rule without
`matches` matches PathPrefix "/", a match without `path` likewise, header and query conditions are
Exact, backend weight 1), so both sources mean the same thing.

A route is used whole or not at all, as Istio does (`buildHTTPVirtualServices` drops the route and
reports the error on its parents): fields the model does not implement are refused by the field
table (`xds.mesh.fields`) before parsing; values the Gateway API forbids are refused here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from xds.mesh.model import BackendRef, HeaderModifier, HTTPMatch, HTTPRoute, PathMatch, RouteRule, ValueMatch

PATH_TYPES = ("PathPrefix", "Exact", "RegularExpression")
VALUE_TYPES = ("Exact", "RegularExpression")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
# RFC 7230 token: what the CRD's header-name pattern allows.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")

# Status reasons (Gateway API / Istio `ConfigErrorReason`) the controller writes on the route's parents.
UNSUPPORTED_VALUE = "UnsupportedValue"
INVALID_FILTER = "InvalidFilter"
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"


class RouteRefused(ValueError):
    """The route cannot be served as written: it is not used, and its parents say why."""

    def __init__(self, field: str, message: str, reason: str = UNSUPPORTED_VALUE) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = reason


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RouteRefused(field, f"must be a string, got {value!r}")
    return value


def _port(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise RouteRefused(field, f"must be a port number 1-65535, got {value!r}")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RouteRefused(field, f"must be a list, got {type(value).__name__}")
    return value


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RouteRefused(field, f"must be an object, got {type(value).__name__}")
    return value


def parse_path(raw: Any, field: str) -> PathMatch:
    path = _object(raw, field)
    kind = _text(path.get("type", "PathPrefix"), f"{field}.type")
    if kind not in PATH_TYPES:
        raise RouteRefused(f"{field}.type", f"unsupported path match type {kind!r} (one of {', '.join(PATH_TYPES)})")
    value = _text(path.get("value", "/"), f"{field}.value")
    if kind != "RegularExpression" and not value.startswith("/"):
        raise RouteRefused(f"{field}.value", f"must be an absolute path starting with '/', got {value!r}")
    if kind == "PathPrefix" and ("//" in value or "/./" in value or "/../" in value or value.endswith(("/.", "/.."))):
        raise RouteRefused(f"{field}.value", f"must not contain '//', '/./' or '/../', got {value!r}")
    return PathMatch(kind, value)


def parse_value_matches(raw: Any, field: str, *, header: bool) -> tuple[ValueMatch, ...]:
    out: list[ValueMatch] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(raw, field)):
        where = f"{field}[{i}]"
        entry = _object(item, where)
        kind = _text(entry.get("type", "Exact"), f"{where}.type")
        if kind not in VALUE_TYPES:
            raise RouteRefused(f"{where}.type", f"unsupported match type {kind!r} (Exact or RegularExpression)")
        name = _text(entry.get("name"), f"{where}.name")
        if header and not _HEADER_NAME.match(name):
            raise RouteRefused(f"{where}.name", f"{name!r} is not a valid header name")
        if not name:
            raise RouteRefused(f"{where}.name", "is required")
        # Header names are case-insensitive (Envoy compares them lower-cased); query names are not.
        key = name.lower() if header else name
        if key in seen:
            # The Gateway API keeps only the first of equivalent names; Istio would AND both. Ambiguous: refused.
            raise RouteRefused(f"{where}.name", f"{name!r} appears twice in one match")
        seen.add(key)
        out.append(ValueMatch(key, kind, _text(entry.get("value"), f"{where}.value")))
    return tuple(out)


def parse_match(raw: Any, field: str) -> HTTPMatch:
    match = _object(raw, field)
    method = match.get("method")
    if method is not None:
        method = _text(method, f"{field}.method")
        if method not in METHODS:
            raise RouteRefused(f"{field}.method", f"unsupported method {method!r} (one of {', '.join(METHODS)})")
    return HTTPMatch(
        path=parse_path(match.get("path"), f"{field}.path"),
        headers=parse_value_matches(match.get("headers"), f"{field}.headers", header=True),
        query_params=parse_value_matches(match.get("queryParams"), f"{field}.queryParams", header=False),
        method=method,
    )


HEADER_FILTERS = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier"}


def parse_header_modifier(raw: Any, field: str) -> HeaderModifier:
    """Gateway API HTTPHeaderFilter: `set` replaces, `add` appends, `remove` drops; names case-insensitive."""
    modifier = _object(raw, field)
    seen: set[str] = set()

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        for i, item in enumerate(_list(modifier.get(key), f"{field}.{key}")):
            where = f"{field}.{key}[{i}]"
            entry = _object(item, where)
            name = _text(entry.get("name"), f"{where}.name")
            if not _HEADER_NAME.match(name):
                raise RouteRefused(f"{where}.name", f"{name!r} is not a valid header name")
            if name.lower() == "host":
                # Istio turns it into an authority rewrite (host_rewrite_literal): not implemented.
                raise RouteRefused(f"{where}.name", "setting or adding Host is not implemented", INVALID_FILTER)
            if name.lower() in seen:
                raise RouteRefused(f"{where}.name", f"{name!r} appears twice in one header filter", INVALID_FILTER)
            seen.add(name.lower())
            value = _text(entry.get("value"), f"{where}.value")
            if any(c in value for c in "\r\n\0"):
                raise RouteRefused(f"{where}.value", "must not contain CR, LF or NUL")
            out.append((name.lower(), value))
        return tuple(out)

    set_, add = pairs("set"), pairs("add")
    remove: list[str] = []
    for i, item in enumerate(_list(modifier.get("remove"), f"{field}.remove")):
        name = _text(item, f"{field}.remove[{i}]")
        if not _HEADER_NAME.match(name):
            raise RouteRefused(f"{field}.remove[{i}]", f"{name!r} is not a valid header name")
        if name.lower() not in remove:
            remove.append(name.lower())
    return HeaderModifier(set=set_, add=add, remove=tuple(remove))


def parse_filters(raw: Any, field: str) -> tuple[HeaderModifier | None, HeaderModifier | None]:
    """The rule's header filters (request, response); any other filter type is refused by the field table."""
    found: dict[str, HeaderModifier] = {}
    for i, item in enumerate(_list(raw, field)):
        where = f"{field}[{i}]"
        entry = _object(item, where)
        kind = _text(entry.get("type"), f"{where}.type")
        if kind not in HEADER_FILTERS:
            raise RouteRefused(f"{where}.type", f"filter {kind!r} is not implemented", INVALID_FILTER)
        if kind in found:
            raise RouteRefused(f"{where}.type", f"{kind} appears twice in one rule", INVALID_FILTER)
        for key in entry:
            if key not in ("type", HEADER_FILTERS[kind]) and entry[key] is not None:
                # The CRD's CEL rule: only the configuration named by `type` may be set.
                raise RouteRefused(f"{where}.{key}", f"must not be set for type {kind}", INVALID_FILTER)
        config = entry.get(HEADER_FILTERS[kind])
        if not isinstance(config, Mapping):
            raise RouteRefused(f"{where}.{HEADER_FILTERS[kind]}", f"is required for type {kind}", INVALID_FILTER)
        found[kind] = parse_header_modifier(config, f"{where}.{HEADER_FILTERS[kind]}")
    return found.get("RequestHeaderModifier"), found.get("ResponseHeaderModifier")


# Gateway API Duration (GEP-2257): 1 to 4 number-unit pairs, e.g. "1h30m", "500ms".
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: Any, field: str) -> float:
    text = _text(value, field)
    if not _DURATION.match(text):
        raise RouteRefused(field, f"{text!r} is not a Gateway API duration (like 10s, 1m30s, 500ms)")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(r"([0-9]+)(ms|h|m|s)", text))


def parse_timeouts(raw: Any, field: str) -> float | None:
    """The route timeout, as Istio derives it: backendRequest (there are no retries) else request; 0 is none."""
    timeouts = _object(raw, field)
    request = parse_duration(timeouts["request"], f"{field}.request") if "request" in timeouts else 0.0
    backend = (
        parse_duration(timeouts["backendRequest"], f"{field}.backendRequest") if "backendRequest" in timeouts else 0.0
    )
    if request and backend > request:
        raise RouteRefused(f"{field}.backendRequest", "must not be longer than timeouts.request")
    return (backend or request) or None


def parse_backend(raw: Any, field: str, namespace: str) -> BackendRef:
    ref = _object(raw, field)
    if ref.get("group", "") not in ("", "core"):
        raise RouteRefused(f"{field}.group", f"unsupported backend group {ref.get('group')!r} (only core Services)")
    if ref.get("kind", "Service") != "Service":
        raise RouteRefused(f"{field}.kind", f"unsupported backend kind {ref.get('kind')!r} (only Service)")
    name = _text(ref.get("name"), f"{field}.name")
    if not name:
        raise RouteRefused(f"{field}.name", "is required")
    backend_ns = _text(ref.get("namespace", namespace), f"{field}.namespace")
    if backend_ns != namespace:
        # Allowed only through a ReferenceGrant, which the model does not read: refused rather than granted.
        raise RouteRefused(
            f"{field}.namespace", "a backend in another namespace needs a ReferenceGrant: not implemented"
        )
    weight = ref.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1_000_000:
        raise RouteRefused(f"{field}.weight", f"must be an integer 0-1000000, got {weight!r}")
    port = ref.get("port")
    return BackendRef(
        namespace=backend_ns,
        name=name,
        port=_port(port, f"{field}.port") if port is not None else None,
        weight=weight,
    )


def parse_httproute(obj: Mapping[str, Any], namespace: str) -> HTTPRoute:
    """The route, or RouteRefused naming the first field that stops it being served as written."""
    meta = _object(obj.get("metadata"), "metadata")
    name = _text(meta.get("name"), "metadata.name")
    spec = _object(obj.get("spec"), "spec")
    parents: list[tuple[str, str, int | None]] = []
    for i, raw in enumerate(_list(spec.get("parentRefs"), "spec.parentRefs")):
        ref = _object(raw, f"spec.parentRefs[{i}]")
        if ref.get("kind") == "Service" and ref.get("group", "") in ("", "core"):
            port = ref.get("port")
            parents.append(
                (
                    _text(ref.get("namespace", namespace), f"spec.parentRefs[{i}].namespace"),
                    _text(ref.get("name"), f"spec.parentRefs[{i}].name"),
                    _port(port, f"spec.parentRefs[{i}].port") if port is not None else None,
                )
            )
    if not parents:
        raise RouteRefused("spec.parentRefs", "no Service parentRef (only GAMMA routes bind to waypoints)",
                           NOT_ALLOWED_BY_LISTENERS)
    rules: list[RouteRule] = []
    for r, raw_rule in enumerate(_list(spec.get("rules"), "spec.rules") or [{}]):
        rule = _object(raw_rule, f"spec.rules[{r}]")
        matches = tuple(
            parse_match(m, f"spec.rules[{r}].matches[{i}]")
            for i, m in enumerate(_list(rule.get("matches"), f"spec.rules[{r}].matches"))
        ) or (HTTPMatch(),)
        backends = tuple(
            parse_backend(b, f"spec.rules[{r}].backendRefs[{i}]", namespace)
            for i, b in enumerate(_list(rule.get("backendRefs"), f"spec.rules[{r}].backendRefs"))
        )
        request_headers, response_headers = parse_filters(rule.get("filters"), f"spec.rules[{r}].filters")
        rules.append(
            RouteRule(
                matches=matches,
                backends=backends,
                request_headers=request_headers,
                response_headers=response_headers,
                timeout=parse_timeouts(rule.get("timeouts"), f"spec.rules[{r}].timeouts"),
            )
        )
    return HTTPRoute(
        namespace=namespace,
        name=name,
        parents=tuple(parents),
        rules=tuple(rules),
        creation=str(meta.get("creationTimestamp") or ""),
    )


__all__ = ["RouteRefused", "parse_httproute", "UNSUPPORTED_VALUE", "INVALID_FILTER"]
