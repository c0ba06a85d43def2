"""proxy-config sources and errors: admin address over real HTTP, stdin, bad input; table unit cases."""

# ruff: noqa: E501  (expected tables and YAML are kept verbatim, one output line per source line)

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from pyambient.proxyconfig.listener import ListenerFilter
from pyambient.proxyconfig.route import describe_route_domains
from pyambient.runtime.backends import HttpAnswer, HttpBackend
from tests.cli.runner import run_cli

REPO = Path(__file__).resolve().parents[2]

DUMP = """{"configs": [
 {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
  "static_clusters": [{"cluster": {"name": "agent", "type": "STATIC"}}],
  "dynamic_active_clusters": [{"cluster": {"name": "outbound|80||web.default.svc.cluster.local", "type": "EDS",
    "metadata": {"filter_metadata": {"istio": {"config":
      "/apis/networking.istio.io/v1/namespaces/default/destination-rule/web"}}}}}]},
 {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
  "static_listeners": [{"listener": {"name": "stats", "address": {"socket_address": {"address": "0.0.0.0",
    "port_value": 15020}}, "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
    "typed_config": {"cluster": "stats"}}]}]}}]}
]}
"""

CLUSTERS = (
    '{"cluster_statuses": [{"name": "web", "host_statuses": [{"address": {"socket_address": '
    '{"address": "10.0.0.1", "port_value": 80}}, "health_status": {"eds_health_status": "HEALTHY"}}]}]}'
)


def _admin_answer(path: str, _headers: Message) -> HttpAnswer:
    if path.startswith("/missing"):
        return HttpAnswer(b"", status=404)
    body = (CLUSTERS if path.startswith("/clusters") else DUMP).encode()
    return HttpAnswer(body, headers=(("Content-Type", "application/json"),))


@pytest.fixture()
def admin() -> Iterator[str]:
    server = HttpBackend("127.0.0.1", 0, _admin_answer)
    yield server.address
    server.close()


CLUSTER_TABLE = (
    "SERVICE FQDN                      PORT     SUBSET     DIRECTION     TYPE       DESTINATION RULE\n"
    "agent                             -        -          -             STATIC     \n"
    "web.default.svc.cluster.local     80       -          outbound      EDS        web.default\n"
)


def test_cluster_table_from_admin_address(admin: str) -> None:
    result = run_cli("pc", "cluster", admin)
    assert result.code == 0, result.err
    assert result.out == CLUSTER_TABLE


def test_endpoint_table_from_admin_clusters_json(admin: str) -> None:
    result = run_cli("pc", "endpoint", admin)
    assert result.out == (
        "ENDPOINT        STATUS      OUTLIER CHECK     CLUSTER\n10.0.0.1:80     HEALTHY     OK                web\n"
    )


def test_listener_short_table_from_file(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text(DUMP)
    result = run_cli("pc", "listener", "-f", str(path), "--verbose=false")
    assert result.out == "ADDRESSES PORT  TYPE\n0.0.0.0   15020 TCP\n"


def test_cluster_json_is_declaration_ordered_camel_case(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text(DUMP)
    result = run_cli("pc", "cluster", "-f", str(path), "--fqdn", "web", "-o", "json")
    assert result.out == (
        '[\n    {\n        "name": "outbound|80||web.default.svc.cluster.local",\n        "type": "EDS",\n'
        '        "metadata": {\n            "filterMetadata": {\n                "istio": {\n'
        '                    "config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/web"\n'
        "                }\n            }\n        }\n    }\n]\n"
    )


def test_stdin_source_through_the_real_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyambient", "pc", "cluster", "-f", "-"],
        input=DUMP,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CLUSTER_TABLE


def test_cli_registers_these_commands() -> None:
    from pyambient.cli import COMMAND_MODULES

    mine = {
        "pyambient.commands.proxy_config",
        "pyambient.commands.ztunnel_config",
        "pyambient.commands.waypoint",
    }
    assert mine <= set(COMMAND_MODULES)
    # `waypoint bootstrap` is registered through `waypoint`, never as its own top-level module
    assert "pyambient.commands.waypoint_bootstrap" not in COMMAND_MODULES


BAD_INPUT = [
    ("not-json", ["pc", "cluster", "-f", "{file}"], "not json", "is not valid JSON"),
    (
        "no-section",
        ["pc", "route", "-f", "{file}"],
        '{"configs": []}',
        "config dump has no configuration type type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
    ),
    (
        "listener-no-section",
        ["pc", "listener", "-f", "{file}"],
        '{"configs": []}',
        "listener dump: config dump has no configuration type",
    ),
    ("unknown-target", ["pc", "cluster", "svc/web"], "", "unknown target"),
    ("no-source", ["pc", "cluster"], "", "cluster requires pod name or --file parameter"),
    (
        "both-sources",
        ["pc", "route", "x", "-f", "{file}"],
        "{}",
        "route requires pod name or --file parameter",
    ),
    (
        "missing-file",
        ["pc", "secret", "-f", "/nonexistent/dump.json"],
        "",
        "cannot read /nonexistent/dump.json",
    ),
    (
        "bad-format",
        ["pc", "cluster", "-f", "{file}", "-o", "wide"],
        "{}",
        'output format "wide" not supported',
    ),
    ("unreachable-admin", ["pc", "cluster", "127.0.0.1:1"], "", "cannot reach admin address 127.0.0.1:1"),
]


@pytest.mark.parametrize(
    ("argv", "content", "message"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_one_line_error(tmp_path: Path, argv: list[str], content: str, message: str) -> None:
    path = tmp_path / "input.json"
    path.write_text(content)
    result = run_cli(*[a.replace("{file}", str(path)) for a in argv])
    assert result.code == 1
    assert result.out == ""
    assert result.err.count("\n") == 1 and message in result.err


DOMAINS = [
    ([], ""),
    (["example.com"], "example.com"),
    (["example.com", "example.com:8080"], "example.com"),
    (["example.com", "example.com:8080", "1.2.3.4", "1.2.3.4:8080"], "example.com, 1.2.3.4"),
    (
        ["example.com", "example.com:8080", "[fd00:10:96::7fc7]", "[fd00:10:96::7fc7]:8080"],
        "example.com, [fd00:10:96::7fc7]",
    ),
    (
        [
            "example.com",
            "example.com:8080",
            "www.example.com",
            "www.example.com:8080",
            "[fd00:10:96::7fc7]",
            "[fd00:10:96::7fc7]:8080",
        ],
        "example.com, www.example.com + 1 more...",
    ),
]


@pytest.mark.parametrize(("domains", "expected"), DOMAINS)
def test_describe_route_domains(domains: list[str], expected: str) -> None:
    assert describe_route_domains(domains) == expected


HCM = {"name": "envoy.filters.network.http_connection_manager"}
TCP = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"cluster": "x"}}
LISTENER_FILTERS = [
    ("all-empty", ListenerFilter(), {}, True),
    (
        "address-mismatch",
        ListenerFilter(address="0.0.0.0"),
        {"address": {"socket_address": {"address": "1.1.1.1"}}},
        False,
    ),
    (
        "additional-address-mismatch",
        ListenerFilter(address="0.0.0.0"),
        {
            "address": {"socket_address": {"address": "1.1.1.1"}},
            "additional_addresses": [{"address": {"socket_address": {"address": "1:1:1::1"}}}],
        },
        False,
    ),
    ("port-mismatch", ListenerFilter(port=10), {"address": {"socket_address": {"port_value": 11}}}, False),
    ("type-http", ListenerFilter(type="HTTP"), {"filter_chains": [{"filters": [HCM]}]}, True),
    (
        "type-http-tcp",
        ListenerFilter(type="HTTP+TCP"),
        {"filter_chains": [{"filters": [TCP, TCP, HCM]}]},
        True,
    ),
    ("type-tcp", ListenerFilter(type="TCP"), {"filter_chains": [{"filters": [TCP]}]}, True),
    ("type-unknown", ListenerFilter(type="UNKNOWN"), {"filter_chains": [{}]}, True),
    ("pipe", ListenerFilter(), {"address": {"pipe": {"path": "unix:///dev/shm/uds.socket"}}}, True),
]


@pytest.mark.parametrize(
    ("flt", "listener", "expected"), [c[1:] for c in LISTENER_FILTERS], ids=[c[0] for c in LISTENER_FILTERS]
)
def test_listener_filter_verify(flt: ListenerFilter, listener: dict[str, object], expected: bool) -> None:
    assert flt.verify(listener) is expected


def test_pc_without_subcommand_prints_help() -> None:
    result = run_cli("pc")
    assert result.code == 0
    assert "A group of commands used to retrieve information about" in " ".join(result.out.split())


def test_endpoint_with_empty_clusters_prints_header_only(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_text("{}")
    result = run_cli("pc", "endpoint", "-f", str(path))
    assert result.code == 0
    assert result.out == "ENDPOINT     STATUS     OUTLIER CHECK     CLUSTER\n"


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        (
            "cluster",
            "config dump has no configuration type type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        ),
        (
            "bootstrap",
            "config dump has no configuration type type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        ),
        ("listener", "listener dump: config dump has no configuration type"),
        (
            "route",
            "config dump has no configuration type type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        ),
    ],
)
def test_empty_dump_has_no_configuration_type(tmp_path: Path, sub: str, message: str) -> None:
    path = tmp_path / "dump.json"
    path.write_text("{}")
    result = run_cli("pc", sub, "-f", str(path))
    assert result.code == 1 and message in result.err


def test_eds_without_endpoints_section_prints_header(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text('{"configs": []}')
    assert run_cli("pc", "eds", "-f", str(path)).out == "NAME     STATUS     LOCALITY     CLUSTER\n"


def test_all_json_echoes_raw_input(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text(DUMP)
    assert run_cli("pc", "all", "-f", str(path), "-o", "json").out == DUMP + "\n"


VERBOSE = [
    ("default-verbose", ["pc", "listener", "{file}"], "ADDRESSES PORT  MATCH DESTINATION\n"),
    ("verbose-false", ["pc", "listener", "--verbose=false", "{file}"], "ADDRESSES PORT  TYPE\n"),
    (
        "bare-verbose-before-target",
        ["pc", "listener", "--verbose", "{file}"],
        "ADDRESSES PORT  MATCH DESTINATION\n",
    ),
]


@pytest.mark.parametrize(("argv", "header"), [c[1:] for c in VERBOSE], ids=[c[0] for c in VERBOSE])
def test_verbose_flag_is_a_go_bool(admin: str, argv: list[str], header: str) -> None:
    result = run_cli(*[a.replace("{file}", admin) for a in argv])
    assert result.code == 0, result.err
    assert result.out.startswith(header)
