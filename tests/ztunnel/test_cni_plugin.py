"""The CNI plugin's invocation handling and the agent's capture decisions (pure): tables named after the
scenario. The plugin run end to end by the kubelet's rules is in tests/kube/test_cni_agent.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pyambient.cni import plugin
from pyambient.cni.policy import (
    capture_decision,
    conflist_with_plugin,
    desired_pods,
    host_probe_payload,
)

CONF = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "pyambient-cni", "agentSocket": "/nonexistent.sock",
        "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24"}]}}  # fmt: skip
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=sleep;K8S_POD_UID=u1"


def _run(command: str, conf: dict[str, Any] | bytes, args: str = POD_ARGS, netns: str = "/var/run/netns/x") -> Any:
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    code, out = plugin.run({"CNI_COMMAND": command, "CNI_ARGS": args, "CNI_NETNS": netns}, stdin)
    return code, (json.loads(out) if out else None)


@pytest.mark.parametrize(
    ("scenario", "command", "conf", "args", "code", "error_code", "msg"),
    [
        ("version_needs_no_config", "VERSION", b"", POD_ARGS, 0, None, None),
        ("unknown_config_field_refused", "ADD", {**CONF, "excludeNamespaces": []}, POD_ARGS, 1, 4, "excludeNamespaces"),
        ("wrong_type_refused", "ADD", {**CONF, "type": "bridge"}, POD_ARGS, 1, 4, "'bridge'"),
        ("unsupported_version_refused", "ADD", {**CONF, "cniVersion": "0.2.0"}, POD_ARGS, 1, 1, "0.2.0"),
        ("not_json_refused", "ADD", b"{", POD_ARGS, 1, 4, "not JSON"),
        ("not_chained_refused", "ADD", {k: v for k, v in CONF.items() if k != "prevResult"}, POD_ARGS, 1, 4,
         "chained after"),
        ("agent_down_fails_add_closed", "ADD", CONF, POD_ARGS, 1, 11, "node agent"),
        ("bad_cni_args_refused", "ADD", CONF, "K8S_POD_NAME", 1, 7, "KEY=VALUE"),
        ("not_a_pod_passes_through", "ADD", CONF, "IgnoreUnknown=1", 0, None, None),
        ("del_succeeds_with_agent_down", "DEL", CONF, POD_ARGS, 0, None, None),
        ("check_succeeds", "CHECK", CONF, POD_ARGS, 0, None, None),
        ("unknown_command_refused", "FROB", CONF, POD_ARGS, 1, 7, "FROB"),
    ],
)  # fmt: skip
def test_plugin_invocation(
    scenario: str, command: str, conf: Any, args: str, code: int, error_code: int | None, msg: str | None
) -> None:
    got_code, out = _run(command, conf, args)
    assert got_code == code, (scenario, out)
    if error_code is not None:
        assert out["code"] == error_code and msg in out["msg"], scenario
    elif command == "VERSION":
        assert "1.0.0" in out["supportedVersions"]
    elif command == "ADD":
        assert out == CONF["prevResult"], scenario  # prevResult passed through unchanged


def _ns(mode: str | None) -> dict[str, Any]:
    return {"metadata": {"name": "default", "labels": {"istio.io/dataplane-mode": mode} if mode else {}}}


def _pod(node: str = "node-1", mode: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "default", "uid": "u1"}
    meta["labels"] = {"istio.io/dataplane-mode": mode} if mode else {}
    meta.update(extra.pop("meta", {}))
    pod = {"metadata": meta, "spec": {"nodeName": node, **extra.pop("spec", {})},
           "status": {"podIP": "10.1.0.5", **extra.pop("status", {})}}  # fmt: skip
    return pod


@pytest.mark.parametrize(
    ("scenario", "namespace", "pod", "captured"),
    [
        ("namespace_ambient_captures", _ns("ambient"), _pod(), True),
        ("namespace_unlabelled_untouched", _ns(None), _pod(), False),
        ("pod_label_ambient_captures_in_plain_namespace", _ns(None), _pod(mode="ambient"), True),
        ("pod_opted_out_with_none", _ns("ambient"), _pod(mode="none"), False),
        ("other_node_not_ours", _ns("ambient"), _pod(node="node-2"), False),
        ("host_network_never", _ns("ambient"), _pod(spec={"hostNetwork": True}), False),
        ("sidecar_pod_never", _ns("ambient"), _pod(meta={"annotations": {"sidecar.istio.io/status": "{}"}}), False),
        ("terminating_pod_released", _ns("ambient"), _pod(meta={"deletionTimestamp": "2026-01-01T00:00:00Z"}), False),
        ("finished_pod_released", _ns("ambient"), _pod(status={"phase": "Succeeded"}), False),
        ("namespace_not_seen_yet", None, _pod(), False),
    ],
)
def test_capture_decision(scenario: str, namespace: Any, pod: dict[str, Any], captured: bool) -> None:
    assert capture_decision(namespace, pod, "node-1")[0] is captured, scenario


def test_desired_pods_uses_cni_ips_until_the_status_shows_them() -> None:
    pod = _pod(status={"podIP": None})
    assert desired_pods({"default": _ns("ambient")}, [pod], "node-1") == {}
    got = desired_pods({"default": _ns("ambient")}, [pod], "node-1", {"u1": ("10.1.0.9",)})
    assert got["u1"].ips == ("10.1.0.9",)


@pytest.mark.parametrize(
    ("scenario", "plugins", "changed"),
    [
        ("appended_last", [{"type": "bridge"}, {"type": "portmap"}], True),
        ("already_last_unchanged", [{"type": "bridge"}, {"type": "pyambient-cni", "agentSocket": "/s"}], False),
        ("older_entry_moved_last", [{"type": "pyambient-cni", "agentSocket": "/s"}, {"type": "bridge"}], True),
        ("older_settings_replaced", [{"type": "bridge"}, {"type": "pyambient-cni", "agentSocket": "/old"}], True),
    ],
)
def test_conflist_chaining(scenario: str, plugins: list[dict[str, Any]], changed: bool) -> None:
    ours = {"type": "pyambient-cni", "agentSocket": "/s"}
    out = conflist_with_plugin({"cniVersion": "1.0.0", "name": "n", "plugins": plugins}, ours)
    assert (out is not None) is changed, scenario
    if out is not None:
        assert out["plugins"][-1] == ours and sum(p["type"] == "pyambient-cni" for p in out["plugins"]) == 1


@pytest.mark.parametrize(
    ("scenario", "saved", "jump_added"),
    [
        ("first_sync_adds_jump", "", True),
        (
            "later_sync_keeps_single_jump",
            "*nat\n:ISTIO_POSTRT - [0:0]\n-A POSTROUTING -j ISTIO_POSTRT\nCOMMIT\n",
            False,
        ),
    ],
)
def test_host_probe_snat(scenario: str, saved: str, jump_added: bool) -> None:
    payload = host_probe_payload(["10.1.0.6", "10.1.0.5", "fd00::5"], saved)
    assert ("-A POSTROUTING -j ISTIO_POSTRT" in payload) is jump_added, scenario
    assert payload.count("--socket-exists -j SNAT --to-source 169.254.7.127") == 2  # IPv4 pods only
    assert payload.index("10.1.0.5/32") < payload.index("10.1.0.6/32")
