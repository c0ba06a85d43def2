"""Every case of ../shared/conformance/istioctl/MANIFEST.md, run through the real CLI.

`exact` cases compare bytes; `trim` cases compare after stripping leading/trailing whitespace of the whole
output (how upstream compares them); case 7 compares after JSON normalisation, as the MANIFEST says.
"""

# ruff: noqa: E501  (expected tables and YAML are kept verbatim, one output line per source line)

from __future__ import annotations

import json
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from pyambient.runtime.backends import HttpAnswer, HttpBackend
from tests.cli.conftest import GOLDEN_ROOT
from tests.cli.runner import run_cli

pytestmark = pytest.mark.conformance

PC = GOLDEN_ROOT / "istioctl" / "pkg" / "proxyconfig" / "testdata"
CD = GOLDEN_ROOT / "istioctl" / "pkg" / "writer" / "envoy" / "configdump" / "testdata"
HIST = (
    GOLDEN_ROOT
    / "historical"
    / "285c0509f9f428e325ad9f378207b7e57e798525"
    / "istioctl"
    / "pkg"
    / "writer"
    / "envoy"
    / "clusters"
    / "testdata"
)
POLICY = "outbound|15014||istio-policy.istio-system.svc.cluster.local"

# (case id, expected file, argv (input path given as a Path), comparison)
CASES: list[tuple[str, Path, list[str | Path], str]] = [
    ("01-all-summary", PC / "config_dump_summary.txt", ["pc", "all", "-f", PC / "config_dump.json"], "exact"),
    (
        "02-all-with-headers",
        PC / "config_dump_summary_withheaders.txt",
        ["pc", "all", "-f", PC / "config_dump.json", "--with-headers"],
        "exact",
    ),
    (
        "03-bootstrap-json",
        CD / "bootstrapdump.json",
        ["pc", "bootstrap", "-f", CD / "configdump.json"],
        "trim",
    ),
    (
        "04-bootstrap-short",
        CD / "versionsummary.txt",
        ["pc", "bootstrap", "-f", CD / "configdump.json", "-o", "short"],
        "trim",
    ),
    (
        "05-ecds-summary",
        CD / "ecds" / "output.txt",
        ["pc", "ecds", "-f", CD / "ecds" / "configdump.json"],
        "trim",
    ),
    (
        "06-ecds-yaml",
        CD / "ecds" / "output.yaml",
        ["pc", "ecds", "-f", CD / "ecds" / "configdump.json", "-o", "yaml"],
        "trim",
    ),
    (
        "07-ecds-json",
        CD / "ecds" / "output.json",
        ["pc", "ecds", "-f", CD / "ecds" / "configdump.json", "-o", "json"],
        "json",
    ),
    (
        "08-eds-summary",
        CD / "endpoint" / "emptyfilter_output.txt",
        ["pc", "eds", "-f", CD / "endpoint" / "configdump.json"],
        "trim",
    ),
    (
        "09-eds-port-summary",
        CD / "endpoint" / "portfilter_output.txt",
        ["pc", "eds", "-f", CD / "endpoint" / "configdump.json", "--port", "8080"],
        "trim",
    ),
    (
        "10-eds-json",
        CD / "endpoint" / "emptyfilter_output.json",
        ["pc", "eds", "-f", CD / "endpoint" / "configdump.json", "-o", "json"],
        "trim",
    ),
    (
        "11-eds-yaml",
        CD / "endpoint" / "emptyfilter_output.yaml",
        ["pc", "eds", "-f", CD / "endpoint" / "configdump.json", "-o", "yaml"],
        "trim",
    ),
    (
        "12-eds-port-json",
        CD / "endpoint" / "portfilter_output.json",
        ["pc", "eds", "-f", CD / "endpoint" / "configdump.json", "--port", "8080", "-o", "json"],
        "trim",
    ),
    (
        "13-eds-port-yaml",
        CD / "endpoint" / "portfilter_output.yaml",
        ["pc", "eds", "-f", CD / "endpoint" / "configdump.json", "--port", "8080", "-o", "yaml"],
        "trim",
    ),
    (
        "14-route-empty-gateway",
        CD / "routes" / "empty-gateway" / "output.txt",
        ["pc", "route", "-f", CD / "routes" / "empty-gateway" / "configdump.json"],
        "trim",
    ),
    (
        "15-route-istio-gateway-prefix",
        CD / "routes" / "istio-gateway-http-route-prefix" / "output.txt",
        ["pc", "route", "-f", CD / "routes" / "istio-gateway-http-route-prefix" / "configdump.json"],
        "trim",
    ),
    (
        "16-route-k8s-gateway-path-prefix",
        CD / "routes" / "k8s-gateway-http-route-path-prefix" / "output.txt",
        ["pc", "route", "-f", CD / "routes" / "k8s-gateway-http-route-path-prefix" / "configdump.json"],
        "trim",
    ),
    (
        "17-secret-istio",
        CD / "secret" / "istio" / "output",
        ["pc", "secret", "-f", CD / "secret" / "istio" / "config_dump.json"],
        "exact",
    ),
    (
        "18-secret-spire",
        CD / "secret" / "spire" / "output",
        ["pc", "secret", "-f", CD / "secret" / "spire" / "config_dump.json"],
        "exact",
    ),
    (
        "H1-endpoint-summary",
        HIST / "clustersummary.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json"],
        "trim",
    ),
    (
        "H2-endpoint-cluster",
        HIST / "clustersummaryfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "--cluster", POLICY],
        "trim",
    ),
    (
        "H3-endpoint-address",
        HIST / "clustersummaryfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "--address", "172.17.0.14"],
        "trim",
    ),
    (
        "H4-endpoint-port",
        HIST / "clustersummaryfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "--port", "15014"],
        "trim",
    ),
    (
        "H5-endpoint-status",
        HIST / "clustersummaryfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "--status", "unhealthy"],
        "trim",
    ),
    (
        "H6-endpoint-json",
        HIST / "clustersnofiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "-o", "json"],
        "trim",
    ),
    (
        "H7-endpoint-json-cluster",
        HIST / "clusterfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "-o", "json", "--cluster", POLICY],
        "trim",
    ),
    (
        "H8-endpoint-json-address",
        HIST / "clusterfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "-o", "json", "--address", "172.17.0.14"],
        "trim",
    ),
    (
        "H9-endpoint-json-port",
        HIST / "clusterfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "-o", "json", "--port", "15014"],
        "trim",
    ),
    (
        "H10-endpoint-json-status",
        HIST / "clusterfiltered.txt",
        ["pc", "endpoint", "-f", HIST / "clusters.json", "-o", "json", "--status", "unhealthy"],
        "trim",
    ),
    (
        "H11-endpoint-json-multihost",
        HIST / "clustermultihostsfiltered.txt",
        [
            "pc",
            "endpoint",
            "-f",
            HIST / "clusters.json",
            "-o",
            "json",
            "--cluster",
            "outbound|9080||reviews.default.svc.cluster.local",
        ],
        "trim",
    ),
]


def test_every_manifest_case_is_listed() -> None:
    assert len([c for c in CASES if not c[0].startswith("H")]) == 18
    assert len([c for c in CASES if c[0].startswith("H")]) == 11


@pytest.mark.parametrize(("expected", "argv", "cmp"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_manifest_case(expected: Path, argv: list[str | Path], cmp: str) -> None:
    result = run_cli(*[str(a) for a in argv])
    assert result.code == 0, result.err
    want = expected.read_text(encoding="utf-8")
    if cmp == "exact":
        assert result.out == want
    elif cmp == "trim":
        assert result.out.strip() == want.strip()
        # the CLI's own bytes: everything upstream has, plus Fprintln's final newline for -o json/yaml
        assert result.out.startswith(want.rstrip())
    else:
        assert json.loads(result.out) == json.loads(want)


def test_waypoint_listener_view_matches_derived_rows() -> None:
    """MANIFEST §E: no upstream golden; rows compared as a multiset per the reference derivation."""
    result = run_cli("pc", "listener", "-f", str(PC / "config_dump.json"), "--waypoint", "-o", "json")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["LISTENER", "CHAIN", "MATCH", "DESTINATION"]
    rows = sorted(" ".join(line.split()) for line in lines[1:])
    assert rows == sorted(
        [
            "envoy://main_internal inbound-vip|8000||httpbin.default.svc.cluster.local-http ip=10.104.171.68 -> "
            "port=8000 Cluster: inbound-vip|8000|http|httpbin.default.svc.cluster.local",
            "envoy://main_internal inbound-vip|8100||httpbin.default.svc.cluster.local-http ip=10.104.171.68 -> "
            "port=8100 Cluster: inbound-vip|8100|http|httpbin.default.svc.cluster.local",
            "envoy://main_internal direct-tcp ip=192.168.195.248 -> ANY Cluster: encap",
            "envoy://main_internal direct-http ip=192.168.195.248 -> application-protocol='h2c' Cluster: encap",
            "envoy://main_internal direct-http ip=192.168.195.248 -> application-protocol='http/1.1' Cluster: encap",
            "envoy:// ALL Inline Route: /healthz/ready*",
        ]
    )


@pytest.fixture()
def golden_admin() -> Iterator[tuple[str, list[str]]]:
    """An Envoy admin stand-in: `/config_dump…` serves the golden waypoint dump, `/clusters…` the clusters golden;
    yields its address and the paths asked for."""
    paths: list[str] = []

    def answer(path: str, _headers: Message) -> HttpAnswer:
        paths.append(path)
        source = HIST / "clusters.json" if path.startswith("/clusters") else PC / "config_dump.json"
        return HttpAnswer(source.read_bytes(), headers=(("Content-Type", "application/json"),))

    admin = HttpBackend("127.0.0.1", 0, answer)
    yield admin.address, paths
    admin.close()


ADMIN_CASES = [
    ("all-summary", ["pc", "all"], PC / "config_dump_summary.txt", "/config_dump?include_eds=true"),
    (
        "all-with-headers",
        ["pc", "all", "--with-headers"],
        PC / "config_dump_summary_withheaders.txt",
        "/config_dump?include_eds=true",
    ),
    ("endpoint-summary", ["pc", "endpoint"], HIST / "clustersummary.txt", "/clusters?format=json"),
]


@pytest.mark.parametrize(
    ("argv", "expected", "path"), [c[1:] for c in ADMIN_CASES], ids=[c[0] for c in ADMIN_CASES]
)
def test_golden_over_admin_address(
    golden_admin: tuple[str, list[str]], argv: list[str], expected: Path, path: str
) -> None:
    address, paths = golden_admin
    result = run_cli(*argv, address)
    assert result.code == 0, result.err
    assert result.out.strip() == expected.read_text(encoding="utf-8").strip()
    assert paths == [path]
