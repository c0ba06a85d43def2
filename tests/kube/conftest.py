"""Fixtures for the `kube` tests: a session-wide etcd + kube-apiserver (see cluster.py), a fresh
namespace per test, and a running waypoint controller talking to that apiserver."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube.cluster import KubeCluster, remove_cluster, start_cluster
from waypoint.controller import WaypointController
from waypoint.kube.api import KubeApi, api_client_from_kubeconfig

_namespace_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        remove_cluster(cluster)


@pytest.fixture
def kube_api(kube_cluster: KubeCluster) -> Iterator[KubeApi]:
    api = KubeApi(api_client_from_kubeconfig(str(kube_cluster.kubeconfig)))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> str:
    """A namespace of its own for each test, so tests never see each other's Gateways."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{base}-{next(_namespace_numbers)}"
    kube_cluster.kubectl("create", "namespace", name)
    return name


class PublishedObjects:
    """Collects what the controller hands to the control plane (the mesh feed's output)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, objects: list[dict[str, Any]]) -> None:
        with self._lock:
            self.batches.append(objects)

    def latest(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.batches[-1] if self.batches else []


@pytest.fixture
def published() -> PublishedObjects:
    return PublishedObjects()


@pytest.fixture
def controller(kube_api: KubeApi, published: PublishedObjects) -> Iterator[WaypointController]:
    running = WaypointController(kube_api, publish=published)
    running.start()
    assert running.wait_synced(30), "informers did not sync"
    try:
        yield running
    finally:
        running.stop()
