"""Local YAML config: ztunnel's `LOCAL_XDS_PATH` format (workloads, services, policies; camelCase) plus a
`proxy:` section for this process (node, bind addresses, certificates, xDS). Errors name the file and field.

```yaml
proxy:
  node: node-a                      # workloads with this node are local (served on 15008/15006)
  bindIp: 127.0.0.2                 # default IP for every listener below
  outbound: 127.0.0.2:15001         # each listener can be set as ip:port (or null to disable)
  socks5: 127.0.0.2:15080
  admin: 127.0.0.2:15000
  metrics: 127.0.0.2:15020
  readiness: 127.0.0.2:15021
  inboundPort: 15008                # inbound listeners bind <local workload ip>:15008 and :15006
  plaintextPort: 15006
  hbonePort: 15008                  # the port we dial on peers
  workload: default/sleep           # default source workload (when the client IP is not a local workload)
  rootCert: certs/root.pem          # paths are relative to this file
  certificates:
  - {cert: certs/sleep.pem, key: certs/sleep.key}
  xds: 127.0.0.1:15010              # optional delta ADS server (merged over the static resources)
  inpodSocket: /var/run/ztunnel/ztunnel.sock  # optional: in-pod mode, the node agent enrols pods here
workloads: [...]                    # as ztunnel's LocalWorkload
services: [...]
policies: [...]
```
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ztunnel.errors import ConfigError
from ztunnel.rbac import cidr
from ztunnel.state import (
    Action,
    IPAddr,
    Match,
    Policy,
    Protocol,
    ProxyState,
    Scope,
    Service,
    StringMatch,
    Waypoint,
    Workload,
)

Addr = tuple[str, int]


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ProxySettings:
    node: str = ""
    outbound: Addr | None = None
    socks5: Addr | None = None
    admin: Addr | None = None
    metrics: Addr | None = None
    readiness: Addr | None = None
    inbound_port: int = 15008
    plaintext_port: int = 15006
    hbone_port: int = 15008
    workload: str = ""  # "namespace/name"
    root_cert: Path | None = None
    certificates: tuple[CertPair, ...] = ()
    xds: str | None = None
    handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    pool_max_streams: int = 100
    keepalive_interval: float = 10.0
    keepalive_timeout: float = 20.0
    inpod_socket: Path | None = None  # in-pod capture: the enrolment socket (ztunnel/inpod)


@dataclass
class LoadedConfig:
    proxy: ProxySettings
    state: ProxyState
    raw: dict[str, Any] = field(default_factory=dict)


class _Ctx:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(self.where, path, problem)

    def obj(self, v: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(path, f"expected a mapping, got {type(v).__name__}")
        for k in v:
            if k not in allowed:
                raise self.fail(f"{path}.{k}", "unknown field")
        return v

    def lst(self, v: Any, path: str) -> list[Any]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.fail(path, f"expected a list, got {type(v).__name__}")
        return v

    def string(self, v: Any, path: str, required: bool = False) -> str:
        if v is None:
            if required:
                raise self.fail(path, "required")
            return ""
        if not isinstance(v, str):
            raise self.fail(path, f"expected a string, got {v!r}")
        return v

    def integer(self, v: Any, path: str, lo: int = 0, hi: int = 65535) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(path, f"expected an integer in [{lo}, {hi}], got {v!r}")
        return v

    def seconds(self, v: Any, path: str) -> float:
        """A duration in seconds: a positive, finite number (YAML gives int or float)."""
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1e9:
            raise self.fail(path, f"expected a number of seconds > 0, got {v!r}")
        return float(v)

    def ip(self, v: Any, path: str) -> IPAddr:
        s = v.rsplit("/", 1)[-1] if isinstance(v, str) else v  # accept "network/ip"
        try:
            return ipaddress.ip_address(s)
        except ValueError:
            raise self.fail(path, f"{v!r} is not an IP address") from None

    def addr(self, v: Any, path: str, default_ip: str) -> Addr | None:
        if v is None:
            return None
        if isinstance(v, int):
            return (default_ip, self.integer(v, path, 1))
        s = self.string(v, path)
        host, sep, port = s.rpartition(":")
        if not sep:
            raise self.fail(path, f"expected ip:port, got {s!r}")
        self.ip(host.strip("[]"), path)
        try:
            return (host.strip("[]"), self.integer(int(port), path, 1))
        except ValueError:
            raise self.fail(path, f"bad port in {s!r}") from None

    def portmap(self, v: Any, path: str) -> dict[int, int]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(path, "expected a map of servicePort: targetPort")
        return {self.integer(_int(k), f"{path}.{k}", 1): self.integer(_int(t), f"{path}.{k}") for k, t in v.items()}

    def waypoint(self, v: Any, path: str) -> Waypoint | None:
        if v is None:
            return None
        d = self.obj(v, path, {"destination", "hboneMtlsPort"})
        dest = self.string(d.get("destination"), f"{path}.destination", required=True)
        port = self.integer(d.get("hboneMtlsPort", 15008), f"{path}.hboneMtlsPort", 1)
        ns, _, rest = dest.partition("/")
        try:
            return Waypoint(address=ipaddress.ip_address(rest), hbone_port=port)
        except ValueError:
            if not ns or not rest:
                raise self.fail(f"{path}.destination", f"expected network/ip or namespace/hostname: {dest!r}") from None
            return Waypoint(hostname=dest, hbone_port=port)


def _int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


_WL_FIELDS = {
    "uid",
    "name",
    "namespace",
    "serviceAccount",
    "trustDomain",
    "workloadIps",
    "protocol",
    "node",
    "network",
    "clusterId",
    "workloadName",
    "workloadType",
    "canonicalName",
    "canonicalRevision",
    "status",
    "capacity",
    "waypoint",
    "authorizationPolicies",
    "services",
    "locality",
    "applicationTunnel",
    "hostname",
    "nativeTunnel",
}
_SVC_FIELDS = {
    "name",
    "namespace",
    "hostname",
    "vips",
    "ports",
    "subjectAltNames",
    "waypoint",
    "canonical",
    "loadBalancer",
    "ipFamilies",
    "visibility",
}
_POL_FIELDS = {"name", "namespace", "scope", "action", "rules", "dryRun"}
_MATCH_FIELDS = {
    "namespaces",
    "notNamespaces",
    "principals",
    "notPrincipals",
    "sourceIps",
    "notSourceIps",
    "destinationIps",
    "notDestinationIps",
    "destinationPorts",
    "notDestinationPorts",
    "serviceAccounts",
    "notServiceAccounts",
}
_PROXY_FIELDS = {
    "node",
    "bindIp",
    "outbound",
    "socks5",
    "admin",
    "metrics",
    "readiness",
    "inboundPort",
    "plaintextPort",
    "hbonePort",
    "workload",
    "rootCert",
    "certificates",
    "xds",
    "handshakeTimeout",
    "connectTimeout",
    "poolMaxStreams",
    "keepaliveInterval",
    "keepaliveTimeout",
    "inpodSocket",
}


def parse_workload(c: _Ctx, v: Any, path: str) -> Workload:
    d = c.obj(v, path, _WL_FIELDS)
    name = c.string(d.get("name"), f"{path}.name", required=True)
    ns = c.string(d.get("namespace"), f"{path}.namespace", required=True)
    ips = tuple(c.ip(x, f"{path}.workloadIps[{i}]") for i, x in enumerate(c.lst(d.get("workloadIps"), path)))
    proto = c.string(d.get("protocol", "TCP"), f"{path}.protocol")
    if proto not in ("TCP", "HBONE"):
        raise c.fail(f"{path}.protocol", f"expected TCP or HBONE, got {proto!r}")
    status = c.string(d.get("status", "Healthy"), f"{path}.status")
    if status not in ("Healthy", "Unhealthy"):
        raise c.fail(f"{path}.status", f"expected Healthy or Unhealthy, got {status!r}")
    services = d.get("services") or {}
    if not isinstance(services, dict):
        raise c.fail(f"{path}.services", "expected a map of namespace/hostname: {servicePort: targetPort}")
    pols = tuple(c.string(p, f"{path}.authorizationPolicies") for p in c.lst(d.get("authorizationPolicies"), path))
    return Workload(
        uid=c.string(d.get("uid"), f"{path}.uid") or f"{ns}/{name}",
        name=name,
        namespace=ns,
        ips=ips,
        service_account=c.string(d.get("serviceAccount", "default"), f"{path}.serviceAccount"),
        trust_domain=c.string(d.get("trustDomain", "cluster.local"), f"{path}.trustDomain"),
        protocol=Protocol(proto),
        node=c.string(d.get("node"), f"{path}.node"),
        network=c.string(d.get("network"), f"{path}.network"),
        cluster_id=c.string(d.get("clusterId", "Kubernetes"), f"{path}.clusterId"),
        canonical_name=c.string(d.get("canonicalName"), f"{path}.canonicalName"),
        canonical_revision=c.string(d.get("canonicalRevision"), f"{path}.canonicalRevision"),
        workload_name=c.string(d.get("workloadName"), f"{path}.workloadName"),
        workload_type=c.string(d.get("workloadType", "deployment"), f"{path}.workloadType"),
        healthy=status == "Healthy",
        waypoint=c.waypoint(d.get("waypoint"), f"{path}.waypoint"),
        authorization_policies=pols,
        services={
            c.string(k, f"{path}.services"): c.portmap(pm, f"{path}.services[{k!r}]") for k, pm in services.items()
        },
    )


def parse_service(c: _Ctx, v: Any, path: str) -> Service:
    d = c.obj(v, path, _SVC_FIELDS)
    vips = d.get("vips")
    if vips is None:
        raise c.fail(f"{path}.vips", "required")
    if d.get("ports") is None:
        raise c.fail(f"{path}.ports", "required")
    return Service(
        name=c.string(d.get("name"), f"{path}.name", required=True),
        namespace=c.string(d.get("namespace"), f"{path}.namespace", required=True),
        hostname=c.string(d.get("hostname"), f"{path}.hostname", required=True),
        vips=tuple(c.ip(x, f"{path}.vips[{i}]") for i, x in enumerate(c.lst(vips, f"{path}.vips"))),
        ports=c.portmap(d.get("ports"), f"{path}.ports"),
        subject_alt_names=tuple(c.string(s, f"{path}.subjectAltNames") for s in c.lst(d.get("subjectAltNames"), path)),
        waypoint=c.waypoint(d.get("waypoint"), f"{path}.waypoint"),
    )


def _string_match(c: _Ctx, v: Any, path: str) -> StringMatch:
    if not isinstance(v, dict) or len(v) != 1:
        raise c.fail(path, "expected one of {Exact|Prefix|Suffix: str} or {Presence: []}")
    ((k, val),) = v.items()
    kind = {"Exact": "exact", "Prefix": "prefix", "Suffix": "suffix", "Presence": "presence"}.get(k)
    if kind is None:
        raise c.fail(f"{path}.{k}", "unknown string match")
    return StringMatch(kind, "" if kind == "presence" else c.string(val, f"{path}.{k}"))


def _match(c: _Ctx, v: Any, path: str) -> Match:
    d = c.obj(v, path, _MATCH_FIELDS)

    def sm(key: str) -> tuple[StringMatch, ...]:
        return tuple(_string_match(c, x, f"{path}.{key}[{i}]") for i, x in enumerate(c.lst(d.get(key), path)))

    def nets(key: str) -> tuple[Any, ...]:
        out = []
        for i, x in enumerate(c.lst(d.get(key), path)):
            try:
                out.append(cidr(c.string(x, f"{path}.{key}[{i}]")))
            except ValueError:
                raise c.fail(f"{path}.{key}[{i}]", f"{x!r} is not a CIDR") from None
        return tuple(out)

    def ports(key: str) -> tuple[int, ...]:
        return tuple(c.integer(x, f"{path}.{key}[{i}]") for i, x in enumerate(c.lst(d.get(key), path)))

    def sas(key: str) -> tuple[tuple[str, str], ...]:
        out = []
        for i, x in enumerate(c.lst(d.get(key), path)):
            e = c.obj(x, f"{path}.{key}[{i}]", {"namespace", "serviceAccount"})
            out.append((c.string(e.get("namespace"), key), c.string(e.get("serviceAccount"), key)))
        return tuple(out)

    return Match(
        namespaces=sm("namespaces"),
        not_namespaces=sm("notNamespaces"),
        principals=sm("principals"),
        not_principals=sm("notPrincipals"),
        source_ips=nets("sourceIps"),
        not_source_ips=nets("notSourceIps"),
        destination_ips=nets("destinationIps"),
        not_destination_ips=nets("notDestinationIps"),
        destination_ports=ports("destinationPorts"),
        not_destination_ports=ports("notDestinationPorts"),
        service_accounts=sas("serviceAccounts"),
        not_service_accounts=sas("notServiceAccounts"),
    )


def parse_policy(c: _Ctx, v: Any, path: str) -> Policy:
    d = c.obj(v, path, _POL_FIELDS)
    scope = c.string(d.get("scope", "Global"), f"{path}.scope")
    action = c.string(d.get("action", "Allow"), f"{path}.action")
    try:
        sc, ac = Scope(scope), Action(action)
    except ValueError:
        bad = "scope" if scope not in {s.value for s in Scope} else "action"
        raise c.fail(f"{path}.{bad}", f"unknown value {d.get(bad)!r}") from None
    rules = tuple(
        tuple(
            tuple(_match(c, m, f"{path}.rules[{i}][{j}][{k}]") for k, m in enumerate(c.lst(cl, path)))
            for j, cl in enumerate(c.lst(r, path))
        )
        for i, r in enumerate(c.lst(d.get("rules"), f"{path}.rules"))
    )
    return Policy(
        name=c.string(d.get("name"), f"{path}.name", required=True),
        namespace=c.string(d.get("namespace"), f"{path}.namespace", required=True),
        scope=sc,
        action=ac,
        rules=rules,
        dry_run=bool(d.get("dryRun", False)),
    )


def parse_proxy(c: _Ctx, v: Any, base: Path) -> ProxySettings:
    d = c.obj(v or {}, "proxy", _PROXY_FIELDS)
    bind = c.string(d.get("bindIp", "127.0.0.1"), "proxy.bindIp")
    c.ip(bind, "proxy.bindIp")

    def a(key: str, default: int) -> Addr | None:
        if key in d:
            return c.addr(d[key], f"proxy.{key}", bind)
        return (bind, default)

    def p(s: Any, path: str) -> Path:
        q = Path(c.string(s, path, required=True))
        return q if q.is_absolute() else base / q

    certs = []
    for i, e in enumerate(c.lst(d.get("certificates"), "proxy.certificates")):
        e = c.obj(e, f"proxy.certificates[{i}]", {"cert", "key"})
        certs.append(
            CertPair(
                p(e.get("cert"), f"proxy.certificates[{i}].cert"),
                p(e.get("key"), f"proxy.certificates[{i}].key"),
            )
        )
    return ProxySettings(
        node=c.string(d.get("node"), "proxy.node"),
        outbound=a("outbound", 15001),
        socks5=a("socks5", 15080),
        admin=a("admin", 15000),
        metrics=a("metrics", 15020),
        readiness=a("readiness", 15021),
        inbound_port=c.integer(d.get("inboundPort", 15008), "proxy.inboundPort", 1),
        plaintext_port=c.integer(d.get("plaintextPort", 15006), "proxy.plaintextPort", 1),
        hbone_port=c.integer(d.get("hbonePort", 15008), "proxy.hbonePort", 1),
        workload=c.string(d.get("workload"), "proxy.workload"),
        root_cert=p(d["rootCert"], "proxy.rootCert") if d.get("rootCert") else None,
        certificates=tuple(certs),
        xds=c.string(d.get("xds"), "proxy.xds") or None,
        handshake_timeout=c.seconds(d.get("handshakeTimeout", 10.0), "proxy.handshakeTimeout"),
        connect_timeout=c.seconds(d.get("connectTimeout", 10.0), "proxy.connectTimeout"),
        pool_max_streams=c.integer(d.get("poolMaxStreams", 100), "proxy.poolMaxStreams", 1, 10000),
        keepalive_interval=c.seconds(d.get("keepaliveInterval", 10.0), "proxy.keepaliveInterval"),
        keepalive_timeout=c.seconds(d.get("keepaliveTimeout", 20.0), "proxy.keepaliveTimeout"),
        inpod_socket=p(d["inpodSocket"], "proxy.inpodSocket") if d.get("inpodSocket") else None,
    )


def settings_from_flags(*, xds: str, node: str, inpod_socket: Path | None = None) -> LoadedConfig:
    """What a ztunnel started from its DaemonSet's arguments alone runs with (no --config file): xDS from
    --xds, the node name from the downward API (NODE_NAME), admin on loopback, metrics and readiness on every
    address (the kubelet probes the pod IP), the ports upstream ztunnel binds. No outbound or SOCKS5
    listener and no certificates: traffic reaches this ztunnel only through in-pod capture (`inpod_socket`,
    Istio's INPOD_UDS: the node agent enrols pods there), and without a certificate (no CA client) it must not
    speak HBONE under any identity."""
    return LoadedConfig(
        ProxySettings(
            node=node,
            outbound=None,
            socks5=None,
            admin=("127.0.0.1", 15000),
            metrics=("0.0.0.0", 15020),
            readiness=("0.0.0.0", 15021),
            xds=xds,
            inpod_socket=inpod_socket,
        ),
        ProxyState([], [], []),
    )


def parse_config(data: Any, where: str, base: Path) -> LoadedConfig:
    c = _Ctx(where)
    d = c.obj(data if data is not None else {}, "(top level)", {"proxy", "workloads", "services", "policies"})
    proxy = parse_proxy(c, d.get("proxy"), base)
    wls = [parse_workload(c, w, f"workloads[{i}]") for i, w in enumerate(c.lst(d.get("workloads"), "workloads"))]
    svcs = [parse_service(c, s, f"services[{i}]") for i, s in enumerate(c.lst(d.get("services"), "services"))]
    pols = [parse_policy(c, p, f"policies[{i}]") for i, p in enumerate(c.lst(d.get("policies"), "policies"))]
    seen: dict[str, int] = {}
    for i, w in enumerate(wls):
        if w.uid in seen:
            raise c.fail(f"workloads[{i}].uid", f"duplicate uid {w.uid!r} (also workloads[{seen[w.uid]}])")
        seen[w.uid] = i
    return LoadedConfig(proxy, ProxyState(wls, svcs, pols), d)


def load_config(path: str | Path) -> LoadedConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(str(path), "(file)", e.strerror or str(e)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "(yaml)", str(e).replace("\n", " ")) from None
    return parse_config(data, str(path), path.parent)
