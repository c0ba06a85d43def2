"""`proxy-config eds` and the ENDPOINTS section of `all` (`configdump.PrintEndpointsSummary`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pyambient.proxyconfig.cluster import cluster_less
from pyambient.proxyconfig.common import message_slice
from pyambient.proxyconfig.dump import ConfigDump, g
from pyambient.render.gosort import sort_slice
from pyambient.render.tabwriter import TabWriter


@dataclass
class EndpointFilter:
    address: str = ""
    port: int = 0
    cluster: str = ""
    status: str = ""

    def verify(self, ep: dict[str, Any], cluster: str) -> bool:
        if self.address and not any(self.address.lower() == a.lower() for a in endpoint_addresses(ep)):
            return False
        if self.port:
            sock = g(g(g(ep, "endpoint"), "address"), "socket_address")
            if int(g(sock, "port_value", 0) or 0) != self.port:
                return False
        if self.cluster and self.cluster.lower() != cluster.lower():
            return False
        status = str(g(ep, "health_status", "UNKNOWN") or "UNKNOWN")
        if self.status and self.status.lower() != status.lower():
            return False
        return True


def _address_string(addr: Any) -> str:
    sock = g(addr, "socket_address")
    if sock is not None:
        return f"{g(sock, 'address', '')}:{g(sock, 'port_value', 0) or 0}"
    pipe = g(addr, "pipe")
    if pipe is not None:
        return str(g(pipe, "path", ""))
    internal = g(addr, "envoy_internal_address")
    if internal is not None:
        return f"envoy://{g(internal, 'server_listener_name', '')}/{g(internal, 'endpoint_id', '')}"
    return "unknown"


def endpoint_addresses(ep: dict[str, Any]) -> list[str]:
    endpoint = g(ep, "endpoint")
    out = [_address_string(g(endpoint, "address"))]
    for extra in g(endpoint, "additional_addresses", []) or []:
        out.append(_address_string(g(extra, "address")))
    return out


def _locality(loc: Any) -> str:
    if not isinstance(loc, dict) or not g(loc, "region", ""):
        return ""
    s = str(g(loc, "region"))
    zone = g(loc, "zone", "")
    if zone:
        s += "/" + zone
        sub = g(loc, "sub_zone", "")
        if sub:
            s += "/" + sub
    return s


def assignments(dump: ConfigDump, flt: EndpointFilter) -> list[dict[str, Any]]:
    section = dump.section("Endpoints", required=False)
    if section is None:
        return []
    clas: list[dict[str, Any]] = []
    for key in ("dynamic_endpoint_configs", "static_endpoint_configs"):
        for item in g(section, key, []) or []:
            cla = g(item, "endpoint_config")
            if isinstance(cla, dict):
                clas.append(copy.deepcopy(cla))
    out = []
    for cla in clas:
        cname = str(g(cla, "cluster_name", ""))
        total = 0
        for loc in g(cla, "endpoints", []) or []:
            key = "lb_endpoints" if "lb_endpoints" in loc else "lbEndpoints"
            kept = [ep for ep in loc.get(key, []) or [] if flt.verify(ep, cname)]
            if key in loc or kept:
                loc[key] = kept
            if not kept:
                loc.pop(key, None)
            total += len(kept)
        if total:
            out.append(cla)
    sort_slice(out, lambda a, b: cluster_less(str(g(a, "cluster_name", "")), str(g(b, "cluster_name", ""))))
    return out


def summary(dump: ConfigDump, flt: EndpointFilter, include_type: bool = False) -> str:
    w = TabWriter(0, 8, 5)
    w.write("NAME\tSTATUS\tLOCALITY\tCLUSTER\n")
    for cla in assignments(dump, flt):
        cname = str(g(cla, "cluster_name", ""))
        for loc in g(cla, "endpoints", []) or []:
            locality = _locality(g(loc, "locality"))
            for ep in g(loc, "lb_endpoints", []) or []:
                name = ",".join(endpoint_addresses(ep))
                if include_type:
                    name = "endpoint/" + name
                w.line(name, g(ep, "health_status", "UNKNOWN") or "UNKNOWN", locality, cname)
    return w.getvalue()


def dump_output(dump: ConfigDump, flt: EndpointFilter, fmt: str) -> str:
    return message_slice(assignments(dump, flt), "envoy.config.endpoint.v3.ClusterLoadAssignment", fmt)
