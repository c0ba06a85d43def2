"""`proxy-config endpoint`: Envoy's `/clusters?format=json` (`clusters.ConfigWriter`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyambient.proxyconfig.common import message_slice
from pyambient.proxyconfig.dump import ProxyConfigError, g
from pyambient.render.gosort import sort_slice
from pyambient.render.tabwriter import TabWriter


@dataclass
class EndpointFilter:
    address: str = ""
    port: int = 0
    cluster: str = ""
    status: str = ""

    def verify(self, host: dict[str, Any], cluster: str) -> bool:
        ip, port = _address(host)
        if self.address and self.address.lower() != ip.lower():
            return False
        if self.port and port != self.port:
            return False
        if self.cluster and self.cluster.lower() != cluster.lower():
            return False
        if self.status and self.status.lower() != _status(host).lower():
            return False
        return True


def _address(host: dict[str, Any]) -> tuple[str, int]:
    addr = g(host, "address")
    sock = g(addr, "socket_address")
    if sock is not None:
        return str(g(sock, "address", "")), int(g(sock, "port_value", 0) or 0)
    pipe = g(addr, "pipe")
    if pipe is not None:
        return "unix://" + str(g(pipe, "path", "")), 0
    internal = g(addr, "envoy_internal_address")
    if internal is not None:
        return f"envoy://{g(internal, 'server_listener_name', '')}/{g(internal, 'endpoint_id', '')}", 0
    return "unknown", 0


def _status(host: dict[str, Any]) -> str:
    return str(g(g(host, "health_status"), "eds_health_status", "UNKNOWN") or "UNKNOWN")


def cluster_statuses(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise ProxyConfigError("clusters output is not a JSON object")
    items = g(data, "cluster_statuses", []) or []
    return [c for c in items if isinstance(c, dict)]


def summary(data: Any, flt: EndpointFilter) -> str:
    rows: list[tuple[str, int, str, str, str]] = []
    for cs in cluster_statuses(data):
        cname = str(g(cs, "name", ""))
        for host in g(cs, "host_statuses", []) or []:
            if not flt.verify(host, cname):
                continue
            ip, port = _address(host)
            outlier = "FAILED" if g(g(host, "health_status"), "failed_outlier_check") else "OK"
            rows.append((ip, port, cname, _status(host), outlier))

    def less(a: tuple[str, int, str, str, str], b: tuple[str, int, str, str, str]) -> bool:
        if a[0] != b[0]:
            return a[0] < b[0]
        if a[1] != b[1]:
            return a[1] < b[1]
        return a[2] < b[2]

    sort_slice(rows, less)
    w = TabWriter(0, 8, 5)
    w.write("ENDPOINT\tSTATUS\tOUTLIER CHECK\tCLUSTER\n")
    for ip, port, cname, status, outlier in rows:
        w.line(f"{ip}:{port}" if port else ip, status, outlier, cname)
    return w.getvalue()


def dump_output(data: Any, flt: EndpointFilter, fmt: str) -> str:
    items = []
    for cs in cluster_statuses(data):
        cname = str(g(cs, "name", ""))
        if any(flt.verify(h, cname) for h in g(cs, "host_statuses", []) or []):
            items.append(cs)
    return message_slice(items, "envoy.admin.v3.ClusterStatus", fmt)
