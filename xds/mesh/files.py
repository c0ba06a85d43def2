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


class FileProblem(ValueError):
    """Why a mesh file cannot be used as a whole: it does not parse, or a document in it is not an object."""

    def __init__(self, message: str, *, line: int | None = None, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.field = field

    @property
    def where(self) -> str:
        """The field path, or the line for a syntax error (what a ModelError calls its field)."""
        return self.field or (f"line {self.line}" if self.line is not None else "")


def read_file(path: Path) -> list[dict[str, Any]]:
    """The objects of one mesh file (List kinds unpacked), or FileProblem: a YAML/JSON syntax error (a save cut
    off mid-way, a bad edit), text that is not UTF-8, or a document that is not an object with a kind."""
    try:
        text = path.read_text()
        docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FileProblem(f"cannot parse: {exc.problem or exc}", line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise FileProblem(f"cannot parse: {exc}") from None
    except json.JSONDecodeError as exc:
        raise FileProblem(f"cannot parse: {exc.msg}", line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    objects: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        is_list = isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List")
        items = doc.get("items") if is_list and isinstance(doc, dict) else [doc]
        if not isinstance(items, list):
            raise FileProblem("a List's items is not a list", field=f"document {index}.items")
        for item in items:
            if not isinstance(item, dict):
                raise FileProblem(f"is not an object, got {type(item).__name__}", field=f"document {index}")
            if not isinstance(item.get("kind"), str) or not item["kind"]:
                raise FileProblem("has no kind", field=f"document {index}.kind")
            objects.append(item)
    return objects


class MeshDirectory:
    """The mesh in a directory, read again on every `load()`, remembering each file's last good objects.

    A file that cannot be read whole (`FileProblem`: a save cut off mid-way, a bad edit) keeps its last good
    objects in force and is reported with its path and line; a new file that is bad adds nothing; a deleted
    file's objects go with it. (Istio reads its config from the API server, which refuses bad objects at the
    door; a directory has no door, so the last good version of each file plays that part.)"""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._last_good: dict[Path, list[dict[str, Any]]] = {}

    def load(self) -> Mesh:
        objects, sources, errors = self.read()
        mesh = mesh_from_objects(objects, sources=sources)
        return dataclasses.replace(mesh, errors=tuple(errors) + mesh.errors)

    def read(self) -> tuple[list[dict[str, Any]], dict[int, str], list[ModelError]]:
        """The objects in force (each file's current or last good ones), the file each came from (by id), and
        the files that cannot be read whole."""
        if not self.directory.is_dir():
            raise FileNotFoundError(f"mesh directory {self.directory} does not exist")
        objects: list[dict[str, Any]] = []
        sources: dict[int, str] = {}
        errors: list[ModelError] = []
        present = _files(self.directory)
        for path in present:
            try:
                file_objects = read_file(path)
            except OSError as exc:  # vanished between the scan and the read, or unreadable: as if absent
                errors.append(ModelError(ObjectRef("File", "", path.name), "", f"cannot read: {exc}", str(path)))
                file_objects = self._last_good.get(path, [])
            except FileProblem as problem:
                kept = self._last_good.get(path)
                keeping = (
                    f"; keeping its last good version ({len(kept)} objects) until it parses"
                    if kept is not None
                    else "; nothing from it is served"
                )
                errors.append(
                    ModelError(ObjectRef("File", "", path.name), problem.where, f"{problem}{keeping}", str(path))
                )
                file_objects = kept or []
            else:
                self._last_good[path] = file_objects
            for item in file_objects:
                objects.append(item)
                sources[id(item)] = str(path)
        for gone in set(self._last_good) - set(present):
            del self._last_good[gone]
        return objects, sources, errors


def load_directory(directory: Path) -> Mesh:
    """Every object of every file, read once; a file that cannot be read whole becomes an error naming it."""
    return MeshDirectory(directory).load()


def read_directory(directory: Path) -> tuple[list[dict[str, Any]], dict[int, str], list[ModelError]]:
    """The objects of every file, the file each came from (by id), and the files that cannot be read whole."""
    return MeshDirectory(directory).read()


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
    """Calls `on_change(mesh)` with a fresh mesh whenever a file is added, edited or removed.

    Pass the `MeshDirectory` the first mesh came from, so files that break later keep that version; given a
    path, the watcher reads the directory once to start from what is there now."""

    def __init__(
        self, directory: Path | MeshDirectory, on_change: Callable[[Mesh], None], interval: float = 0.5
    ) -> None:
        if isinstance(directory, MeshDirectory):
            self.mesh_directory = directory
        else:
            self.mesh_directory = MeshDirectory(directory)
            self.mesh_directory.load()
        self.directory = self.mesh_directory.directory
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()
        self._seen = _fingerprint(self.directory)
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
                try:
                    mesh = self.mesh_directory.load()
                except FileNotFoundError:  # the directory itself is gone: keep serving what was last pushed
                    continue
                self.on_change(mesh)
