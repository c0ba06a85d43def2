"""The sans-IO ADS streams: subscriptions, versions, ACK/NACK and nonces, with no gRPC at all."""

from __future__ import annotations

from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from envoy_data_plane.google.rpc import Status

from xds import resources
from xds.snapshot import Snapshot
from xds.stream import Acked, DeltaStream, Nacked, NodeIdentified, SotwStream, StaleNonce, Subscribed

NODE = Node(id="waypoint~127.0.0.1~w.a~a.svc.cluster.local")


def snap(*clusters: str, eds: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot.build(
        {
            resources.CLUSTER: [(c, Cluster(name=c)) for c in clusters],
            resources.ENDPOINT: [(e, ClusterLoadAssignment(cluster_name=e)) for e in eds],
        }
    )


class TestStateOfTheWorld:
    def test_first_request_identifies_node_and_subscribes_wildcard(self) -> None:
        stream = SotwStream()
        events = stream.receive(DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        assert events == [NodeIdentified(NODE), Subscribed(resources.CLUSTER, None)]

    def test_response_then_ack_then_nothing_until_version_changes(self) -> None:
        stream = SotwStream()
        stream.receive(DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        (response,) = stream.respond(snap("a", "b"))
        assert len(response.resources) == 2
        ack = stream.receive(
            DiscoveryRequest(
                type_url=resources.CLUSTER, version_info=response.version_info, response_nonce=response.nonce
            )
        )
        assert ack == [Acked(resources.CLUSTER, response.version_info)]
        assert stream.respond(snap("a", "b")) == []
        (changed,) = stream.respond(snap("a", "b", "c"))
        assert changed.version_info != response.version_info and len(changed.resources) == 3

    def test_nack_keeps_version_and_is_not_resent(self) -> None:
        stream = SotwStream()
        stream.receive(DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        (response,) = stream.respond(snap("a"))
        events = stream.receive(
            DiscoveryRequest(
                type_url=resources.CLUSTER,
                version_info="",
                response_nonce=response.nonce,
                error_detail=Status(code=3, message="bad cluster"),
            )
        )
        assert events == [Nacked(resources.CLUSTER, "", response.version_info, "bad cluster")]
        assert stream.respond(snap("a")) == []

    def test_stale_nonce_is_ignored(self) -> None:
        stream = SotwStream()
        stream.receive(DiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        stream.respond(snap("a"))
        (second,) = stream.respond(snap("a", "b"))
        events = stream.receive(DiscoveryRequest(type_url=resources.CLUSTER, response_nonce="not-" + second.nonce))
        assert events == [StaleNonce(resources.CLUSTER, "not-" + second.nonce)]

    def test_named_subscription_gets_only_those_names(self) -> None:
        stream = SotwStream()
        stream.receive(DiscoveryRequest(node=NODE, type_url=resources.ENDPOINT, resource_names=["x"]))
        (response,) = stream.respond(snap(eds=("x", "y")))
        assert [r.type_url for r in response.resources] == [resources.ENDPOINT]
        assert len(response.resources) == 1


class TestDelta:
    def test_wildcard_sends_everything_then_only_changes_and_removals(self) -> None:
        stream = DeltaStream()
        stream.receive(DeltaDiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        (first,) = stream.respond(snap("a", "b"))
        assert sorted(r.name for r in first.resources) == ["a", "b"] and first.removed_resources == []
        stream.receive(DeltaDiscoveryRequest(type_url=resources.CLUSTER, response_nonce=first.nonce))
        (second,) = stream.respond(snap("a", "c"))
        assert [r.name for r in second.resources] == ["c"]
        assert second.removed_resources == ["b"]

    def test_initial_versions_skip_what_the_client_already_has(self) -> None:
        current = snap("a", "b")
        have = {"a": current.of_type(resources.CLUSTER)["a"].version}
        stream = DeltaStream()
        stream.receive(DeltaDiscoveryRequest(node=NODE, type_url=resources.CLUSTER, initial_resource_versions=have))
        (response,) = stream.respond(current)
        assert [r.name for r in response.resources] == ["b"]

    def test_explicit_subscribe_and_unsubscribe(self) -> None:
        stream = DeltaStream()
        stream.receive(DeltaDiscoveryRequest(node=NODE, type_url=resources.ENDPOINT, resource_names_subscribe=["x"]))
        (response,) = stream.respond(snap(eds=("x", "y")))
        assert [r.name for r in response.resources] == ["x"]
        stream.receive(
            DeltaDiscoveryRequest(
                type_url=resources.ENDPOINT,
                response_nonce=response.nonce,
                resource_names_subscribe=["y"],
                resource_names_unsubscribe=["x"],
            )
        )
        (again,) = stream.respond(snap(eds=("x", "y")))
        assert [r.name for r in again.resources] == ["y"]

    def test_nack_is_reported_with_envoy_detail(self) -> None:
        stream = DeltaStream()
        stream.receive(DeltaDiscoveryRequest(node=NODE, type_url=resources.CLUSTER))
        (response,) = stream.respond(snap("a"))
        events = stream.receive(
            DeltaDiscoveryRequest(
                type_url=resources.CLUSTER, response_nonce=response.nonce, error_detail=Status(code=3, message="nope")
            )
        )
        assert isinstance(events[0], Nacked) and events[0].message == "nope"
