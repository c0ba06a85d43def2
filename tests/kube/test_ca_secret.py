"""The mesh CA kept in Secrets, as istiod keeps it: `istio-ca-secret` created once and reused by every later
or concurrent controller, a bad Secret refused (never replaced), and the plug-in `cacerts` CA. The decoding
is a table of rows (no API server); the rest runs `pyambient controller` processes against a real one."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.harness.pki import make_ca, plugin_ca
from tests.kube.cluster import ROOT, KubeCluster, free_port
from tests.kube.waiting import eventually
from waypoint.kube.api import SECRETS, KubeApi
from waypoint.kube.casecret import (
    CA_SECRET,
    CA_SECRET_TYPE,
    PLUGIN_SECRET,
    CaSecretError,
    ca_from_ca_secret,
    ca_from_plugin_secret,
    ca_secret,
    load_or_create_ca,
)
from xds.ca import new_self_signed_root, spiffe_id
from xds.caclient import CaClient


def _b64(value: bytes | str) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def _secret(name: str, data: dict[str, bytes | str], namespace: str = "istio-system") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: _b64(v) for k, v in data.items()}}


def _plugin_data() -> dict[str, bytes | str]:
    root, inter = plugin_ca()
    return {"ca-cert.pem": inter.cert_pem, "ca-key.pem": inter.key_pem,
            "cert-chain.pem": inter.cert_pem + root.cert_pem, "root-cert.pem": root.cert_pem}


def _self_signed_data() -> dict[str, bytes | str]:
    cert, key = new_self_signed_root()
    return {"ca-cert.pem": cert, "ca-key.pem": key}


def _without(data: Callable[[], dict[str, bytes | str]], key: str) -> Callable[[], dict[str, bytes | str]]:
    return lambda: {k: v for k, v in data().items() if k != key}


def _with(data: Callable[[], dict[str, bytes | str]], **changes: bytes | str) -> Callable[[], dict[str, bytes | str]]:
    return lambda: {**data(), **{k.replace("_", "-") + ".pem": v for k, v in changes.items()}}


def _tls_data() -> dict[str, bytes | str]:
    root, inter = plugin_ca()
    return {"tls.crt": inter.cert_pem, "tls.key": inter.key_pem, "ca.crt": root.cert_pem}


# -- the decoding: one row per Secret shape ------------------------------------------------------

CA_SECRET_REFUSED: dict[str, tuple[Callable[[], dict[str, bytes | str]], str, str]] = {
    "no ca-key.pem": (_without(_self_signed_data, "ca-key.pem"), "ca-key.pem", "missing"),
    "no ca-cert.pem": (_without(_self_signed_data, "ca-cert.pem"), "ca-cert.pem", "missing"),
    "key of another root": (_with(_self_signed_data, ca_key=new_self_signed_root()[1]), "ca-key.pem",
                            "does not match"),
    "ca-key.pem is not a key": (_with(_self_signed_data, ca_key="garbage"), "ca-key.pem", "private key"),
    "ca-cert.pem is not a certificate": (_with(_self_signed_data, ca_cert="garbage"), "ca-cert.pem", "not PEM"),
}

PLUGIN_REFUSED: dict[str, tuple[Callable[[], dict[str, bytes | str]], str, str]] = {
    "no cert-chain.pem": (_without(_plugin_data, "cert-chain.pem"), "cert-chain.pem", "missing"),
    "no root-cert.pem": (_without(_plugin_data, "root-cert.pem"), "root-cert.pem", "missing"),
    "root-cert.pem only (additional roots)": (lambda: {"root-cert.pem": make_ca("r").cert_pem}, "ca-key.pem",
                                              "not supported"),
    "root-cert.pem is another root": (_with(_plugin_data, root_cert=make_ca("other").cert_pem), "root-cert.pem",
                                      "does not verify"),
    "key of another CA": (_with(_plugin_data, ca_key=make_ca("other").key_pem), "ca-key.pem", "does not match"),
    "tls.key of another CA (kubernetes.io/tls)": (lambda: {**_tls_data(), "tls.key": make_ca("o").key_pem},
                                                 "tls.key", "does not match"),
}


@pytest.mark.parametrize(("data", "key", "reason"), CA_SECRET_REFUSED.values(), ids=CA_SECRET_REFUSED.keys())
def test_istio_ca_secret_refused_naming_secret_and_key(data: Callable[[], dict[str, bytes | str]], key: str,
                                                       reason: str) -> None:
    with pytest.raises(CaSecretError) as refused:
        ca_from_ca_secret(_secret(CA_SECRET, data()))
    assert refused.value.key == key
    assert str(refused.value).startswith(f"Secret istio-system/{CA_SECRET}: key {key}: ")
    assert reason in str(refused.value)


@pytest.mark.parametrize(("data", "key", "reason"), PLUGIN_REFUSED.values(), ids=PLUGIN_REFUSED.keys())
def test_cacerts_refused_naming_secret_and_key(data: Callable[[], dict[str, bytes | str]], key: str,
                                               reason: str) -> None:
    with pytest.raises(CaSecretError) as refused:
        ca_from_plugin_secret(_secret(PLUGIN_SECRET, data()))
    assert refused.value.key == key and f"Secret istio-system/{PLUGIN_SECRET}: key {key}: " in str(refused.value)
    assert reason in str(refused.value)


def test_a_value_that_is_not_base64_is_named() -> None:
    secret = _secret(CA_SECRET, _self_signed_data())
    secret["data"]["ca-key.pem"] = "%%%"
    with pytest.raises(CaSecretError, match="key ca-key.pem: not base64"):
        ca_from_ca_secret(secret)


def test_istio_ca_secret_is_written_in_istiods_layout_and_reads_back() -> None:
    cert, key = new_self_signed_root()
    secret = ca_secret("istio-system", cert, key)
    assert secret["type"] == CA_SECRET_TYPE
    assert set(secret["data"]) == {"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "key.pem", "root-cert.pem"}
    assert secret["data"]["cert-chain.pem"] == "" and secret["data"]["key.pem"] == ""
    assert ca_from_ca_secret(secret).root_pem == cert


def test_cacerts_in_both_formats_sign_under_the_operators_root() -> None:
    for data in (_plugin_data(), _tls_data()):
        ca = ca_from_plugin_secret(_secret(PLUGIN_SECRET, data))
        root = data.get("root-cert.pem") or data["ca.crt"]
        assert ca.root_pem == root
        leaf = x509.load_pem_x509_certificates(ca.issue(spiffe_id("a", "b")).cert_pem)
        signing_pem = data.get("ca-cert.pem") or data["tls.crt"]
        assert isinstance(signing_pem, bytes)
        signing = x509.load_pem_x509_certificate(signing_pem)
        leaf[0].verify_directly_issued_by(signing)


# -- against a real API server -------------------------------------------------------------------


def _secret_object(cluster: KubeCluster, namespace: str, name: str = CA_SECRET) -> dict[str, Any] | None:
    found = cluster.get_json("secret", name, "-n", namespace)
    return dict(found) if found else None


def _root_of(secret: dict[str, Any], key: str = "ca-cert.pem") -> bytes:
    return base64.b64decode(secret["data"][key])


@dataclass
class RunningController:
    process: subprocess.Popen[bytes]
    secure_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _start_controller(cluster: KubeCluster, namespace: str, log_path: Path) -> RunningController:
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyambient.commands.controller", f"--kubeconfig={cluster.kubeconfig}",
             f"--namespace={namespace}", "--xds-address=", f"--secure-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return RunningController(process, port, log_path)


def _serving_chain_verifies(port: int, root_pem: bytes) -> bool:
    """A TLS 1.3 handshake with the secure port trusting `root_pem` only (the serving chain verifies)."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="istiod.istio-system.svc"):
                return True
    except ssl.SSLCertVerificationError as exc:
        raise AssertionError(f"the secure port's chain does not verify against the root: {exc}") from None
    except OSError:
        return False  # not listening yet


def _wait_serving(controller: RunningController, root_pem: bytes) -> None:
    def serving() -> bool:
        if controller.process.poll() is not None:
            raise AssertionError(f"controller exited {controller.process.returncode}: {controller.log()[-3000:]}")
        return _serving_chain_verifies(controller.secure_port, root_pem)

    eventually(serving, timeout=90, interval=0.5, what="the secure port serving a chain to the root")


def _workload_certificate(cluster: KubeCluster, namespace: str, port: int, root_pem: bytes) -> list[x509.Certificate]:
    """The chain CreateCertificate signs for `<namespace>/web`, asked with a TokenReview-checked token."""
    cluster.kubectl("create", "serviceaccount", "web", "-n", namespace, check=False)
    token = cluster.kubectl("create", "token", "web", "-n", namespace, "--audience", "istio-ca").stdout.strip()

    async def fetch() -> bytes:
        client = CaClient(f"127.0.0.1:{port}", root_pem, lambda: token, server_name="istiod.istio-system.svc")
        try:
            issued = await client.fetch(spiffe_id(namespace, "web"))
        finally:
            await client.close()
        assert issued.root_pem == root_pem
        return issued.cert_chain_pem

    return x509.load_pem_x509_certificates(asyncio.run(fetch()))


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[list[RunningController]]:
    started: list[RunningController] = []
    yield started
    for controller in started:
        controller.stop()


@pytest.mark.kube
def test_first_start_creates_istio_ca_secret_and_a_restart_signs_under_the_same_root(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, controllers: list[RunningController]
) -> None:
    assert _secret_object(kube_cluster, namespace) is None
    first = _start_controller(kube_cluster, namespace, tmp_path / "first.log")
    controllers.append(first)
    secret = eventually(lambda: _secret_object(kube_cluster, namespace), timeout=90, what="istio-ca-secret created")
    assert secret["type"] == CA_SECRET_TYPE
    root = _root_of(secret)
    assert _root_of(secret, "root-cert.pem") == root
    _wait_serving(first, root)
    before = _workload_certificate(kube_cluster, namespace, first.secure_port, root)
    assert first.stop() == 0, first.log()[-3000:]
    assert "PRIVATE KEY" not in first.log(), "the CA key never reaches a log line"

    second = _start_controller(kube_cluster, namespace, tmp_path / "second.log")
    controllers.append(second)
    _wait_serving(second, root)
    after = _workload_certificate(kube_cluster, namespace, second.secure_port, root)
    issuer = x509.load_pem_x509_certificate(root)
    for leaf in (before[0], after[0]):
        leaf.verify_directly_issued_by(issuer)
    unchanged = _secret_object(kube_cluster, namespace)
    assert unchanged is not None
    assert unchanged["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"], "never rewritten"
    assert f"using the self-signed root of Secret {namespace}/{CA_SECRET}" in second.log()


@pytest.mark.kube
def test_two_controllers_starting_at_once_end_up_with_one_root(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, controllers: list[RunningController]
) -> None:
    controllers.extend(_start_controller(kube_cluster, namespace, tmp_path / f"c{i}.log") for i in range(2))
    secret = eventually(lambda: _secret_object(kube_cluster, namespace), timeout=90, what="istio-ca-secret created")
    root = _root_of(secret)
    for controller in controllers:
        _wait_serving(controller, root)
    assert sum("created Secret" in c.log() for c in controllers) <= 1


@pytest.mark.kube
def test_concurrent_loads_all_take_the_one_created_root(kube_api: KubeApi, namespace: str) -> None:
    """Eight starts racing through get → create (one wins, the others get 409 or see it) share one root."""
    barrier = threading.Barrier(8)
    roots: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(timeout=30)
            ca, _ = load_or_create_ca(kube_api, namespace)
            roots.append(ca.root_pem)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(roots) == 8 and len(set(roots)) == 1
    secret = kube_api.get(SECRETS, namespace, CA_SECRET)
    assert secret is not None and base64.b64decode(secret["data"]["ca-cert.pem"]) == roots[0]


@pytest.mark.kube
def test_a_malformed_istio_ca_secret_stops_the_controller_and_is_left_untouched(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    cert, _ = new_self_signed_root()
    _, other_key = new_self_signed_root()
    kube_cluster.kubectl("create", "secret", "generic", CA_SECRET, "-n", namespace, f"--type={CA_SECRET_TYPE}",
                         f"--from-literal=ca-cert.pem={cert.decode()}",
                         f"--from-literal=ca-key.pem={other_key.decode()}")
    before = _secret_object(kube_cluster, namespace)
    controller = _start_controller(kube_cluster, namespace, tmp_path / "bad.log")
    try:
        returncode = controller.process.wait(90)
    finally:
        controller.stop()
    assert returncode != 0
    assert f"Secret {namespace}/{CA_SECRET}: key ca-key.pem: does not match" in controller.log(), controller.log()
    assert other_key.decode().splitlines()[1] not in controller.log(), "no key material in the log"
    assert _secret_object(kube_cluster, namespace) == before


@pytest.mark.kube
def test_cacerts_plugin_ca_wins_and_its_chain_verifies_to_the_operators_root(
    kube_cluster: KubeCluster, kube_api: KubeApi, namespace: str, tmp_path: Path,
    controllers: list[RunningController],
) -> None:
    root, inter = plugin_ca()
    kube_api.create(SECRETS, _secret(PLUGIN_SECRET, {
        "ca-cert.pem": inter.cert_pem, "ca-key.pem": inter.key_pem,
        "cert-chain.pem": inter.cert_pem + root.cert_pem, "root-cert.pem": root.cert_pem}, namespace))
    controller = _start_controller(kube_cluster, namespace, tmp_path / "plugin.log")
    controllers.append(controller)
    _wait_serving(controller, root.cert_pem)  # verifies only through the intermediate the port presents
    chain = _workload_certificate(kube_cluster, namespace, controller.secure_port, root.cert_pem)
    chain[0].verify_directly_issued_by(inter.cert)
    assert chain[1:] == [inter.cert, root.cert], "leaf, then cert-chain.pem"
    eventually(lambda: (kube_cluster.get_json("configmap", "istio-ca-root-cert", "-n", namespace) or {}).get(
        "data", {}).get("root-cert.pem") == root.cert_pem.decode(), timeout=60, what="the operator's root published")
    assert _secret_object(kube_cluster, namespace) is None, "istio-ca-secret is not made when cacerts exists"
    assert f"using the plug-in CA of Secret {namespace}/{PLUGIN_SECRET}" in controller.log()


@pytest.mark.kube
def test_deploy_rbac_reaches_only_the_two_ca_secrets_in_istio_system(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "00-namespace.yaml"),
                         "-f", str(ROOT / "deploy" / "10-controller-rbac.yaml"))
    account = "--as=system:serviceaccount:istio-system:pyambient-controller"

    def can(*args: str) -> bool:
        return kube_cluster.kubectl("auth", "can-i", account, *args, check=False).stdout.strip() == "yes"

    assert can("get", "secret/istio-ca-secret", "-n", "istio-system")
    assert can("get", "secret/cacerts", "-n", "istio-system")
    assert can("create", "secrets", "-n", "istio-system")
    for denied in (("get", "secret/other", "-n", "istio-system"), ("list", "secrets", "-n", "istio-system"),
                   ("watch", "secrets", "-n", "istio-system"), ("update", "secret/istio-ca-secret", "-n",
                                                                 "istio-system"),
                   ("patch", "secret/istio-ca-secret", "-n", "istio-system"),
                   ("delete", "secret/istio-ca-secret", "-n", "istio-system"),
                   ("get", "secret/istio-ca-secret", "-n", "default"), ("create", "secrets", "-n", "default")):
        assert not can(*denied), denied

