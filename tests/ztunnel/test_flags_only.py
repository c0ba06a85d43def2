"""A ztunnel started from its DaemonSet's arguments alone (no --config): Ready over xDS, and without a
certificate it refuses HBONE rather than use any identity."""

from __future__ import annotations

from pathlib import Path

import pytest

import _core
from ztunnel.app import Ztunnel
from ztunnel.config import settings_from_flags
from ztunnel.errors import ConfigError, MissingCertificate
from ztunnel.identity import Identity


def test_flags_give_the_daemonset_settings() -> None:
    settings = settings_from_flags(xds="pyambient-controller.istio-system.svc:15010", node="node-a").proxy
    assert settings.node == "node-a"
    assert settings.xds == "pyambient-controller.istio-system.svc:15010"
    # The kubelet probes the pod IP; admin stays on loopback, as upstream ztunnel binds them.
    assert settings.readiness == ("0.0.0.0", 15021)
    assert settings.metrics == ("0.0.0.0", 15020)
    assert settings.admin == ("127.0.0.1", 15000)
    # No capture yet and no identity: nothing to proxy from.
    assert settings.outbound is None and settings.socks5 is None
    assert settings.certificates == () and settings.root_cert is None


@pytest.mark.parametrize("identity", [
    pytest.param(None, id="no-identity-asked"),
    pytest.param(Identity.parse("spiffe://cluster.local/ns/default/sa/web"), id="a-workload-identity"),
])
def test_without_a_certificate_hbone_is_refused(identity: Identity | None) -> None:
    zt = Ztunnel(settings_from_flags(xds="127.0.0.1:15010", node="node-a"), impl=_core)
    with pytest.raises(MissingCertificate, match="not proxying under another identity"):
        zt.client_ctx(identity)
    with pytest.raises(MissingCertificate, match="not proxying under another identity"):
        zt.server_ctx(identity)


def test_a_config_file_without_certificates_is_still_refused() -> None:
    """Only the flags-only start may run without certificates; a config file must name them."""
    loaded = settings_from_flags(xds="127.0.0.1:15010", node="node-a")
    with pytest.raises(ConfigError, match="rootCert and certificates are required"):
        Ztunnel(loaded, config_path=Path("/nonexistent.yaml"), impl=_core)


def test_the_inpod_socket_flag_turns_on_in_pod_mode_and_nothing_is_served_outside_enrolled_pods(
    tmp_path: Path,
) -> None:
    """The DaemonSet's --inpod-socket: the ztunnel serves only pods the node agent enrols, in their own netns;
    the node's other local workloads (hostNetwork, opted out) get no listener here and no certificate fetched."""
    import ipaddress

    from ztunnel.state import ProxyState, Workload

    loaded = settings_from_flags(xds="127.0.0.1:15010", node="node-a", inpod_socket=tmp_path / "ztunnel.sock")
    assert loaded.proxy.inpod_socket == tmp_path / "ztunnel.sock"
    zt = Ztunnel(loaded, impl=_core)
    local = Workload("u1", "web", "default", (ipaddress.ip_address("10.244.0.5"),), service_account="web",
                     node="node-a")
    zt.state = ProxyState([local], [], [])
    assert zt.local_workloads() == [local]
    assert zt.served_workloads() == []  # nothing enrolled yet
