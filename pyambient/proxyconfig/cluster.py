"""`proxy-config cluster` (`configdump.PrintClusterSummary` / `PrintClusterDump`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyambient.proxyconfig.common import describe_management, message_slice, safely_parse_subset_key
from pyambient.proxyconfig.dump import ConfigDump, ProxyConfigError, g
from pyambient.render.gosort import sort_slice
from pyambient.render.tabwriter import TabWriter


@dataclass
class ClusterFilter:
    fqdn: str = ""
    direction: str = ""
    subset: str = ""
    port: int = 0

    def verify(self, cluster: dict[str, Any]) -> bool:
        name = str(g(cluster, "name", ""))
        if self.fqdn and self.fqdn not in name:
            return False
        if self.direction and self.direction not in name:
            return False
        if self.subset and self.subset not in name:
            return False
        if self.port and f"|{self.port}|" not in name:
            return False
        return True


def clusters(dump: ConfigDump) -> list[dict[str, Any]]:
    section = dump.section("Clusters")
    out: list[dict[str, Any]] = []
    for c in g(section, "dynamic_active_clusters", []) or []:
        cl = g(c, "cluster")
        if isinstance(cl, dict):
            out.append(cl)
    for c in g(section, "static_clusters", []) or []:
        cl = g(c, "cluster")
        if isinstance(cl, dict):
            out.append(cl)
    if not out:
        raise ProxyConfigError("no clusters found")
    return out


def cluster_less(a: str, b: str) -> bool:
    ad, asub, ahost, aport = safely_parse_subset_key(a)
    bd, bsub, bhost, bport = safely_parse_subset_key(b)
    if ahost != bhost:
        return ahost < bhost
    if asub != bsub:
        return asub < bsub
    if aport != bport:
        return aport < bport
    return ad < bd


def sorted_filtered(dump: ConfigDump, flt: ClusterFilter) -> list[dict[str, Any]]:
    items = clusters(dump)
    sort_slice(items, lambda x, y: cluster_less(str(g(x, "name", "")), str(g(y, "name", ""))))
    return [c for c in items if flt.verify(c)]


def cluster_type(cluster: dict[str, Any]) -> str:
    if g(cluster, "cluster_type") is not None:
        return "STATIC"
    t = g(cluster, "type")
    if t is None or t == 0:
        return "STATIC"
    names = {0: "STATIC", 1: "STRICT_DNS", 2: "LOGICAL_DNS", 3: "EDS", 4: "ORIGINAL_DST"}
    return names.get(t, str(t)) if isinstance(t, int) else str(t)


def summary(dump: ConfigDump, flt: ClusterFilter, include_type: bool = False) -> str:
    w = TabWriter(0, 8, 5)
    header = "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE"
    w.write(("NAME\t" + header if include_type else header) + "\n")
    for c in sorted_filtered(dump, flt):
        name = str(g(c, "name", ""))
        ctype = cluster_type(c)
        dr = describe_management(g(c, "metadata"))
        if len(name.split("|")) > 3:
            direction, subset, host, port = safely_parse_subset_key(name)
            subset = subset or "-"
            if include_type:
                w.line(f"cluster/{name}", host, port, subset, direction, ctype, dr)
            else:
                w.line(host, port, subset, direction, ctype, dr)
        else:
            if include_type and name:
                w.line(f"cluster/{name}", f"cluster/{name}", "-", "-", "-", ctype, dr)
            else:
                w.line(name, "-", "-", "-", ctype, dr)
    return w.getvalue()


def dump_output(dump: ConfigDump, flt: ClusterFilter, fmt: str) -> str:
    return message_slice(sorted_filtered(dump, flt), "envoy.config.cluster.v3.Cluster", fmt)
