"""The conformance goldens live outside the repository (../shared); without them, skip that module."""

from __future__ import annotations

from pathlib import Path

GOLDEN_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "istioctl"

collect_ignore: list[str] = []
if not (GOLDEN_ROOT / "MANIFEST.md").is_file():
    collect_ignore.append("test_conformance.py")
