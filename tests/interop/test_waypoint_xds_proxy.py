"""Envoy's xDS through the waypoint agent (pilot-agent's proxy): Unix socket → agent → 15012 with the pod's token.

The control plane here serves no plaintext port at all: a waypoint that gets its config proves the
path through the agent, and a waypoint whose token is another service account's is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.harness.meshes import shop_mesh
from xds import resources
from xds.envoy.bootstrap import WaypointNode

pytestmark = [pytest.mark.interop, pytest.mark.envoy]

NODE = WaypointNode("waypoint", "shop", "127.0.12.61")


@pytest.fixture(scope="module")
def control() -> Iterator[ControlPlaneThread]:
    control = ControlPlaneThread(shop_mesh()).start(None)  # secure port only: no 15010
    try:
        yield control
    finally:
        control.stop()


def _acked_everything(control: ControlPlaneThread, node: WaypointNode) -> bool:
    cp = control.control_plane
    snapshot = cp.snapshot_for(node.to_node())
    types = (resources.LISTENER, resources.CLUSTER, resources.ENDPOINT)
    return all(cp.acks.get((node.node_id, t)) == snapshot.version(t) for t in types)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
def test_own_token_gets_the_waypoint_config_through_the_agent(
    control: ControlPlaneThread, tmp_path: Path, delta: bool
) -> None:
    assert control.port == 0
    envoy = EnvoyProcess(tmp_path, NODE, credentials=control.waypoint_credentials(NODE), delta=delta).start()
    try:
        wait_until(
            lambda: _acked_everything(control, NODE) and envoy.dynamic_names("listeners"),
            timeout=60,
            what="Envoy ACKs its config via the agent and its listeners are active",
        )
        assert "proxying Envoy's xDS" in envoy.agent_log()
    finally:
        envoy.stop()


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
def test_another_service_accounts_token_is_refused_permission_denied(
    control: ControlPlaneThread, tmp_path: Path, caplog: pytest.LogCaptureFixture, delta: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="pyambient.xds")
    # A valid token and its own certificate, but for service account `intruder`, not the waypoint's.
    credentials = control.credentials("shop", "intruder")
    envoy = EnvoyProcess(tmp_path, NODE, credentials=credentials, delta=delta).start()
    try:
        wait_until(
            lambda: "PERMISSION_DENIED" in envoy.agent_log(), timeout=60, what="the agent relays the refusal"
        )
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        assert f"ended Envoy's xDS stream {method}: PERMISSION_DENIED" in envoy.agent_log()
        refusals = [r.getMessage() for r in caplog.records if "refused (PERMISSION_DENIED)" in r.getMessage()]
        assert any(NODE.node_id in line and "shop:intruder" in line for line in refusals), refusals
        # Nothing of the waypoint's config reached Envoy.
        assert envoy.dynamic_names("listeners") == set()
        assert envoy.dynamic_names("clusters") == set()
        assert envoy.alive()
    finally:
        envoy.stop()
