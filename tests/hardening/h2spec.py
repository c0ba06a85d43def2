"""h2spec (HTTP/2 conformance, github.com/summerwind/h2spec): build, run, read its JUnit report.

`hack/install-h2spec.sh` builds the pinned release into ~/.cache/pyambient/bin/ (the Makefile's `test` target
runs it; `binary()` runs it too, which is a no-op once built). A case id is h2spec's own: `<group id>/<n>`, e.g.
`http2/6.9.1/2` (`h2spec http2/6.9.1/2` runs just that case).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "hack" / "install-h2spec.sh"


def version() -> str:
    found = re.search(r'^H2SPEC_VERSION="([^"]+)"', INSTALLER.read_text(), re.MULTILINE)
    assert found, f"no H2SPEC_VERSION in {INSTALLER}"
    return found.group(1)


def binary() -> Path:
    cache = Path(os.environ.get("PYAMBIENT_CACHE", Path.home() / ".cache" / "pyambient"))
    path = cache / "bin" / f"h2spec-{version()}"
    if not path.exists():
        subprocess.run(["bash", str(INSTALLER)], check=True, timeout=1200)
    return path


@dataclass(frozen=True)
class CaseResult:
    case: str  # h2spec's id, e.g. "http2/6.9.1/2"
    title: str
    outcome: str  # "passed", "failed" or "skipped"
    detail: str = ""  # what h2spec expected and what it saw, for a failure

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


def _escape_details(text: str) -> str:
    """h2spec writes a failure's text into the report unescaped (Go's `innerxml`), PING payloads' NULs
    included: escape it so it parses."""

    def escape(m: re.Match[str]) -> str:
        text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", lambda c: f"\\x{ord(c.group()):02x}", m.group(3))
        return m.group(1) + html.escape(text, quote=False) + m.group(4)

    return re.sub(r"(<(failure|error)>)(.*?)(</\2>)", escape, text, flags=re.DOTALL)


def read_report(path: Path) -> dict[str, CaseResult]:
    """h2spec's JUnit report → results by case id. A test suite is one group; its test cases are in h2spec's
    order, so the n-th one is case `<group>/<n>`."""
    results: dict[str, CaseResult] = {}
    for suite in ET.fromstring(_escape_details(path.read_text())).iter("testsuite"):
        for n, case in enumerate(suite.iter("testcase"), start=1):
            case_id = f"{case.get('package')}/{n}"
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            if failure is not None:
                outcome, detail = "failed", " ".join((failure.text or "").split())
            elif case.find("skipped") is not None:
                outcome, detail = "skipped", ""
            else:
                outcome, detail = "passed", ""
            results[case_id] = CaseResult(case_id, case.get("classname") or "", outcome, detail)
    return results


def run(address: tuple[str, int], report: Path, *, timeout: int = 8) -> dict[str, CaseResult]:
    """Every h2spec case (generic, http2, hpack) against a cleartext HTTP/2 endpoint (here: an mTLS relay).

    `timeout` is h2spec's wait for each expected frame or close, in seconds; a case that sees nothing in that
    time fails, so it is generous for a loaded machine."""
    cmd = [str(binary()), "-h", address[0], "-p", str(address[1]), "-o", str(timeout), "-j", str(report)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    # h2spec exits 1 when a case fails and also when it cannot connect at all; only a report tells which
    if not report.exists():
        raise RuntimeError(f"h2spec wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr}")
    return read_report(report)
