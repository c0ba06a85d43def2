"""An immutable, versioned set of resources for one node (go-control-plane's Snapshot, per type)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import betterproto2
from envoy_data_plane.google.protobuf import Any


@dataclass(frozen=True)
class Resource:
    """One named resource, serialized once; its version is a digest of its bytes."""

    name: str
    any: Any
    version: str

    @staticmethod
    def of(name: str, message: betterproto2.Message) -> Resource:
        packed = Any.pack(message)
        return Resource(name, packed, hashlib.sha256(packed.value).hexdigest()[:16])


@dataclass(frozen=True)
class Snapshot:
    """Resources by type URL and name. A type's version changes iff any of its resources changed."""

    resources: Mapping[str, Mapping[str, Resource]] = field(default_factory=dict)

    @staticmethod
    def build(by_type: Mapping[str, Iterable[tuple[str, betterproto2.Message]]]) -> Snapshot:
        out: dict[str, dict[str, Resource]] = {}
        for type_url, items in by_type.items():
            out[type_url] = {name: Resource.of(name, msg) for name, msg in items}
        return Snapshot(out)

    def version(self, type_url: str) -> str:
        items = self.resources.get(type_url, {})
        digest = hashlib.sha256()
        for name in sorted(items):
            digest.update(name.encode())
            digest.update(items[name].version.encode())
        return digest.hexdigest()[:16]

    def of_type(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, {})

    def total_bytes(self) -> int:
        return sum(len(r.any.value) for items in self.resources.values() for r in items.values())
