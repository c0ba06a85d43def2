"""`proxy-config route` (`configdump.PrintRouteSummary` / `PrintRouteDump`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyambient.proxyconfig.common import atoi, describe_management, message_slice
from pyambient.proxyconfig.dump import ConfigDump, ProxyConfigError, g
from pyambient.proxyconfig.listener import describe_match
from pyambient.render.gosort import sort_slice
from pyambient.render.tabwriter import TabWriter


@dataclass
class RouteFilter:
    name: str = ""
    verbose: bool = True

    def verify(self, rc: dict[str, Any]) -> bool:
        return not self.name or self.name == g(rc, "name", "")


def routes(dump: ConfigDump) -> list[dict[str, Any]]:
    section = dump.section("Routes")
    out: list[dict[str, Any]] = []
    for item in g(section, "dynamic_route_configs", []) or []:
        rc = g(item, "route_config")
        if isinstance(rc, dict):
            out.append(rc)
    for item in g(section, "static_route_configs", []) or []:
        rc = g(item, "route_config")
        if isinstance(rc, dict):
            out.append(rc)
    if not out:
        raise ProxyConfigError("no routes found")
    return out


def _numeric(name: str) -> int | None:
    body = name[1:] if name[:1] in "+-" else name
    return atoi(name) if body and body.isascii() and body.isdigit() else None


def sorted_routes(dump: ConfigDump) -> list[dict[str, Any]]:
    items = routes(dump)

    def less(a: dict[str, Any], b: dict[str, Any]) -> bool:
        ia, ib = _numeric(str(g(a, "name", ""))), _numeric(str(g(b, "name", "")))
        if ia is None or ib is None:
            return False
        return ia < ib

    sort_slice(items, less)
    return items


def _unexpand(kept: list[str]) -> list[str]:
    present = set(kept)
    out = []
    for h in kept:
        svc_local = h.removesuffix(".svc.cluster.local")
        svc = h.removesuffix(".svc")
        if (svc_local != h and svc_local in present) or (svc != h and svc in present):
            continue
        out.append(h)
    return out


def describe_route_domains(domains: list[str]) -> str:
    if not domains:
        return ""
    if len(domains) == 1:
        return domains[0]
    kept = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    kept = _unexpand(kept)
    if len(kept) > 2:
        return f"{kept[0]}, {kept[1]} + {len(kept) - 2} more..."
    return ", ".join(kept)


def summary(dump: ConfigDump, flt: RouteFilter, include_type: bool = False) -> str:
    items = sorted_routes(dump)
    w = TabWriter(0, 8, 5)
    prefix = "route/" if include_type else ""
    if flt.verbose:
        w.write("NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE\n")
    else:
        w.write("NAME\tVIRTUAL HOSTS\n")
    for rc in items:
        if not flt.verify(rc):
            continue
        name = prefix + str(g(rc, "name", ""))
        vhosts = g(rc, "virtual_hosts", []) or []
        if not flt.verbose:
            w.line(name, len(vhosts))
            continue
        for vh in vhosts:
            vname = g(vh, "name", "")
            domains = describe_route_domains(g(vh, "domains", []) or [])
            rs = g(vh, "routes", []) or []
            for r in rs:
                if g(g(r, "route"), "cluster") == "PassthroughCluster":
                    continue
                w.line(
                    name, vname, domains, describe_match(g(r, "match")), describe_management(g(r, "metadata"))
                )
            if not rs:
                w.line(name, vname, domains, "/*", "404")
    return w.getvalue()


def dump_output(dump: ConfigDump, flt: RouteFilter, fmt: str) -> str:
    items = [rc for rc in sorted_routes(dump) if flt.verify(rc)]
    return message_slice(items, "envoy.config.route.v3.RouteConfiguration", fmt)
