"""The fuzzers: a short bounded run of every target (coverage-guided, atheris), and every input that ever broke
one, inline, replayed as a regression test. `make fuzz` runs the same targets for longer.

Each run is bounded by libFuzzer's own run count and time limit (`-runs`, `-max_total_time`), with a fixed seed,
so `make test` repeats the same exploration; a failure prints the input (base64) for a new regression row.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.fuzz_targets import TARGETS
from xds.mesh.objects import mesh_from_objects
from ztunnel.config import parse_config
from ztunnel.errors import ConfigError
from ztunnel.socks5 import SocksError, SocksParser

pytestmark = pytest.mark.hardening

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"pump_frames": 400}  # each of its inputs runs two TLS handshakes; the others are fast


@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz_target_bounded_run_finds_nothing(target: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "tests.hardening.fuzz", target,
        f"-runs={RUNS.get(target, 3000)}", "-max_total_time=5", "-seed=1",
        f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus"),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        exception = done.stderr[done.stderr.find("=== Uncaught Python exception") :][:3000]
        pytest.fail(f"{target}: the fuzzer found an input that breaks it:\n{exception}\n{done.stderr[-1500:]}")


# ---------------------------------------------------------------------------------------------- regressions
# Inputs the fuzzers found, replayed through the same target (byte-level targets) or, for the structured targets,
# as the value the fuzzer's bytes decoded to (that decoding changes when the generator does; the value does not).

BYTE_REGRESSIONS = [
    # padded DATA on an open stream whose pad length exceeds the frame: the Cython core raised SystemError (a
    # negative size into PyBytes_FromStringAndSize), the twin delivered nothing; now GOAWAY PROTOCOL_ERROR in both
    (
        "pump_frames",
        b"\x00\x00\x02\x00-\x00\x00\x00\x01A\x00" + b"\xeb" * 6 + b"\xef\xeb\xeb\xeb\x00\x00\x00\xf6\x00U\x03",
    ),
    # greeting and a bad request in one read: the greeting's answer was dropped, in two reads it was sent
    ("socks5", b"\x05\x04\x84\xcb\xcb\x00\x01\x00\xcb\xcb)\xcb\xcb\xcb\x04\x04\x04\x0c\x00"),
]


@pytest.mark.parametrize(
    ("target", "data"), BYTE_REGRESSIONS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(BYTE_REGRESSIONS)]
)
def test_fuzz_regression_input_keeps_its_properties(target: str, data: bytes) -> None:
    TARGETS[target](data)


def test_socks5_greeting_answer_goes_out_before_the_error_of_a_request_in_the_same_read() -> None:
    with pytest.raises(SocksError) as got:
        SocksParser().feed(b"\x05\x01\x00" + b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50")
    assert got.value.reply == b"\x05\x00"


# (scenario, the config document, the field named in the error)
CONFIG_REGRESSIONS: list[tuple[str, Any, str]] = [
    ("timeout_given_as_text", {"proxy": {"handshakeTimeout": "[::1]:80"}}, "proxy.handshakeTimeout"),
    ("timeout_null", {"proxy": {"connectTimeout": None}}, "proxy.connectTimeout"),
    ("timeout_negative", {"proxy": {"keepaliveInterval": -1}}, "proxy.keepaliveInterval"),
    ("timeout_boolean", {"proxy": {"keepaliveTimeout": True}}, "proxy.keepaliveTimeout"),
    ("timeout_not_a_number", {"proxy": {"keepaliveTimeout": float("nan")}}, "proxy.keepaliveTimeout"),
]


@pytest.mark.parametrize(("doc", "field"), [r[1:] for r in CONFIG_REGRESSIONS], ids=[r[0] for r in CONFIG_REGRESSIONS])
def test_ztunnel_config_bad_values_are_config_errors_naming_the_field(doc: Any, field: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config({"proxy": {"node": "n", **doc["proxy"]}}, "fuzz.yaml", tmp_path)


def test_mesh_gateway_whose_spec_is_not_a_mapping_is_a_model_error_not_a_crash() -> None:
    """The unimplemented-fields check read `spec.gatewayClassName` of any Gateway before the parse's guard."""
    gateway = {"kind": "Gateway", "metadata": {"name": "g", "namespace": "default"}, "spec": 1.5}
    (error,) = mesh_from_objects([gateway]).errors
    assert error.ref.name == "g" and error.field == "spec"


def test_mesh_policy_port_written_with_a_unicode_digit_is_a_model_error_not_a_crash() -> None:
    """"²".isdigit() is True but int("²") raises: the port check let it through to a ValueError."""
    policy = {
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"rules": [{"to": [{"operation": {"ports": ["²"]}}]}]},
    }
    (error,) = mesh_from_objects([policy]).errors
    assert error.field == "spec.rules[0].to[0].operation.ports[0]"
