"""`ztunnel-config` rendering (istioctl `writer/ztunnel/configdump`) from a ztunnel `/config_dump`.

Tables use Go tabwriter `(0, 8, 1, ' ', 0)`; `-o json` is `json.MarshalIndent(section, "", "    ")`, `-o yaml`
its `JSONToYAML`.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from pyambient.proxyconfig.dump import ProxyConfigError
from pyambient.render.gojson import marshal_indent
from pyambient.render.gosort import sort_slice
from pyambient.render.goyaml import to_yaml
from pyambient.render.tabwriter import TabWriter

SECTIONS = {
    "workloads": "workloads",
    "services": "services",
    "policies": "policies",
    "certificates": "certificates",
}


@dataclass
class WorkloadFilter:
    address: str = ""
    node: str = ""
    namespace: str = ""


def _list(dump: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = dump.get(key, [])
    if isinstance(value, dict):  # older ztunnels keyed some sections by address
        value = list(value.values())
    if not isinstance(value, list):
        raise ProxyConfigError(f"ztunnel config dump field {key!r} is not a list")
    return [v for v in value if isinstance(v, dict)]


def _waypoint_destination(wp: Any) -> str:
    dest = wp.get("destination", "") if isinstance(wp, dict) else ""
    if isinstance(dest, dict):  # {"address": "net/ip"} or {"hostname": {...}}
        if "address" in dest:
            return str(dest["address"])
        host = dest.get("hostname", {})
        return (
            f"{host.get('namespace', '')}/{host.get('hostname', '')}" if isinstance(host, dict) else str(host)
        )
    return str(dest)


def waypoint_name(waypoint: Any, services: list[dict[str, Any]]) -> str:
    if not waypoint:
        return "None"
    dest = _waypoint_destination(waypoint)
    for svc in services:
        if dest in (svc.get("vips") or []):
            return str(svc.get("name", ""))
        if dest == f"{svc.get('namespace', '')}/{svc.get('hostname', '')}":
            return str(svc.get("name", ""))
    return "NA"


def workloads_table(dump: dict[str, Any], flt: WorkloadFilter) -> str:
    services = _list(dump, "services")
    items = []
    for wl in _list(dump, "workloads"):
        ips = [str(i) for i in wl.get("workloadIps", []) or []]
        if flt.address and flt.address not in ips:
            continue
        if flt.node and flt.node != wl.get("node", ""):
            continue
        if flt.namespace and flt.namespace != wl.get("namespace", ""):
            continue
        items.append(wl)

    def less(a: dict[str, Any], b: dict[str, Any]) -> bool:
        an = f"{a.get('namespace', '')}.{a.get('name', '')}"
        bn = f"{b.get('namespace', '')}.{b.get('name', '')}"
        if an != bn:
            return an < bn
        return str(a.get("node", "")) < str(b.get("node", ""))

    sort_slice(items, less)
    w = TabWriter(0, 8, 1)
    w.write("NAMESPACE\tPOD NAME\tADDRESS\tNODE\tWAYPOINT\tPROTOCOL\n")
    for wl in items:
        ips = wl.get("workloadIps", []) or []
        w.line(
            wl.get("namespace", ""),
            wl.get("name", ""),
            ips[0] if ips else "",
            wl.get("node", ""),
            waypoint_name(wl.get("waypoint"), services),
            wl.get("protocol", "TCP"),
        )
    return w.getvalue()


def _namespace_then_name(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The order istioctl lists services and policies in: by namespace, then by name."""
    if a.get("namespace", "") != b.get("namespace", ""):
        return str(a.get("namespace", "")) < str(b.get("namespace", ""))
    return str(a.get("name", "")) < str(b.get("name", ""))


def services_table(dump: dict[str, Any], namespace: str = "") -> str:
    services = _list(dump, "services")
    items = [s for s in services if not namespace or s.get("namespace", "") == namespace]
    sort_slice(items, _namespace_then_name)
    w = TabWriter(0, 8, 1)
    w.write("NAMESPACE\tSERVICE NAME\tSERVICE VIP\tWAYPOINT\tENDPOINTS\n")
    for svc in items:
        vips = svc.get("vips", []) or []
        vip = str(vips[0]).split("/", 1)[-1] if vips else ""
        endpoints = svc.get("endpoints", {}) or {}
        eps = list(endpoints.values()) if isinstance(endpoints, dict) else list(endpoints)
        healthy = sum(1 for e in eps if isinstance(e, dict) and e.get("status", "Healthy") == "Healthy")
        w.line(
            svc.get("namespace", ""),
            svc.get("name", ""),
            vip,
            waypoint_name(svc.get("waypoint"), services),
            f"{healthy}/{len(eps)}",
        )
    return w.getvalue()


def policies_table(dump: dict[str, Any], namespace: str = "") -> str:
    items = [p for p in _list(dump, "policies") if not namespace or p.get("namespace", "") == namespace]
    sort_slice(items, _namespace_then_name)
    w = TabWriter(0, 8, 1)
    w.write("NAMESPACE\tPOLICY NAME\tACTION\tSCOPE\n")
    for p in items:
        w.line(p.get("namespace", ""), p.get("name", ""), p.get("action", ""), p.get("scope", ""))
    return w.getvalue()


def _serial_hex(serial: Any) -> str:
    text = str(serial)
    if text.isdigit():
        return f"{int(text):x}"
    return text.lower()


def _cert_valid(cert: dict[str, Any], now: dt.datetime) -> bool:
    try:
        start = dt.datetime.fromisoformat(str(cert.get("validFrom", "")).replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(str(cert.get("expirationTime", "")).replace("Z", "+00:00"))
    except ValueError:
        return False
    return start < now < end


def _cert_fields(cert: dict[str, Any]) -> dict[str, Any]:
    """Fill serialNumber/validFrom/expirationTime from the PEM when the dump omits them."""
    if cert.get("serialNumber") and cert.get("expirationTime"):
        return cert
    try:
        c = x509.load_pem_x509_certificate(base64.b64decode(str(cert.get("pem", ""))))
    except ValueError:
        return cert
    return {
        **cert,
        "serialNumber": str(c.serial_number),
        "validFrom": c.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expirationTime": c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def certificates_table(dump: dict[str, Any], now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    w = TabWriter(0, 8, 1)
    w.write("CERTIFICATE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE\n")
    for entry in _list(dump, "certificates"):
        chain = [_cert_fields(c) for c in entry.get("certChain", []) or [] if isinstance(c, dict)]
        roots = [_cert_fields(c) for c in entry.get("rootCerts", []) or [] if isinstance(c, dict)]
        typed = [("Leaf" if i == 0 else "Intermediate", c) for i, c in enumerate(chain)]
        typed += [("Root", c) for c in roots]
        for kind, c in typed:
            w.line(
                entry.get("identity", ""),
                kind,
                entry.get("state", ""),
                "true" if _cert_valid(c, now) else "false",
                _serial_hex(c.get("serialNumber", "")),
                c.get("expirationTime", ""),
                c.get("validFrom", ""),
            )
    return w.getvalue()


def render(dump: Any, what: str, fmt: str, flt: WorkloadFilter | None = None) -> str:
    if not isinstance(dump, dict):
        raise ProxyConfigError("ztunnel config dump is not a JSON object")
    if fmt not in ("short", "json", "yaml"):
        raise ProxyConfigError(f'output format "{fmt}" not supported')
    flt = flt or WorkloadFilter()
    if fmt != "short":
        data: Any = dump if what == "all" else dump.get(SECTIONS[what], [])
        return (marshal_indent(data) if fmt == "json" else to_yaml(data)) + "\n"
    tables = {
        "workloads": lambda: workloads_table(dump, flt),
        "services": lambda: services_table(dump, flt.namespace),
        "policies": lambda: policies_table(dump, flt.namespace),
        "certificates": lambda: certificates_table(dump),
    }
    if what != "all":
        return tables[what]()
    return "\n".join(tables[k]() for k in ("workloads", "services", "policies", "certificates"))
