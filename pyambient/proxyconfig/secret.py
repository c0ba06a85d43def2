"""`proxy-config secret` (`sds.printSecretItemsTabular`, `PrintSecretDump`)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from pyambient.proxyconfig.dump import ConfigDump, g
from pyambient.proxyconfig.schema import normalize_typed
from pyambient.render.gojson import jsonpb_indent, to_plain
from pyambient.render.goyaml import to_yaml
from pyambient.render.tabwriter import TabWriter

SPIFFE_VALIDATOR = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"


@dataclass
class SecretItem:
    name: str
    state: str
    data: str = ""
    trust_domain: str = ""
    valid: bool = False
    cert_type: str = ""
    serial: str = ""
    not_after: str = ""
    not_before: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_cert(data_b64: str) -> x509.Certificate | None:
    try:
        pem = base64.b64decode(data_b64)
        start = pem.find(b"-----BEGIN")
        if start < 0:
            return None
        end_marker = pem.find(b"-----END", start)
        end = pem.find(b"-----", end_marker + 8)
        return x509.load_pem_x509_certificate(pem[start : end + 5] + b"\n")
    except (ValueError, TypeError):
        return None


def _fill(item: SecretItem, now: dt.datetime) -> None:
    cert = _first_cert(item.data) if item.data else None
    if cert is None:
        item.valid = False
        return
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    item.cert_type = "CA" if is_ca else "Cert Chain"
    item.serial = f"{cert.serial_number:032x}"
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    item.not_after, item.not_before = _rfc3339(na), _rfc3339(nb)
    item.valid = nb < now < na
    if not item.trust_domain:
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
                if uri.startswith("spiffe://"):
                    item.trust_domain = uri[len("spiffe://") :].split("/")[0]
        except x509.ExtensionNotFound:
            pass


def _items_for(entry: dict[str, Any], state: str) -> list[SecretItem]:
    secret = g(entry, "secret", {}) or {}
    name = str(g(entry, "name", ""))
    chain = g(g(g(secret, "tls_certificate"), "certificate_chain"), "inline_bytes")
    if chain:
        return [SecretItem(name, state, chain)]
    vc = g(secret, "validation_context")
    ca = g(g(vc, "trusted_ca"), "inline_bytes")
    if ca:
        return [SecretItem(name, state, ca)]
    tc = g(g(vc, "custom_validator_config"), "typed_config", {}) or {}
    if tc.get("@type") == SPIFFE_VALIDATOR:
        inner = str(g(secret, "name", ""))
        return [
            SecretItem(
                inner, state, str(g(g(td, "trust_bundle"), "inline_bytes", "") or ""), str(g(td, "name", ""))
            )
            for td in g(tc, "trust_domains", []) or []
        ]
    return [SecretItem(name, state)]


def items(dump: ConfigDump, now: dt.datetime | None = None) -> list[SecretItem]:
    section = dump.section("Secrets") or {}
    now = now or dt.datetime.now(dt.UTC)
    out: list[SecretItem] = []
    for entry in g(section, "dynamic_warming_secrets", []) or []:
        out.extend(_items_for(entry, "WARMING"))
    for entry in g(section, "dynamic_active_secrets", []) or []:
        out.extend(_items_for(entry, "ACTIVE"))
    for it in out:
        _fill(it, now)
    return out


def summary(dump: ConfigDump, include_type: bool = False, now: dt.datetime | None = None) -> str:
    section = dump.section("Secrets") or {}
    if not (g(section, "dynamic_active_secrets") or g(section, "dynamic_warming_secrets")):
        return "No active or warming secrets found.\n"
    secrets = items(dump, now)
    with_td = bool(secrets) and all(s.trust_domain for s in secrets)
    w = TabWriter(0, 5, 5)
    header = "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE"
    w.write(header + ("\tTRUST DOMAIN" if with_td else "") + "\n")
    for s in secrets:
        name = ("secret/" if include_type else "") + s.name
        cells: list[object] = [name, s.cert_type, s.state, "true" if s.valid else "false", s.serial]
        cells += [s.not_after, s.not_before]
        if with_td:
            cells.append(s.trust_domain)
        w.line(*cells)
    return w.getvalue()


def dump_output(dump: ConfigDump, fmt: str) -> str:
    section = dump.section("Secrets") or {}
    body = {k: v for k, v in section.items() if k != "@type"}
    node = normalize_typed(body, "envoy.admin.v3.SecretsConfigDump")
    if fmt == "yaml":
        return to_yaml(to_plain(node)) + "\n"
    return jsonpb_indent(node) + "\n"
