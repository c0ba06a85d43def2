"""`proxy-config listener` (`configdump.PrintListenerSummary`, `PrintRemoteListenerSummary`, dump)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyambient.proxyconfig.common import message_slice
from pyambient.proxyconfig.dump import ConfigDump, ProxyConfigError, g
from pyambient.render.gosort import sort_slice
from pyambient.render.tabwriter import TabWriter

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
IP_MATCHER = "type.googleapis.com/xds.type.matcher.v3.IPMatcher"

_KNOWN_ALPN = (
    (["http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"], "HTTP TLS"),
    (["istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"], "Istio HTTP Plain"),
    (["istio-peer-exchange", "istio"], "TCP TLS"),
    (["http/1.0", "http/1.1", "h2c"], "HTTP"),
)


@dataclass
class ListenerFilter:
    address: str = ""
    port: int = 0
    type: str = ""
    verbose: bool = True

    def verify(self, listener: dict[str, Any]) -> bool:
        if self.address:
            addrs = [primary_address(listener)] + additional_addresses(listener)
            if not any(self.address.lower() == a.lower() for a in addrs):
                return False
        if self.port and primary_port(listener) != self.port:
            return False
        if self.type and self.type.lower() != listener_type(listener).lower():
            return False
        return True


def listeners(dump: ConfigDump) -> list[dict[str, Any]]:
    try:
        section = dump.section("Listeners")
    except ProxyConfigError as exc:
        raise ProxyConfigError(f"listener dump: {exc}") from None
    out: list[dict[str, Any]] = []
    for item in g(section, "dynamic_listeners", []) or []:
        lis = g(g(item, "active_state"), "listener")
        if isinstance(lis, dict):
            out.append(lis)
    for item in g(section, "static_listeners", []) or []:
        lis = g(item, "listener")
        if isinstance(lis, dict):
            out.append(lis)
    if not out:
        raise ProxyConfigError("no listeners found")
    return out


def primary_address(listener: dict[str, Any]) -> str:
    addr = g(listener, "address")
    sock = g(addr, "socket_address")
    if sock is not None:
        return str(g(sock, "address", ""))
    pipe = g(addr, "pipe")
    if pipe is not None:
        return str(g(pipe, "path", ""))
    return ""


def additional_addresses(listener: dict[str, Any]) -> list[str]:
    out = []
    for a in g(listener, "additional_addresses", []) or []:
        sock = g(g(a, "address"), "socket_address")
        out.append(str(g(sock, "address", "")) if sock is not None else "")
    return out


def primary_port(listener: dict[str, Any]) -> int:
    sock = g(g(listener, "address"), "socket_address")
    try:
        return int(g(sock, "port_value", 0) or 0)
    except (TypeError, ValueError):
        return 0


def chains(listener: dict[str, Any]) -> list[dict[str, Any]]:
    out = [c for c in g(listener, "filter_chains", []) or [] if isinstance(c, dict)]
    default = g(listener, "default_filter_chain")
    if isinstance(default, dict):
        out.append(default)
    return out


def _tcp_is_blackhole(f: dict[str, Any]) -> bool:
    return "BlackHoleCluster" in json.dumps(g(f, "typed_config", {}))


def listener_type(listener: dict[str, Any]) -> str:
    http = tcp = 0
    for chain in chains(listener):
        for f in g(chain, "filters", []) or []:
            name = g(f, "name", "")
            if name == HCM:
                http += 1
            elif name == TCP_PROXY and not _tcp_is_blackhole(f):
                tcp += 1
    if http and tcp:
        return "HTTP+TCP"
    if http:
        return "HTTP"
    if tcp:
        return "TCP"
    return "UNKNOWN"


def _wrapped(value: Any) -> Any:
    """The value of a `UInt32Value` (Envoy prints it bare; accept `{"value": n}` too); absent is 0."""
    if isinstance(value, dict):
        return value.get("value", 0)
    return 0 if value is None else value


def get_matches(m: Any) -> str:
    parts: list[str] = []
    m = m if isinstance(m, dict) else {}
    sni = g(m, "server_names", []) or []
    if sni:
        parts.append("SNI: " + ",".join(sni))
    tp = g(m, "transport_protocol", "")
    if tp:
        parts.append("Trans: " + tp)
    alpn = g(m, "application_protocols", []) or []
    if alpn:
        label = next((name for lst, name in _KNOWN_ALPN if lst == alpn), None)
        parts.append("App: " + (label if label is not None else ",".join(alpn)))
    port = ""
    dp = g(m, "destination_port")
    if dp is not None:
        port = f":{_wrapped(dp)}"
    ranges = g(m, "prefix_ranges", []) or []
    if ranges:
        rs = [f"{g(r, 'address_prefix', '')}/{_wrapped(g(r, 'prefix_len', 0))}" for r in ranges]
        parts.append("Addr: " + ",".join(rs) + port)
    elif port:
        parts.append(f"Addr: *{port}")
    if not parts:
        return "ALL"
    return "; ".join(parts)


def _cluster_cell(cluster: str) -> str:
    return cluster if "Cluster" in cluster else f"Cluster: {cluster}"


def describe_match(m: Any) -> str:
    conds: list[str] = []
    prefix = g(m, "prefix", "")
    if prefix:
        conds.append(f"{prefix}*")
    psp = g(m, "path_separated_prefix", "")
    if psp:
        conds.append(f"PathPrefix:{psp}")
    path = g(m, "path", "")
    if path:
        conds.append(path)
    regex = g(m, "safe_regex")
    if regex is not None:
        conds.append("regex " + str(g(regex, "regex", "")))
    return " ".join(conds)


def describe_route_config(rc: dict[str, Any]) -> str:
    vhosts = g(rc, "virtual_hosts", []) or []
    if len(vhosts) == 1 and (g(vhosts[0], "domains", []) or []) == ["*"]:
        routes = g(vhosts[0], "routes", []) or []
        if len(routes) == 1 and g(g(routes[0], "match"), "prefix") == "/":
            action = g(routes[0], "route")
            cluster = g(action, "cluster")
            if isinstance(action, dict) and isinstance(cluster, str):
                return _cluster_cell(cluster)
    descs = []
    for vh in vhosts:
        domains = g(vh, "domains", []) or []
        routes = ", ".join(describe_match(g(r, "match")) for r in g(vh, "routes", []) or [])
        descs.append(routes if domains == ["*"] else f"{'/'.join(domains)} {routes}")
    return "Inline Route: " + "; ".join(descs)


def get_filter_type(filters: list[dict[str, Any]]) -> str:
    for f in filters or []:
        name = g(f, "name", "")
        if name == HCM:
            hcm = g(f, "typed_config", {}) or {}
            rc = g(hcm, "route_config")
            if isinstance(rc, dict):
                return describe_route_config(rc)
            rds = g(g(hcm, "rds"), "route_config_name", "")
            if rds:
                return f"Route: {rds}"
            return "HTTP"
        if name == TCP_PROXY and not _tcp_is_blackhole(f):
            return _cluster_cell(str(g(g(f, "typed_config", {}), "cluster", "")))
    return "Non-HTTP/Non-TCP"


def _listener_less(a: dict[str, Any], b: dict[str, Any]) -> bool:
    pa, pb = primary_port(a), primary_port(b)
    if pa != pb:
        return pa < pb
    aa, ab = primary_address(a), primary_address(b)
    if aa != ab:
        return aa < ab
    return listener_type(a) < listener_type(b)


def summary(dump: ConfigDump, flt: ListenerFilter, include_type: bool = False) -> str:
    items = listeners(dump)
    sort_slice(items, _listener_less)
    w = TabWriter(0, 8, 1)
    prefix = "NAME\t" if include_type else ""
    if flt.verbose:
        w.write(prefix + "ADDRESSES\tPORT\tMATCH\tDESTINATION\n")
    else:
        w.write(prefix + "ADDRESSES\tPORT\tTYPE\n")
    for lis in items:
        if not flt.verify(lis):
            continue
        addrs = ",".join([primary_address(lis)] + additional_addresses(lis))
        port = primary_port(lis)
        name = f"listener/{g(lis, 'name', '')}"
        head = [name] if include_type else []
        if flt.verbose:
            rows = [
                (get_matches(g(c, "filter_chain_match")), get_filter_type(g(c, "filters", [])))
                for c in chains(lis)
            ]
            sort_slice(rows, lambda x, y: x[1] > y[1])
            for match, dest in rows:
                w.line(*head, addrs, port, match, dest)
        else:
            w.line(*head, addrs, port, listener_type(lis))
    return w.getvalue()


def dump_output(dump: ConfigDump, flt: ListenerFilter, fmt: str) -> str:
    items = [lis for lis in listeners(dump) if flt.verify(lis)]
    return message_slice(items, "envoy.config.listener.v3.Listener", fmt)


# --- --waypoint view -------------------------------------------------------------------------


def _is_internal(listener: dict[str, Any]) -> bool:
    return g(listener, "internal_listener") is not None


def _action_name(on_match: Any) -> str | None:
    action = g(on_match, "action")
    if isinstance(action, dict):
        return str(g(action, "name", ""))
    return None


def _tree_entries(tree: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    em = g(tree, "exact_match_map")
    if isinstance(em, dict):
        return "=", list((g(em, "map", {}) or {}).items())
    pm = g(tree, "prefix_match_map")
    if isinstance(pm, dict):
        return "^", list((g(pm, "map", {}) or {}).items())
    cm = g(tree, "custom_match")
    if isinstance(cm, dict):
        tc = g(cm, "typed_config", {}) or {}
        if tc.get("@type") != IP_MATCHER:
            raise ProxyConfigError(f"unhandled custom matcher {tc.get('@type', '')}")
        entries: dict[str, Any] = {}
        for rm in g(tc, "range_matchers", []) or []:
            for r in g(rm, "ranges", []) or []:
                plen = g(r, "prefix_len")
                plen = g(plen, "value", 0) if isinstance(plen, dict) else (plen or 0)
                key = str(g(r, "address_prefix", ""))
                if int(plen) not in (32, 128):
                    key += f"/{plen}"
                entries[key] = g(rm, "on_match")
        return "=", list(entries.items())
    return "", []


def _recurse(name: str, m: Any) -> tuple[list[str], bool]:
    nm = g(m, "on_no_match")
    if _action_name(nm) == name:
        return ["ANY"], True
    if isinstance(g(nm, "matcher"), dict):
        res, found = _recurse(name, g(nm, "matcher"))
        return (res, True) if found else (["NONE"], True)
    tree = g(m, "matcher_tree")
    if not isinstance(tree, dict):
        return [], False
    input_name = str(g(g(tree, "input"), "name", ""))
    op, entries = _tree_entries(tree)
    out: list[str] = []
    for key, om in entries:
        if _action_name(om) == name:
            out.append(f"{input_name}{op}{key}")
        elif isinstance(g(om, "matcher"), dict):
            children, found = _recurse(name, g(om, "matcher"))
            if found:
                out.extend(f"{input_name}{op}{key} -> {child}" for child in children)
    return out, bool(out)


def _new_matcher(chain: dict[str, Any], listener: dict[str, Any]) -> list[str]:
    fcm = g(listener, "filter_chain_matcher")
    if not isinstance(fcm, dict):
        return [get_matches(g(chain, "filter_chain_match"))]
    name = str(g(chain, "name", ""))
    nm = g(fcm, "on_no_match")
    if _action_name(nm) == name:
        return ["UNMATCHED"]
    if isinstance(g(nm, "matcher"), dict):
        res, found = _recurse(name, g(nm, "matcher"))
        return res if found else ["NONE"]
    res, found = _recurse(name, fcm)
    return res if found else ["NONE"]


def waypoint_summary(dump: ConfigDump) -> str:
    items = listeners(dump)

    def less(a: dict[str, Any], b: dict[str, Any]) -> bool:
        if _is_internal(a) and _is_internal(b):
            return str(g(a, "name", "")) < str(g(b, "name", ""))
        return _listener_less(a, b)

    sort_slice(items, less)
    w = TabWriter(0, 8, 1)
    w.write("LISTENER\tCHAIN\tMATCH\tDESTINATION\n")
    for lis in items:
        lname = "envoy://" + str(g(lis, "name", ""))
        cs = chains(lis)
        if _is_internal(lis) and len(cs) == 1 and g(cs[0], "name", "") == lname:
            lname = "internal"
        for chain in cs:
            dest = get_filter_type(g(chain, "filters", []))
            for match in _new_matcher(chain, lis):
                w.line(lname, g(chain, "name", ""), match, dest)
    return w.getvalue()
