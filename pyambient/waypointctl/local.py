"""Local-mode backend: Gateway and Namespace objects as YAML files in a mesh directory.

Like the control plane's loader, every `*.yaml`, `*.yml` and `*.json` below DIR is read.
`apply` writes `DIR/<ns>-<name>-gateway.yaml`; `delete` removes the file holding the Gateway; namespace
labels are edited in the file that holds the Namespace object (created as `DIR/<ns>-namespace.yaml` if
there is none). A Gateway that is well-formed counts as `Programmed=True`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pyambient.waypointctl.model import (
    WAYPOINT_CLASS,
    Condition,
    WaypointError,
    WaypointInfo,
    info_from_object,
    is_waypoint,
)

SUFFIXES = (".yaml", ".yml", ".json")  # what the control plane's mesh-directory loader reads, recursively


def _docs(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
        docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise WaypointError(f"cannot read {path}: {exc}") from None
    return [d for d in docs if d is not None]


def _dump(path: Path, docs: list[Any]) -> None:
    if path.suffix == ".json" and len(docs) == 1:
        path.write_text(json.dumps(docs[0], indent=2) + "\n", encoding="utf-8")
        return
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False), encoding="utf-8")


def well_formed(obj: dict[str, Any]) -> str:
    """ "" when the waypoint Gateway is usable, else the reason it is not."""
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        return "metadata.name is missing"
    listeners = (obj.get("spec") or {}).get("listeners") or []
    if not any(
        isinstance(lis, dict) and lis.get("protocol") == "HBONE" and lis.get("port") == 15008
        for lis in listeners
    ):
        return "no HBONE listener on port 15008"
    return ""


class LocalBackend:
    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise WaypointError(f"mesh directory {directory} does not exist")

    def _files(self) -> list[Path]:
        return sorted(p for p in self.dir.rglob("*") if p.suffix in SUFFIXES and p.is_file())

    def _gateways(self) -> list[tuple[Path, dict[str, Any]]]:
        out = []
        for path in self._files():
            for doc in _docs(path):
                if is_waypoint(doc):
                    out.append((path, doc))
        return out

    def apply(self, gw: dict[str, Any]) -> None:
        """Create `<ns>-<name>-gateway.yaml`, or update the Gateway where it already is.

        Like a server-side apply, labels set by others survive, the fields this command owns are replaced.
        """
        meta = gw["metadata"]
        for path, doc in self._gateways():
            info = info_from_object(doc)
            if (info.namespace, info.name) == (meta["namespace"], meta["name"]):
                docs = _docs(path)
                merged = dict(doc)
                merged["apiVersion"] = gw["apiVersion"]
                merged_meta = dict(doc.get("metadata") or {})
                labels = {**(merged_meta.get("labels") or {}), **(meta.get("labels") or {})}
                if labels:
                    merged_meta["labels"] = labels
                merged["metadata"] = merged_meta
                merged["spec"] = {**(doc.get("spec") or {}), **gw["spec"]}
                _dump(path, [merged if d == doc else d for d in docs])
                return
        _dump(self.dir / f"{meta['namespace']}-{meta['name']}-gateway.yaml", [gw])

    def _namespace_doc(self, namespace: str) -> tuple[Path, list[Any], dict[str, Any]] | None:
        for path in self._files():
            docs = _docs(path)
            for doc in docs:
                if (
                    isinstance(doc, dict)
                    and doc.get("kind") == "Namespace"
                    and ((doc.get("metadata") or {}).get("name") == namespace)
                ):
                    return path, docs, doc
        return None

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        found = self._namespace_doc(namespace)
        if found is None:
            return None
        return dict((found[2].get("metadata") or {}).get("labels") or {})

    def label_namespace(self, namespace: str, key: str, value: str) -> None:
        found = self._namespace_doc(namespace)
        if found is None:
            path = self.dir / f"{namespace}-namespace.yaml"
            doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            docs: list[Any] = [doc]
        else:
            path, docs, doc = found
        meta = doc.setdefault("metadata", {})
        labels = meta.get("labels") or {}
        labels[key] = value
        meta["labels"] = labels
        _dump(path, docs)

    def _info(self, obj: dict[str, Any]) -> WaypointInfo:
        info = info_from_object(obj)
        problem = well_formed(obj)
        if problem:
            info.programmed = Condition("False", "Programmed", "Invalid", problem)
        else:
            info.programmed = Condition(
                "True",
                "Programmed",
                "Programmed",
                f"Resource programmed (local mode, gatewayClassName {WAYPOINT_CLASS})",
            )
        return info

    def list(self, namespace: str | None) -> list[WaypointInfo]:
        infos = [self._info(doc) for _path, doc in self._gateways()]
        return [i for i in infos if namespace is None or i.namespace == namespace]

    def get(self, namespace: str, name: str) -> WaypointInfo | None:
        for info in self.list(namespace):
            if info.name == name:
                return info
        return None

    def delete(self, namespace: str, name: str) -> bool:
        for path, doc in self._gateways():
            info = info_from_object(doc)
            if info.namespace == namespace and info.name == name:
                rest = [d for d in _docs(path) if d != doc]
                if rest:
                    _dump(path, rest)
                else:
                    path.unlink()
                return True
        return False
