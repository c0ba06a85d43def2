"""A real single-node Kubernetes for tests: control plane, containerd, kubelet, kube-proxy, CoreDNS.

Everything the node is made of lives in one network namespace (`pyambient-node`) that this module
creates and deletes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, the
kubelet, kube-proxy (iptables mode), the CNI bridge `cni0` (10.244.0.1/24, the node's address) and the
pod network, and CoreDNS serving the cluster DNS on 10.244.0.1:53. The test process reaches the API
server only through a loopback relay (relay.py); nothing routes 10.x from the machine's namespace, and
pods get no default route (their only routes: the pod /24 on-link and the Service range via the bridge).

Binaries come from hack/install-kube-tools.sh and hack/install-node-tools.sh, images from
hack/build-images.sh (all cached under ~/.cache/pyambient/). containerd's root is kept there too, so
images are unpacked once and later starts take seconds.

Host state the node touches, and how it is given back (stop() and, for a crashed run, the next start):
- processes: each one's PID is recorded in RUN_DIR/pids; everything in the kubepods cgroups and every
  containerd shim of our socket is killed;
- mounts (container rootfs, pod volumes, pod netns) made in the machine's mount namespace under our
  directories or /run/netns/cni-*: unmounted;
- cgroups: the kubepods trees in every hierarchy: removed bottom-up;
- global sysctls the kubelet sets (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops): saved
  before the first start to RUN_DIR/host-state.json and restored;
- paths the components create outside our directories (/var/log/containers, /var/log/pods,
  /var/lib/cni, /run/containerd, /opt/containerd): removed when they did not exist before;
- the network namespace (with the bridge, veths, kube-proxy's iptables rules): deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.kube.cluster import (
    BIN_DIR,
    CACHE_DIR,
    GATEWAY_API_CRDS,
    ISTIO_CRDS,
    _certificate,
    _pem_key,
    wait_apiserver_ready,
)
from tests.node.hostns import NODE_NETNS, HostNamespaces
from tests.node.relay import NetnsRelay

NODE_NAME = "pyambient-node"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_DNS = NODE_IP
PROBE_SNAT_ADDRESS = "169.254.7.127/32"
BRIDGE = "cni0"
APISERVER_PORT = 6443
RUN_DIR = Path("/tmp/pyambient-node")
NODE_CACHE = CACHE_DIR / "node"
CONTAINERD_ROOT = NODE_CACHE / "containerd-root"
IMAGES_LIST = CACHE_DIR / "images" / "images.list"
LOCK_PATH = CACHE_DIR / "node.lock"
NODE_BINARIES = ("etcd", "kube-apiserver", "kubectl", "kube-controller-manager", "kube-scheduler", "kubelet",
                 "kube-proxy", "coredns")
# Global sysctls the kubelet writes (protectKernelDefaults=false); namespaced ones live in the node netns.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
# Paths outside our directories that containerd, the kubelet or CNI create on first use.
FOREIGN_PATHS = ("/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd", "/opt/containerd")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The node's CNI directories (a node's /etc/cni/net.d and /opt/cni/bin): ours, so a CNI node agent installing a
# plugin (pyambient cni-agent, through hostPaths) writes here and never into the machine's /usr/lib/cni.
CNI_CONF_DIR = RUN_DIR / "cni"
CNI_BIN_DIR = RUN_DIR / "cni-bin"
HOST_CNI_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
# deploy/'s hostPaths as this node has them (a user of a distribution with other CNI directories edits the same
# lines): every path stays under RUN_DIR, so nothing of the machine's /etc, /opt or /var/run is written.
NODE_HOST_PATHS = {
    "/etc/cni/net.d": str(CNI_CONF_DIR),
    "/opt/cni/bin": str(CNI_BIN_DIR),
    "/var/run/pyambient": str(RUN_DIR / "pyambient"),
    "/var/run/ztunnel": str(RUN_DIR / "ztunnel"),
}
_active = False  # a node of this process is between start() and stop()


@dataclass(frozen=True)
class Identity:
    """One client certificate: each component talks to the API server as itself."""

    name: str
    common_name: str
    organization: str | None = None


IDENTITIES = (
    Identity("admin", "admin", "system:masters"),
    Identity("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
    Identity("kube-proxy", "system:kube-proxy"),
    Identity("controller-manager", "system:kube-controller-manager"),
    Identity("scheduler", "system:kube-scheduler"),
    Identity("coredns", "system:coredns"),
)

COREDNS_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
"""


def _write_if_changed(path: Path, content: str) -> None:
    """kube-proxy exits when its config file is rewritten, even with identical content; containerd reloads a
    half-written CNI config: so files are replaced atomically, and only when they change."""
    if path.exists() and path.read_text() == content:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.replace(path)


class TestNode:
    """Start with start(), stop with stop(); `kubectl(...)` runs the real kubectl through the relay."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        missing = [name for name in NODE_BINARIES if not (BIN_DIR / name).is_file()]
        if missing:
            raise RuntimeError(f"missing {missing} in {BIN_DIR}: run `make node-tools`")
        if not IMAGES_LIST.is_file():
            raise RuntimeError(f"{IMAGES_LIST} is missing: run `make images`")
        self.ns = HostNamespaces()
        self.pki_dir = RUN_DIR / "pki"
        self.logs = RUN_DIR / "logs"
        self.kubeconfig = RUN_DIR / "admin-relay.kubeconfig"
        self.relay: NetnsRelay | None = None
        self.server = ""
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock_fd: int | None = None
        self.timings: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        global _active
        if _active:
            # flock is per open file: a second node in this process would wait for itself forever.
            raise RuntimeError("a test node is already running in this process")
        _active = True
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.clean_leftovers()
        RUN_DIR.mkdir(parents=True)
        for d in (self.logs, RUN_DIR / "pids", RUN_DIR / "cni", CNI_BIN_DIR, RUN_DIR / "cni-ipam", CONTAINERD_ROOT):
            d.mkdir(parents=True, exist_ok=True)
        self._link_cni_plugins()
        self._save_host_state()
        self._make_netns()
        self._write_pki()
        self._write_configs()
        self._start_control_plane()
        self._start("containerd", ["containerd", f"--config={RUN_DIR / 'containerd.toml'}"], path=True)
        self.relay = NetnsRelay(self.ns.netns_path(), ("127.0.0.1", APISERVER_PORT))
        self.server = f"https://127.0.0.1:{self.relay.port}"
        self._write_kubeconfig(self.kubeconfig, "admin", self.server)
        self._wait_apiserver()
        self.timings["apiserver"] = time.monotonic() - started
        self.kubectl("apply", "-f", "-", input=COREDNS_RBAC)
        self._start_kcm_scheduler()
        self._import_images()
        self.timings["images"] = time.monotonic() - started
        self._start_node_agents()
        self.install_crds()
        self.wait_node_ready()
        self.timings["ready"] = time.monotonic() - started

    def stop(self) -> None:
        global _active
        if self._lock_fd is None:
            # This instance never took the lock (its start() refused or failed before): the node running now, if
            # any, is someone else's, and cleaning up would destroy it.
            self.ns.close()
            return
        try:
            self.clean_leftovers()
        finally:
            _active = False
            if self.relay is not None:
                self.relay.close()
            self.ns.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- host state --------------------------------------------------------------------------------

    def _save_host_state(self) -> None:
        """What to give back. Written once: a crashed run's file still holds the true originals, and
        clean_leftovers() (which restores from it) runs before a new one is written."""
        state = {
            "sysctls": {key: (Path(self.ns.root + "/proc/sys") / key).read_text().strip() for key in KUBELET_SYSCTLS},
            "absent_paths": [p for p in FOREIGN_PATHS if not Path(self.ns.root + p).exists()],
        }
        (NODE_CACHE / "host-state.json").write_text(json.dumps(state))

    def clean_leftovers(self) -> None:
        """Stops everything of a node (this one, or a crashed run's) and gives back the host state."""
        pids_dir = RUN_DIR / "pids"
        for pid_file in sorted(pids_dir.glob("*")) if pids_dir.is_dir() else ():
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text())
                # A crashed run's PID may have been reused: only a process naming our directory is ours.
                if str(RUN_DIR).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self._procs.clear()
        self._kill_pods_and_shims()
        self._unmount_ours()
        self._remove_cgroups()
        if Path(self.ns.root + f"/run/netns/{NODE_NETNS}").exists():
            self.ns.run(self.ns.host("ip", "netns", "del", NODE_NETNS), check=False)
        state_file = NODE_CACHE / "host-state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            for key, value in state["sysctls"].items():
                path = Path(self.ns.root + "/proc/sys") / key
                if path.read_text().strip() != value:
                    path.write_text(value)
            for p in state["absent_paths"]:
                shutil.rmtree(self.ns.root + p, ignore_errors=True)
            state_file.unlink()
        shutil.rmtree(RUN_DIR, ignore_errors=True)

    def _kill_pods_and_shims(self) -> None:
        """Containers (everything in the kubepods cgroups) and the containerd shims serving our socket."""
        address = str(RUN_DIR / "containerd.sock")
        deadline = time.monotonic() + 30
        while True:
            victims: set[int] = set()
            for procs in self._kubepods_dirs("cgroup.procs"):
                with contextlib.suppress(OSError):
                    victims.update(int(line) for line in procs.read_text().split())
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and address.encode() in cmdline:
                    victims.add(int(entry.name))
            victims = {pid for pid in victims if not _is_zombie(pid)}
            if not victims:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"node processes survive SIGKILL: {sorted(victims)}")
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            # Until they are gone from /proc (reaped), not just signalled.
            time.sleep(0.2)

    def _unmount_ours(self) -> None:
        prefixes = (str(RUN_DIR) + "/", str(CONTAINERD_ROOT) + "/", "/run/netns/cni-", "/var/run/netns/cni-",
                    "/run/containerd/")
        for _ in range(5):
            mountinfo = Path(f"/proc/{self.ns.pid}/mountinfo")  # the machine's mount table, not a sandbox's
            points = [line.split()[4] for line in mountinfo.read_text().splitlines()]
            ours = sorted({p for p in points if p.startswith(prefixes)}, key=len, reverse=True)
            if not ours:
                break
            for point in ours:
                self.ns.run(self.ns.host("umount", "-l", point), check=False)
        for netns in Path(self.ns.root + "/run/netns").glob("cni-*"):
            with contextlib.suppress(OSError):
                netns.unlink()

    def _kubepods_dirs(self, leaf: str | None = None) -> list[Path]:
        """Every cgroup directory at or under a kubepods root, deepest first."""
        found: list[Path] = []
        base = Path(self.ns.root + str(CGROUP_ROOT))
        for hierarchy in base.iterdir() if base.is_dir() else ():
            top = hierarchy / "kubepods"
            if top.is_dir():
                for dirpath, _dirnames, _files in os.walk(top):
                    found.append(Path(dirpath))
        found.sort(key=lambda p: len(p.parts), reverse=True)
        return [p / leaf for p in found] if leaf else found

    def _remove_cgroups(self) -> None:
        for _ in range(20):
            remaining = []
            for directory in self._kubepods_dirs():
                try:
                    directory.rmdir()
                except OSError:
                    remaining.append(directory)
            if not remaining:
                return
            time.sleep(0.25)
        raise RuntimeError(f"kubepods cgroups still busy: {remaining[:3]}")

    # -- network -----------------------------------------------------------------------------------

    def _make_netns(self) -> None:
        run, node = self.ns.run, self.ns.node
        run(self.ns.host("ip", "netns", "add", NODE_NETNS))
        run(node("ip", "link", "set", "lo", "up"))
        run(node("ip", "link", "add", BRIDGE, "type", "bridge"))
        run(node("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE))
        run(node("ip", "link", "set", BRIDGE, "up"))
        # Node-side processes reach Services through kube-proxy's OUTPUT rules; they need a route first.
        run(node("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP))
        # Namespaced sysctls: they vanish with the namespace. pod -> ClusterIP -> pod on the same bridge is
        # routed (ip_forward) and must pass kube-proxy's rules (bridge-nf-call-iptables).
        run(node("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"))
        # Nothing from a pod leaves the node's namespace even if a route appeared.
        run(node("iptables", "-w", "-I", "FORWARD", "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP"))

    def _link_cni_plugins(self) -> None:
        """The machine's CNI plugins (bridge, host-local, portmap, ...) by symlink in our bin dir."""
        for plugin in sorted(Path(self.ns.root + HOST_CNI_PLUGINS).iterdir()):
            link = CNI_BIN_DIR / plugin.name
            if not link.exists():
                link.symlink_to(f"{HOST_CNI_PLUGINS}/{plugin.name}")

    # -- PKI and configuration ---------------------------------------------------------------------

    def _write_pki(self) -> None:
        d = self.pki_dir
        d.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyambient-node-ca")])
        ca_cert = _certificate(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True)
        (d / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        (d / "ca.key").write_bytes(_pem_key(ca_key))

        def serving(name: str, sans: list[x509.GeneralName]) -> None:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key(),
                                ca_name, ca_key, ca=False, sans=sans, usages=[ExtendedKeyUsageOID.SERVER_AUTH])
            (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (d / f"{name}.key").write_bytes(_pem_key(key))

        ip = x509.IPAddress
        serving("kube-apiserver", [
            ip(ipaddress.ip_address("127.0.0.1")), ip(ipaddress.ip_address(NODE_IP)),
            ip(ipaddress.ip_address("10.96.0.1")), x509.DNSName("localhost"), x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local")])
        serving("kubelet-serving", [ip(ipaddress.ip_address(NODE_IP)), x509.DNSName(NODE_NAME)])
        for identity in IDENTITIES:
            attributes = [x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name)]
            if identity.organization:
                attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.organization))
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(x509.Name(attributes), key.public_key(), ca_name, ca_key, ca=False,
                                usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
            (d / f"{identity.name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (d / f"{identity.name}.key").write_bytes(_pem_key(key))
            self._write_kubeconfig(RUN_DIR / f"{identity.name}.kubeconfig", identity.name,
                                   f"https://127.0.0.1:{APISERVER_PORT}")
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (d / "sa.key").write_bytes(_pem_key(sa_key))
        (d / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _write_kubeconfig(self, path: Path, user: str, server: str) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "node", "cluster": {"server": server,
                                                      "certificate-authority": str(self.pki_dir / "ca.crt")}}],
            "users": [{"name": user, "user": {"client-certificate": str(self.pki_dir / f"{user}.crt"),
                                               "client-key": str(self.pki_dir / f"{user}.key")}}],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": user}}],
            "current-context": "node",
        }
        path.write_text(json.dumps(config, indent=2))

    def _write_configs(self) -> None:
        images = self.images()
        pause = next(ref for ref in images if "/pause:" in ref)
        _write_if_changed(RUN_DIR / "containerd.toml", f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{RUN_DIR / 'containerd-state'}"
# Plugins that would create directories outside ours, or need kernel features this node does not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{RUN_DIR / 'containerd.sock'}"

[ttrpc]
  address = "{RUN_DIR / 'containerd.sock.ttrpc'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # root here has no CAP_SYS_RESOURCE: a negative oom_score_adj (CRI's -998 for the sandbox) fails runc.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{CNI_CONF_DIR}"
""")
        conflist = {
            "cniVersion": "0.4.0",
            "name": "pyambient-node",
            "plugins": [
                {
                    "type": "bridge", "bridge": BRIDGE, "isGateway": True, "hairpinMode": True, "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(RUN_DIR / "cni-ipam"),
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        # The Service range only: pods get no default route. And the address in-pod capture
                        # SNATs the kubelet's probes to (pyambient cni-agent, as Istio's 169.254.7.127): a real
                        # node's pods reach it by their default route.
                        "routes": [{"dst": SERVICE_CIDR}, {"dst": PROBE_SNAT_ADDRESS}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        _write_if_changed(CNI_CONF_DIR / "10-pyambient.conflist", json.dumps(conflist, indent=2))
        kubelet_config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki_dir / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(self.pki_dir / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki_dir / "kubelet-serving.key"),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": "cluster.local",
            # Pods see only the cluster DNS, none of the machine's resolvers.
            "resolvConf": "",
            "containerRuntimeEndpoint": f"unix://{RUN_DIR / 'containerd.sock'}",
            "podLogsDir": str(RUN_DIR / "pod-logs"),
            "rotateCertificates": False,
            "serializeImagePulls": False,
            # The machine's disk is shared with builds: never evict or GC our only copies of the images.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%",
                             "nodefs.inodesFree": "0%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "protectKernelDefaults": False,
            "registerNode": True,
            "nodeStatusUpdateFrequency": "4s",
        }
        _write_if_changed(RUN_DIR / "kubelet.json", json.dumps(kubelet_config, indent=2))
        proxy_config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(RUN_DIR / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # nf_conntrack_max and the conntrack timeouts are global: leave them alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False},
        }
        _write_if_changed(RUN_DIR / "kube-proxy.json", json.dumps(proxy_config, indent=2))
        _write_if_changed(RUN_DIR / "Corefile", f""".:53 {{
    bind {CLUSTER_DNS}
    ready 127.0.0.1:8181
    health 127.0.0.1:8080
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {RUN_DIR / 'coredns.kubeconfig'}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")

    # -- processes ---------------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], *, path: bool = False) -> subprocess.Popen[bytes]:
        """argv[0] from BIN_DIR (or $PATH), inside the node's network namespace, logging to logs/NAME.log."""
        binary = argv[0] if path else str(BIN_DIR / argv[0])
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115
        env = dict(os.environ, PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        proc = subprocess.Popen(self.ns.node(binary, *argv[1:]), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        log.close()
        (RUN_DIR / "pids" / name).write_text(str(proc.pid))
        self._procs[name] = proc
        return proc

    def _start_control_plane(self) -> None:
        pki = self.pki_dir
        self._start("etcd", [
            "etcd", "--name=node", f"--data-dir={RUN_DIR / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=node=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._start("kube-apiserver", [
            "kube-apiserver", "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}", f"--secure-port={APISERVER_PORT}",
            f"--cert-dir={RUN_DIR / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'kube-apiserver.crt'}", f"--tls-private-key-file={pki / 'kube-apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'admin.crt'}", f"--kubelet-client-key={pki / 'admin.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
        ])

    def _start_kcm_scheduler(self) -> None:
        pki = self.pki_dir
        self._start("kube-controller-manager", [
            "kube-controller-manager", f"--kubeconfig={RUN_DIR / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={RUN_DIR / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={RUN_DIR / 'controller-manager.kubeconfig'}",
            # Every default controller: nodelifecycle lifts the not-ready taint, garbagecollector removes
            # a deleted Gateway's children.
            "--controllers=*", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--flex-volume-plugin-dir={RUN_DIR / 'flex'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257", "--v=1",
        ])
        self._start("kube-scheduler", [
            "kube-scheduler", f"--kubeconfig={RUN_DIR / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={RUN_DIR / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={RUN_DIR / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259", "--v=1",
        ])

    def _start_node_agents(self) -> None:
        self._start("kubelet", [
            "kubelet", f"--config={RUN_DIR / 'kubelet.json'}", f"--kubeconfig={RUN_DIR / 'kubelet.kubeconfig'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", f"--root-dir={RUN_DIR / 'kubelet'}",
            f"--cert-dir={RUN_DIR / 'kubelet-certs'}", "--v=1",
        ])
        self._start("kube-proxy", ["kube-proxy", f"--config={RUN_DIR / 'kube-proxy.json'}", "--v=1"])
        self._start("coredns", ["coredns", "-conf", str(RUN_DIR / "Corefile")])

    def images(self) -> dict[str, Path]:
        """Image reference -> OCI archive, as hack/build-images.sh last wrote them."""
        out: dict[str, Path] = {}
        for line in IMAGES_LIST.read_text().splitlines():
            ref, archive = line.split()
            out[ref] = Path(archive)
        return out

    def _ctr(self, *args: str, timeout: float = 300) -> str:
        argv = self.ns.node("ctr", f"--address={RUN_DIR / 'containerd.sock'}", "-n", "k8s.io", *args)
        return self.ns.run(argv, timeout=timeout).stdout

    def _import_images(self) -> None:
        """Imports each archive unless containerd's (persistent) root already has this exact archive."""
        deadline = time.monotonic() + 60
        while not (RUN_DIR / "containerd.sock").exists():
            if self._procs["containerd"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {self._log_tail('containerd')}")
            time.sleep(0.1)
        marker = CONTAINERD_ROOT / "pyambient-imported.json"
        imported = json.loads(marker.read_text()) if marker.exists() else {}
        present = set(self._ctr("images", "ls", "-q").split())
        for ref, archive in self.images().items():
            if imported.get(ref) == archive.name and ref in present:
                continue
            repository = ref.rsplit(":", 1)[0]
            self._ctr("images", "import", "--all-platforms", f"--base-name={repository}", str(archive))
            imported[ref] = archive.name
            marker.write_text(json.dumps(imported))

    # -- waiting -----------------------------------------------------------------------------------

    def _log_tail(self, name: str, size: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {self._log_tail(name)}")

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return context

    def _wait_apiserver(self, timeout: float = 120) -> None:
        wait_apiserver_ready(self.server, self._ssl_context(), self._check_alive, timeout=timeout,
                             detail=lambda: self._log_tail("kube-apiserver"))

    def wait_node_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            node = self.get_json("node", NODE_NAME)
            if node is not None:
                ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
                tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints") or ())
                if ready and not tainted:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"node not Ready: {self._log_tail('kubelet')}")

    def install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "-f", str(GATEWAY_API_CRDS), "-f", str(ISTIO_CRDS))
        # `kubectl wait` fails outright on a CRD whose status is not written yet, so poll instead.
        def established() -> bool:
            return all(any(c.get("type") == "Established" and c.get("status") == "True"
                           for c in (crd.get("status") or {}).get("conditions") or ())
                       for crd in self.get_json("crd")["items"])

        self.wait_for("CRDs Established", established, timeout=60, interval=0.2)

    # -- deploy/ -----------------------------------------------------------------------------------

    @staticmethod
    def deploy_manifests() -> str:
        """deploy/*.yaml, in order, with the node's hostPaths (NODE_HOST_PATHS) in place of a node's usual ones."""
        text = "\n---\n".join(p.read_text() for p in sorted(DEPLOY_DIR.glob("*.yaml")))
        for usual, ours in NODE_HOST_PATHS.items():
            text = text.replace(usual, ours)
        return text

    def apply_deploy(self) -> None:
        """`kubectl apply` of deploy/ as a user applies it on this node (deploy_manifests)."""
        self.kubectl("apply", "-f", "-", input=self.deploy_manifests())

    # -- kubectl -----------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                                input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def get_json(self, *args: str) -> Any:
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise RuntimeError(result.stderr)
        return json.loads(result.stdout)

    def wait_for(self, what: str, predicate: Any, timeout: float = 180, interval: float = 0.5) -> Any:
        """Polls predicate() until it returns something truthy; the error names `what`."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _is_zombie(pid: int) -> bool:
    """Exited, waiting for its reaper (orphans: the machine's init), holding nothing but a PID."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")

