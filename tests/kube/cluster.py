"""A throwaway Kubernetes control plane for tests: etcd + kube-apiserver on loopback ports.

envtest style: no kubelet, no controller-manager (so no garbage collector and no EndpointSlice
controller: tests create EndpointSlices themselves). Binaries come from
`hack/install-kube-tools.sh` (~/.cache/pyambient/bin). Certificates are generated per run:
a CA, the apiserver's serving certificate for 127.0.0.1, an admin client certificate in
`system:masters`, and the service-account signing key.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("PYAMBIENT_CACHE", Path.home() / ".cache" / "pyambient"))
BIN_DIR = CACHE_DIR / "bin"
GATEWAY_API_CRDS = CACHE_DIR / "crds" / "gateway-api"
ISTIO_CRDS = ROOT / "tests" / "kube" / "crds"
SERVICE_CIDR = "10.96.0.0/16"


def _die_with_parent() -> None:
    """Child-side: SIGKILL this process when the test process dies, even if pytest is killed
    before its teardown runs (no orphaned etcd/apiserver left holding ports on CI)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: x509.Name, public_key: Any, issuer: x509.Name, signer: Any, *, ca: bool,
                 sans: list[x509.GeneralName] | None = None,
                 usages: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public: Path
    sa_private: Path


def write_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyambient-test-ca")])
    ca_cert = _certificate(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True)

    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), serving_key.public_key(),
        ca_name, ca_key, ca=False,
        sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
              x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
              x509.IPAddress(ipaddress.ip_address("10.96.0.1"))],
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin_cert = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]),
        admin_key.public_key(), ca_name, ca_key, ca=False, usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pki = Pki(*(directory / n for n in ("ca.crt", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key",
                                        "sa.pub", "sa.key")))
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_cert.write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_key.write_bytes(_pem_key(serving_key))
    pki.admin_cert.write_bytes(admin_cert.public_bytes(serialization.Encoding.PEM))
    pki.admin_key.write_bytes(_pem_key(admin_key))
    pki.sa_private.write_bytes(_pem_key(sa_key))
    pki.sa_public.write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def wait_apiserver_ready(
    server: str,
    context: ssl.SSLContext,
    check_alive: Callable[[], None],
    *,
    timeout: float,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll `server`/readyz with the admin's TLS context until 200; `check_alive` raises if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive()
        try:
            with urllib.request.urlopen(f"{server}/readyz", timeout=3, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"kube-apiserver did not become ready{': ' + detail() if detail else ''}")


class KubeCluster:
    """etcd + kube-apiserver; `kubectl(...)` runs the real kubectl against it."""

    def __init__(self, workdir: Path) -> None:
        for name in ("etcd", "kube-apiserver", "kubectl"):
            if not (BIN_DIR / name).is_file():
                raise RuntimeError(f"{BIN_DIR / name} is missing: run `bash hack/install-kube-tools.sh`")
        self.workdir = workdir
        self.pki = write_pki(workdir / "pki")
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = workdir / "kubeconfig"
        self._write_kubeconfig()
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self.apiserver_starts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._start_etcd()
        self.start_apiserver()
        self.install_crds()

    def stop(self) -> None:
        for proc in (self._apiserver, self._etcd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def stop_apiserver(self, *, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds: a graceful apiserver shutdown waits for
        open watches to drain (tens of seconds); a kill is the harsher, and faster, outage."""
        proc = self._apiserver
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._apiserver = None

    def restart_apiserver(self, *, downtime: float = 0.0) -> None:
        self.stop_apiserver()
        time.sleep(downtime)
        self.start_apiserver()

    def start_apiserver(self) -> None:
        log = open(self.workdir / f"kube-apiserver-{self.apiserver_starts}.log", "wb")  # noqa: SIM115
        self.apiserver_starts += 1
        args = [
            str(BIN_DIR / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-account-key-file={self.pki.sa_public}",
            f"--service-account-signing-key-file={self.pki.sa_private}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            # No controller-manager creates the `default` ServiceAccount, so the admission plugin
            # that requires it would reject every Pod the tests create.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]
        self._apiserver = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        self._wait_ready(self._apiserver, timeout=90)

    def _start_etcd(self) -> None:
        log = open(self.workdir / "etcd.log", "wb")  # noqa: SIM115
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self._etcd = subprocess.Popen(
            [
                str(BIN_DIR / "etcd"),
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=test={peer}",
                # Test data is thrown away: skipping fsync keeps etcd off the shared disk's critical path.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._etcd.poll() is not None:
                raise RuntimeError(f"etcd exited: {(self.workdir / 'etcd.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy")

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _wait_ready(self, proc: subprocess.Popen[bytes], *, timeout: float) -> None:
        def check_alive() -> None:
            if proc.poll() is not None:
                logs = sorted(self.workdir.glob("kube-apiserver-*.log"))[-1].read_text()
                raise RuntimeError(f"kube-apiserver exited: {logs[-3000:]}")

        wait_apiserver_ready(self.server, self._ssl_context(), check_alive, timeout=timeout)

    def install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "-f", str(GATEWAY_API_CRDS), "-f", str(ISTIO_CRDS))
        # `kubectl wait` fails outright on a CRD whose status is not written yet, so poll instead.
        deadline = time.monotonic() + 60
        while True:
            crds = self.get_json("crd")["items"]
            pending = [c["metadata"]["name"] for c in crds if not any(
                cond.get("type") == "Established" and cond.get("status") == "True"
                for cond in (c.get("status") or {}).get("conditions") or ())]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRDs not Established: {pending}")
            time.sleep(0.2)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.server,
                                                      "certificate-authority": str(self.pki.ca_cert)}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(self.pki.admin_cert),
                                                  "client-key": str(self.pki.admin_key)}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        # JSON is valid YAML, and kubeconfig loaders accept it.
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    # -- kubectl -----------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN_DIR / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def get_json(self, *args: str) -> Any:
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise RuntimeError(result.stderr)
        return json.loads(result.stdout)


def start_cluster() -> KubeCluster:
    workdir = Path(tempfile.mkdtemp(prefix="pyambient-kube-"))
    cluster = KubeCluster(workdir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def remove_cluster(cluster: KubeCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.workdir, ignore_errors=True)
