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
    Namespace,
    ObjectRef,
    PeerAuthentication,
    PolicyAction,
    PolicyRule,
    Protocol,
    Service,
    ServicePort,
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


def port_protocol(name: str, app_protocol: str | None, l4_protocol: str) -> Protocol:
    """Istio's protocol selection: UDP by L4 protocol, then appProtocol, then the name prefix."""
    if l4_protocol.upper() == "UDP":
        return Protocol.UDP
    for candidate in (app_protocol or "", name.split("-", 1)[0]):
        value = candidate.lower()
        if value in ("http", "http2", "grpc", "tcp", "tls"):
            return Protocol(value)
        if value in ("https",):
            return Protocol.TLS
        if value in ("h2c", "kubernetes.io/h2c", "grpc-web"):
            return Protocol.HTTP2
    return Protocol.UNKNOWN


def parse_namespace(obj: KubeObject) -> Namespace:
    return Namespace(name=_meta(obj)["name"], labels=_labels(obj))


def parse_service(obj: KubeObject, namespace: str) -> Service:
    spec = obj.get("spec") or {}
    ports = []
    for i, raw in enumerate(spec.get("ports") or []):
        field = f"spec.ports[{i}]"
        number = _port_number(raw.get("port"), f"{field}.port")
        target = raw.get("targetPort", number)
        if isinstance(target, str):
            # A named targetPort resolves per pod; pods here declare no ports, so use the service port.
            target = number
        ports.append(
            ServicePort(
                name=str(raw.get("name", "")),
                port=number,
                target_port=_port_number(target, f"{field}.targetPort"),
                protocol=port_protocol(str(raw.get("name", "")), raw.get("appProtocol"), raw.get("protocol", "TCP")),
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
    return Workload(
        namespace=namespace,
        name=_meta(obj)["name"],
        ip=str(ip),
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


def parse_peer_authentication(obj: KubeObject, namespace: str) -> PeerAuthentication:
    spec = obj.get("spec") or {}
    mode = str((spec.get("mtls") or {}).get("mode") or "PERMISSIVE")
    if mode not in ("STRICT", "PERMISSIVE", "DISABLE", "UNSET"):
        raise InvalidField("spec.mtls.mode", f"unsupported mode {mode!r}")
    selector = spec.get("selector")
    return PeerAuthentication(
        namespace=namespace,
        name=_meta(obj)["name"],
        mode=mode,
        selector=_str_map(selector.get("matchLabels"), "spec.selector.matchLabels") if selector else None,
    )


def _endpoint_slice_workloads(obj: KubeObject, namespace: str, known_ips: set[str], ambient: bool) -> list[Workload]:
    """Endpoints no Pod object describes (the API server has no kubelet in tests): bare workloads."""
    service = _labels(obj).get("kubernetes.io/service-name", "")
    out = []
    for ep in obj.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready", True) is not False
        for ip in ep.get("addresses") or []:
            if ip in known_ips:
                continue
            ref = ep.get("targetRef") or {}
            out.append(
                Workload(
                    namespace=namespace,
                    name=str(ref.get("name") or f"{service}-{ip}"),
                    ip=str(ip),
                    labels={"kubernetes.io/service-name": service} if service else {},
                    ready=ready,
                    captured=ambient,
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
    known_ips = {w.ip for w in workloads}
    for obj in slices:
        try:
            slice_ns = namespaces.get(ns_of(obj))
            workloads.extend(
                _endpoint_slice_workloads(obj, ns_of(obj), known_ips, slice_ns is not None and slice_ns.ambient)
            )
        except (InvalidField, TypeError, AttributeError) as e:
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
        errors=tuple(errors),
    )


__all__ = ["mesh_from_objects", "port_protocol", "GATEWAY_NAME_LABEL"]
