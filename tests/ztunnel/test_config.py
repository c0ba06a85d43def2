"""The local config file: ztunnel's format, plus errors that name the file and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ztunnel.config import load_config
from ztunnel.errors import ConfigError
from ztunnel.state import Action, Protocol, Scope

GOOD: dict[str, Any] = {
    "proxy": {
        "node": "node-a",
        "bindIp": "127.0.0.2",
        "rootCert": "root.crt",
        "certificates": [{"cert": "a.crt", "key": "a.key"}],
        "socks5": None,
    },
    "workloads": [
        {
            "uid": "c//a",
            "name": "a",
            "namespace": "default",
            "serviceAccount": "a",
            "trustDomain": "cluster.local",
            "workloadIps": ["10.0.0.1"],
            "protocol": "HBONE",
            "node": "node-a",
            "services": {"default/echo.default.svc.cluster.local": {80: 8080}},
            "waypoint": {"destination": "default/waypoint.default.svc.cluster.local", "hboneMtlsPort": 15008},
        }
    ],
    "services": [
        {
            "name": "echo",
            "namespace": "default",
            "hostname": "echo.default.svc.cluster.local",
            "vips": ["/10.96.0.10"],
            "ports": {80: 8080},
        }
    ],
    "policies": [
        {
            "name": "strict",
            "namespace": "istio-system",
            "scope": "Global",
            "action": "Deny",
            "rules": [[[{"notPrincipals": [{"Presence": []}]}]]],
        }
    ],
}


def _write(tmp: Path, data: Any) -> Path:
    p = tmp / "zt.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_good_config_parses_into_state_and_settings(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.proxy.outbound == ("127.0.0.2", 15001) and cfg.proxy.socks5 is None
    assert cfg.proxy.root_cert == tmp_path / "root.crt"
    w = cfg.state.workloads["c//a"]
    assert w.protocol is Protocol.HBONE and w.waypoint is not None and w.waypoint.hostname
    assert cfg.state.services["default/echo.default.svc.cluster.local"].ports == {80: 8080}
    p = cfg.state.policies["istio-system/strict"]
    assert (p.scope, p.action, p.rules[0][0][0].not_principals[0].kind) == (Scope.GLOBAL, Action.DENY, "presence")


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda d: d["workloads"][0].update(workloadIps=["x"]), "workloads[0].workloadIps[0]", "not an IP"),
        (lambda d: d["workloads"][0].update(protocol="QUIC"), "workloads[0].protocol", "expected TCP or HBONE"),
        (lambda d: d["workloads"][0].update(bogus=1), "workloads[0].bogus", "unknown field"),
        (lambda d: d["workloads"][0].pop("namespace"), "workloads[0].namespace", "required"),
        (lambda d: d["services"][0].pop("vips"), "services[0].vips", "required"),
        (lambda d: d["services"][0].update(ports={80: "http"}), "services[0].ports.80", "integer"),
        (lambda d: d["policies"][0].update(action="Audit"), "policies[0].action", "unknown value"),
        (
            lambda d: d["policies"][0]["rules"][0][0][0].update(sourceIps=["nope"]),
            "policies[0].rules[0][0][0].sourceIps[0]",
            "not a CIDR",
        ),
        (lambda d: d["proxy"].update(outbound="127.0.0.2"), "proxy.outbound", "expected ip:port"),
        (lambda d: d.update(extra=1), "(top level).extra", "unknown field"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, mutate: Any, field: str, problem: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: {field}: ")
    assert problem in str(e.value)


def test_cli_reports_bad_config_and_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, {"workloads": [{"name": "a"}]})
    r = subprocess.run(
        [sys.executable, "-m", "pyambient", "ztunnel", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert f"{path}: workloads[0].namespace: required" in r.stderr
