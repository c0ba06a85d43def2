"""Kubeconfig backend: Gateways through the API server (server-side apply, field manager `istioctl`).

Needs a reachable cluster, so it is kept thin and is exercised only by the `kube`-marked tests elsewhere.
"""

from __future__ import annotations

from typing import Any

from pyambient.waypointctl.model import WaypointError, WaypointInfo, info_from_object, is_waypoint

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "gateways"


class KubeBackend:
    def __init__(self, kubeconfig: str | None, context: str | None = None) -> None:
        try:
            from kubernetes import client, config

            config.load_kube_config(config_file=kubeconfig, context=context)
        except Exception as exc:  # the client raises several unrelated types for a bad kubeconfig
            raise WaypointError(f"cannot load kubeconfig: {exc}") from None
        self.core = client.CoreV1Api()
        self.custom = client.CustomObjectsApi()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and what == "apply":
                raise WaypointError(
                    "missing Kubernetes Gateway CRDs need to be installed before applying a waypoint"
                ) from None
            raise WaypointError(f"{what}: {exc.status} {exc.reason}") from None

    def apply(self, gw: dict[str, Any]) -> None:
        meta = gw["metadata"]
        self._call(
            "apply",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            gw,
            field_manager="istioctl",
            _content_type="application/apply-patch+yaml",
        )

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            ns = self.core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise WaypointError(f"read namespace {namespace}: {exc.reason}") from None
        labels = ns.metadata.labels if ns.metadata is not None else None
        return dict(labels or {})

    def label_namespace(self, namespace: str, key: str, value: str) -> None:
        self._call(
            "label namespace", self.core.patch_namespace, namespace, {"metadata": {"labels": {key: value}}}
        )

    def list(self, namespace: str | None) -> list[WaypointInfo]:
        if namespace is None:
            res = self._call("list", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        else:
            res = self._call(
                "list", self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
            )
        items = res.get("items", []) or []
        return [
            info_from_object({"kind": "Gateway", **i}) for i in items if is_waypoint({"kind": "Gateway", **i})
        ]

    def get(self, namespace: str, name: str) -> WaypointInfo | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise WaypointError(f"get waypoint {namespace}/{name}: {exc.reason}") from None
        if not isinstance(obj, dict) or not is_waypoint(obj):
            return None
        return info_from_object(obj)

    def delete(self, namespace: str, name: str) -> bool:
        if self.get(namespace, name) is None:
            return False
        self._call(
            "delete", self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        return True
