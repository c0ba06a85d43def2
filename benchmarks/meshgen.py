"""Synthetic meshes for benchmarks, as Kubernetes objects (the same input path as users' YAML)."""

from __future__ import annotations

from typing import Any


def synthetic_mesh(namespaces: int, deployments: int, pods: int, *, waypoint_replicas: int = 1) -> list[dict[str, Any]]:
    """`namespaces` ambient namespaces, each with `deployments` services of `pods` pods and a waypoint."""
    objs: list[dict[str, Any]] = []
    ip = 0
    for n in range(namespaces):
        ns = f"ns{n}"
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio.io/dataplane-mode": "ambient"}},
            }
        )
        objs.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": ns},
                "spec": {
                    "gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
                },
            }
        )
        for r in range(waypoint_replicas):
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"waypoint-{r}",
                        "namespace": ns,
                        "labels": {"gateway.networking.k8s.io/gateway-name": "waypoint"},
                    },
                    "spec": {"serviceAccountName": "waypoint"},
                    "status": {"podIP": f"127.1.{n}.{200 + r}"},
                }
            )
        for d in range(deployments):
            app = f"app{d}"
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": app, "namespace": ns},
                    "spec": {
                        "clusterIP": f"127.96.{n}.{d}",
                        "selector": {"app": app},
                        "ports": [
                            {"name": "http", "port": 80, "targetPort": 8080},
                            {"name": "tcp-grpc", "port": 9090, "targetPort": 9090},
                        ],
                    },
                }
            )
            for p in range(pods):
                ip += 1
                objs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": f"{app}-{p}", "namespace": ns, "labels": {"app": app}},
                        "spec": {"serviceAccountName": app, "nodeName": f"node{p % 3}"},
                        "status": {"podIP": f"127.{64 + ip // 65536}.{(ip // 256) % 256}.{ip % 256}"},
                    }
                )
    return objs
