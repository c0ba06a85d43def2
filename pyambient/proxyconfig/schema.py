"""Protobuf-JSON re-marshalling of Envoy config-dump JSON, without parsing it into proto objects.

istioctl re-emits Envoy's JSON in `.proto` *declaration* order with lowerCamelCase names, sorted map keys
and unknown fields dropped. The declaration order and field kinds come from the generated
`envoy_data_plane` (betterproto2) classes, used here only as schema metadata. Types that cannot be
resolved are kept as they are (`Raw`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

from pyambient.render.gojson import (
    AnyWKT,
    GoNumber,
    ListN,
    ListValueN,
    MapN,
    Msg,
    Node,
    Raw,
    Scalar,
    StructN,
    ValueN,
    WKTScalar,
    format_float,
)

TYPE_PREFIX = "type.googleapis.com/"
_PKG_ROOT = "envoy_data_plane"
_INT64 = {"int64", "uint64", "sint64", "fixed64", "sfixed64"}
_INT32 = {"int32", "uint32", "sint32", "fixed32", "sfixed32"}
_WRAPPERS_64 = {"Int64Value", "UInt64Value"}
_SCALAR_WKT = {
    "BoolValue",
    "StringValue",
    "BytesValue",
    "Int32Value",
    "UInt32Value",
    "Int64Value",
    "UInt64Value",
    "DoubleValue",
    "FloatValue",
    "Duration",
    "Timestamp",
    "FieldMask",
}


def json_name(proto_name: str) -> str:
    """protoc's default `json_name`: drop underscores, upper-case the following character."""
    out: list[str] = []
    upper = False
    for ch in proto_name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


@functools.cache
def resolve(full_name: str) -> type | None:
    """The generated class for a fully-qualified message name (`envoy.config.cluster.v3.Cluster`)."""
    full_name = full_name.removeprefix(TYPE_PREFIX)
    parts = full_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join([_PKG_ROOT, *parts[:cut]])
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        # betterproto2 re-cases names (`HTTPFault` -> `HttpFault`) and joins nested ones (`A.B` -> `AB`)
        wanted = "".join(parts[cut:]).lower()
        for attr, cls in vars(module).items():
            if attr.lower() == wanted and isinstance(cls, type) and dataclasses.is_dataclass(cls):
                return cls
        return None
    return None


def _is_wkt(cls: type, *names: str) -> bool:
    return cls.__module__ == f"{_PKG_ROOT}.google.protobuf" and cls.__name__ in names


def _get(d: dict[str, Any], proto_name: str) -> tuple[bool, Any]:
    if proto_name in d:
        return True, d[proto_name]
    jn = json_name(proto_name)
    if jn in d:
        return True, d[jn]
    return False, None


def _is_default(value: Any) -> bool:
    return value in (None, "", 0, False, [], {}) and value is not True


def _is_enum_zero(enum_cls: Any, value: Any) -> bool:
    """Is `value` (a name, as Envoy prints enums) the enum's zero value, which proto3 JSON omits?"""
    try:
        return bool(enum_cls(0).name == value)
    except (TypeError, ValueError):
        return False


def _scalar(proto_type: str, value: Any) -> Scalar:
    if proto_type in _INT64:
        return Scalar(str(value))
    if proto_type in _INT32 and isinstance(value, (int, str)) and str(value).lstrip("-").isdigit():
        return Scalar(int(value))
    if proto_type in ("double", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return Scalar(GoNumber(format_float(float(value), 32 if proto_type == "float" else 64)))
    return Scalar(value)


def normalize_value(value: Any) -> ValueN:
    """A `google.protobuf.Value`."""
    if isinstance(value, dict):
        return ValueN(normalize_struct(value))
    if isinstance(value, list):
        return ValueN(ListValueN([normalize_value(v) for v in value]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # number_value is a double: `1` and `1.0` both print as 1
        return ValueN(Scalar(GoNumber(format_float(float(value)))))
    return ValueN(Scalar(value))


def normalize_struct(value: dict[str, Any]) -> StructN:
    return StructN([(k, normalize_value(value[k])) for k in sorted(value)])


def _wkt_node(cls: type, value: Any) -> Node:
    name = cls.__name__
    if name == "Struct":
        return normalize_struct(value if isinstance(value, dict) else {})
    if name == "Value":
        return normalize_value(value)
    if name == "ListValue":
        return ListValueN([normalize_value(v) for v in (value or [])])
    if name == "Empty":
        return Msg([])
    if name in _WRAPPERS_64:
        return WKTScalar(Scalar(str(value)))
    if name in ("DoubleValue", "FloatValue"):
        return WKTScalar(_scalar("float" if name == "FloatValue" else "double", value))
    if name in ("Int32Value", "UInt32Value"):
        return WKTScalar(_scalar("int32", value))
    return WKTScalar(Scalar(value))


def normalize_any(value: Any) -> Node:
    if not isinstance(value, dict):
        return Raw(value)
    url = value.get("@type")
    if not url:
        return Msg([])
    if url.endswith((".udpa.type.v1.TypedStruct", "/udpa.type.v1.TypedStruct", "/xds.type.v3.TypedStruct")):
        return _typed_struct(url, value)
    cls = resolve(url)
    if cls is None:
        return Raw(value)
    if _is_wkt(cls, "Struct", "Value", "ListValue", *_SCALAR_WKT):
        return AnyWKT(url, _wkt_node(cls, value.get("value")))
    rest = {k: v for k, v in value.items() if k != "@type"}
    node = normalize(rest, cls)
    if isinstance(node, Msg):
        node.type_url = url
    return node


def _typed_struct(url: str, value: dict[str, Any]) -> Msg:
    """`udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` (not in the generated package)."""
    fields: list[tuple[str, Node]] = []
    type_url = value.get("type_url", value.get("typeUrl", ""))
    if type_url:
        fields.append(("typeUrl", Scalar(type_url)))
    if isinstance(value.get("value"), dict):
        fields.append(("value", normalize_struct(value["value"])))
    return Msg(fields, url)


def normalize(value: Any, cls: type) -> Node:
    """The JSON `value` of message type `cls`, as a typed tree in declaration order."""
    if _is_wkt(cls, "Any"):
        return normalize_any(value)
    if _is_wkt(cls, "Struct", "Value", "ListValue", "Empty", *_SCALAR_WKT):
        return _wkt_node(cls, value)
    if not isinstance(value, dict) or not dataclasses.is_dataclass(cls):
        return Raw(value)
    meta = cls._betterproto  # type: ignore[attr-defined]
    fields: list[tuple[str, Node]] = []
    for f in dataclasses.fields(cls):
        fm = meta.meta_by_field_name.get(f.name)
        if fm is None:
            continue
        proto_name = f.name
        present, v = _get(value, proto_name)
        if not present and proto_name.endswith("_"):
            present, v = _get(value, proto_name.rstrip("_"))
            proto_name = proto_name.rstrip("_")
        if not present or v is None:
            continue
        explicit = fm.optional or fm.group is not None
        if fm.proto_type == "map":
            if not isinstance(v, dict) or not v:
                continue
            val_meta = fm.map_meta[1]
            val_cls = meta.cls_by_field.get(f"{f.name}.value")
            entries = []
            for k in sorted(v, key=str):
                entries.append((str(k), _field_value(val_meta.proto_type, val_cls, v[k], val_meta.unwrap)))
            fields.append((json_name(proto_name), MapN(entries)))
            continue
        if fm.repeated:
            if not isinstance(v, list) or not v:
                continue
            sub = meta.cls_by_field.get(f.name)
            fields.append(
                (json_name(proto_name), ListN([_field_value(fm.proto_type, sub, x, fm.unwrap) for x in v]))
            )
            continue
        sub = meta.cls_by_field.get(f.name)
        if fm.proto_type != "message" and not explicit:
            if _is_default(v) or (fm.proto_type == "enum" and _is_enum_zero(sub, v)):
                continue
        fields.append((json_name(proto_name), _field_value(fm.proto_type, sub, v, fm.unwrap)))
    return Msg(fields)


def _field_value(proto_type: str, sub: type | None, v: Any, unwrap: Any) -> Node:
    if proto_type == "message":
        if unwrap is not None:
            sub = unwrap()
        if sub is None:
            return Raw(v)
        return normalize(v, sub)
    if proto_type == "enum":
        return Scalar(v)
    return _scalar(proto_type, v)


def normalize_typed(value: Any, type_name: str) -> Node:
    cls = resolve(type_name)
    if cls is None:
        return Raw(value)
    return normalize(value, cls)
