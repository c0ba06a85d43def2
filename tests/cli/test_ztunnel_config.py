"""ztunnel-config tables and dumps, from a fixture in the ztunnel `/config_dump` shape (ztunnel.md §5.3)."""

# ruff: noqa: E501  (expected tables and YAML are kept verbatim, one output line per source line)

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
import yaml

from pyambient import ztunnelconfig
from pyambient.runtime.backends import HttpAnswer, HttpBackend
from tests.cli.runner import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "ztunnel_config_dump.json"

WORKLOADS = """\
NAMESPACE POD NAME   ADDRESS  NODE   WAYPOINT PROTOCOL
default   httpbin-v1 10.0.2.7 node-b waypoint HBONE
default   httpbin-v2 10.0.1.9 node-a waypoint HBONE
default   sleep-1    10.0.1.5 node-a None     HBONE
default   waypoint-0 10.0.2.3 node-b None     TCP
other     legacy              node-a None     TCP
"""
SERVICES = """\
NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS
default   httpbin      10.96.0.20  waypoint 1/2
default   waypoint     10.96.0.50  None     1/1
"""
POLICIES = """\
NAMESPACE    POLICY NAME                   ACTION SCOPE
default      deny-notsleep                 Deny   Namespace
istio-system istio_converted_static_strict Deny   Global
"""
CERTS = """\
CERTIFICATE NAME                           TYPE STATUS    VALID CERT SERIAL NUMBER                    NOT AFTER            NOT BEFORE
spiffe://cluster.local/ns/default/sa/sleep Leaf Available false      c198ff2ad5d06aac2e5fa27e0d9a4a9e 2024-03-15T21:29:05Z 2024-03-14T21:27:05Z
spiffe://cluster.local/ns/default/sa/sleep Root Available true       bad086c516ce777645363cb8731d2fa6 2034-03-12T20:51:36Z 2024-03-14T20:51:36Z
"""

TABLES = [
    ("workloads", ["zc", "workloads"], WORKLOADS),
    (
        "workloads-by-node",
        ["zc", "workloads", "--node", "node-b"],
        "NAMESPACE POD NAME   ADDRESS  NODE   WAYPOINT PROTOCOL\n"
        "default   httpbin-v1 10.0.2.7 node-b waypoint HBONE\n"
        "default   waypoint-0 10.0.2.3 node-b None     TCP\n",
    ),
    (
        "workloads-by-address",
        ["ztunnel-config", "workload", "--workload-address", "10.0.1.5"],
        "NAMESPACE POD NAME ADDRESS  NODE   WAYPOINT PROTOCOL\ndefault   sleep-1  10.0.1.5 node-a None     HBONE\n",
    ),
    ("services", ["zc", "services"], SERVICES),
    ("policies", ["zc", "policies"], POLICIES),
    ("all", ["zc", "all"], "\n".join([WORKLOADS, SERVICES, POLICIES, CERTS])),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in TABLES], ids=[c[0] for c in TABLES])
def test_table(argv: list[str], expected: str) -> None:
    result = run_cli(*argv, "-f", str(FIXTURE))
    assert result.code == 0, result.err
    if argv[1] == "all":
        # the certificate VALID CERT column follows the clock; compare everything before it exactly
        assert result.out.split("CERTIFICATE NAME")[0] == expected.split("CERTIFICATE NAME")[0]
    else:
        assert result.out == expected


def test_certificates_table_at_fixed_time() -> None:
    dump = json.loads(FIXTURE.read_text())
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert ztunnelconfig.certificates_table(dump, now) == CERTS


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_structured_output_is_the_section(fmt: str) -> None:
    result = run_cli("zc", "policies", "-f", str(FIXTURE), "-o", fmt)
    dump = json.loads(FIXTURE.read_text())
    parsed = json.loads(result.out) if fmt == "json" else yaml.safe_load(result.out)
    assert parsed == dump["policies"]
    assert result.out.endswith("\n\n" if fmt == "yaml" else "]\n")


def _ztunnel_admin_answer(path: str, _headers: Message) -> HttpAnswer:
    if path == "/config_dump":
        return HttpAnswer(FIXTURE.read_bytes())
    return HttpAnswer(b"{}", status=404)


@pytest.fixture()
def ztunnel_admin() -> Iterator[str]:
    server = HttpBackend("127.0.0.1", 0, _ztunnel_admin_answer)
    yield server.address
    server.close()


def test_workloads_from_admin_address(ztunnel_admin: str) -> None:
    result = run_cli("zc", "workloads", "--address", ztunnel_admin)
    assert result.code == 0, result.err
    assert result.out == WORKLOADS


BAD = [
    ("not-json", "workloads", "nope", "is not valid JSON"),
    ("not-object", "services", "[1, 2]", "not a JSON object"),
    ("bad-section", "workloads", '{"workloads": 3}', "'workloads' is not a list"),
]


@pytest.mark.parametrize(("sub", "content", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input(tmp_path: Path, sub: str, content: str, message: str) -> None:
    path = tmp_path / "dump.json"
    path.write_text(content)
    result = run_cli("zc", sub, "-f", str(path))
    assert result.code == 1
    assert result.err.count("\n") == 1 and message in result.err


def test_takes_one_source() -> None:
    result = run_cli("zc", "workloads", "--address", "127.0.0.1:15000", "-f", "dump.json")
    assert result.code == 1 and "give one of a ztunnel pod, --address or --file" in result.err


def test_without_address_or_file_it_asks_the_api_server_for_a_ztunnel_pod(tmp_path: Path) -> None:
    """As istioctl: no source named means a ztunnel pod through the API server (here: an unusable kubeconfig)."""
    result = run_cli("zc", "workloads", "--kubeconfig", str(tmp_path / "missing.kubeconfig"))
    assert result.code == 1 and "cannot load kubeconfig" in result.err
