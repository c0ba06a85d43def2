"""The enrolment protocol between the node agent and the ztunnel (sans-IO: bytes + fds in, messages out).

Transport: a unix SOCK_SEQPACKET socket (one datagram = one message, like Istio's ZDS), the pod's netns fd
attached with SCM_RIGHTS. Encoding: one small JSON object per datagram rather than ZDS protobufs — both ends are
this project's code, the messages have five fields, and JSON keeps the socket debuggable with `socat`; the
semantics are ZDS's:

  agent → ztunnel   {"type": "add", "uid", "namespace", "name", "ips": [..]} + the pod's netns fd
                    {"type": "del", "uid"} (+ optionally the netns fd: remove rules of a pod the ztunnel
                                              has not seen since it restarted)
                    {"type": "snapshot-sent"}   every pod that should be enrolled has been sent (after a
                                              (re)connect); the ztunnel drops pods of an earlier connection
                                              that were not re-sent
  ztunnel → agent   {"type": "ack", "error": ""}  one per message, in order; a non-empty error says why the
                                              message was refused (nothing was half-applied)
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE = 64 * 1024


class EnrolmentError(ValueError):
    pass


@dataclass(frozen=True)
class AddPod:
    uid: str
    namespace: str
    name: str
    ips: tuple[str, ...]


@dataclass(frozen=True)
class DelPod:
    uid: str


@dataclass(frozen=True)
class SnapshotSent:
    pass


@dataclass(frozen=True)
class Ack:
    error: str = ""


Message = AddPod | DelPod | SnapshotSent | Ack

_FIELDS: dict[str, tuple[set[str], int | tuple[int, int]]] = {
    # type → (fields besides "type", number of fds: exact, or (min, max))
    "add": ({"uid", "namespace", "name", "ips"}, 1),
    "del": ({"uid"}, (0, 1)),
    "snapshot-sent": (set(), 0),
    "ack": ({"error"}, 0),
}


@dataclass
class Decoded:
    message: Message
    fds: list[int] = field(default_factory=list)


def encode(msg: Message) -> bytes:
    body: dict[str, Any]
    if isinstance(msg, AddPod):
        body = {"type": "add", "uid": msg.uid, "namespace": msg.namespace, "name": msg.name, "ips": list(msg.ips)}
    elif isinstance(msg, DelPod):
        body = {"type": "del", "uid": msg.uid}
    elif isinstance(msg, SnapshotSent):
        body = {"type": "snapshot-sent"}
    else:
        body = {"type": "ack", "error": msg.error}
    return json.dumps(body, separators=(",", ":")).encode()


def _str(body: dict[str, Any], name: str) -> str:
    v = body.get(name)
    if not isinstance(v, str) or not v:
        raise EnrolmentError(f"{body.get('type')}: field {name!r} must be a non-empty string, got {v!r}")
    return v


def decode(data: bytes, fds: list[int]) -> Message:
    """One datagram (and the fds that came with it) → a message; EnrolmentError names what was wrong. The
    caller owns the fds either way (closes them on error)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise EnrolmentError(f"not a JSON message: {e}") from None
    if not isinstance(body, dict):
        raise EnrolmentError("a message must be a JSON object")
    kind = body.get("type")
    if kind not in _FIELDS:
        raise EnrolmentError(f"unknown message type {kind!r}")
    allowed, nfds = _FIELDS[kind]
    unknown = sorted(set(body) - allowed - {"type"})
    if unknown:
        raise EnrolmentError(f"{kind}: unknown field(s) {', '.join(unknown)}")
    lo, hi = nfds if isinstance(nfds, tuple) else (nfds, nfds)
    if not lo <= len(fds) <= hi:
        raise EnrolmentError(f"{kind}: expects {nfds} netns fd(s), got {len(fds)}")
    if kind == "add":
        ips = body.get("ips")
        if not isinstance(ips, list) or not ips:
            raise EnrolmentError("add: field 'ips' must be a non-empty list of IP addresses")
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except (ValueError, TypeError):
                raise EnrolmentError(f"add: field 'ips': {ip!r} is not an IP address") from None
        return AddPod(_str(body, "uid"), _str(body, "namespace"), _str(body, "name"), tuple(ips))
    if kind == "del":
        return DelPod(_str(body, "uid"))
    if kind == "snapshot-sent":
        return SnapshotSent()
    err = body.get("error")
    if not isinstance(err, str):
        raise EnrolmentError("ack: field 'error' must be a string")
    return Ack(err)
