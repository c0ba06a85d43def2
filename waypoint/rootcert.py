"""Publishes the mesh root as Istio does: ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) per namespace.

Pods mount it to trust the control plane's secure port (the waypoint agent's `--root-cert`).
Istio's namespace controller skips the Kubernetes system namespaces; so do we.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waypoint.kube.api import Resource

ROOT_CERT_CONFIG_MAP = "istio-ca-root-cert"
ROOT_CERT_KEY = "root-cert.pem"
SKIPPED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
# Watched so a deleted or edited root is put back at once (Istio's namespace controller does the same).
ROOT_CERT_CONFIG_MAPS = Resource("ConfigMap", "v1", "configmaps", True, f"metadata.name={ROOT_CERT_CONFIG_MAP}")


def needs_restoring(config_map: Mapping[str, Any] | None, root_pem: bytes) -> bool:
    """Whether the published root (None: deleted) no longer says what we publish."""
    if config_map is None:
        return True
    return (config_map.get("data") or {}).get(ROOT_CERT_KEY) != root_pem.decode()


def root_cert_config_map(namespace: str, root_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ROOT_CERT_CONFIG_MAP, "namespace": namespace, "labels": {"istio.io/config": "true"}},
        "data": {ROOT_CERT_KEY: root_pem.decode()},
    }
