"""The dependency direction is part of the design: `waypoint | ztunnel` above `xds | _core`.

Rules (top may import bottom, never the reverse):
- `xds` and `_core` import no other project package (they are libraries);
- `waypoint` never imports `_core` or `ztunnel`;
- `ztunnel` never imports `waypoint`, and uses `xds` only through its client and resource types;
- `pyambient` (the CLI) sits on top and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"waypoint", "ztunnel", "xds", "_core", "pyambient"}

# package -> project packages it must never import
FORBIDDEN = {
    "xds": {"waypoint", "ztunnel", "_core", "pyambient"},
    "_core": {"waypoint", "ztunnel", "xds", "pyambient"},
    "waypoint": {"_core", "ztunnel", "pyambient"},
    "ztunnel": {"waypoint", "pyambient"},
}
# modules of `xds` that `ztunnel` may import (its xDS and CA clients, and resource/message types)
ZTUNNEL_XDS_ALLOWED = ("xds.client", "xds.caclient", "xds.caapi", "xds.resources", "xds.workloadapi")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.extend([node.module] + [f"{node.module}.{a.name}" for a in node.names])
    return names


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py*") if p.suffix in {".py", ".pyi"})


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_down(package: str) -> None:
    violations = []
    for path in sources(package):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in FORBIDDEN[package]:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, "\n".join(violations)


def test_ztunnel_uses_xds_only_through_client_and_resources() -> None:
    violations = []
    for path in sources("ztunnel"):
        for name in imported_modules(path):
            if name == "xds" or (name.startswith("xds.") and not name.startswith(ZTUNNEL_XDS_ALLOWED)):
                # `from xds import client` yields "xds" and "xds.client": judge the specific one.
                if name == "xds":
                    continue
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, "\n".join(violations)


def test_rules_cover_every_project_package() -> None:
    on_disk = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} & PROJECT_PACKAGES
    assert on_disk <= set(FORBIDDEN) | {"pyambient"}
