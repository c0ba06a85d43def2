"""The local source of the mesh: Kubernetes YAML/JSON files in a directory, re-read when they change.

Polling mtimes (twice a second) rather than inotify: no extra dependency, works on every
filesystem, and a mesh directory holds tens of files, so a scan costs microseconds.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from xds.mesh.fields import describe_unknown_kinds, unknown_kinds
from xds.mesh.model import Mesh, ModelError, ObjectRef
from xds.mesh.objects import mesh_from_objects

SUFFIXES = (".yaml", ".yml", ".json")


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def load_directory(directory: Path) -> Mesh:
    """Every object of every file; a file that does not parse becomes an error naming it."""
    objects, sources, errors = read_directory(directory)
    mesh = mesh_from_objects(objects, sources=sources)
    return dataclasses.replace(mesh, errors=tuple(errors) + mesh.errors)


def read_directory(directory: Path) -> tuple[list[dict[str, Any]], dict[int, str], list[ModelError]]:
    """The objects of every file, the file each came from (by id), and the files that do not parse."""
    if not directory.is_dir():
        raise FileNotFoundError(f"mesh directory {directory} does not exist")
    objects: list[dict[str, Any]] = []
    sources: dict[int, str] = {}
    errors: list[ModelError] = []
    for path in _files(directory):
        try:
            text = path.read_text()
            docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
        except (OSError, yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            errors.append(ModelError(ObjectRef("File", "", path.name), "", f"cannot parse{line}: {exc}", str(path)))
            continue
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            items = doc.get("items") if isinstance(doc, dict) and doc.get("kind", "").endswith("List") else [doc]
            for item in items or []:
                if not isinstance(item, dict):
                    errors.append(
                        ModelError(ObjectRef("File", "", path.name), f"document {index}", "is not a mapping", str(path))
                    )
                    continue
                objects.append(item)
                sources[id(item)] = str(path)
    return objects, sources, errors


def unknown_kinds_line(directory: Path) -> str | None:
    """The start-up line naming the kinds in the directory the model does not know (None: there are none)."""
    return describe_unknown_kinds(unknown_kinds(read_directory(directory)[0]))


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in _files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class DirectoryWatcher:
    """Calls `on_change(mesh)` with a fresh mesh whenever a file is added, edited or removed."""

    def __init__(self, directory: Path, on_change: Callable[[Mesh], None], interval: float = 0.5) -> None:
        self.directory = directory
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()
        self._seen = _fingerprint(directory)
        self._thread = threading.Thread(target=self._run, daemon=True, name="mesh-watcher")

    def start(self) -> DirectoryWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = _fingerprint(self.directory)
            if now != self._seen:
                self._seen = now
                self.on_change(load_directory(self.directory))
