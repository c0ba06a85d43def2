"""Kubernetes objects (as plain dicts, the way `kubectl get -o json` shows them) → `Mesh`.

Pure: no I/O. Every object that cannot be used becomes a `ModelError` naming the object and the
field; the rest of the mesh is still built, so one bad file never takes the mesh down.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from xds.mesh.fields import REFUSED_WHEN_INCOMPLETE, unhandled_fields
from xds.mesh.httproute import RouteRefused, parse_httproute
from xds.mesh.model import (
    CONDITION_KEY_PREFIXES,
    CONDITION_KEYS,
    DATAPLANE_MODE,
    FOR_SERVICE_ACCOUNT,
    GATEWAY_NAME_LABEL,
    HBONE_PORT,
    ROOT_NAMESPACE,
    WAYPOINT_CLASS,
    WAYPOINT_FOR,
    AuthorizationPolicy,
    ClaimToHeader,
    Condition,
    HTTPRoute,
    JwksUri,
    JwtHeader,
    JwtRule,
    Mesh,
    ModelError,
    MtlsMode,
    NamedPort,
    Namespace,
    ObjectRef,
    Operation,
    PeerAuthentication,
    PolicyAction,
    PolicyRule,
    PolicyTargetRef,
    Protocol,
    RequestAuthentication,
    Service,
    ServicePort,
    SliceEndpoint,
    Source,
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
        if not (v.isascii() and v.isdigit()):  # str.isdigit() also takes "²", which int() refuses
            raise InvalidField(f"{field}[{i}]", f"must be a port number, got {v!r}")
        out.append(_port_number(int(v), f"{field}[{i}]"))
    return tuple(out)


def _known_keys(obj: Any, field: str, known: frozenset[str]) -> Mapping[str, Any]:
    """A map whose keys must all be ones we implement: an unknown key is refused, never dropped."""
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise InvalidField(field, f"must be a map, got {type(obj).__name__}")
    for key in obj:
        if key not in known:
            raise InvalidField(f"{field}.{key}", "is not a supported field")
    return obj


def _policy_values(value: Any, field: str) -> tuple[str, ...]:
    """A list of policy values: Istio refuses empty strings (`empty value is not allowed`)."""
    values = _strings(value, field)
    for i, v in enumerate(values):
        if not v:
            raise InvalidField(f"{field}[{i}]", "empty value is not allowed")
    return values


def _principal_values(value: Any, field: str) -> tuple[str, ...]:
    """Principals are `<trust domain>/ns/<ns>/sa/<sa>`: Istio prepends `spiffe://` itself, so a value written
    with it would silently match nobody there; refused instead."""
    values = _policy_values(value, field)
    for i, v in enumerate(values):
        if v.startswith("spiffe://"):
            raise InvalidField(f"{field}[{i}]", f"write principals without the spiffe:// scheme, got {v!r}")
    return values


def _ip_blocks(value: Any, field: str) -> tuple[str, ...]:
    """IPs or CIDRs (host bits may be set, as Go's netip.ParsePrefix allows)."""
    values = _policy_values(value, field)
    for i, v in enumerate(values):
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError as exc:
            raise InvalidField(f"{field}[{i}]", f"invalid IP address or CIDR {v!r}") from exc
    return values


def _paths(value: Any, field: str) -> tuple[str, ...]:
    values = _policy_values(value, field)
    for i, v in enumerate(values):
        if "{" in v or "}" in v:
            # Istio's path templates ({*}, {**}) need Envoy's uri_template matcher: not implemented, refused.
            raise InvalidField(f"{field}[{i}]", f"path templates are not supported: {v!r}")
    return values


# A policy value parser: (the raw value, the field's path for errors) → the values.
ValueParser = Callable[[Any, str], tuple[Any, ...]]

# `from[].source` and `to[].operation`: Istio's field name → (`Source`/`Operation` attribute, its parser),
# in the order they are checked.
_SOURCE_FIELDS: dict[str, tuple[str, ValueParser]] = {
    "principals": ("principals", _principal_values),
    "notPrincipals": ("not_principals", _principal_values),
    "requestPrincipals": ("request_principals", _policy_values),
    "notRequestPrincipals": ("not_request_principals", _policy_values),
    "namespaces": ("namespaces", _policy_values),
    "notNamespaces": ("not_namespaces", _policy_values),
    "ipBlocks": ("ip_blocks", _ip_blocks),
    "notIpBlocks": ("not_ip_blocks", _ip_blocks),
    "remoteIpBlocks": ("remote_ip_blocks", _ip_blocks),
    "notRemoteIpBlocks": ("not_remote_ip_blocks", _ip_blocks),
}
_OPERATION_FIELDS: dict[str, tuple[str, ValueParser]] = {
    "hosts": ("hosts", _policy_values),
    "notHosts": ("not_hosts", _policy_values),
    "ports": ("ports", _ports),
    "notPorts": ("not_ports", _ports),
    "methods": ("methods", _policy_values),
    "notMethods": ("not_methods", _policy_values),
    "paths": ("paths", _paths),
    "notPaths": ("not_paths", _paths),
}


def _rule_clause(raw: Any, field: str, clause: str, fields: Mapping[str, tuple[str, ValueParser]]) -> dict[str, Any]:
    """One `from[]` (clause "source") or `to[]` (clause "operation") entry: only that key, not empty, and within
    it only `fields`; returns the parsed values by attribute name."""
    entry = _known_keys(raw, field, frozenset({clause}))
    base = f"{field}.{clause}"
    if not entry.get(clause):
        raise InvalidField(base, "must not be empty")
    values = _known_keys(entry[clause], base, frozenset(fields))
    return {attr: parse(values.get(key), f"{base}.{key}") for key, (attr, parse) in fields.items()}


def _condition_key_valid(key: str) -> bool:
    if key in CONDITION_KEYS:
        return True
    for prefix in CONDITION_KEY_PREFIXES:
        if key.startswith(prefix) and key.endswith("]") and len(key) > len(prefix) + 1:
            return True
    return False


def _condition(raw: Any, field: str) -> Condition:
    entry = _known_keys(raw, field, frozenset({"key", "values", "notValues"}))
    key = entry.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidField(f"{field}.key", "is required")
    if not _condition_key_valid(key):
        raise InvalidField(f"{field}.key", f"unknown attribute {key!r}")
    checker = _ip_blocks if key in ("source.ip", "remote.ip", "destination.ip") else _policy_values
    if key == "source.principal":
        checker = _principal_values
    values = checker(entry.get("values"), f"{field}.values")
    not_values = checker(entry.get("notValues"), f"{field}.notValues")
    if key == "destination.port":
        _ports(list(values), f"{field}.values")
        _ports(list(not_values), f"{field}.notValues")
    if not values and not not_values:
        raise InvalidField(field, f"at least one of values or notValues must be set for key {key}")
    return Condition(key=key, values=values, not_values=not_values)


def _entries(rule: Mapping[str, Any], key: str, field: str) -> list[Any]:
    raw = rule.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidField(field, "must be a list")
    if not raw:
        raise InvalidField(field, "must not be empty")  # Istio: `from`/`to`/`when` present but empty
    return raw


def _policy_rule(raw: Any, field: str) -> PolicyRule:
    rule = _known_keys(raw, field, frozenset({"from", "to", "when"}))
    return PolicyRule(
        sources=tuple(
            Source(**_rule_clause(s, f"{field}.from[{i}]", "source", _SOURCE_FIELDS))
            for i, s in enumerate(_entries(rule, "from", f"{field}.from"))
        ),
        operations=tuple(
            Operation(**_rule_clause(o, f"{field}.to[{i}]", "operation", _OPERATION_FIELDS))
            for i, o in enumerate(_entries(rule, "to", f"{field}.to"))
        ),
        conditions=tuple(
            _condition(c, f"{field}.when[{i}]") for i, c in enumerate(_entries(rule, "when", f"{field}.when"))
        ),
    )


# targetRef kinds a waypoint can enforce, with their API group ("" = core).
_TARGET_GROUPS = {"Gateway": "gateway.networking.k8s.io", "GatewayClass": "gateway.networking.k8s.io", "Service": ""}


def _target_ref(raw: Any, field: str, namespace: str) -> PolicyTargetRef:
    ref = _known_keys(raw, field, frozenset({"group", "kind", "name", "namespace"}))
    kind, name = ref.get("kind"), ref.get("name")
    if not isinstance(kind, str) or not kind:
        raise InvalidField(f"{field}.kind", "is required")
    if not isinstance(name, str) or not name:
        raise InvalidField(f"{field}.name", "is required")
    group = str(ref.get("group") or "")
    group = "" if group == "core" else group
    if kind not in _TARGET_GROUPS:
        raise InvalidField(f"{field}.kind", f"unsupported targetRef kind {kind!r} (Gateway, GatewayClass or Service)")
    if group != _TARGET_GROUPS[kind]:
        raise InvalidField(f"{field}.group", f"{kind} is in group {_TARGET_GROUPS[kind] or 'core'!r}, got {group!r}")
    if ref.get("namespace") not in (None, "", namespace):
        raise InvalidField(f"{field}.namespace", "cross namespace referencing is not currently supported")
    return PolicyTargetRef(group=group, kind=kind, name=name)


_POLICY_SPEC_FIELDS = frozenset({"selector", "targetRef", "targetRefs", "action", "rules", "provider"})
DRY_RUN_ANNOTATION = "istio.io/dry-run"


def parse_authorization_policy(obj: KubeObject, namespace: str) -> AuthorizationPolicy:
    """security.istio.io/v1 AuthorizationPolicy with Istio's validation; anything we don't enforce is refused."""
    spec = _known_keys(obj.get("spec") or {}, "spec", _POLICY_SPEC_FIELDS)
    if _annotations(obj).get(DRY_RUN_ANNOTATION, "").lower() == "true":
        raise InvalidField(f"metadata.annotations[{DRY_RUN_ANNOTATION}]", "dry-run policies are not supported")
    raw_action = str(spec.get("action") or "ALLOW")
    try:
        action = PolicyAction(raw_action)
    except ValueError as exc:
        raise InvalidField("spec.action", f"unsupported action {raw_action!r} (ALLOW, DENY, AUDIT or CUSTOM)") from exc
    provider = ""
    if spec.get("provider") is not None:
        if action is not PolicyAction.CUSTOM:
            raise InvalidField("spec.provider", f"must not be set for the {action.value} action")
        provider = str(_known_keys(spec["provider"], "spec.provider", frozenset({"name"})).get("name") or "")
    if action is PolicyAction.CUSTOM and not provider:
        raise InvalidField("spec.provider.name", "is required for the CUSTOM action")
    if spec.get("targetRef") is not None and spec.get("targetRefs") is not None:
        raise InvalidField("spec.targetRef", "only one of targetRef or targetRefs can be set")
    raw_refs = spec.get("targetRefs")
    if raw_refs is None:
        raw_refs, refs_field = ([spec["targetRef"]] if spec.get("targetRef") is not None else []), "spec.targetRef"
    else:
        refs_field = "spec.targetRefs"
        if not isinstance(raw_refs, list):
            raise InvalidField(refs_field, "must be a list")
    target_refs = tuple(
        _target_ref(r, refs_field if refs_field == "spec.targetRef" else f"{refs_field}[{i}]", namespace)
        for i, r in enumerate(raw_refs)
    )
    raw_selector = spec.get("selector")
    if raw_selector is not None and target_refs:
        raise InvalidField("spec.selector", "only one of targetRefs or workload selector can be set")
    selector = None
    if raw_selector is not None:
        selector = _str_map(
            _known_keys(raw_selector, "spec.selector", frozenset({"matchLabels"})).get("matchLabels"),
            "spec.selector.matchLabels",
        )
    raw_rules = spec.get("rules")
    if raw_rules is not None and not isinstance(raw_rules, list):
        raise InvalidField("spec.rules", "must be a list")
    rules = tuple(_policy_rule(r, f"spec.rules[{i}]") for i, r in enumerate(raw_rules or []))
    return AuthorizationPolicy(
        namespace=namespace,
        name=_meta(obj)["name"],
        action=action,
        selector=selector,
        rules=rules,
        target_refs=target_refs,
        provider=provider,
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


# RequestAuthentication (security.istio.io/v1): every field of the API is either used or refused.
REQUEST_AUTHN_SPEC_FIELDS = frozenset({"selector", "targetRef", "targetRefs", "jwtRules"})
JWT_RULE_FIELDS = frozenset(
    {
        "issuer",
        "audiences",
        "jwksUri",
        "jwks",
        "fromHeaders",
        "fromParams",
        "fromCookies",
        "outputPayloadToHeader",
        "outputClaimToHeaders",
        "forwardOriginalToken",
        "timeout",
        "spaceDelimitedClaims",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-zA-Z]+$")  # an RFC 9110 token
_DURATION = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")  # protobuf JSON Duration


def _unknown_fields(value: Mapping[str, Any], known: frozenset[str], field: str) -> None:
    extra = sorted(set(value) - known)
    if extra:
        raise InvalidField(f"{field}.{extra[0]}", "is not a field pyambient implements; refused rather than ignored")


def _object_list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidField(field, "must be a list")
    return value


def _nonempty_strings(value: Any, field: str, what: str) -> tuple[str, ...]:
    out = _strings(value, field)
    for i, v in enumerate(out):
        if not v:
            raise InvalidField(f"{field}[{i}]", f"{what} must be a non-empty string")
    return out


def _header_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidField(field, "must be a non-empty header name")
    if not _HEADER_NAME.match(value):
        raise InvalidField(field, f"{value!r} is not a valid HTTP header name")
    return value


def parse_jwks_uri(uri: str, field: str) -> JwksUri:
    """Istio's ParseJwksURI: http or https, the port from the URI or 80/443."""
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidField(field, f"invalid URI {uri!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidField(field, f"URI scheme {parts.scheme!r} is not supported (http or https)")
    if not parts.hostname:
        raise InvalidField(field, f"{uri!r} has no host")
    host = parts.hostname
    if host.endswith(".svc") or ".svc." in host:
        # Istio would use the mesh service's own cluster (through the mesh); that is not implemented here.
        raise InvalidField(field, f"a JWKS server inside the mesh ({host}) is not supported; use an address outside it")
    return JwksUri(uri=uri, scheme=parts.scheme, host=host, port=port or (443 if parts.scheme == "https" else 80))


def _parse_duration(value: Any, field: str) -> float:
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidField(field, f'must be a duration like "5s" or "0.5s", got {value!r}')
    nanos = int((match.group(2) or "").ljust(9, "0"))
    if nanos % 1_000_000:
        raise InvalidField(field, "only durations to ms precision are supported")
    total = int(match.group(1)) + nanos / 1e9
    if total < 0.001:
        raise InvalidField(field, "duration must be greater than 1ms")
    return total


# The members each key type needs (RFC 7518 section 6): a key without them can verify nothing.
_JWK_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "oct": ("k",), "OKP": ("crv", "x")}


def _check_jwks(jwks: str, field: str) -> None:
    """Istio refuses a `jwks` that does not parse as a JWK Set; so do we, key by key."""
    try:
        document = json.loads(jwks)
    except ValueError as exc:
        raise InvalidField(field, f"jwks parse error: {exc}") from exc
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidField(field, 'jwks parse error: expected a JSON object with a non-empty "keys" list')
    for i, key in enumerate(keys):
        members = _JWK_MEMBERS.get(str(key.get("kty"))) if isinstance(key, Mapping) else None
        if members is None:
            raise InvalidField(field, f"jwks parse error: keys[{i}] has no supported kty (RSA, EC, oct, OKP)")
        missing = [m for m in members if not isinstance(key.get(m), str) or not key[m]]
        if missing:
            raise InvalidField(field, f"jwks parse error: keys[{i}] ({key['kty']}) lacks {', '.join(missing)}")


def _parse_jwt_rule(raw: Any, field: str) -> JwtRule:
    if not isinstance(raw, Mapping):
        raise InvalidField(field, "must be an object")
    _unknown_fields(raw, JWT_RULE_FIELDS, field)
    issuer = raw.get("issuer") or ""
    if not isinstance(issuer, str):
        raise InvalidField(f"{field}.issuer", "must be a string")
    jwks_uri_raw = raw.get("jwksUri") or ""
    jwks = raw.get("jwks") or ""
    if not isinstance(jwks_uri_raw, str) or not isinstance(jwks, str):
        raise InvalidField(f"{field}.jwks", "jwks and jwksUri must be strings")
    if not issuer and not jwks_uri_raw:
        raise InvalidField(f"{field}.issuer", "issuer or jwksUri must be non-empty string")
    if jwks and jwks_uri_raw:
        raise InvalidField(
            f"{field}.jwksUri",
            "set jwks or jwksUri, not both (which one Istio uses depends on PILOT_JWT_ENABLE_REMOTE_JWKS)",
        )
    if not jwks and not jwks_uri_raw:
        raise InvalidField(
            f"{field}.jwksUri", "jwks or jwksUri is required (JWKS discovery from the issuer is not implemented)"
        )
    jwks_uri = parse_jwks_uri(jwks_uri_raw, f"{field}.jwksUri") if jwks_uri_raw else None
    if jwks:
        _check_jwks(jwks, f"{field}.jwks")
    headers = []
    for i, location in enumerate(_object_list(raw.get("fromHeaders"), f"{field}.fromHeaders")):
        at = f"{field}.fromHeaders[{i}]"
        if not isinstance(location, Mapping):
            raise InvalidField(at, "location header name must be non-null")
        _unknown_fields(location, frozenset({"name", "prefix"}), at)
        if not location.get("name"):
            raise InvalidField(f"{at}.name", "location header name must be non-empty string")
        headers.append(JwtHeader(_header_name(location["name"], f"{at}.name"), str(location.get("prefix") or "")))
    claims = []
    for i, pair in enumerate(_object_list(raw.get("outputClaimToHeaders"), f"{field}.outputClaimToHeaders")):
        at = f"{field}.outputClaimToHeaders[{i}]"
        if not isinstance(pair, Mapping):
            raise InvalidField(at, "outputClaimToHeaders must not be null")
        _unknown_fields(pair, frozenset({"header", "claim"}), at)
        if not pair.get("header") or not pair.get("claim"):
            raise InvalidField(at, "outputClaimToHeaders header and claim value must be non-empty string")
        claims.append(ClaimToHeader(_header_name(pair["header"], f"{at}.header"), str(pair["claim"])))
    payload_header = raw.get("outputPayloadToHeader") or ""
    if payload_header:
        _header_name(payload_header, f"{field}.outputPayloadToHeader")
    forward = raw.get("forwardOriginalToken", False)
    if not isinstance(forward, bool):
        raise InvalidField(f"{field}.forwardOriginalToken", f"must be true or false, got {forward!r}")
    space_delimited = raw.get("spaceDelimitedClaims")
    return JwtRule(
        issuer=issuer,
        audiences=_nonempty_strings(raw.get("audiences"), f"{field}.audiences", "audience"),
        jwks=jwks,
        jwks_uri=jwks_uri,
        from_headers=tuple(headers),
        from_params=_nonempty_strings(raw.get("fromParams"), f"{field}.fromParams", "location query"),
        from_cookies=_nonempty_strings(raw.get("fromCookies"), f"{field}.fromCookies", "cookie name"),
        output_payload_to_header=payload_header,
        output_claim_to_headers=tuple(claims),
        forward_original_token=forward,
        timeout=_parse_duration(raw["timeout"], f"{field}.timeout") if raw.get("timeout") is not None else 5.0,
        space_delimited_claims=None
        if space_delimited is None
        else _nonempty_strings(space_delimited, f"{field}.spaceDelimitedClaims", "claim name"),
    )


def _request_authn_target(ref: Any, namespace: str, root_namespace: str, field: str) -> tuple[str, str]:
    """A targetRef waypoints can apply (Istio's attachment rules); anything else is refused."""
    if not isinstance(ref, Mapping):
        raise InvalidField(field, "must be an object")
    _unknown_fields(ref, frozenset({"group", "kind", "name", "namespace"}), field)
    group, kind, name = str(ref.get("group") or ""), str(ref.get("kind") or ""), str(ref.get("name") or "")
    if not name:
        raise InvalidField(f"{field}.name", "is required")
    if ref.get("namespace") not in (None, "", namespace):
        raise InvalidField(
            f"{field}.namespace", "must be the policy's own namespace (a cross-namespace targetRef never matches)"
        )
    if kind == "Gateway" and group == "gateway.networking.k8s.io":
        return (kind, name)
    if kind == "Service" and group in ("", "core"):
        return (kind, name)
    if kind == "GatewayClass" and group == "gateway.networking.k8s.io":
        if namespace != root_namespace or name != WAYPOINT_CLASS:
            raise InvalidField(
                field,
                f"a GatewayClass targetRef applies only as {WAYPOINT_CLASS} from the root namespace {root_namespace}",
            )
        return (kind, name)
    raise InvalidField(field, f"unsupported target {group or 'core'}/{kind} (Gateway, Service or GatewayClass)")


def parse_request_authentication(
    obj: KubeObject, namespace: str, root_namespace: str = ROOT_NAMESPACE
) -> RequestAuthentication:
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise InvalidField("spec", "must be an object")
    _unknown_fields(spec, REQUEST_AUTHN_SPEC_FIELDS, "spec")
    set_kinds = [k for k in ("selector", "targetRef", "targetRefs") if spec.get(k)]
    if len(set_kinds) > 1:
        raise InvalidField(f"spec.{set_kinds[1]}", "only one of targetRefs, targetRef or selector can be set")
    if spec.get("selector") is not None or not set_kinds:
        # Istio applies selector and namespace-wide RequestAuthentications to sidecars only, never to
        # waypoints; pyambient runs no sidecars, so such a policy would protect nothing.
        raise InvalidField(
            "spec.selector" if spec.get("selector") is not None else "spec.targetRefs",
            "waypoints apply only RequestAuthentications with targetRefs (a Gateway or a Service); "
            "selector and namespace-wide policies apply to sidecars, which pyambient does not run",
        )
    raw_refs = spec.get("targetRefs") if spec.get("targetRefs") else [spec["targetRef"]]
    if not isinstance(raw_refs, list):
        raise InvalidField("spec.targetRefs", "must be a list")
    field_name = "targetRefs" if spec.get("targetRefs") else "targetRef"
    targets = tuple(
        _request_authn_target(
            ref,
            namespace,
            root_namespace,
            f"spec.{field_name}[{i}]" if field_name == "targetRefs" else "spec.targetRef",
        )
        for i, ref in enumerate(raw_refs)
    )
    raw_rules = _object_list(spec.get("jwtRules"), "spec.jwtRules")
    return RequestAuthentication(
        namespace=namespace,
        name=_meta(obj)["name"],
        target_refs=targets,
        jwt_rules=tuple(_parse_jwt_rule(r, f"spec.jwtRules[{i}]") for i, r in enumerate(raw_rules)),
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
    spec = obj.get("spec")
    if kind == "Gateway" and (spec.get("gatewayClassName") if isinstance(spec, Mapping) else None) != WAYPOINT_CLASS:
        return False  # another controller's Gateway (or a malformed one, reported by the parse below)
    unhandled = unhandled_fields(obj)
    refused = kind in REFUSED_WHEN_INCOMPLETE
    for field in unhandled:
        suffix = f"; the {kind} is not used (it would be enforced weaker than written)" if refused else ""
        fail(obj, field.path, field.message() + suffix)
    return refused and bool(unhandled)


def mesh_from_objects(
    objects: Iterable[KubeObject],
    *,
    sources: Mapping[int, str] | None = None,
    root_namespace: str = ROOT_NAMESPACE,
) -> Mesh:
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
    request_authns: list[RequestAuthentication] = []
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
            elif kind == "RequestAuthentication":
                request_authns.append(parse_request_authentication(obj, namespace, root_namespace))
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
        request_authentications=by_key(request_authns),
        slice_endpoints={k: tuple(v) for k, v in sorted(slice_endpoints.items())},
        errors=tuple(errors),
        root_namespace=root_namespace,
    )


__all__ = ["mesh_from_objects", "port_protocol", "GATEWAY_NAME_LABEL"]
