"""`proxy-config bootstrap` (`PrintBootstrapDump`, `PrintBootstrapSummary`)."""

from __future__ import annotations

from typing import Any

from pyambient.proxyconfig.dump import ConfigDump, g
from pyambient.proxyconfig.schema import normalize_typed
from pyambient.render.gojson import jsonpb_indent, to_plain
from pyambient.render.goyaml import to_yaml
from pyambient.render.tabwriter import TabWriter


def _section_body(dump: ConfigDump) -> dict[str, Any]:
    section = dump.section("Bootstrap") or {}
    return {k: v for k, v in section.items() if k != "@type"}


def dump_output(dump: ConfigDump, fmt: str) -> str:
    node = normalize_typed(_section_body(dump), "envoy.admin.v3.BootstrapConfigDump")
    if fmt == "yaml":
        return to_yaml(to_plain(node)) + "\n"
    return jsonpb_indent(node) + "\n"


def _semver(node: Any) -> str:
    v = g(g(node, "user_agent_build_version"), "version", {}) or {}
    return f"{g(v, 'major_number', 0) or 0}.{g(v, 'minor_number', 0) or 0}.{g(v, 'patch', 0) or 0}"


def summary(dump: ConfigDump) -> str:
    body = _section_body(dump)
    node = g(g(body, "bootstrap"), "node", {}) or {}
    meta = g(node, "metadata", {}) or {}
    w = TabWriter(0, 8, 1)
    version = meta.get("ISTIO_VERSION", "")
    if version:
        w.line("Istio Version:", version)
    sha = meta.get("ISTIO_PROXY_SHA", "")
    if sha:
        if ":" in sha:
            sha = sha.split(":")[1]
        w.line("Istio Proxy Version:", sha)
    envoy = _semver(node)
    build_meta = g(g(node, "user_agent_build_version"), "metadata", {}) or {}
    if "build.label" in build_meta:
        envoy += f"-{build_meta['build.label']}"
    for key in ("revision.status", "build.type", "ssl.version"):
        if key in build_meta:
            envoy += f"/{build_meta[key]}"
    w.line("Envoy Version:", envoy)
    return w.getvalue()
