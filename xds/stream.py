"""Sans-IO server side of one ADS stream, state-of-the-world and delta.

`receive(request) -> list[Event]` takes what the client sent; `respond(snapshot) -> list[response]`
gives what should be sent now. No sockets, no gRPC: `xds.server` feeds these from a grpcio stream.
Nonces tie an ACK/NACK to the response it answers; a request with a stale nonce is ignored, as the
xDS protocol says.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.envoy.service.discovery.v3 import Resource as DeltaResource

from xds.resources import ORDER, WILDCARD_BY_DEFAULT
from xds.snapshot import Snapshot

_nonces = itertools.count(1)


@dataclass(frozen=True)
class NodeIdentified:
    node: Node


@dataclass(frozen=True)
class Subscribed:
    type_url: str
    names: frozenset[str] | None  # None: wildcard


@dataclass(frozen=True)
class Acked:
    type_url: str
    version: str


@dataclass(frozen=True)
class Nacked:
    type_url: str
    version: str  # the version the client keeps (its last good one)
    rejected_version: str
    message: str


@dataclass(frozen=True)
class StaleNonce:
    type_url: str
    nonce: str


Event = NodeIdentified | Subscribed | Acked | Nacked | StaleNonce


@dataclass
class _TypeState:
    names: frozenset[str] | None = None  # None: wildcard
    subscribed: bool = False
    dirty: bool = True  # subscription changed since the last response
    sent_version: str = ""
    nonce: str = ""
    acked_version: str = ""
    nacked_version: str = ""
    # delta: what the client has, name -> version
    known: dict[str, str] = field(default_factory=dict)


def _new_nonce() -> str:
    return str(next(_nonces))


class _StreamBase:
    def __init__(self) -> None:
        self.node: Node | None = None
        self.types: dict[str, _TypeState] = {}

    def _node_event(self, node: Node | None) -> list[Event]:
        if self.node is None and node is not None and node.id:
            self.node = node
            return [NodeIdentified(node)]
        return []

    def _ack_or_nack(self, state: _TypeState, type_url: str, nonce: str, error: str, version: str) -> list[Event]:
        if nonce != state.nonce:
            return [StaleNonce(type_url, nonce)]
        if error:
            state.nacked_version = state.sent_version
            return [Nacked(type_url, version, state.sent_version, error)]
        state.acked_version = state.sent_version
        return [Acked(type_url, state.sent_version)]

    def _pending(self, snapshot: Snapshot) -> list[tuple[str, _TypeState, str]]:
        """(type, state, version) of each subscribed type that has something to say now."""
        out = []
        for type_url in self.subscribed_types():
            state = self.types[type_url]
            version = snapshot.version(type_url)
            if not state.dirty and state.nonce and version in (state.sent_version, state.nacked_version):
                continue  # nothing new, or exactly what the client refused: wait for a change
            out.append((type_url, state, version))
        return out

    def subscribed_types(self) -> list[str]:
        return [t for t in ORDER if t in self.types and self.types[t].subscribed] + [
            t for t in self.types if t not in ORDER and self.types[t].subscribed
        ]


class SotwStream(_StreamBase):
    """State-of-the-world ADS: each response carries every resource of its type the client wants."""

    def receive(self, request: DiscoveryRequest) -> list[Event]:
        events = self._node_event(request.node)
        type_url = request.type_url
        state = self.types.setdefault(type_url, _TypeState())
        names = frozenset(request.resource_names) or (None if type_url in WILDCARD_BY_DEFAULT else frozenset())
        if request.response_nonce:
            events += self._ack_or_nack(
                state,
                type_url,
                request.response_nonce,
                request.error_detail.message if request.error_detail else "",
                request.version_info,
            )
            if events and isinstance(events[-1], StaleNonce):
                return events
        if not state.subscribed or names != state.names:
            state.names, state.subscribed, state.dirty = names, True, True
            events.append(Subscribed(type_url, names))
        return events

    def respond(self, snapshot: Snapshot) -> list[DiscoveryResponse]:
        out = []
        for type_url, state, version in self._pending(snapshot):
            items = snapshot.of_type(type_url)
            chosen = [items[n] for n in sorted(items) if state.names is None or n in state.names]
            state.sent_version, state.nonce, state.dirty = version, _new_nonce(), False
            out.append(
                DiscoveryResponse(
                    version_info=version,
                    type_url=type_url,
                    nonce=state.nonce,
                    resources=[r.any for r in chosen],
                )
            )
        return out


class DeltaStream(_StreamBase):
    """Incremental ADS: responses carry only changed resources and the names removed."""

    def receive(self, request: DeltaDiscoveryRequest) -> list[Event]:
        events = self._node_event(request.node)
        type_url = request.type_url
        first = type_url not in self.types
        state = self.types.setdefault(type_url, _TypeState())
        if first:
            state.known = dict(request.initial_resource_versions)
        if request.response_nonce:
            events += self._ack_or_nack(
                state,
                type_url,
                request.response_nonce,
                request.error_detail.message if request.error_detail else "",
                "",
            )
            if events and isinstance(events[-1], StaleNonce):
                return events
        subscribe, unsubscribe = set(request.resource_names_subscribe), set(request.resource_names_unsubscribe)
        if first or subscribe or unsubscribe:
            names = state.names
            explicit = frozenset(subscribe - {"*"})
            if first:
                wildcard = "*" in subscribe or (not explicit and type_url in WILDCARD_BY_DEFAULT)
                names = None if wildcard else explicit
            elif "*" in subscribe:
                names = None
            elif "*" in unsubscribe:
                names = explicit
            elif names is not None:
                names = (names | explicit) - unsubscribe
            for gone in unsubscribe:
                state.known.pop(gone, None)
            state.names, state.subscribed, state.dirty = names, True, True
            events.append(Subscribed(type_url, names))
        return events

    def respond(self, snapshot: Snapshot) -> list[DeltaDiscoveryResponse]:
        out = []
        for type_url, state, version in self._pending(snapshot):
            items = snapshot.of_type(type_url)
            wanted = {n: r for n, r in items.items() if state.names is None or n in state.names}
            changed = [wanted[n] for n in sorted(wanted) if state.known.get(n) != wanted[n].version]
            removed = sorted(n for n in state.known if n not in wanted)
            state.sent_version, state.dirty = version, False
            if not changed and not removed and state.nonce:
                continue
            state.nonce = _new_nonce()
            for r in changed:
                state.known[r.name] = r.version
            for n in removed:
                del state.known[n]
            out.append(
                DeltaDiscoveryResponse(
                    system_version_info=version,
                    type_url=type_url,
                    nonce=state.nonce,
                    resources=[DeltaResource(name=r.name, version=r.version, resource=r.any) for r in changed],
                    removed_resources=removed,
                )
            )
        return out
