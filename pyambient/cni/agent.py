"""`pyambient cni-agent`: the node agent of in-pod capture (one per node, like istio-cni's DaemonSet).

- installs the CNI plugin (plugin.py → `<bin dir>/pyambient-cni`) and appends it to the node's conflist, both
  atomically (temp file + rename), so a pod sandbox never sees half a file;
- serves the plugin's ADD/DEL on a unix socket (pods enrolled before their apps start);
- watches namespaces and pods from the API server and reconciles: labelling a namespace enrols its running pods
  (their netns found by pod IP), unlabelling or deleting removes them;
- keeps one connection to the ztunnel's enrolment socket; on every (re)connect — a ztunnel restart — it re-sends
  every pod that should be enrolled, then `snapshot-sent`, then removes the rules of pods that stopped being
  captured meanwhile (their netns fd attached, since the new ztunnel never saw them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyambient.cni import plugin
from pyambient.cni.policy import (
    PodEnrolment,
    capture_decision,
    conflist_with_plugin,
    desired_pods,
    host_probe_payload,
    pod_enrolment,
)
from waypoint.kube.api import NAMESPACES, PODS, KubeApi, Resource
from waypoint.kube.watch import Informer
from waypoint.settings import WatchSettings
from ztunnel.inpod.enrolment import AddPod
from ztunnel.inpod.link import EnrolmentRefused, ZtunnelLink

log = logging.getLogger("cni-agent")
PLUGIN_NAME = "pyambient-cni"


# ---------------------------------------------------------------------------- host installation
def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install_plugin(bin_dir: Path, conf_dir: Path, agent_socket: Path) -> Path:
    """Copy the plugin executable and chain it last in the node's (first, by name) conflist; returns the
    conflist path. Idempotent."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(bin_dir / PLUGIN_NAME, Path(plugin.__file__).read_bytes(), 0o755)
    candidates = sorted(p for p in conf_dir.glob("*") if p.suffix in (".conflist", ".conf", ".json"))
    if not candidates:
        raise FileNotFoundError(f"no CNI network config in {conf_dir}: the node's network plugin is not installed")
    path = candidates[0]
    if path.suffix != ".conflist":
        raise ValueError(f"{path}: only a .conflist can be chained; a single-plugin .conf is not supported")
    conflist = json.loads(path.read_text())
    entry = {"type": PLUGIN_NAME, "agentSocket": str(agent_socket)}
    updated = conflist_with_plugin(conflist, entry)
    if updated is not None:
        _atomic_write(path, (json.dumps(updated, indent=2) + "\n").encode(), 0o644)
        log.info("chained %s into %s", PLUGIN_NAME, path)
    return path


# ---------------------------------------------------------------------------- finding a running pod's netns
def find_netns(ips: tuple[str, ...]) -> str | None:
    """The path of a network namespace holding one of `ips`: pinned ones (/var/run/netns, where CRI runtimes
    keep pod sandboxes) first, then those of running processes."""
    seen: set[int] = set()
    candidates = [str(p) for p in sorted(Path("/var/run/netns").glob("*"))]
    candidates += [f"/proc/{pid}/ns/net" for pid in os.listdir("/proc") if pid.isdigit()]
    for path in candidates:
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue
        if ino in seen:
            continue
        seen.add(ino)
        out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "addr"], capture_output=True, text=True)
        if out.returncode != 0:
            continue
        try:
            links = json.loads(out.stdout or "[]")
        except ValueError:
            continue
        have = {a.get("local") for link in links for a in link.get("addr_info") or []}
        if have & set(ips):
            return path
    return None


# ---------------------------------------------------------------------------- the agent
@dataclass(frozen=True)
class Wanted:
    pod: PodEnrolment
    netns: str  # path


class NodeAgent:
    def __init__(
        self, api: KubeApi, node: str, ztunnel_socket: Path, agent_socket: Path, *, host_netns: Path | None = None
    ) -> None:
        """`host_netns`: where the node's probe SNAT goes (default: this process's netns — the agent runs with
        hostNetwork); tests that stand a netns in for the node pass it."""
        self.api = api
        self.host_netns = host_netns
        self._host_ips: list[str] | None = None
        self.node = node
        self.ztunnel_socket = ztunnel_socket
        self.agent_socket = agent_socket
        self._lock = threading.Condition()
        self._wanted: dict[str, Wanted] = {}  # what the ztunnel should have
        self._cni: dict[str, Wanted] = {}  # uid → what CNI ADD said (netns path, IPs)
        self._seen_uids: set[str] = set()  # pods the informer has listed at least once
        self._acked: dict[str, str] = {}  # uid → "" (enrolled) or the ztunnel's refusal, per current wanted
        self._maybe_installed: dict[str, Wanted] = {}  # pods whose rules may exist (sent to any ztunnel)
        self._stop = threading.Event()
        self._dirty = threading.Event()
        settings = WatchSettings()
        self.namespaces = Informer(api, NAMESPACES, self._changed, settings)
        self.pods = Informer(api, PODS, self._changed, settings)
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None

    # -- lifecycle
    def start(self) -> None:
        self.namespaces.start()
        self.pods.start()
        self._serve_plugin_socket()
        for target, name in ((self._reconcile_loop, "reconcile"), (self._ztunnel_loop, "ztunnel-link")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        with self._lock:
            self._lock.notify_all()
        self.namespaces.stop()
        self.pods.stop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                self.agent_socket.unlink()

    def _changed(self, resource: Resource, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        self._dirty.set()

    # -- reconcile from the API server
    def _reconcile_loop(self) -> None:
        self.namespaces.synced.wait()
        self.pods.synced.wait()
        while not self._stop.is_set():
            self._dirty.wait(5.0)
            self._dirty.clear()
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - keep reconciling; the next change retries
                log.exception("reconcile failed")

    def reconcile(self) -> None:
        namespaces = {(n.get("metadata") or {}).get("name", ""): n for n in self.namespaces.items()}
        pods = self.pods.items()
        with self._lock:
            known = dict(self._wanted)
            cni = dict(self._cni)
        uids = {str((p.get("metadata") or {}).get("uid") or "") for p in pods}
        with self._lock:
            self._seen_uids |= uids
            for uid in [u for u in self._cni if u in self._seen_uids and u not in uids]:
                del self._cni[uid]  # the pod was deleted (its CNI DEL may never come)
        desired = desired_pods(namespaces, pods, self.node, {uid: w.pod.ips for uid, w in cni.items()})
        wanted: dict[str, Wanted] = {uid: w for uid, w in cni.items() if uid not in uids}  # not listed yet
        for uid, pod in desired.items():
            w = known.get(uid)
            if w is not None and w.pod == pod:
                wanted[uid] = w
                continue
            path = cni[uid].netns if uid in cni else find_netns(pod.ips)
            if path is None:
                log.warning("pod %s/%s: no network namespace holds %s yet", pod.namespace, pod.name, pod.ips)
                continue
            wanted[uid] = Wanted(pod, path)
        with self._lock:
            for uid, w in self._cni.items():  # a CNI ADD that arrived while this pass ran
                if uid not in uids and uid not in wanted:
                    wanted[uid] = w
            if wanted != self._wanted:
                self._wanted = wanted
                self._lock.notify_all()
        self._sync_host_probe_rules(sorted(ip for w in wanted.values() for ip in w.pod.ips))

    def _host(self, *cmd: str, stdin: str | None = None) -> str:
        prefix = ["nsenter", f"--net={self.host_netns}"] if self.host_netns is not None else []
        p = subprocess.run([*prefix, *cmd], input=stdin, capture_output=True, text=True)
        if p.returncode != 0:
            raise OSError(f"{' '.join(cmd)} on the node: {p.stderr.strip()}")
        return p.stdout

    def _sync_host_probe_rules(self, ips: list[str]) -> None:
        if ips == self._host_ips:
            return
        self._host("iptables-restore", "--noflush", stdin=host_probe_payload(ips, self._host("iptables-save")))
        self._host_ips = ips

    # -- the ztunnel connection
    def _ztunnel_loop(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                link = ZtunnelLink(self.ztunnel_socket)
            except OSError as e:
                log.info("ztunnel enrolment socket %s not available: %s", self.ztunnel_socket, e)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            log.info("connected to the ztunnel at %s", self.ztunnel_socket)
            try:
                self._session(link)
            except (OSError, ConnectionError) as e:
                log.warning("ztunnel connection lost: %s", e)
            finally:
                link.close()

    def _send_add(self, link: ZtunnelLink, w: Wanted) -> None:
        try:
            fd = os.open(w.netns, os.O_RDONLY)
        except OSError as e:
            self._ack(w.pod.uid, f"netns {w.netns}: {e.strerror}")
            return
        try:
            with self._lock:
                self._maybe_installed[w.pod.uid] = w
            link.add(AddPod(w.pod.uid, w.pod.namespace, w.pod.name, w.pod.ips), fd)
            self._ack(w.pod.uid, "")
            log.info("pod enrolled %s/%s", w.pod.namespace, w.pod.name)
        except EnrolmentRefused as e:
            self._ack(w.pod.uid, str(e))
            log.error("ztunnel refused pod %s/%s: %s", w.pod.namespace, w.pod.name, e)
        finally:
            os.close(fd)

    def _send_del(self, link: ZtunnelLink, w: Wanted, *, with_netns: bool) -> None:
        fd = None
        if with_netns:
            with contextlib.suppress(OSError):
                fd = os.open(w.netns, os.O_RDONLY)
        try:
            link.delete(w.pod.uid, fd)
            log.info("pod removed %s/%s", w.pod.namespace, w.pod.name)
        except EnrolmentRefused as e:
            log.error("ztunnel refused removing pod %s/%s: %s", w.pod.namespace, w.pod.name, e)
        finally:
            if fd is not None:
                os.close(fd)
        with self._lock:
            self._maybe_installed.pop(w.pod.uid, None)

    def _ack(self, uid: str, error: str) -> None:
        with self._lock:
            self._acked[uid] = error
            self._lock.notify_all()

    def _session(self, link: ZtunnelLink) -> None:
        with self._lock:
            wanted = dict(self._wanted)
            self._acked.clear()
        for w in wanted.values():  # the snapshot
            self._send_add(link, w)
        link.snapshot_sent()
        sent = wanted
        with self._lock:
            stale = [w for uid, w in self._maybe_installed.items() if uid not in wanted]
        for w in stale:  # captured when a previous ztunnel ran, not any more: only their rules are left
            self._send_del(link, w, with_netns=True)
        while not self._stop.is_set():
            with self._lock:
                while self._wanted == sent and not self._stop.is_set():
                    self._lock.wait(0.5)
                    if link.peer_closed():  # the ztunnel went away: reconnect and re-send the snapshot
                        raise ConnectionError("the ztunnel closed the enrolment socket")
                wanted = dict(self._wanted)
            for uid, w in wanted.items():
                if sent.get(uid) != w:
                    self._send_add(link, w)
            for uid, w in sent.items():
                if uid not in wanted:
                    self._send_del(link, w, with_netns=False)
            sent = wanted

    # -- the CNI plugin's requests
    def _serve_plugin_socket(self) -> None:
        self.agent_socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.agent_socket.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(str(self.agent_socket))
        os.chmod(self.agent_socket, 0o600)
        s.listen(64)
        self._server = s

        def accept() -> None:
            while not self._stop.is_set():
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                threading.Thread(target=self._plugin_request, args=(conn,), daemon=True).start()

        t = threading.Thread(target=accept, name="cni-plugin-socket", daemon=True)
        t.start()
        self._threads.append(t)

    def _plugin_request(self, conn: socket.socket) -> None:
        with conn:
            try:
                req = json.loads(conn.recv(65536))
                reply = self.plugin_add(req) if req.get("cmd") == "add" else self.plugin_del(req)
            except Exception as e:  # noqa: BLE001 - the plugin gets the reason and fails the ADD
                log.exception("CNI request failed")
                reply = {"error": str(e)}
            with contextlib.suppress(OSError):
                conn.send(json.dumps(reply).encode())

    def plugin_add(self, req: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        ns_name, name = str(req["namespace"]), str(req["name"])
        pod = self.pods.get(ns_name, name) or self.api.get(PODS, ns_name, name)
        namespace = self.namespaces.get("", ns_name) or self.api.get(NAMESPACES, None, ns_name)
        if pod is None:
            return {"error": f"pod {ns_name}/{name} not found in the API server"}
        pod = {**pod, "status": {**(pod.get("status") or {}), "podIP": req["ips"][0],
                                 "podIPs": [{"ip": ip} for ip in req["ips"]]}}  # fmt: skip
        captured, why = capture_decision(namespace, pod, self.node)
        if not captured:
            log.info("CNI ADD %s/%s: not captured (%s)", ns_name, name, why)
            return {"enrolled": False, "reason": why}
        enrol = pod_enrolment(pod)
        assert enrol is not None
        w = Wanted(enrol, str(req["netns"]))
        with self._lock:
            self._cni[enrol.uid] = w
            self._acked.pop(enrol.uid, None)
            self._wanted = {**self._wanted, enrol.uid: w}
            self._lock.notify_all()
            ok = self._lock.wait_for(lambda: enrol.uid in self._acked, timeout)
        self._dirty.set()  # the node's probe SNAT follows the enrolled pods
        with self._lock:
            if not ok:
                return {"error": "the ztunnel did not enrol the pod in time (is it running?)"}
            error = self._acked[enrol.uid]
        return {"error": error} if error else {"enrolled": True}

    def plugin_del(self, req: dict[str, Any]) -> dict[str, Any]:
        uid = str(req.get("uid") or "")
        with self._lock:
            self._cni.pop(uid, None)
            if uid in self._wanted:
                self._wanted = {k: v for k, v in self._wanted.items() if k != uid}
                self._lock.notify_all()
        return {}
