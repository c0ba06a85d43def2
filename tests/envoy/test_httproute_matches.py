"""HTTPRoute matches through a real Envoy waypoint with real requests: each request lands where its rule says.

The issue's probe first: a rule matching `x-canary: "true"` → web-canary, then a default rule →
web-stable. Only matching requests may reach the canary (it used to get 100 %). Then method, query
parameter, regular-expression header, path prefix/exact matches and their precedence on one service;
and a route using a feature that is not implemented is refused, never served without it.
"""

from __future__ import annotations

import collections
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from pyambient.runtime.backends import HttpAnswer, HttpBackend, NamedHttpBackend
from pyambient.runtime.controlplane import ControlPlaneThread
from pyambient.runtime.envoy import EnvoyProcess, wait_until
from tests.harness.hbone import HboneClient, HboneTerminator, http_get
from tests.harness.meshes import ambient_namespace, pod, service, waypoint
from xds import resources
from xds.ca import CertificateAuthority, spiffe_id
from xds.envoy.bootstrap import WaypointNode
from xds.mesh.objects import mesh_from_objects

pytestmark = [pytest.mark.envoy, pytest.mark.policy]

NS = "routes"
WAYPOINT = WaypointNode("waypoint", NS, "127.0.14.1")
WEB_VIP, API_VIP = "127.97.0.10", "127.97.0.20"
# pod name → (ip, labels); every pod answers with its name.
PODS = {
    "web-stable-0": ("127.0.13.11", {"app": "web", "track": "stable"}),
    "web-canary-0": ("127.0.13.12", {"app": "web", "track": "canary"}),
    "api-default-0": ("127.0.13.21", {"app": "api", "role": "default"}),
    "api-post-0": ("127.0.13.22", {"app": "api", "role": "post"}),
    "api-v2-0": ("127.0.13.23", {"app": "api", "role": "v2"}),
    "api-admin-0": ("127.0.13.24", {"app": "api", "role": "admin"}),
    "api-static-0": ("127.0.13.25", {"app": "api", "role": "static"}),
    "api-exact-0": ("127.0.13.26", {"app": "api", "role": "exact"}),
    "api-both-0": ("127.0.13.27", {"app": "api", "role": "both"}),
}
ECHO_VIP, ECHO_IP = "127.97.0.30", "127.0.13.31"  # echo-0 answers with the request headers it got
SLOW_VIP, SLOW_IP = "127.97.0.40", "127.0.13.41"  # slow-0 answers after SLOW_SECONDS
SLOW_SECONDS = 2.0
API_ROLES = ("default", "post", "v2", "admin", "static", "exact", "both")


def http_route(name: str, parent: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": parent, "port": 80}], "rules": rules},
    }


def to(backend: str, *matches: dict[str, Any], **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [{"name": backend, "port": 80}], **extra}
    if matches:
        rule["matches"] = list(matches)
    return rule


CANARY_ROUTE = http_route(
    "web-canary",
    "web",
    [to("web-canary", {"headers": [{"name": "x-canary", "value": "true"}]}), to("web-stable")],
)
API_ROUTE = http_route(
    "api",
    "api",
    [
        to("api-post", {"method": "POST"}),
        to("api-v2", {"queryParams": [{"name": "version", "value": "2"}]}),
        to("api-admin", {"headers": [{"name": "x-user", "type": "RegularExpression", "value": "admin-[0-9]+"}]}),
        to("api-static", {"path": {"type": "PathPrefix", "value": "/static/"}}),
        to("api-exact", {"path": {"type": "Exact", "value": "/exact"}}),
        to("api-both", {"path": {"type": "Exact", "value": "/both"}, "headers": [{"name": "x-both", "value": "1"}]}),
        to("api-default"),
    ],
)


def mesh_objects(*routes: dict[str, Any]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [ambient_namespace(NS), waypoint(NS)]
    objects.append(service(NS, "web", WEB_VIP, [("http", 80, 8080)], {"app": "web"}))
    objects.append(service(NS, "api", API_VIP, [("http", 80, 8080)], {"app": "api"}))
    for i, track in enumerate(("stable", "canary")):
        objects.append(service(NS, f"web-{track}", f"127.97.0.{11 + i}", [("http", 80, 8080)], {"track": track}))
    for i, role in enumerate(API_ROLES):
        objects.append(service(NS, f"api-{role}", f"127.97.0.{21 + i}", [("http", 80, 8080)], {"role": role}))
    for name, (ip, labels) in PODS.items():
        objects.append(pod(NS, name, ip, labels, labels["app"]))
    objects.append(service(NS, "echo", ECHO_VIP, [("http", 80, 8080)], {"app": "echo"}))
    objects.append(pod(NS, "echo-0", ECHO_IP, {"app": "echo"}, "echo"))
    objects.append(service(NS, "slow", SLOW_VIP, [("http", 80, 8080)], {"app": "slow"}))
    objects.append(pod(NS, "slow-0", SLOW_IP, {"app": "slow"}, "slow"))
    return objects + list(routes)


def slow_answer(_path: str, _headers: Message) -> HttpAnswer:
    """slow-0: answers after SLOW_SECONDS."""
    time.sleep(SLOW_SECONDS)
    return HttpAnswer(b"slow-0")


def header_echo_answer(_path: str, headers: Message) -> HttpAnswer:
    """echo-0: the request's headers as one JSON object (names lower-cased, every value of a name)."""
    seen: dict[str, list[str]] = {}
    for name, value in headers.items():
        seen.setdefault(name.lower(), []).append(value)
    return HttpAnswer(json.dumps(seen, sort_keys=True).encode(), headers=(("x-backend", "echo"),))


@dataclass
class Waypoint:
    control: ControlPlaneThread
    envoy: EnvoyProcess
    ca: CertificateAuthority

    def exchange(self, vip: str, *, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        """The whole HTTP response the waypoint sent back."""
        with HboneClient((WAYPOINT.listen_address, 15008), self.ca.issue(spiffe_id(NS, "sleep"))) as client:
            result = client.exchange(f"{vip}:80", http_get(vip, headers=headers))
        assert result.status == 200, result
        return result.body

    def request(
        self, vip: str, *, method: str = "GET", path: str = "/", headers: tuple[tuple[str, str], ...] = ()
    ) -> str:
        """The pod that answered, or `HTTP <status>` when the waypoint answered itself."""
        with HboneClient((WAYPOINT.listen_address, 15008), self.ca.issue(spiffe_id(NS, "sleep"))) as client:
            result = client.exchange(f"{vip}:80", http_get(f"{vip}", method=method, path=path, headers=headers))
        assert result.status == 200, result
        status_line, _, rest = result.body.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        if status != 200:
            return f"HTTP {status}"
        return rest.rsplit(b"\r\n", 1)[-1].decode()

    def apply(self, *routes: dict[str, Any]) -> None:
        mesh = mesh_from_objects(mesh_objects(*routes))
        cp = self.control.control_plane
        cp.update(mesh)
        wait_until(lambda: cp.mesh is mesh, what="the control plane takes the new mesh")
        wait_until(functools.partial(acked_everything, cp, self.envoy), what="envoy ACKs the new config")

    def route_names(self, chain: str) -> list[str]:
        for fc in self.envoy.active_listener("main_internal").get("filter_chains", []):
            if fc.get("name") == chain:
                config = fc["filters"][-1]["typed_config"]
                return [r.get("name", "") for r in config["route_config"]["virtual_hosts"][0]["routes"]]
        return []


def acked_everything(cp: Any, envoy: EnvoyProcess) -> bool:
    snapshot = cp.snapshot_for(envoy.node.to_node())
    types = (resources.LISTENER, resources.CLUSTER, resources.ENDPOINT)
    acked = all(cp.acks.get((envoy.node.node_id, t)) == snapshot.version(t) for t in types)
    return acked and envoy.serving()  # serving: its certificate from the agent is loaded too


@pytest.fixture(scope="module")
def wp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Waypoint]:
    ca = CertificateAuthority()
    control = ControlPlaneThread(mesh_objects(CANARY_ROUTE, API_ROUTE), ca=ca).start()
    workdir: Path = tmp_path_factory.mktemp("envoy-routes")
    node_identity = ca.issue(spiffe_id("istio-system", "ztunnel"))
    terminators = [HboneTerminator(ip, node_identity) for ip in [ip for ip, _ in PODS.values()] + [ECHO_IP, SLOW_IP]]
    backends: list[HttpBackend] = [NamedHttpBackend(ip, 8080, name) for name, (ip, _) in PODS.items()]
    backends.append(HttpBackend(ECHO_IP, 8080, header_echo_answer))
    backends.append(HttpBackend(SLOW_IP, 8080, slow_answer))
    envoy = EnvoyProcess(workdir, WAYPOINT, credentials=control.waypoint_credentials(WAYPOINT))
    try:
        envoy.start()
        wait_until(
            functools.partial(acked_everything, control.control_plane, envoy), timeout=60, what="envoy ACKs every type"
        )
        yield Waypoint(control, envoy, ca)
    finally:
        envoy.stop()
        for t in terminators:
            t.close()
        for b in backends:
            b.close()
        control.stop()


WEB_CHAIN = f"inbound-vip|80|http|web.{NS}.svc.cluster.local"
# Every request of a kind must land in one place: 100 of each tell a rule from a random split (2^-100).
REQUESTS = 100


def test_header_canary_rule_sends_only_matching_requests_to_the_canary(wp: Waypoint) -> None:
    assert wp.control.control_plane.mesh.errors == ()
    assert len(wp.control.control_plane.nacks) == 0
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for i in range(REQUESTS):
        counts[("x-canary: true", wp.request(WEB_VIP, headers=(("x-canary", "true"),)))] += 1
        counts[("no header", wp.request(WEB_VIP, path=f"/page/{i}"))] += 1
    counts[("X-CANARY: true", wp.request(WEB_VIP, headers=(("X-CANARY", "true"),)))] += 1  # names: any case
    counts[("x-canary: TRUE", wp.request(WEB_VIP, headers=(("x-canary", "TRUE"),)))] += 1  # values: exact
    counts[("x-canary: false", wp.request(WEB_VIP, headers=(("x-canary", "false"),)))] += 1
    assert counts == {
        ("x-canary: true", "web-canary-0"): REQUESTS,
        ("no header", "web-stable-0"): REQUESTS,
        ("X-CANARY: true", "web-canary-0"): 1,
        ("x-canary: TRUE", "web-stable-0"): 1,
        ("x-canary: false", "web-stable-0"): 1,
    }
    assert wp.route_names(WEB_CHAIN) == [f"{NS}.web-canary.0", f"{NS}.web-canary.1"]


@dataclass(frozen=True)
class RequestRow:
    scenario: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    backend: str


API_REQUESTS = [
    RequestRow("no_condition_matches_default_rule", "GET", "/", (), "api-default-0"),
    RequestRow("method_post", "POST", "/", (), "api-post-0"),
    RequestRow("method_other_than_post", "DELETE", "/", (), "api-default-0"),
    RequestRow("query_param_exact", "GET", "/?version=2", (), "api-v2-0"),
    RequestRow("query_param_other_value", "GET", "/?version=22", (), "api-default-0"),
    RequestRow("query_param_among_others", "GET", "/x?a=b&version=2", (), "api-v2-0"),
    RequestRow("header_regex_whole_value", "GET", "/", (("x-user", "admin-42"),), "api-admin-0"),
    RequestRow("header_regex_partial_value_does_not_match", "GET", "/", (("x-user", "admin-42x"),), "api-default-0"),
    RequestRow("prefix_matches_the_segment_itself", "GET", "/static", (), "api-static-0"),
    RequestRow("prefix_matches_below_the_segment", "GET", "/static/app.js", (), "api-static-0"),
    RequestRow("prefix_does_not_match_a_longer_segment", "GET", "/staticfoo", (), "api-default-0"),
    RequestRow("exact_path", "GET", "/exact", (), "api-exact-0"),
    RequestRow("exact_path_ignores_the_query_string", "GET", "/exact?x=1", (), "api-exact-0"),
    RequestRow("exact_path_not_below_it", "GET", "/exact/more", (), "api-default-0"),
    RequestRow("all_conditions_of_a_match_hold", "GET", "/both", (("x-both", "1"),), "api-both-0"),
    RequestRow("one_condition_of_a_match_missing", "GET", "/both", (), "api-default-0"),
    RequestRow("path_prefix_before_method", "POST", "/static/a", (), "api-static-0"),
    RequestRow("exact_path_before_method", "POST", "/exact", (), "api-exact-0"),
    RequestRow("method_before_query_param", "POST", "/?version=2", (), "api-post-0"),
    RequestRow("method_before_header", "POST", "/", (("x-user", "admin-1"),), "api-post-0"),
    RequestRow("header_before_query_param", "GET", "/?version=2", (("x-user", "admin-1"),), "api-admin-0"),
]


def test_method_query_regex_header_and_path_matches(wp: Waypoint) -> None:
    landed = {
        row.scenario: wp.request(API_VIP, method=row.method, path=row.path, headers=row.headers) for row in API_REQUESTS
    }
    assert landed == {row.scenario: row.backend for row in API_REQUESTS}


def test_route_without_a_catch_all_answers_404_for_unmatched_requests(wp: Waypoint) -> None:
    only_canary = http_route(
        "web-canary", "web", [to("web-canary", {"headers": [{"name": "x-canary", "value": "true"}]})]
    )
    wp.apply(only_canary, API_ROUTE)
    try:
        assert wp.request(WEB_VIP, headers=(("x-canary", "true"),)) == "web-canary-0"
        assert wp.request(WEB_VIP) == "HTTP 404"  # as Istio: attached routes replace the default route
    finally:
        wp.apply(CANARY_ROUTE, API_ROUTE)


def test_route_with_an_unimplemented_filter_is_refused_not_served_without_it(wp: Waypoint) -> None:
    with_filter = http_route(
        "web-canary",
        "web",
        [
            to(
                "web-canary",
                {"headers": [{"name": "x-canary", "value": "true"}]},
                filters=[{"type": "URLRewrite", "urlRewrite": {"hostname": "elsewhere.example"}}],
            ),
            to("web-stable"),
        ],
    )
    wp.apply(with_filter, API_ROUTE)
    try:
        errors = [str(e) for e in wp.control.control_plane.mesh.errors]
        assert errors == [
            f"HTTPRoute {NS}/web-canary: spec.rules[0].filters[0].type: value 'URLRewrite' is not implemented; "
            "the HTTPRoute is not used (it would be enforced weaker than written)",
            f"HTTPRoute {NS}/web-canary: spec.rules[0].filters[0].urlRewrite: not implemented; "
            "the HTTPRoute is not used (it would be enforced weaker than written)",
        ]
        # No rule of the refused route reaches Envoy: the service is served as if it had no route.
        assert wp.route_names(WEB_CHAIN) == ["default"]
        assert "x-canary" not in json.dumps(wp.envoy.active_listener("main_internal"))
        landed = collections.Counter(wp.request(WEB_VIP, headers=(("x-canary", "true"),)) for _ in range(40))
        assert set(landed) <= {"web-stable-0", "web-canary-0"} and sum(landed.values()) == 40
    finally:
        wp.apply(CANARY_ROUTE, API_ROUTE)
    assert wp.route_names(WEB_CHAIN) == [f"{NS}.web-canary.0", f"{NS}.web-canary.1"]


ECHO_ROUTE = http_route(
    "echo",
    "echo",
    [
        to(
            "echo",
            filters=[
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {
                        "set": [{"name": "X-Set", "value": "route"}],
                        "add": [{"name": "x-add", "value": "route"}],
                        "remove": ["x-drop"],
                    },
                },
                {
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {"set": [{"name": "x-resp", "value": "route"}], "remove": ["x-backend"]},
                },
            ],
        )
    ],
)


def test_header_modifier_filters_change_what_backend_and_client_see(wp: Waypoint) -> None:
    wp.apply(CANARY_ROUTE, API_ROUTE, ECHO_ROUTE)
    try:
        sent = (("x-set", "client"), ("x-add", "client"), ("x-drop", "client"), ("x-keep", "client"))
        response = wp.exchange(ECHO_VIP, headers=sent)
        head, _, body = response.partition(b"\r\n\r\n")
        seen = json.loads(body.rsplit(b"\r\n", 1)[-1])
        assert seen["x-set"] == ["route"]  # set: overwritten
        assert seen["x-add"] in (["client", "route"], ["client,route"])  # add: appended
        assert "x-drop" not in seen  # remove
        assert seen["x-keep"] == ["client"]
        lines = [line.lower() for line in head.split(b"\r\n")]
        assert b"x-resp: route" in lines
        assert not any(line.startswith(b"x-backend:") for line in lines)
        # Without the route the backend sees the client's headers untouched.
        wp.apply(CANARY_ROUTE, API_ROUTE)
        untouched = json.loads(wp.exchange(ECHO_VIP, headers=sent).rsplit(b"\r\n", 1)[-1])
        assert untouched["x-set"] == ["client"] and untouched["x-drop"] == ["client"]
    finally:
        wp.apply(CANARY_ROUTE, API_ROUTE)


def test_rule_timeout_cuts_a_slow_backend_off_with_504(wp: Waypoint) -> None:
    # 500 ms against a backend answering after 2 s: a wide margin on a loaded machine either way.
    wp.apply(CANARY_ROUTE, API_ROUTE, http_route("slow", "slow", [to("slow", timeouts={"request": "500ms"})]))
    try:
        assert wp.request(SLOW_VIP) == "HTTP 504"
        wp.apply(CANARY_ROUTE, API_ROUTE, http_route("slow", "slow", [to("slow")]))
        assert wp.request(SLOW_VIP) == "slow-0"  # no timeout written: none applied
    finally:
        wp.apply(CANARY_ROUTE, API_ROUTE)
