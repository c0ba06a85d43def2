"""Go-style JSON output.

* `marshal_indent(value)`: `encoding/json.MarshalIndent(v, "", "    ")` of plain Python data (dicts keep
  their order), with Go's HTML escaping of `<`, `>`, `&`, U+2028 and U+2029.
* A small typed tree (`Msg`, `MapN`, `ListN`, `StructN`, `ValueN`, `AnyWKT`, `Scalar`, `Raw`) that keeps
  what protobuf JSON printers need to know, rendered either through `to_plain` (then `marshal_indent`)
  or by `jsonpb_indent`, the legacy `golang/protobuf/jsonpb` pretty printer with its Struct quirk.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

INDENT = "    "


class GoNumber(str):
    """A JSON number already formatted the Go way; emitted verbatim."""


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def quote(s: str, escape_html: bool = True) -> str:
    """Go `encoding/json` string encoding."""
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif escape_html and ch in "<>&":
            out.append(f"\\u{ord(ch):04x}")
        elif ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _shortest_digits(f: float, bits: int) -> str:
    if bits == 32:
        target = struct.unpack("f", struct.pack("f", f))[0]
        for prec in range(1, 18):
            text = f"{f:.{prec}g}"
            if struct.unpack("f", struct.pack("f", float(text)))[0] == target:
                return text
    return repr(f)


def format_float(f: float, bits: int = 64) -> str:
    """`encoding/json` float formatting (also used by protojson)."""
    if math.isnan(f):
        return '"NaN"'
    if math.isinf(f):
        return '"Infinity"' if f > 0 else '"-Infinity"'
    a = abs(f)
    d = Decimal(_shortest_digits(f, bits))
    if a != 0 and (a < 1e-6 or a >= 1e21):
        sign, digits, exp = d.as_tuple()
        ds = "".join(str(x) for x in digits).rstrip("0") or "0"
        e = int(exp) + len(digits) - 1
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        es = f"{'-' if e < 0 else '+'}{abs(e):02d}"
        if es.startswith("-0"):
            es = "-" + es[2:]
        return ("-" if sign else "") + mant + "e" + es
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0" if text == "" else "-0"
    return text


def marshal_indent(value: Any, prefix: str = "", indent: str = INDENT, escape_html: bool = True) -> str:
    """`json.MarshalIndent(value, prefix, indent)` for plain Python data.

    `escape_html=False` gives protojson's multiline form instead (same layout, no HTML escaping).
    """
    out: list[str] = []
    _emit(value, out, prefix, indent, 0, escape_html)
    return "".join(out)


def _scalar_text(value: Any, escape_html: bool = True) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, GoNumber):
        return str(value)
    if isinstance(value, str):
        return quote(value, escape_html)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    raise TypeError(f"cannot marshal {type(value).__name__}")


def _emit(value: Any, out: list[str], prefix: str, indent: str, depth: int, escape_html: bool) -> None:
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            out.append("," if i else "")
            out.append("\n" + prefix + indent * (depth + 1) + quote(str(k), escape_html) + ": ")
            _emit(v, out, prefix, indent, depth + 1, escape_html)
        out.append("\n" + prefix + indent * depth + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, v in enumerate(value):
            out.append("," if i else "")
            out.append("\n" + prefix + indent * (depth + 1))
            _emit(v, out, prefix, indent, depth + 1, escape_html)
        out.append("\n" + prefix + indent * depth + "]")
    else:
        out.append(_scalar_text(value, escape_html))


# --- typed tree ------------------------------------------------------------------------------


@dataclass
class Scalar:
    value: Any  # str | int | bool | None | GoNumber


@dataclass
class Raw:
    """Data without a known schema: printed as plain JSON in input order."""

    value: Any


@dataclass
class ListN:
    items: list[Node]


@dataclass
class MapN:
    entries: list[tuple[str, Node]]  # already sorted


@dataclass
class StructN:
    entries: list[tuple[str, Node]]  # sorted; values are ValueN


@dataclass
class ListValueN:
    items: list[Node]  # ValueN


@dataclass
class ValueN:
    kind: Node  # Scalar | StructN | ListValueN


@dataclass
class Msg:
    fields: list[tuple[str, Node]] = field(default_factory=list)
    type_url: str | None = None


@dataclass
class WKTScalar:
    """Wrapper, Duration, Timestamp, FieldMask: a message printed as a scalar."""

    value: Scalar


@dataclass
class AnyWKT:
    type_url: str
    inner: Node  # a well-known type node


Node = Scalar | Raw | ListN | MapN | StructN | ListValueN | ValueN | Msg | WKTScalar | AnyWKT


def to_plain(node: Node) -> Any:
    """The tree as plain Python data in output order (for `marshal_indent` and YAML)."""
    if isinstance(node, Scalar):
        return node.value
    if isinstance(node, WKTScalar):
        return node.value.value
    if isinstance(node, Raw):
        return node.value
    if isinstance(node, (ListN, ListValueN)):
        return [to_plain(i) for i in node.items]
    if isinstance(node, (MapN, StructN)):
        return {k: to_plain(v) for k, v in node.entries}
    if isinstance(node, ValueN):
        return to_plain(node.kind)
    if isinstance(node, AnyWKT):
        return {"@type": node.type_url, "value": to_plain(node.inner)}
    out: dict[str, Any] = {}
    if node.type_url:
        out["@type"] = node.type_url
    for k, v in node.fields:
        out[k] = to_plain(v)
    return out


def jsonpb_indent(node: Node, indent: str = INDENT) -> str:
    """Legacy jsonpb `Marshaler{Indent: indent}` output of a message tree."""
    return _jp_message(node, "", None, indent)


def _jp_message(node: Node, ind: str, type_url: str | None, i: str) -> str:
    if isinstance(node, AnyWKT):
        return (
            "{\n"
            + ind
            + i
            + '"@type": '
            + quote(node.type_url)
            + ",\n"
            + ind
            + i
            + '"value": '
            + _jp_message(node.inner, ind + i, None, i)
            + "\n"
            + ind
            + "}"
        )
    if isinstance(node, WKTScalar):
        return _scalar_text(node.value.value)
    if isinstance(node, Scalar):
        return _scalar_text(node.value)
    if isinstance(node, Raw):
        return marshal_indent(node.value, ind, i)
    if isinstance(node, ValueN):
        return _jp_value(node.kind, ind, i)
    if isinstance(node, StructN):
        return _jp_value(MapN(node.entries), ind, i)
    if isinstance(node, ListValueN):
        return _jp_value(ListN(node.items), ind, i)
    if isinstance(node, (MapN, ListN)):
        return _jp_value(node, ind, i)
    url = type_url or node.type_url
    parts: list[str] = []
    if url:
        parts.append(ind + i + '"@type": ' + quote(url))
    for name, value in node.fields:
        parts.append(ind + i + quote(name) + ": " + _jp_value(value, ind, i))
    return "{\n" + ",\n".join(parts) + "\n" + ind + "}"


def _jp_value(node: Node, ind: str, i: str) -> str:
    if isinstance(node, ListN):
        s = "["
        for n, item in enumerate(node.items):
            s += ("," if n else "") + "\n" + ind + i + i + _jp_singular(item, ind + i, i)
        return s + "\n" + ind + i + "]"
    if isinstance(node, MapN):
        s = "{"
        for n, (k, v) in enumerate(node.entries):
            s += ("," if n else "") + "\n" + ind + i + i + quote(k) + ": " + _jp_singular(v, ind + i, i)
        return s + "\n" + ind + i + "}"
    return _jp_singular(node, ind, i)


def _jp_singular(node: Node, ind: str, i: str) -> str:
    if isinstance(node, Scalar):
        return _scalar_text(node.value)
    return _jp_message(node, ind + i, None, i)
