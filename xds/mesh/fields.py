"""Which fields of which kinds the mesh model handles: one declarative table, checked for every object.

Exact or refused: a field a user sets that the model does not implement is reported as a ModelError
naming the object and the field ("not implemented"), never silently dropped. For policy kinds
(`REFUSED_WHEN_INCOMPLETE`) such an object is not used at all: a policy or route served without one
of its fields would be weaker than written, so it fails closed.

Patterns are dotted paths: `[]` is any list item, `{}` any map key (`portLevelMtls.{}.mode`), and a
trailing `.*` a whole subtree. The longest matching pattern decides, so an `ignored("spec.*")` can
carry narrower `implemented(...)` or value-restricted entries beneath it. `Handling.IGNORED` is for
fields that Kubernetes manages or that change nothing the mesh does (docs/fields.md lists them with
the reason); everything absent from the table is "not implemented".

The owners of AuthorizationPolicy, RequestAuthentication, PeerAuthentication, Pod container ports
and EndpointSlice ports implement those APIs in the model; their full v1 field lists are here so the
check covers them from the start.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any


class Handling(enum.Enum):
    IMPLEMENTED = "implemented"
    IGNORED = "ignored"  # no effect on the mesh (why: `Field.note`)


@dataclass(frozen=True)
class Field:
    pattern: str
    handling: Handling
    values: frozenset[object] | None = None  # only these (scalar) values are handled; None: any
    note: str = ""


def implemented(*patterns: str, values: tuple[object, ...] | None = None) -> tuple[Field, ...]:
    allowed = frozenset(values) if values is not None else None
    return tuple(Field(p, Handling.IMPLEMENTED, allowed) for p in patterns)


def ignored(*patterns: str, note: str, values: tuple[object, ...] | None = None) -> tuple[Field, ...]:
    allowed = frozenset(values) if values is not None else None
    return tuple(Field(p, Handling.IGNORED, allowed, note) for p in patterns)


_COMMON = (
    *implemented("apiVersion", "kind"),
    *ignored("metadata.*", note="labels/annotations are read where they mean something; the rest is bookkeeping"),
)
_POLICY_STATUS = ignored("status.*", note="written by controllers, not read")
_SELECTOR = implemented("spec.selector.matchLabels.{}")
_TARGET_REFS = implemented(
    "spec.targetRef.group",
    "spec.targetRef.kind",
    "spec.targetRef.name",
    "spec.targetRef.namespace",
    "spec.targetRefs[].group",
    "spec.targetRefs[].kind",
    "spec.targetRefs[].name",
    "spec.targetRefs[].namespace",
)

_SOURCE = "spec.rules[].from[].source."
_OPERATION = "spec.rules[].to[].operation."

FIELD_TABLE: Mapping[str, tuple[Field, ...]] = {
    "Namespace": (
        *_COMMON,
        *ignored("spec.*", "status.*", note="finalizers and phase: no mesh effect"),
    ),
    "ServiceAccount": (
        *_COMMON,
        *ignored(
            "secrets.*",
            "imagePullSecrets.*",
            "automountServiceAccountToken",
            note="identity is the account's name; tokens are not used by the mesh",
        ),
    ),
    "Service": (
        *_COMMON,
        *implemented(
            "spec.selector.{}",
            "spec.clusterIP",
            "spec.clusterIPs[]",
            "spec.ports[].name",
            "spec.ports[].port",
            "spec.ports[].targetPort",
            "spec.ports[].protocol",
            "spec.ports[].appProtocol",
        ),
        *implemented("spec.type", values=("ClusterIP",)),
        *ignored("spec.ports[].nodePort", note="node ports are outside the mesh's capture"),
        *ignored("spec.sessionAffinity", values=("None",), note="the default; ClientIP affinity is not implemented"),
        *ignored("spec.sessionAffinityConfig.*", note="only used with sessionAffinity ClientIP"),
        *ignored("spec.ipFamilies[]", "spec.ipFamilyPolicy", note="the addresses themselves are read"),
        *ignored("spec.internalTrafficPolicy", values=("Cluster",), note="the default; Local is not implemented"),
        *ignored("spec.externalTrafficPolicy", note="only for NodePort/LoadBalancer traffic from outside the mesh"),
        *ignored("spec.publishNotReadyAddresses", values=(False,), note="the default"),
        *ignored("status.*", note="load balancer status: LoadBalancer services are not implemented"),
    ),
    "Pod": (
        *_COMMON,
        *implemented("spec.serviceAccountName", "spec.nodeName", "status.podIP"),
        *implemented(
            "spec.containers[].ports[].name",
            "spec.containers[].ports[].containerPort",
            "spec.containers[].ports[].protocol",
        ),
        *ignored(
            "spec.containers[].ports[].hostPort",
            "spec.containers[].ports[].hostIP",
            note="host ports bypass the pod network",
        ),
        *ignored("spec.*", note="containers, volumes, scheduling: no mesh effect"),
        *ignored("spec.serviceAccount", note="deprecated alias of serviceAccountName, which the API server sets"),
        *implemented("spec.hostNetwork", values=(False,)),
        *implemented("status.conditions[].type", "status.conditions[].status"),
        *ignored("status.*", note="kubelet bookkeeping; readiness comes from status.conditions"),
    ),
    "EndpointSlice": (
        *_COMMON,
        *implemented(
            "addressType", "endpoints[].addresses[]", "endpoints[].conditions.ready", "endpoints[].targetRef.*"
        ),
        *implemented("ports[].name", "ports[].port", "ports[].protocol", "ports[].appProtocol"),
        *ignored(
            "endpoints[].conditions.serving", "endpoints[].conditions.terminating", note="readiness is conditions.ready"
        ),
        *ignored(
            "endpoints[].nodeName",
            "endpoints[].zone",
            "endpoints[].hints.*",
            "endpoints[].deprecatedTopology.*",
            note="topology: locality load balancing is not configured by any kind the model reads",
        ),
    ),
    "Gateway": (
        *_COMMON,
        *implemented(
            "spec.gatewayClassName",
            "spec.listeners[].name",
            "spec.listeners[].port",
            "spec.listeners[].protocol",
            "spec.listeners[].allowedRoutes.namespaces.from",
            "spec.addresses[].type",
            "spec.addresses[].value",
            "spec.infrastructure.labels.{}",
            "spec.infrastructure.annotations.{}",
            "status.addresses[].type",
            "status.addresses[].value",
        ),
        *ignored("status.*", note="conditions and listener status are written by the controller"),
    ),
    "HTTPRoute": (
        *_COMMON,
        *implemented(
            "spec.parentRefs[].group",
            "spec.parentRefs[].kind",
            "spec.parentRefs[].namespace",
            "spec.parentRefs[].name",
            "spec.parentRefs[].port",
            "spec.rules[].name",
            "spec.rules[].matches[].path.type",
            "spec.rules[].matches[].path.value",
            "spec.rules[].matches[].headers[].type",
            "spec.rules[].matches[].headers[].name",
            "spec.rules[].matches[].headers[].value",
            "spec.rules[].matches[].queryParams[].type",
            "spec.rules[].matches[].queryParams[].name",
            "spec.rules[].matches[].queryParams[].value",
            "spec.rules[].matches[].method",
            "spec.rules[].backendRefs[].group",
            "spec.rules[].backendRefs[].kind",
            "spec.rules[].backendRefs[].name",
            "spec.rules[].backendRefs[].namespace",
            "spec.rules[].backendRefs[].port",
            "spec.rules[].backendRefs[].weight",
            *(
                f"spec.rules[].filters[].{modifier}.{part}"
                for modifier in ("requestHeaderModifier", "responseHeaderModifier")
                for part in ("set[].name", "set[].value", "add[].name", "add[].value", "remove[]")
            ),
        ),
        *implemented("spec.rules[].filters[].type", values=("RequestHeaderModifier", "ResponseHeaderModifier")),
        *implemented("spec.rules[].timeouts.request", "spec.rules[].timeouts.backendRequest"),
        *_POLICY_STATUS,
    ),
    "AuthorizationPolicy": (
        *_COMMON,
        *_SELECTOR,
        *_TARGET_REFS,
        *implemented("spec.action", "spec.provider.name"),
        *implemented(
            *(
                _SOURCE + key + "[]"
                for key in (
                    "principals",
                    "notPrincipals",
                    "requestPrincipals",
                    "notRequestPrincipals",
                    "namespaces",
                    "notNamespaces",
                    "ipBlocks",
                    "notIpBlocks",
                    "remoteIpBlocks",
                    "notRemoteIpBlocks",
                )
            ),
            *(
                _OPERATION + key + "[]"
                for key in ("hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths")
            ),
            "spec.rules[].when[].key",
            "spec.rules[].when[].values[]",
            "spec.rules[].when[].notValues[]",
        ),
        *_POLICY_STATUS,
    ),
    "RequestAuthentication": (
        *_COMMON,
        *_SELECTOR,
        *_TARGET_REFS,
        *implemented(
            "spec.jwtRules[].issuer",
            "spec.jwtRules[].audiences[]",
            "spec.jwtRules[].jwks",
            "spec.jwtRules[].jwksUri",
            "spec.jwtRules[].fromHeaders[].name",
            "spec.jwtRules[].fromHeaders[].prefix",
            "spec.jwtRules[].fromParams[]",
            "spec.jwtRules[].fromCookies[]",
            "spec.jwtRules[].outputPayloadToHeader",
            "spec.jwtRules[].outputClaimToHeaders[].header",
            "spec.jwtRules[].outputClaimToHeaders[].claim",
            "spec.jwtRules[].forwardOriginalToken",
            "spec.jwtRules[].timeout",
            "spec.jwtRules[].spaceDelimitedClaims[]",
        ),
        *_POLICY_STATUS,
    ),
    "PeerAuthentication": (
        *_COMMON,
        *_SELECTOR,
        *implemented("spec.mtls.mode", "spec.portLevelMtls.{}.mode"),
        *_POLICY_STATUS,
    ),
}

# Kinds whose objects are not used at all when they carry a field that is not implemented.
REFUSED_WHEN_INCOMPLETE = frozenset({"HTTPRoute", "AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication"})
KNOWN_KINDS = frozenset(FIELD_TABLE)


@dataclass(frozen=True)
class UnhandledField:
    path: str  # with real indices and keys, e.g. spec.rules[0].filters
    value: Any = None
    restricted: bool = False  # the field is handled, but not with this value

    def message(self) -> str:
        if self.restricted:
            return f"value {self.value!r} is not implemented"
        return "not implemented"


class _Table:
    """One kind's patterns, indexed for the walk."""

    def __init__(self, fields: tuple[Field, ...]) -> None:
        self.exact: dict[str, Field] = {}
        self.subtrees: dict[str, Field] = {}
        self.parents: set[str] = set()  # strict prefixes of some pattern: the walk must look below them
        for f in fields:
            pattern = f.pattern[:-2] if f.pattern.endswith(".*") else f.pattern
            (self.subtrees if f.pattern.endswith(".*") else self.exact)[pattern] = f
            self.parents.update(pattern[:i] for i, ch in enumerate(pattern) if ch in ".[" and i)

    def lookup(self, pattern: str) -> Field | None:
        """The entry for `pattern` itself, else the nearest subtree above it."""
        if pattern in self.exact:
            return self.exact[pattern]
        cut = pattern
        while cut:
            if cut in self.subtrees:
                return self.subtrees[cut]
            cut = cut[: max(cut.rfind("."), cut.rfind("["), 0)]
        return None

    def knows(self, pattern: str) -> bool:
        return pattern in self.parents or self.lookup(pattern) is not None


@cache
def _table(kind: str) -> _Table:
    return _Table(FIELD_TABLE[kind])


def unhandled_fields(obj: Mapping[str, Any]) -> list[UnhandledField]:
    """The fields of `obj` the model does not implement (none for kinds it does not know)."""
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in FIELD_TABLE:
        return []
    return list(_walk(_table(kind), obj, "", ""))


def _empty(value: Any) -> bool:
    # null, {} and [] say nothing: the API server drops them, and they ask for nothing.
    return value is None or (isinstance(value, (Mapping, list)) and not value)


def _walk(table: _Table, value: Any, path: str, pattern: str) -> Iterator[UnhandledField]:
    container = isinstance(value, (Mapping, list))
    if path:
        entry = table.lookup(pattern)
        below = pattern in table.parents
        if entry is None and not below:
            yield UnhandledField(path, value)
            return
        if entry is not None and not container:
            if entry.values is not None and value not in entry.values:
                yield UnhandledField(path, value, restricted=True)
            return
        if entry is not None and not below:
            return  # a handled subtree (or a handled field whose shape the parser checks)
        if not container:
            return  # a scalar where an object belongs: the parser names it
    if isinstance(value, Mapping):
        for key, child in value.items():
            if _empty(child):
                continue
            child_pattern = f"{pattern}.{key}" if pattern else str(key)
            if not table.knows(child_pattern):
                placeholder = f"{pattern}.{{}}" if pattern else "{}"
                if table.knows(placeholder):
                    child_pattern = placeholder
            yield from _walk(table, child, f"{path}.{key}" if path else str(key), child_pattern)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            if not _empty(child):
                yield from _walk(table, child, f"{path}[{index}]", f"{pattern}[]")


def unknown_kinds(objects: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Kinds among `objects` the model does not know, with how many objects of each."""
    counts: dict[str, int] = {}
    for obj in objects:
        kind = obj.get("kind")
        if isinstance(kind, str) and kind not in KNOWN_KINDS:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def describe_unknown_kinds(counts: Mapping[str, int]) -> str | None:
    """One line for the logs: which kinds are present that the model does not implement (so have no effect)."""
    if not counts:
        return None
    listed = ", ".join(f"{kind} ({n})" for kind, n in sorted(counts.items()))
    return f"objects of kinds the mesh model does not implement are ignored (no effect on the mesh): {listed}"


__all__ = [
    "describe_unknown_kinds",
    "FIELD_TABLE",
    "KNOWN_KINDS",
    "REFUSED_WHEN_INCOMPLETE",
    "Field",
    "Handling",
    "UnhandledField",
    "unhandled_fields",
    "unknown_kinds",
]
