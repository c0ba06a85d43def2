#!/usr/bin/env python3
"""pyambient-cni: a CNI plugin chained after the node's network plugin (CNI spec 1.x: ADD, DEL, CHECK, VERSION).

Installed by the node agent (`pyambient cni-agent`) as an executable in the CNI bin dir, and as the last
entry of the node's conflist. On ADD, before the pod's containers start, it hands the pod (namespace, name, uid,
IPs from prevResult, netns path) to the node agent, which decides from the API server whether the pod is
captured (`istio.io/dataplane-mode`) and, if so, has the ztunnel enrol it; the ADD fails — and the kubelet
retries the sandbox — when an ambient pod cannot be enrolled (fail closed: no pod runs uncaptured). prevResult is
passed through unchanged. DEL tells the agent and never fails (the spec asks DEL to tolerate missing state).

Python standard library only, on purpose: the kubelet runs this file with the host's `python3` (the node needs
python3 ≥ 3.9; documented in docs/ztunnel.md), outside the project's venv.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
DEFAULT_AGENT_SOCKET = "/var/run/pyambient/cni-agent.sock"
PLUGIN_TYPE = "pyambient-cni"
# The spec's common keys (and what runtimes add); our own key is agentSocket. Anything else is refused.
KNOWN_KEYS = {"cniVersion", "name", "type", "args", "ipMasq", "ipam", "dns", "capabilities", "runtimeConfig",
              "prevResult", "agentSocket", "logLevel"}  # fmt: skip
# CNI error codes (spec: 4 invalid network config, 7 invalid environment variables, 11 try again later)
ERR_INCOMPATIBLE_VERSION, ERR_ENV, ERR_CONFIG, ERR_TRY_LATER = 1, 7, 4, 11


class PluginError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS: `K=V;K=V` (the kubelet sets K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, ...)."""
    out = {}
    for part in raw.split(";"):
        if part:
            k, sep, v = part.partition("=")
            if not sep:
                raise PluginError(ERR_ENV, f"CNI_ARGS: {part!r} is not KEY=VALUE")
            out[k] = v
    return out


def parse_config(stdin: bytes) -> dict[str, Any]:
    try:
        conf = json.loads(stdin or b"{}")
    except ValueError as e:
        raise PluginError(ERR_CONFIG, f"network config is not JSON: {e}") from None
    if not isinstance(conf, dict):
        raise PluginError(ERR_CONFIG, "network config must be a JSON object")
    unknown = sorted(set(conf) - KNOWN_KEYS)
    if unknown:
        raise PluginError(ERR_CONFIG, f"{PLUGIN_TYPE}: unknown config field(s): {', '.join(unknown)}")
    if conf.get("type") != PLUGIN_TYPE:
        raise PluginError(ERR_CONFIG, f"config type is {conf.get('type')!r}, this plugin is {PLUGIN_TYPE!r}")
    if conf.get("cniVersion") not in SUPPORTED_VERSIONS:
        raise PluginError(ERR_INCOMPATIBLE_VERSION, f"cniVersion {conf.get('cniVersion')!r} is not supported")
    return conf


def pod_ips(prev: Any) -> list[str]:
    if not isinstance(prev, dict) or not isinstance(prev.get("ips"), list):
        raise PluginError(ERR_CONFIG, f"{PLUGIN_TYPE} must be chained after the network plugin: no prevResult.ips")
    ips = []
    for i, entry in enumerate(prev["ips"]):
        addr = entry.get("address") if isinstance(entry, dict) else None
        if not isinstance(addr, str) or "/" not in addr:
            raise PluginError(ERR_CONFIG, f"prevResult.ips[{i}].address is not a CIDR: {addr!r}")
        ips.append(addr.split("/", 1)[0])
    return ips


def ask_agent(path: str, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            s.send(json.dumps(request).encode())
            reply = s.recv(65536)
        except OSError as e:
            raise PluginError(ERR_TRY_LATER, f"node agent at {path}: {e}") from None
    try:
        out = json.loads(reply)
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise PluginError(ERR_TRY_LATER, f"node agent at {path}: bad reply {reply[:200]!r}")
    return out


def run(env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """One invocation → (exit code, stdout)."""
    command = env.get("CNI_COMMAND", "")
    if command == "VERSION":
        return 0, json.dumps({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS})
    version = "1.0.0"
    try:
        conf = parse_config(stdin)
        version = conf["cniVersion"]
        if command not in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
            raise PluginError(ERR_ENV, f"CNI_COMMAND {command!r} is not supported")
        agent = str(conf.get("agentSocket") or DEFAULT_AGENT_SOCKET)
        prev = conf.get("prevResult")
        passthrough = json.dumps(prev if prev is not None else {"cniVersion": version})
        if command in ("GC", "STATUS"):
            return 0, ""
        args = parse_cni_args(env.get("CNI_ARGS", ""))
        ns, name, uid = args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", ""), args.get("K8S_POD_UID", "")
        if command == "DEL":
            if ns and name:
                try:
                    ask_agent(agent, {"cmd": "del", "namespace": ns, "name": name, "uid": uid}, timeout=10)
                except PluginError:
                    pass  # DEL must succeed; the agent reconciles from the API server anyway
            return 0, ""
        if not ns or not name:
            return 0, passthrough if command == "ADD" else ""  # not a Kubernetes pod: nothing to do
        netns = env.get("CNI_NETNS", "")
        if command == "CHECK":
            return 0, ""
        if not netns:
            raise PluginError(ERR_ENV, "CNI_NETNS is required for ADD")
        reply = ask_agent(
            agent,
            {"cmd": "add", "namespace": ns, "name": name, "uid": uid, "ips": pod_ips(prev), "netns": netns},
        )
        if reply.get("error"):
            raise PluginError(ERR_TRY_LATER, f"pod {ns}/{name} not enrolled in ambient: {reply['error']}")
        return 0, passthrough
    except PluginError as e:
        return 1, json.dumps({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details})


def main() -> int:
    code, out = run(dict(os.environ), sys.stdin.buffer.read())
    if out:
        sys.stdout.write(out + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
