"""Gateway (a plain dict, as the API server returns it) → the objects that run its waypoint.

Pure: no I/O. `render_waypoint` returns [ServiceAccount, Deployment, Service] ready for server-side
apply; the shapes follow istiod's `waypoint` template (reference §3.3), with Envoy started from the
bootstrap that `pyambient waypoint bootstrap` prints instead of pilot-agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from waypoint.names import (
    CONTROLLER_VERSION,
    DATAPLANE_MODE_LABEL,
    ENVOY_PROMETHEUS_PORT,
    GATEWAY_API_VERSION,
    GATEWAY_CLASS_NAME_LABEL,
    GATEWAY_NAME_LABEL,
    HBONE_PORT,
    MANAGED_LABEL,
    MANAGED_VALUE,
    METRICS_PORT,
    NAME_OVERRIDE,
    SERVICE_ACCOUNT_OVERRIDE,
    STATUS_PORT,
)
from waypoint.settings import RenderSettings

KubeObject = Mapping[str, Any]

# Annotations that steer the controller itself; copying them onto children would be noise.
_NOT_COPIED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        NAME_OVERRIDE,
        SERVICE_ACCOUNT_OVERRIDE,
        CONTROLLER_VERSION,
    }
)
_SERVICE_TYPE_ANNOTATION = "networking.istio.io/service-type"
_SERVICE_TYPES = frozenset({"ClusterIP", "NodePort", "LoadBalancer"})
# Service and Deployment names must be DNS-1035 labels (the Service name becomes a DNS label).
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
BOOTSTRAP_PATH = "/etc/istio/proxy/envoy-bootstrap.json"
XDS_SOCKET = "/etc/istio/proxy/XDS"  # the agent's xDS proxy, where Istio's pilot-agent serves it
SDS_SOCKET_DIR = "/var/run/secrets/workload-spiffe-uds"  # where Istio's agent serves SDS in a pod


class RenderError(ValueError):
    """The Gateway cannot be turned into workloads; the message goes into its status."""


@dataclass(frozen=True)
class WaypointNames:
    """Names of the objects rendered for one Gateway (reference §3.2 step 6)."""

    gateway: str
    namespace: str
    deployment: str
    service_account: str

    @property
    def service(self) -> str:
        return self.deployment


def waypoint_names(gateway: KubeObject) -> WaypointNames:
    meta = gateway.get("metadata") or {}
    name = meta.get("name")
    namespace = meta.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise RenderError("Gateway has no metadata.name or metadata.namespace")
    annotations = _string_map(meta.get("annotations"))
    deployment = annotations.get(NAME_OVERRIDE) or name
    service_account = annotations.get(SERVICE_ACCOUNT_OVERRIDE) or name
    if len(deployment) > 63 or not _DNS1035_LABEL.match(deployment):
        raise RenderError(
            f"waypoint name {deployment!r} is not a valid Service name (a DNS-1035 label of at most 63 "
            f"characters); shorten the Gateway name or set {NAME_OVERRIDE}"
        )
    if len(service_account) > 253 or not _DNS1123_SUBDOMAIN.match(service_account):
        raise RenderError(f"service account name {service_account!r} is not a valid DNS-1123 subdomain")
    return WaypointNames(name, namespace, deployment, service_account)


def render_waypoint(gateway: KubeObject, settings: RenderSettings) -> list[dict[str, Any]]:
    """[ServiceAccount, Deployment, Service] for a waypoint Gateway; raises RenderError on bad input."""
    names = waypoint_names(gateway)
    meta = gateway.get("metadata") or {}
    uid = meta.get("uid")
    if not isinstance(uid, str) or not uid:
        raise RenderError("Gateway has no metadata.uid (it must be read back from the API server)")
    spec = gateway.get("spec") if isinstance(gateway.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    class_name = str(spec.get("gatewayClassName") or "")

    infra_labels, infra_annotations = _infrastructure_metadata(gateway)
    labels = {
        **infra_labels,
        GATEWAY_NAME_LABEL: names.gateway,
        GATEWAY_CLASS_NAME_LABEL: class_name,
        MANAGED_LABEL: MANAGED_VALUE,
    }
    owner = {"apiVersion": GATEWAY_API_VERSION, "kind": "Gateway", "name": names.gateway, "uid": uid}

    def metadata(name: str, extra_labels: Mapping[str, str] | None = None,
                 extra_annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": name,
            "namespace": names.namespace,
            "labels": {**labels, **(extra_labels or {})},
            "ownerReferences": [dict(owner)],
        }
        annotations = {**(extra_annotations or {}), **infra_annotations}
        if annotations:
            result["annotations"] = annotations
        return result

    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(names.service_account),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(names.deployment, {DATAPLANE_MODE_LABEL: "none"}),
        "spec": {
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: names.gateway}},
            "template": {
                "metadata": {
                    "labels": {
                        "sidecar.istio.io/inject": "false",
                        # ztunnel must not capture the waypoint's pods: the waypoint speaks HBONE itself.
                        DATAPLANE_MODE_LABEL: "none",
                        "service.istio.io/canonical-name": names.deployment,
                        "service.istio.io/canonical-revision": "latest",
                        **labels,
                    },
                    "annotations": {
                        **infra_annotations,
                        "istio.io/rev": "default",
                        "prometheus.io/path": "/stats/prometheus",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/scrape": "true",
                    },
                },
                "spec": _pod_spec(names, settings),
            },
        },
    }
    service_type = infra_annotations.get(_SERVICE_TYPE_ANNOTATION, "ClusterIP")
    if service_type not in _SERVICE_TYPES:
        raise RenderError(f"annotation {_SERVICE_TYPE_ANNOTATION}={service_type!r} is not a Service type")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            names.service, extra_annotations={"networking.istio.io/traffic-distribution": "PreferClose"}
        ),
        "spec": {
            "type": service_type,
            "ipFamilyPolicy": "PreferDualStack",
            "selector": {GATEWAY_NAME_LABEL: names.gateway},
            "ports": service_ports(spec.get("listeners")),
        },
    }
    return [service_account, deployment, service]


def service_ports(listeners: Any) -> list[dict[str, Any]]:
    """status-port first, then one port per distinct listener port, named after its listener."""
    ports: list[dict[str, Any]] = [
        {"name": "status-port", "port": STATUS_PORT, "protocol": "TCP", "appProtocol": "tcp"}
    ]
    seen_ports = {STATUS_PORT}
    seen_names = {"status-port"}
    for listener in listeners if isinstance(listeners, list) else []:
        if not isinstance(listener, Mapping):
            continue
        port = listener.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536 or port in seen_ports:
            continue
        seen_ports.add(port)
        name = str(listener.get("name") or "port").replace(".", "-")[:63].strip("-") or "port"
        if name in seen_names:
            name = f"{name[:57]}-{port}"
        seen_names.add(name)
        entry: dict[str, Any] = {"name": name, "port": port, "protocol": "TCP"}
        protocol = listener.get("protocol")
        if isinstance(protocol, str) and protocol:
            entry["appProtocol"] = protocol.lower()
        ports.append(entry)
    return ports


def _pod_spec(names: WaypointNames, settings: RenderSettings) -> dict[str, Any]:
    # The bootstrap is written by our own CLI in an init container into a memory volume; Envoy
    # then starts from it and gets everything else from the controller's xDS server.
    bootstrap_command = [
        "pyambient", "waypoint", "bootstrap", "--name", names.gateway, "--namespace", names.namespace,
        "--xds-socket", XDS_SOCKET, "--output", BOOTSTRAP_PATH,
    ]
    field_env = [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("INSTANCE_IP", "status.podIP"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ("NODE_NAME", "spec.nodeName"),
    ]
    env = [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} for name, path in field_env]
    env.append({"name": "ISTIO_META_WORKLOAD_NAME", "value": names.deployment})
    security_context = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsGroup": 1337,
        "runAsNonRoot": True,
        "runAsUser": 1337,
    }
    volume_mount = {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}
    # Identity, as Istio's waypoint pods: the agent makes the key in the pod and serves it to Envoy
    # on a socket in a shared emptyDir; it proves who it is with a projected token (audience istio-ca)
    # and trusts the control plane through the published root (ConfigMap istio-ca-root-cert). It also
    # relays Envoy's xDS (socket in the istio-envoy emptyDir) to the secure port with that token.
    socket_mount = {"name": "workload-socket", "mountPath": SDS_SOCKET_DIR}
    agent = {
        "name": "identity-agent",
        "image": settings.proxy_image,
        "command": ["pyambient", "waypoint", "agent", "--ca-address", settings.ca_address,
                    "--sds-socket", f"{SDS_SOCKET_DIR}/socket",
                    "--xds-address", settings.xds_address, "--xds-socket", XDS_SOCKET],
        "env": env,
        "securityContext": security_context,
        "volumeMounts": [
            socket_mount,
            volume_mount,
            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio", "readOnly": True},
            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": True},
        ],
    }
    return {
        "serviceAccountName": names.service_account,
        "initContainers": [
            {
                "name": "bootstrap",
                "image": settings.proxy_image,
                "command": bootstrap_command,
                "env": env,
                "securityContext": security_context,
                "volumeMounts": [volume_mount],
            }
        ],
        "containers": [
            {
                "name": "istio-proxy",
                "image": settings.proxy_image,
                "command": ["envoy"],
                "args": ["-c", BOOTSTRAP_PATH, "--log-level", "warning", "--service-cluster",
                         f"{names.service_account}.{names.namespace}"],
                "env": env,
                "ports": [
                    {"containerPort": HBONE_PORT, "name": "hbone", "protocol": "TCP"},
                    {"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
                    {"containerPort": STATUS_PORT, "name": "status-port", "protocol": "TCP"},
                    {"containerPort": ENVOY_PROMETHEUS_PORT, "name": "http-envoy-prom", "protocol": "TCP"},
                ],
                "startupProbe": _ready_probe(failure_threshold=30, period_seconds=1),
                "readinessProbe": _ready_probe(failure_threshold=4, period_seconds=15),
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "2", "memory": "1Gi"},
                },
                "securityContext": security_context,
                "volumeMounts": [volume_mount, socket_mount],
            },
            agent,
        ],
        "volumes": [
            {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
            {"name": "workload-socket", "emptyDir": {}},
            {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
            {
                "name": "istio-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "istio-ca",
                                "expirationSeconds": 43200,
                                "path": "istio-token",
                            }
                        }
                    ]
                },
            },
        ],
    }


def _ready_probe(*, failure_threshold: int, period_seconds: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz/ready", "port": STATUS_PORT, "scheme": "HTTP"},
        "failureThreshold": failure_threshold,
        "periodSeconds": period_seconds,
        "timeoutSeconds": 1,
    }


def _infrastructure_metadata(gateway: KubeObject) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations propagated to the children (reference §3.2 step 6).

    `spec.infrastructure` wins when set (minus the reserved gateway.networking.k8s.io/ keys);
    otherwise all of the Gateway's own labels and annotations are copied.
    """
    meta = gateway.get("metadata") or {}
    spec = gateway.get("spec") or {}
    infrastructure = spec.get("infrastructure") if isinstance(spec, Mapping) else None
    if isinstance(infrastructure, Mapping) and (
        infrastructure.get("labels") or infrastructure.get("annotations")
    ):
        labels = {
            k: v for k, v in _string_map(infrastructure.get("labels")).items()
            if not k.startswith("gateway.networking.k8s.io/")
        }
        annotations = {
            k: v for k, v in _string_map(infrastructure.get("annotations")).items()
            if not k.startswith("gateway.networking.k8s.io/")
        }
    else:
        labels = _string_map(meta.get("labels"))
        annotations = _string_map(meta.get("annotations"))
    annotations = {k: v for k, v in annotations.items() if k not in _NOT_COPIED_ANNOTATIONS}
    return labels, annotations


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}
