"""`proxy-config ecds` (`PrintEcdsSummary`, `PrintEcds`)."""

from __future__ import annotations

from typing import Any

from pyambient.proxyconfig.dump import ConfigDump, g
from pyambient.proxyconfig.schema import TYPE_PREFIX, normalize_typed
from pyambient.render.gojson import marshal_indent, to_plain
from pyambient.render.gosort import sort_slice
from pyambient.render.goyaml import to_yaml
from pyambient.render.tabwriter import TabWriter


def _filters(dump: ConfigDump) -> list[dict[str, Any]]:
    dump.section("Ecds")  # raises when absent
    out: list[dict[str, Any]] = []
    for section in dump.sections("Ecds"):
        out.extend(f for f in g(section, "ecds_filters", []) or [] if isinstance(f, dict))
    return out


def summary(dump: ConfigDump) -> str:
    rows = []
    for f in _filters(dump):
        ext = g(f, "ecds_filter", {}) or {}
        tc = g(ext, "typed_config")
        rows.append((str(g(ext, "name", "")), str(tc.get("@type", "")) if isinstance(tc, dict) else ""))
    sort_slice(rows, lambda a, b: a[1] < b[1] if a[1] != b[1] else a[0] < b[0])
    w = TabWriter(0, 8, 5)
    w.write("ECDS NAME\tTYPE\n")
    for name, url in rows:
        w.line(name, url.removeprefix(TYPE_PREFIX))
    return w.getvalue()


def dump_output(dump: ConfigDump, fmt: str) -> str:
    node = normalize_typed({"ecds_filters": _filters(dump)}, "envoy.admin.v3.EcdsConfigDump")
    plain = to_plain(node)
    if fmt == "yaml":
        return to_yaml(plain) + "\n"
    # protojson multiline: indent 4, one space after ':' (detrand may make it two upstream), no HTML escaping
    return marshal_indent(plain, escape_html=False) + "\n"
