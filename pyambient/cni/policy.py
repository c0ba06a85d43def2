"""Which pods the node agent enrols in in-pod capture (pure), as istio-cni decides it.

A pod on this node is captured when its namespace, or the pod itself, is labelled
`istio.io/dataplane-mode=ambient`, unless the pod opts out with `istio.io/dataplane-mode=none`; never host-network
pods, pods with a sidecar (`sidecar.istio.io/status`), or pods that are finished or being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATAPLANE_MODE = "istio.io/dataplane-mode"
SIDECAR_STATUS = "sidecar.istio.io/status"


@dataclass(frozen=True)
class PodEnrolment:
    uid: str
    namespace: str
    name: str
    ips: tuple[str, ...]


def _meta(obj: dict[str, Any] | None, field: str) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get(field) or {})


def capture_decision(namespace: dict[str, Any] | None, pod: dict[str, Any], node: str) -> tuple[bool, str]:
    """(captured?, why) for one pod."""
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod.get("metadata") or {}
    labels = _meta(pod, "labels")
    if spec.get("nodeName") != node:
        return False, "on another node"
    if spec.get("hostNetwork"):
        return False, "host network"
    if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return False, "terminating or finished"
    if SIDECAR_STATUS in _meta(pod, "annotations"):
        return False, "has a sidecar"
    if labels.get(DATAPLANE_MODE) == "none":
        return False, "opted out (istio.io/dataplane-mode=none)"
    if labels.get(DATAPLANE_MODE) == "ambient":
        return True, "pod labelled ambient"
    if _meta(namespace, "labels").get(DATAPLANE_MODE) == "ambient":
        return True, "namespace labelled ambient"
    return False, "not in ambient mode"


def pod_enrolment(pod: dict[str, Any]) -> PodEnrolment | None:
    """The enrolment facts of a pod, or None while it has no IP yet."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ips = tuple(str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")) or (
        (str(status["podIP"]),) if status.get("podIP") else ()
    )
    if not ips:
        return None
    return PodEnrolment(str(meta.get("uid") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""), ips)


def desired_pods(
    namespaces: dict[str, dict[str, Any]],
    pods: list[dict[str, Any]],
    node: str,
    cni_ips: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, PodEnrolment]:
    """uid → enrolment for every pod of this node that should be captured now. `cni_ips`: the IPs CNI ADD
    reported, used while the pod's status does not show them yet (the kubelet writes them after the sandbox)."""
    out = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        ns, uid = meta.get("namespace") or "", str(meta.get("uid") or "")
        captured, _why = capture_decision(namespaces.get(ns), pod, node)
        enrol = pod_enrolment(pod) if captured else None
        if captured and enrol is None and cni_ips and uid in cni_ips:
            enrol = PodEnrolment(uid, ns, str(meta.get("name") or ""), cni_ips[uid])
        if enrol is not None and enrol.uid:
            out[enrol.uid] = enrol
    return out


def conflist_with_plugin(conflist: dict[str, Any], plugin: dict[str, Any]) -> dict[str, Any] | None:
    """The node's conflist with our plugin as the last entry (replacing an older entry of ours), or None when it
    is already there exactly."""
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list):
        raise ValueError("CNI conflist has no 'plugins' list")
    others = [p for p in plugins if not (isinstance(p, dict) and p.get("type") == plugin["type"])]
    if plugins and plugins[-1] == plugin and len(others) == len(plugins) - 1:
        return None
    return {**conflist, "plugins": [*others, plugin]}


PROBE_SOURCE = "169.254.7.127"
HOST_CHAIN = "ISTIO_POSTRT"


def host_probe_payload(pod_ips: list[str], saved: str) -> str:
    """The node's `iptables-restore --noflush` input that SNATs the kubelet's probes to captured pods to
    169.254.7.127 (Istio's probe source): only packets from local sockets (`--socket-exists`: the kubelet runs
    on the host) to an enrolled pod's IP. The pods' rules let that source through uncaptured, so probes keep
    working under STRICT. Our chain is declared (replaced atomically); the jump is added once. One rule per pod
    IP rather than Istio's ipset: no extra tool on the node, and a node's few hundred pods are cheap to match."""
    jump = f"-A POSTROUTING -j {HOST_CHAIN}"
    has_jump = any(line.strip() == jump for line in _table(saved, "nat"))
    lines = ["*nat", f":{HOST_CHAIN} - [0:0]"]
    lines += [
        f"-A {HOST_CHAIN} -d {ip}/32 -p tcp -m owner --socket-exists -j SNAT --to-source {PROBE_SOURCE}"
        for ip in sorted(set(pod_ips))
        if ":" not in ip
    ]
    if not has_jump:
        lines.append(jump)
    return "\n".join([*lines, "COMMIT"]) + "\n"


def _table(saved: str, table: str) -> list[str]:
    out, current = [], False
    for line in saved.splitlines():
        if line.startswith("*"):
            current = line[1:].strip() == table
        elif current:
            out.append(line)
    return out
