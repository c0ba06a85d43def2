"""Config-dump access: section lookup by `@type`, and field reads accepting snake_case or lowerCamelCase."""

from __future__ import annotations

import json
from typing import Any

from pyambient.proxyconfig.schema import json_name

ADMIN = "type.googleapis.com/envoy.admin.v3."


class ProxyConfigError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def g(d: Any, name: str, default: Any = None) -> Any:
    """Field `name` (snake_case) of a JSON message, also found under its lowerCamelCase name."""
    if not isinstance(d, dict):
        return default
    if name in d:
        return d[name]
    return d.get(json_name(name), default)


def parse_json(raw: bytes | str, what: str = "config dump") -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyConfigError(f"{what} is not valid JSON: {exc}") from None


class ConfigDump:
    def __init__(self, data: Any, raw: str = "") -> None:
        if not isinstance(data, dict):
            raise ProxyConfigError("config dump is not a JSON object")
        self.data = data
        self.raw = raw
        configs = data.get("configs", [])
        self.configs: list[dict[str, Any]] = (
            [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []
        )

    @classmethod
    def from_text(cls, raw: str) -> ConfigDump:
        return cls(parse_json(raw), raw)

    def section(self, kind: str, required: bool = True) -> dict[str, Any] | None:
        """The last `configs[]` entry of type `envoy.admin.v3.<kind>ConfigDump`."""
        url = f"{ADMIN}{kind}ConfigDump"
        found = None
        for c in self.configs:
            if c.get("@type") == url:
                found = c
        if found is None and required:
            raise ProxyConfigError(f"config dump has no configuration type {url}")
        return found

    def sections(self, kind: str) -> list[dict[str, Any]]:
        url = f"{ADMIN}{kind}ConfigDump"
        return [c for c in self.configs if c.get("@type") == url]
