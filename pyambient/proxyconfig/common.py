"""Helpers shared by the resource writers: output formats, subset keys, management metadata."""

from __future__ import annotations

from typing import Any

from pyambient.proxyconfig.dump import ProxyConfigError, g
from pyambient.proxyconfig.schema import normalize_typed
from pyambient.render.gojson import marshal_indent, to_plain
from pyambient.render.goyaml import to_yaml

OUTPUT_FORMATS = ("short", "json", "yaml")


def message_slice(items: list[Any], type_name: str, fmt: str) -> str:
    """istioctl's `MessageSlice` JSON (or its YAML), plus the `Fprintln` newline."""
    plain = [to_plain(normalize_typed(i, type_name)) for i in items]
    if fmt == "json":
        return marshal_indent(plain) + "\n"
    return to_yaml(plain) + "\n"


def check_format(fmt: str) -> None:
    if fmt not in OUTPUT_FORMATS:
        raise ProxyConfigError(f'output format "{fmt}" not supported')


def atoi(s: str) -> int:
    """Go `strconv.Atoi`, 0 on error."""
    body = s[1:] if s[:1] in "+-" else s
    if not body or not body.isascii() or not body.isdigit():
        return 0
    return int(s, 10)


def parse_subset_key(name: str) -> tuple[str, str, str, int]:
    """`model.ParseSubsetKey`: (direction, subset, hostname, port)."""
    dep = name.startswith(("outbound_", "inbound_"))
    parts = name.split("." if dep else "|", 3)
    if len(parts) < 4:
        return "", "", "", 0
    direction = parts[0].removesuffix("_")
    port = atoi(parts[1].removesuffix("_"))
    subset = parts[2].removesuffix("_") if dep else parts[2]
    host = parts[3]
    if "|" in host:
        host = ""
    return direction, subset, host, port


def safely_parse_subset_key(name: str) -> tuple[str, str, str, int]:
    if len(name.split("|")) > 3:
        return parse_subset_key(name)
    return "", "", name, 0


def describe_management(metadata: Any) -> str:
    fm = g(metadata, "filter_metadata")
    if not isinstance(fm, dict) or "istio" not in fm:
        return ""
    istio = fm["istio"]
    if not isinstance(istio, dict) or "config" not in istio:
        return ""
    config = istio["config"]
    s = config if isinstance(config, str) else ""
    if s.startswith("/apis/networking.istio.io/"):
        pieces = s.split("/")
        if len(pieces) == 8:
            return f"{pieces[7]}.{pieces[5]}"
        return ""
    return "<unknown>"
