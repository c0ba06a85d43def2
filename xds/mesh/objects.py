"""Kubernetes objects (as plain dicts, the way `kubectl get -o json` shows them) → `Mesh`.

Pure: no I/O. Every object that cannot be used becomes a `ModelError` naming the object and the
field; the rest of the mesh is still built, so one bad file never takes the mesh down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from xds.mesh.fields import REFUSED_WHEN_INCOMPLETE, unhandled_fields
from xds.mesh.httproute import RouteRefused, parse_httproute
from xds.mesh.model import (
    DATAPLANE_MODE,
    FOR_SERVICE_ACCOUNT,
    GATEWAY_NAME_LABEL,
    HBONE_PORT,
    WAYPOINT_CLASS,
    WAYPOINT_FOR,
    AuthorizationPolicy,
    HTTPRoute,
    Mesh,
    ModelError,
    MtlsMode,
    NamedPort,
    Namespace,
    ObjectRef,
    PeerAuthentication,
    PolicyAction,
    PolicyRule,
    Protocol,
    Service,
    ServicePort,
    SliceEndpoint,
    TrafficType,
    Waypoint,
    Workload,
)

KubeObject = Mapping[str, Any]


class InvalidField(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _meta(obj: KubeObject) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise InvalidField("metadata.name", "is required")
    return meta


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidField(field, f"must be a map, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


def _labels(obj: KubeObject) -> dict[str, str]:
    return _str_map(_meta(obj).get("labels"), "metadata.labels")


def _annotations(obj: KubeObject) -> dict[str, str]:
    return _str_map(_meta(obj).get("annotations"), "metadata.annotations")


def _port_number(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise InvalidField(field, f"must be a port number 1-65535, got {value!r}")
    return value


# Ports Istio treats as TCP when nothing names their protocol (protocol sniffing would break them).
WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})  # SMTP, DNS, MySQL, MongoDB
_PROTOCOL_NAMES = {
    "http": Protocol.HTTP,
    "http_proxy": Protocol.HTTP,
    "http2": Protocol.HTTP2,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB,
    "tcp": Protocol.TCP,
    "mongo": Protocol.TCP,  # Istio's Mongo/Redis/MySQL are plain TCP to a proxy without their filters
    "redis": Protocol.TCP,
    "mysql": Protocol.TCP,
    "tls": Protocol.TLS,
    "https": Protocol.TLS,  # HTTPS: TLS the waypoint passes through as TCP
    "udp": Protocol.UDP,
}
# Kubernetes' standard appProtocol values (only ever in appProtocol, never a port name).
_KUBERNETES_APP_PROTOCOLS = {
    "kubernetes.io/h2c": Protocol.HTTP2,
    "kubernetes.io/ws": Protocol.HTTP,
    "kubernetes.io/wss": Protocol.TLS,
}


def port_protocol(name: str, app_protocol: str | None, l4_protocol: str, port: int = 0) -> Protocol:
    """Istio's `ConvertProtocol`: UDP by L4 protocol; else `appProtocol` when set (the port name is then not
    read at all), else the port name; `grpc-web…`, then the part before the first '-', case-insensitive;
    unknown names on well-known ports are TCP."""
    if l4_protocol.upper() == "UDP":
        return Protocol.UDP
    value = name
    if app_protocol is not None:
        value = app_protocol
        if value in _KUBERNETES_APP_PROTOCOLS:
            return _KUBERNETES_APP_PROTOCOLS[value]
    if value[:8].lower() == "grpc-web":
        return Protocol.GRPC_WEB
    protocol = _PROTOCOL_NAMES.get(value.split("-", 1)[0].lower(), Protocol.UNKNOWN)  # "udp-…" is UDP, as Istio
    if protocol is Protocol.UNKNOWN and port in WELL_KNOWN_TCP_PORTS:
        return Protocol.TCP
    return protocol


def _port_name(value: Any, field: str) -> str:
    """A named targetPort / container port name: an IANA_SVC_NAME, as Kubernetes validates it."""
    text = str(value)
    if (
        not 0 < len(text) <= 15
        or not all(c.islower() or c.isdigit() or c == "-" for c in text)
        or not any(c.isalpha() for c in text)
        or text.startswith("-")
        or text.endswith("-")
        or "--" in text
    ):
        raise InvalidField(field, f"must be a port number or an IANA service name, got {value!r}")
    return text


def parse_namespace(obj: KubeObject) -> Namespace:
    return Namespace(name=_meta(obj)["name"], labels=_labels(obj))


def parse_service(obj: KubeObject, namespace: str) -> Service:
    spec = obj.get("spec") or {}
    ports = []
    for i, raw in enumerate(spec.get("ports") or []):
        field = f"spec.ports[{i}]"
        number = _port_number(raw.get("port"), f"{field}.port")
        target = raw.get("targetPort", number)
        target_name = ""
        if isinstance(target, str):
            # A named targetPort resolves per pod from its container ports (`Mesh.target_port`).
            target_name, target = _port_name(target, f"{field}.targetPort"), 0
        else:
            target = _port_number(target, f"{field}.targetPort")
        l4 = str(raw.get("protocol") or "TCP")
        ports.append(
            ServicePort(
                name=str(raw.get("name", "")),
                port=number,
                target_port=target,
                protocol=port_protocol(str(raw.get("name", "")), raw.get("appProtocol"), l4, number),
                target_port_name=target_name,
                l4_protocol=l4,
            )
        )
    vips: list[str] = []
    for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
        if ip and ip != "None" and ip not in vips:
            vips.append(ip)
    return Service(
        namespace=namespace,
        name=_meta(obj)["name"],
        vips=tuple(vips),
        ports=tuple(ports),
        selector=_str_map(spec.get("selector"), "spec.selector"),
        labels=_labels(obj),
        creation=str(_meta(obj).get("creationTimestamp") or ""),
    )


def _pod_ready(obj: KubeObject) -> bool:
    status = obj.get("status") or {}
    conditions = status.get("conditions")
    if conditions is None:
        # Local mesh files describe pods without a kubelet: a pod with an IP is running.
        return bool(status.get("podIP"))
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def parse_pod(obj: KubeObject, namespace: str, namespaces: Mapping[str, Namespace]) -> Workload | None:
    status = obj.get("status") or {}
    ip = status.get("podIP")
    if not ip:
        return None  # not scheduled yet: not addressable
    labels = _labels(obj)
    spec = obj.get("spec") or {}
    ns = namespaces.get(namespace)
    captured = labels.get(DATAPLANE_MODE) != "none" and (
        labels.get(DATAPLANE_MODE) == "ambient" or (ns is not None and ns.ambient)
    )
    container_ports = []
    for c, container in enumerate(spec.get("containers") or []):
        for i, raw in enumerate(container.get("ports") or []):
            if raw.get("name"):
                field = f"spec.containers[{c}].ports[{i}]"
                container_ports.append(
                    NamedPort(
                        name=_port_name(raw["name"], f"{field}.name"),
                        port=_port_number(raw.get("containerPort"), f"{field}.containerPort"),
                        protocol=str(raw.get("protocol") or "TCP"),
                    )
                )
    return Workload(
        namespace=namespace,
        name=_meta(obj)["name"],
        ip=str(ip),
        container_ports=tuple(container_ports),
        service_account=str(spec.get("serviceAccountName") or "default"),
        node=str(spec.get("nodeName") or ""),
        labels=labels,
        ready=_pod_ready(obj),
        captured=captured,
        uid=str(_meta(obj).get("uid") or ""),
    )


def parse_waypoint(obj: KubeObject, namespace: str) -> tuple[Waypoint, list[tuple[str, str]]]:
    """A waypoint Gateway, plus the problems found in it (field, message) that do not reject it."""
    spec = obj.get("spec") or {}
    labels, annotations = _labels(obj), _annotations(obj)
    problems: list[tuple[str, str]] = []
    listeners = spec.get("listeners") or []
    valid = [lst for lst in listeners if lst.get("port") == HBONE_PORT and str(lst.get("protocol")).upper() == "HBONE"]
    if len(listeners) != 1 or not valid:
        problems.append(("spec.listeners", 'Expected a single listener on port 15008 with protocol "HBONE"'))
    allowed_from = "Same"
    if valid:
        allowed_from = str(((valid[0].get("allowedRoutes") or {}).get("namespaces") or {}).get("from") or "Same")
    raw_type = labels.get(WAYPOINT_FOR, TrafficType.SERVICE.value)
    try:
        traffic = TrafficType(raw_type)
    except ValueError:
        problems.append((f"metadata.labels[{WAYPOINT_FOR}]", f"unknown traffic type {raw_type!r}"))
        traffic = TrafficType.SERVICE
    name = _meta(obj)["name"]
    addresses = tuple(
        str(a.get("value"))
        for a in ((obj.get("status") or {}).get("addresses") or [])
        if a.get("type", "IPAddress") == "IPAddress"
    )
    return (
        Waypoint(
            namespace=namespace,
            name=name,
            traffic_type=traffic,
            for_service_account=annotations.get(FOR_SERVICE_ACCOUNT) or labels.get(FOR_SERVICE_ACCOUNT),
            service_account=annotations.get("gateway.istio.io/service-account", name),
            allowed_routes_from=allowed_from,
            listener_valid=bool(valid),
            addresses=addresses,
            labels=labels,
        ),
        problems,
    )


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidField(field, "must be a list")
    return tuple(str(v) for v in value)


def _ports(value: Any, field: str) -> tuple[int, ...]:
    out = []
    for i, v in enumerate(_strings(value, field)):
        if not v.isdigit():
            raise InvalidField(f"{field}[{i}]", f"must be a port number, got {v!r}")
        out.append(_port_number(int(v), f"{field}[{i}]"))
    return tuple(out)


def parse_authorization_policy(obj: KubeObject, namespace: str) -> AuthorizationPolicy:
    spec = obj.get("spec") or {}
    raw_action = str(spec.get("action") or "ALLOW")
    try:
        action = PolicyAction(raw_action)
    except ValueError as exc:
        raise InvalidField("spec.action", f"unsupported action {raw_action!r} (ALLOW or DENY)") from exc
    selector = spec.get("selector")
    rules = []
    for r, rule in enumerate(spec.get("rules") or []):
        merged: dict[str, Any] = {}
        for f, src in enumerate(rule.get("from") or []):
            source = src.get("source") or {}
            base = f"spec.rules[{r}].from[{f}].source"
            for key, attr in (
                ("principals", "principals"),
                ("notPrincipals", "not_principals"),
                ("namespaces", "namespaces"),
                ("notNamespaces", "not_namespaces"),
                ("ipBlocks", "ip_blocks"),
            ):
                merged[attr] = merged.get(attr, ()) + _strings(source.get(key), f"{base}.{key}")
        for t, dst in enumerate(rule.get("to") or []):
            op = dst.get("operation") or {}
            base = f"spec.rules[{r}].to[{t}].operation"
            merged["ports"] = merged.get("ports", ()) + _ports(op.get("ports"), f"{base}.ports")
            merged["not_ports"] = merged.get("not_ports", ()) + _ports(op.get("notPorts"), f"{base}.notPorts")
            for key, attr in (
                ("methods", "methods"),
                ("notMethods", "not_methods"),
                ("paths", "paths"),
                ("notPaths", "not_paths"),
                ("hosts", "hosts"),
            ):
                merged[attr] = merged.get(attr, ()) + _strings(op.get(key), f"{base}.{key}")
        rules.append(PolicyRule(**merged))
    target_refs = tuple(
        (str(t.get("kind")), str(t.get("name")))
        for t in (spec.get("targetRefs") or ([spec["targetRef"]] if spec.get("targetRef") else []))
    )
    return AuthorizationPolicy(
        namespace=namespace,
        name=_meta(obj)["name"],
        action=action,
        selector=_str_map(selector.get("matchLabels"), "spec.selector.matchLabels") if selector else None,
        rules=tuple(rules),
        target_refs=target_refs,
    )


def _mtls_mode(value: Any, field: str) -> MtlsMode:
    """`{mode: ...}`; no `mtls` or no `mode` is UNSET (inherit), as in Istio's API."""
    if value is None:
        return MtlsMode.UNSET
    if not isinstance(value, Mapping):
        raise InvalidField(field, f"must be a map, got {type(value).__name__}")
    unknown = sorted(set(value) - {"mode"})
    if unknown:
        raise InvalidField(f"{field}.{unknown[0]}", "is not a PeerAuthentication field")
    raw = value.get("mode")
    if raw is None:
        return MtlsMode.UNSET
    try:
        return MtlsMode(str(raw))
    except ValueError as exc:
        raise InvalidField(f"{field}.mode", f"unsupported mode {raw!r} (UNSET, STRICT, PERMISSIVE or DISABLE)") from exc


def parse_peer_authentication(obj: KubeObject, namespace: str) -> PeerAuthentication:
    """security.istio.io/v1 PeerAuthentication, validated as Istio's `ValidatePeerAuthentication` does."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise InvalidField("spec", "must be a map")
    unknown = sorted(set(spec) - {"selector", "mtls", "portLevelMtls"})
    if unknown:
        raise InvalidField(f"spec.{unknown[0]}", "is not a PeerAuthentication field")
    selector_raw = spec.get("selector")
    selector: dict[str, str] | None = None
    if selector_raw is not None:
        if not isinstance(selector_raw, Mapping):
            raise InvalidField("spec.selector", "must be a map")
        extra = sorted(set(selector_raw) - {"matchLabels"})
        if extra:
            raise InvalidField(f"spec.selector.{extra[0]}", "is not a WorkloadSelector field (only matchLabels)")
        selector = _str_map(selector_raw.get("matchLabels"), "spec.selector.matchLabels") or None
    port_level: dict[int, MtlsMode] = {}
    raw_ports = spec.get("portLevelMtls")
    if raw_ports is not None:
        if not isinstance(raw_ports, Mapping):
            raise InvalidField("spec.portLevelMtls", "must be a map of port number to {mode}")
        if raw_ports and selector is None:
            raise InvalidField("spec.portLevelMtls", "mesh/namespace-wide PeerAuthentication cannot have portLevelMtls")
        for key, value in raw_ports.items():
            field = f"spec.portLevelMtls[{key}]"
            text = str(key)
            if not text.isdigit() or int(text) == 0:
                raise InvalidField(field, f"port in portLevelMtls must be 1-65535, got {key!r}")
            port_level[_port_number(int(text), field)] = _mtls_mode(value, field)
    return PeerAuthentication(
        namespace=namespace,
        name=_meta(obj)["name"],
        mode=_mtls_mode(spec.get("mtls"), "spec.mtls"),
        selector=selector,
        port_level=dict(sorted(port_level.items())),
        creation=str(_meta(obj).get("creationTimestamp") or ""),
    )


def _slice_ports(obj: KubeObject) -> tuple[NamedPort, ...]:
    out = []
    for i, raw in enumerate(obj.get("ports") or []):
        if raw.get("port") is None:
            continue  # no port: "all ports", which only a selector-less headless service may use
        out.append(
            NamedPort(
                name=str(raw.get("name") or ""),
                port=_port_number(raw.get("port"), f"ports[{i}].port"),
                protocol=str(raw.get("protocol") or "TCP"),
            )
        )
    return tuple(out)


def _endpoint_slice_workloads(
    obj: KubeObject, namespace: str, known: Mapping[str, Workload], ambient: bool
) -> list[tuple[Workload, bool, bool]]:
    """Each address of the slice as (workload, ready, new): a Pod object's workload when one has the IP,
    else a bare workload (the test API server has no kubelet, and selector-less services point anywhere)."""
    service = _labels(obj).get("kubernetes.io/service-name", "")
    out = []
    for ep in obj.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready", True) is not False
        for ip in ep.get("addresses") or []:
            if ip in known:
                out.append((known[ip], ready, False))
                continue
            ref = ep.get("targetRef") or {}
            out.append(
                (
                    Workload(
                        namespace=namespace,
                        name=str(ref.get("name") or f"{service}-{ip}"),
                        ip=str(ip),
                        labels={"kubernetes.io/service-name": service} if service else {},
                        ready=ready,
                        captured=ambient,
                    ),
                    ready,
                    True,
                )
            )
    return out


def _report_unhandled_fields(obj: KubeObject, fail: Callable[[KubeObject, str, str], None]) -> bool:
    """Reports each field of `obj` the model does not implement; True when the object must not be used."""
    kind = str(obj.get("kind"))
    if kind == "Gateway" and (obj.get("spec") or {}).get("gatewayClassName") != WAYPOINT_CLASS:
        return False  # another controller's Gateway
    unhandled = unhandled_fields(obj)
    refused = kind in REFUSED_WHEN_INCOMPLETE
    for field in unhandled:
        suffix = f"; the {kind} is not used (it would be enforced weaker than written)" if refused else ""
        fail(obj, field.path, field.message() + suffix)
    return refused and bool(unhandled)


def mesh_from_objects(objects: Iterable[KubeObject], *, sources: Mapping[int, str] | None = None) -> Mesh:
    """Build the mesh from Kubernetes objects; `sources` maps id(obj) to the file it came from."""
    objs = list(objects)
    errors: list[ModelError] = []

    def fail(obj: KubeObject, field: str, message: str) -> None:
        raw = obj.get("metadata")
        meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        ref = ObjectRef(str(obj.get("kind", "?")), str(meta.get("namespace") or ""), str(meta.get("name") or "?"))
        errors.append(ModelError(ref, field, message, (sources or {}).get(id(obj), "")))

    def ns_of(obj: KubeObject) -> str:
        return str((obj.get("metadata") or {}).get("namespace") or "default")

    namespaces: dict[str, Namespace] = {}
    for obj in objs:
        if obj.get("kind") == "Namespace":
            try:
                ns = parse_namespace(obj)
                namespaces[ns.name] = ns
            except InvalidField as e:
                fail(obj, e.field, e.message)
    for obj in objs:  # namespaces that are only implied by their objects
        if obj.get("kind") not in ("Namespace", None) and isinstance(obj.get("metadata"), Mapping):
            namespaces.setdefault(ns_of(obj), Namespace(ns_of(obj)))

    services: list[Service] = []
    workloads: list[Workload] = []
    waypoints: list[Waypoint] = []
    routes: list[HTTPRoute] = []
    policies: list[AuthorizationPolicy] = []
    peer_auths: list[PeerAuthentication] = []
    slices: list[KubeObject] = []
    for obj in objs:
        kind = obj.get("kind")
        if not isinstance(kind, str):
            fail(obj, "kind", "is required")
            continue
        if _report_unhandled_fields(obj, fail):
            continue
        try:
            namespace = ns_of(obj)
            if kind == "Service":
                services.append(parse_service(obj, namespace))
            elif kind == "Pod":
                wl = parse_pod(obj, namespace, namespaces)
                if wl:
                    workloads.append(wl)
            elif kind == "EndpointSlice":
                slices.append(obj)
            elif kind == "Gateway":
                if (obj.get("spec") or {}).get("gatewayClassName") != WAYPOINT_CLASS:
                    continue
                waypoint, problems = parse_waypoint(obj, namespace)
                waypoints.append(waypoint)
                for field, message in problems:
                    fail(obj, field, message)
            elif kind == "HTTPRoute":
                routes.append(parse_httproute(obj, namespace))
            elif kind == "AuthorizationPolicy":
                policies.append(parse_authorization_policy(obj, namespace))
            elif kind == "PeerAuthentication":
                peer_auths.append(parse_peer_authentication(obj, namespace))
        except (InvalidField, RouteRefused) as e:
            fail(obj, e.field, e.message)
        except (TypeError, AttributeError, KeyError) as e:
            fail(obj, "spec", f"malformed: {e}")
    known: dict[str, Workload] = {w.ip: w for w in workloads}
    selectorless = {(s.namespace, s.name) for s in services if not s.selector}
    slice_endpoints: dict[tuple[str, str], list[SliceEndpoint]] = {}
    for obj in slices:
        try:
            slice_ns = namespaces.get(ns_of(obj))
            found = _endpoint_slice_workloads(obj, ns_of(obj), known, slice_ns is not None and slice_ns.ambient)
            key = (ns_of(obj), _labels(obj).get("kubernetes.io/service-name", ""))
            ports = _slice_ports(obj) if key in selectorless else ()
            for wl, ready, new in found:
                if new:
                    known[wl.ip] = wl
                    workloads.append(wl)
                if key in selectorless:
                    slice_endpoints.setdefault(key, []).append(SliceEndpoint(wl, ports, ready))
        except InvalidField as e:
            fail(obj, e.field, e.message)
        except (TypeError, AttributeError) as e:
            fail(obj, "endpoints", str(e))

    def by_key(items: list[Any]) -> tuple[Any, ...]:
        return tuple(sorted(items, key=lambda x: (x.namespace, x.name)))

    return Mesh(
        namespaces=dict(sorted(namespaces.items())),
        services=by_key(services),
        workloads=by_key(workloads),
        waypoints=by_key(waypoints),
        routes=by_key(routes),
        policies=by_key(policies),
        peer_authentications=by_key(peer_auths),
        slice_endpoints={k: tuple(v) for k, v in sorted(slice_endpoints.items())},
        errors=tuple(errors),
    )


__all__ = ["mesh_from_objects", "port_protocol", "GATEWAY_NAME_LABEL"]
