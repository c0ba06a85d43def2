"""Pure parts of the waypoint controller: rendering, status and the work queue (no apiserver needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from waypoint.queue import WorkQueue
from waypoint.reconcile import contains, status_matches
from waypoint.render import RenderError, render_waypoint, service_ports
from waypoint.settings import QueueSettings, RenderSettings
from waypoint.status import UNSUPPORTED_LISTENER_MESSAGE, gateway_status

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = RenderSettings(xds_address="xds.test:15012", proxy_image="example/waypoint:1")
NOW = "2026-11-22T00:00:00Z"
MESH = {"name": "mesh", "port": 15008, "protocol": "HBONE"}


def gateway(name: str = "waypoint", *, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, listeners: list[Any] | None = None,
            status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 2,
                     "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"gatewayClassName": "istio-waypoint",
                 "listeners": [MESH] if listeners is None else listeners, **spec},
    }
    if status is not None:
        obj["status"] = status
    return obj


GOLDEN_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "waypoint",
        "namespace": "ns",
        "labels": {
            "topology.istio.io/network": "network-1",
            "gateway.networking.k8s.io/gateway-name": "waypoint",
            "gateway.networking.k8s.io/gateway-class-name": "istio-waypoint",
            "gateway.istio.io/managed": "istio.io-mesh-controller",
        },
        "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                             "name": "waypoint", "uid": "uid-1"}],
        "annotations": {"networking.istio.io/traffic-distribution": "PreferClose"},
    },
    "spec": {
        "type": "ClusterIP",
        "ipFamilyPolicy": "PreferDualStack",
        "selector": {"gateway.networking.k8s.io/gateway-name": "waypoint"},
        "ports": [
            {"name": "status-port", "port": 15021, "protocol": "TCP", "appProtocol": "tcp"},
            {"name": "mesh", "port": 15008, "protocol": "TCP", "appProtocol": "hbone"},
        ],
    },
}


def test_render_golden_service_and_child_kinds() -> None:
    """Reference §3.3's golden check: every object carries the managed, class and network labels."""
    rendered = render_waypoint(gateway(labels={"topology.istio.io/network": "network-1"}), SETTINGS)
    assert [o["kind"] for o in rendered] == ["ServiceAccount", "Deployment", "Service"]
    assert rendered[2] == GOLDEN_SERVICE
    for obj in rendered:
        assert obj["metadata"]["labels"]["topology.istio.io/network"] == "network-1"
        assert obj["metadata"]["ownerReferences"] == GOLDEN_SERVICE["metadata"]["ownerReferences"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("case", "annotations", "spec", "expected"),
    [
        ("names default to the Gateway", {}, {}, ("waypoint", "waypoint")),
        ("name override", {"gateway.istio.io/name-override": "custom"}, {}, ("custom", "waypoint")),
        ("service account override", {"gateway.istio.io/service-account": "sa-x"}, {}, ("waypoint", "sa-x")),
    ],
)
def test_render_names(case: str, annotations: dict[str, str], spec: dict[str, Any],
                      expected: tuple[str, str]) -> None:
    sa, deployment, service = render_waypoint(gateway(annotations=annotations, **spec), SETTINGS)
    assert (deployment["metadata"]["name"], sa["metadata"]["name"]) == expected, case
    assert service["metadata"]["name"] == deployment["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == expected[1]
    # Controller-steering annotations are not copied onto the children.
    assert not set(annotations) & set(deployment["metadata"].get("annotations", {}))


def test_render_copies_infrastructure_metadata_instead_of_gateway_metadata() -> None:
    gw = gateway(labels={"from-gateway": "1"},
                 infrastructure={"labels": {"team": "a", "gateway.networking.k8s.io/x": "dropped"},
                                 "annotations": {"note": "n"}})
    for obj in render_waypoint(gw, SETTINGS):
        labels = obj["metadata"]["labels"]
        assert labels["team"] == "a"
        assert "from-gateway" not in labels and "gateway.networking.k8s.io/x" not in labels
        assert obj["metadata"]["annotations"]["note"] == "n"


def proxy_args_start(pod: dict[str, Any]) -> list[str]:
    return list(pod["spec"]["containers"][0]["args"][:2])


def test_render_deployment_runs_envoy_from_our_bootstrap() -> None:
    _, deployment, _ = render_waypoint(gateway(), SETTINGS)
    pod = deployment["spec"]["template"]
    assert deployment["metadata"]["labels"]["istio.io/dataplane-mode"] == "none"
    assert pod["metadata"]["labels"]["istio.io/dataplane-mode"] == "none"
    init = pod["spec"]["initContainers"][0]
    assert init["command"] == [
        "pyambient", "waypoint", "bootstrap", "--name", "waypoint", "--namespace", "ns",
        "--xds-socket", "/etc/istio/proxy/XDS", "--output", "/etc/istio/proxy/envoy-bootstrap.json",
    ]
    # Envoy's xDS goes through the agent (see the identity test below), never to 15010.
    assert proxy_args_start(pod) == ["-c", "/etc/istio/proxy/envoy-bootstrap.json"]
    proxy = pod["spec"]["containers"][0]
    assert proxy["image"] == "example/waypoint:1"
    assert [p["containerPort"] for p in proxy["ports"]] == [15008, 15020, 15021, 15090]
    assert "replicas" not in deployment["spec"]  # left to the user / an HPA


@pytest.mark.parametrize(
    ("listeners", "expected"),
    [
        ([MESH], [("status-port", 15021, "tcp"), ("mesh", 15008, "hbone")]),
        ([{"name": "a.b", "port": 80, "protocol": "HTTP"}],
         [("status-port", 15021, "tcp"), ("a-b", 80, "http")]),
        ([MESH, {"name": "again", "port": 15008, "protocol": "HBONE"}],
         [("status-port", 15021, "tcp"), ("mesh", 15008, "hbone")]),  # one entry per distinct port
        ([{"name": "status-port", "port": 9000, "protocol": "TCP"}],
         [("status-port", 15021, "tcp"), ("status-port-9000", 9000, "tcp")]),  # name clash
        ([{"name": "x", "port": 15021, "protocol": "TCP"}], [("status-port", 15021, "tcp")]),
        (["garbage", {"name": "no-port"}], [("status-port", 15021, "tcp")]),
    ],
)
def test_service_ports(listeners: list[Any], expected: list[tuple[str, int, str]]) -> None:
    assert [(p["name"], p["port"], p.get("appProtocol")) for p in service_ports(listeners)] == expected


@pytest.mark.parametrize(
    ("gw", "message"),
    [
        (gateway("w" * 64), "not a valid Service name"),
        (gateway(annotations={"gateway.istio.io/name-override": "Bad_Name"}), "not a valid Service name"),
        (gateway(annotations={"networking.istio.io/service-type": "Weird"}), "not a Service type"),
        ({"metadata": {"name": "x"}}, "metadata.namespace"),
        ({"metadata": {"name": "x", "namespace": "ns"}}, "metadata.uid"),
    ],
)
def test_render_rejects_invalid_input_with_a_message(gw: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_waypoint(gw, SETTINGS)


READY_ADDRESSES = [{"type": "IPAddress", "value": "10.96.0.10"},
                   {"type": "Hostname", "value": "waypoint.ns.svc.cluster.local"}]
SERVICE = {"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}}


def endpoint_slice(ready: bool | None, port: int = 15008) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    return {"ports": [{"port": port}], "endpoints": [{"addresses": ["10.244.0.2"], "conditions": conditions}]}


@pytest.mark.parametrize(
    ("case", "service", "slices", "programmed", "reason", "addresses"),
    [
        ("no service", None, [], "False", "AddressNotUsable", None),
        ("no endpoints", SERVICE, [], "False", "AddressNotAssigned", None),
        ("not ready", SERVICE, [endpoint_slice(False)], "False", "AddressNotAssigned", None),
        ("other port only", SERVICE, [endpoint_slice(True, port=15021)], "False", "AddressNotAssigned", None),
        ("ready", SERVICE, [endpoint_slice(True)], "True", "Programmed",
         READY_ADDRESSES),
        ("ready unset means ready", SERVICE, [endpoint_slice(None)], "True", "Programmed",
         READY_ADDRESSES),
    ],
)
def test_gateway_status_programmed(case: str, service: Any, slices: list[Any], programmed: str, reason: str,
                                   addresses: Any) -> None:
    status = gateway_status(gateway(), service, slices, now=NOW)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Accepted"]["status"] == "True", case
    assert (by_type["Programmed"]["status"], by_type["Programmed"]["reason"]) == (programmed, reason), case
    assert status.get("addresses") == addresses, case
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])


def test_wrong_listener_is_rejected_but_gateway_accepted() -> None:
    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}, MESH])
    status = gateway_status(gw, SERVICE, [], now=NOW)
    http, mesh = status["listeners"]
    http_accepted = next(c for c in http["conditions"] if c["type"] == "Accepted")
    assert (http_accepted["status"], http_accepted["reason"], http_accepted["message"]) == (
        "False", "UnsupportedProtocol", UNSUPPORTED_LISTENER_MESSAGE)
    assert UNSUPPORTED_LISTENER_MESSAGE == 'Expected a single listener on port 15008 with protocol "HBONE"'
    assert all(c["status"] == ("False" if c["type"] == "Conflicted" else "True") for c in mesh["conditions"])
    assert mesh["supportedKinds"] == [] and mesh["attachedRoutes"] == 0
    assert next(c for c in status["conditions"] if c["type"] == "Accepted")["status"] == "True"


def test_status_is_stable_and_keeps_addresses_once_written() -> None:
    first = gateway_status(gateway(), SERVICE, [endpoint_slice(True)], now=NOW)
    again = gateway_status(gateway(status=first), SERVICE, [endpoint_slice(True)], now="2030-01-01T00:00:00Z")
    assert again == first  # same inputs, later clock: identical (no write needed)
    assert status_matches(first, again)
    lost = gateway_status(gateway(status=first), SERVICE, [], now="2030-01-01T00:00:00Z")
    assert lost["addresses"] == first["addresses"]  # never removed once written
    programmed = next(c for c in lost["conditions"] if c["type"] == "Programmed")
    assert programmed["lastTransitionTime"] == "2030-01-01T00:00:00Z"  # its status changed
    assert not status_matches(first, lost)


def test_contains_ignores_server_defaults() -> None:
    desired = {"spec": {"ports": [{"port": 80}], "type": "ClusterIP"}}
    actual = {"spec": {"ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}], "type": "ClusterIP",
                       "clusterIP": "10.0.0.1"}}
    assert contains(actual, desired)
    assert not contains(actual, {"spec": {"ports": [{"port": 80}, {"port": 81}]}})
    assert not contains(actual, {"spec": {"type": "NodePort"}})


def test_work_queue_dedupes_and_never_runs_a_key_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue(QueueSettings(retry_initial_seconds=0.01))
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert queue.get() == "a"
    queue.add("a")  # while in flight: remembered, not handed to another worker
    assert queue.get() == "b"
    queue.done("b")
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    waiter.join(0.1)
    assert got == []  # "a" is still in flight
    queue.done("a")
    waiter.join(2)
    assert got == ["a"]
    queue.done("a")
    assert queue.retry("a") == 0.01
    assert queue.get() == "a"
    queue.done("a")
    assert queue.idle()
    queue.shutdown()
    assert queue.get() is None


def test_rendered_bootstrap_command_is_accepted_by_the_real_cli(tmp_path: Path) -> None:
    """No kubelet runs the init container here, so run its command line ourselves: the flags the
    Deployment passes must be the ones `pyambient waypoint bootstrap` takes, and it writes JSON."""
    _, deployment, _ = render_waypoint(gateway(), SETTINGS)
    command = list(deployment["spec"]["template"]["spec"]["initContainers"][0]["command"])
    assert command[0] == "pyambient"
    output = tmp_path / "bootstrap.json"
    command[command.index("--output") + 1] = str(output)
    subprocess.run([sys.executable, "-m", "pyambient.cli", *command[1:]], check=True, cwd=ROOT,
                   capture_output=True, timeout=60)
    bootstrap = json.loads(output.read_text())
    assert bootstrap["node"]["id"].startswith("waypoint~")


def test_render_waypoint_pod_gets_its_identity_from_the_agent_not_the_control_plane() -> None:
    _, deployment, _ = render_waypoint(gateway(), SETTINGS)
    spec = deployment["spec"]["template"]["spec"]
    proxy, agent = spec["containers"]
    assert agent["command"] == [
        "pyambient", "waypoint", "agent", "--ca-address", "pyambient-controller.istio-system.svc:15012",
        "--sds-socket", "/var/run/secrets/workload-spiffe-uds/socket",
        "--xds-address", "xds.test:15012", "--xds-socket", "/etc/istio/proxy/XDS",
    ]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts == {
        "workload-socket": "/var/run/secrets/workload-spiffe-uds",
        "istio-envoy": "/etc/istio/proxy",
        "istiod-ca-cert": "/var/run/secrets/istio",
        "istio-token": "/var/run/secrets/tokens",
    }
    assert {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"} in proxy["volumeMounts"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["istiod-ca-cert"]["configMap"] == {"name": "istio-ca-root-cert"}
    token = volumes["istio-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}
    assert {e["name"] for e in agent["env"]} >= {"POD_NAMESPACE", "SERVICE_ACCOUNT"}
