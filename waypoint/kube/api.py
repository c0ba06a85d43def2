"""The only module that talks to the Kubernetes API server.

Plain dicts in and out (the JSON the server speaks), through the `kubernetes` client's ApiClient,
which supplies the connection pool, TLS and credentials from a kubeconfig or the in-cluster
service account. Operations: list (paged), watch (streamed, bookmarks), get, create, and
server-side apply of an object or its status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from waypoint.names import FIELD_MANAGER

log = logging.getLogger(__name__)

KubeObject = Mapping[str, Any]


@dataclass(frozen=True)
class Resource:
    """One kind of object and where it lives in the REST API."""

    kind: str
    api_version: str  # "v1" for the core group, else "group/version"
    plural: str
    namespaced: bool
    # Lists and watches only objects matching this (`metadata.name=...`); empty: all of the kind.
    field_selector: str = ""

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


NAMESPACES = Resource("Namespace", "v1", "namespaces", False)
SERVICES = Resource("Service", "v1", "services", True)
PODS = Resource("Pod", "v1", "pods", True)
SERVICE_ACCOUNTS = Resource("ServiceAccount", "v1", "serviceaccounts", True)
ENDPOINT_SLICES = Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", True)
DEPLOYMENTS = Resource("Deployment", "apps/v1", "deployments", True)
GATEWAY_CLASSES = Resource("GatewayClass", "gateway.networking.k8s.io/v1", "gatewayclasses", False)
GATEWAYS = Resource("Gateway", "gateway.networking.k8s.io/v1", "gateways", True)
HTTP_ROUTES = Resource("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", True)
AUTHORIZATION_POLICIES = Resource(
    "AuthorizationPolicy", "security.istio.io/v1", "authorizationpolicies", True
)
CONFIG_MAPS = Resource("ConfigMap", "v1", "configmaps", True)
SECRETS = Resource("Secret", "v1", "secrets", True)  # only the CA's two, read by name (waypoint.kube.casecret)
TOKEN_REVIEWS = Resource("TokenReview", "authentication.k8s.io/v1", "tokenreviews", False)
PEER_AUTHENTICATIONS = Resource("PeerAuthentication", "security.istio.io/v1", "peerauthentications", True)
REQUEST_AUTHENTICATIONS = Resource(
    "RequestAuthentication", "security.istio.io/v1", "requestauthentications", True
)

RESOURCES_BY_KIND: Mapping[str, Resource] = {
    r.kind: r
    for r in (NAMESPACES, SERVICES, PODS, SERVICE_ACCOUNTS, ENDPOINT_SLICES, DEPLOYMENTS, GATEWAY_CLASSES,
              GATEWAYS, HTTP_ROUTES, AUTHORIZATION_POLICIES, PEER_AUTHENTICATIONS, REQUEST_AUTHENTICATIONS)
}


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retriable(self) -> bool:
        # Conflicts, throttling and server-side failures go away by themselves; 4xx validation
        # errors do not, and retrying them only burns the apiserver.
        return self.status in (409, 429) or self.status >= 500


class ApiUnavailable(Exception):
    """The API server could not be reached (down, restarting, connection reset)."""


class ResourceVersionExpired(Exception):
    """410 Gone: the watch's resourceVersion was compacted away; the caller must relist."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


def api_client_from_kubeconfig(kubeconfig: str | None, *, pool_size: int = 32) -> kube_client.ApiClient:
    """An ApiClient from a kubeconfig file, or the in-cluster service account when there is none."""
    configuration = kube_client.Configuration()
    if kubeconfig:
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException:
            kube_config.load_kube_config(client_configuration=configuration)
    # One long-lived watch per informer plus workers: the default pool (5 × CPUs) is too small.
    configuration.connection_pool_maxsize = pool_size
    # Our own loops retry with backoff; urllib3 retrying underneath would only hide outages.
    configuration.retries = False
    return kube_client.ApiClient(configuration)


class KubeApi:
    def __init__(self, api_client: kube_client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._client = api_client
        self._request_timeout = request_timeout

    def close(self) -> None:
        self._client.close()

    # -- reads -------------------------------------------------------------------------------

    def list_objects(self, resource: Resource, *, page_size: int = 500) -> tuple[list[dict[str, Any]], str]:
        """All objects of a kind (all namespaces) and the list's resourceVersion to watch from."""
        items: list[dict[str, Any]] = []
        continue_token = ""
        while True:
            query: list[tuple[str, str]] = [("limit", str(page_size))]
            if resource.field_selector:
                query.append(("fieldSelector", resource.field_selector))
            if continue_token:
                query.append(("continue", continue_token))
            body = self._json("GET", resource.path(), query=query)
            for item in body.get("items") or []:
                # List items carry no apiVersion/kind; add them so every cached object looks like
                # `kubectl get -o json` of it (the mesh model dispatches on kind).
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            meta = body.get("metadata") or {}
            continue_token = meta.get("continue") or ""
            if not continue_token:
                return items, str(meta.get("resourceVersion") or "")

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._json("GET", resource.path(namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def watch(self, resource: Resource, resource_version: str, *, timeout_seconds: int,
              read_timeout: float, connect_timeout: float) -> WatchStream:
        """Events after `resource_version` until the server ends the watch after `timeout_seconds`."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if resource.field_selector:
            query.append(("fieldSelector", resource.field_selector))
        response = self._request("GET", resource.path(), query=query, timeout=(connect_timeout, read_timeout))
        return WatchStream(resource, response.response)

    # -- writes ------------------------------------------------------------------------------

    def create(self, resource: Resource, body: KubeObject) -> dict[str, Any]:
        namespace = (body.get("metadata") or {}).get("namespace")
        # The client serialises a dict itself for application/json (a str would be encoded twice).
        return self._json("POST", resource.path(namespace), body=dict(body),
                          content_type="application/json", query=[("fieldManager", FIELD_MANAGER)])

    def apply(self, resource: Resource, body: KubeObject, *, subresource: str | None = None,
              field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply with force: we own the fields we set, whoever set them before."""
        meta = body.get("metadata") or {}
        path = resource.path(meta.get("namespace"), meta["name"], subresource)
        # JSON is YAML, so the body goes out as JSON under the apply-patch+yaml content type.
        return self._json("PATCH", path, body=json.dumps(body), content_type="application/apply-patch+yaml",
                          query=[("fieldManager", field_manager), ("force", "true")])

    # -- plumbing ----------------------------------------------------------------------------

    def _json(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
              body: str | dict[str, Any] | None = None, content_type: str | None = None) -> dict[str, Any]:
        response = self._request(method, path, query=query, body=body, content_type=content_type,
                                 timeout=self._request_timeout)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ApiUnavailable(f"{method} {path}: {e}") from e
        result = json.loads(data) if data else {}
        return result if isinstance(result, dict) else {}

    def _request(self, method: str, path: str, *, query: list[tuple[str, str]] | None,
                 timeout: float | tuple[float, float], body: str | dict[str, Any] | None = None,
                 content_type: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, _, _ = self._client.param_serialize(
            method, path, query_params=query or [], header_params=headers, auth_settings=["BearerToken"]
        )
        try:
            response = self._client.call_api(method, url, header_params=headers, body=body,
                                             _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ApiUnavailable(f"{method} {path}: {e}") from e
        except kube_client.ApiException as e:
            # The client reports TLS failures as status 0.
            raise ApiUnavailable(f"{method} {path}: {e.reason}") from e
        if not 200 <= response.status < 300:
            try:
                data = response.read()
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise ApiUnavailable(f"{method} {path}: {e}") from e
            raise _error_from_response(response.status, data)
        return response


class WatchStream:
    """One open watch response; iterate for events, `close()` from any thread to end it early."""

    def __init__(self, resource: Resource, raw: Any) -> None:
        self._resource = resource
        self._raw = raw
        self._closed = False

    def close(self) -> None:
        self._closed = True
        # shutdown() unblocks a reader stuck in recv(); close() alone would wait for the next chunk.
        shutdown = getattr(self._raw, "shutdown", None)
        try:
            if shutdown is not None:
                shutdown()
            self._raw.close()
        except (OSError, urllib3.exceptions.HTTPError, ValueError, RuntimeError):
            pass  # already finished or released to the pool: nothing left to interrupt

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            for line in _json_lines(self._raw):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        raise ResourceVersionExpired(obj.get("message", "resource version expired"))
                    reason = str(obj.get("reason") or "Error")
                    raise ApiError(int(code or 500), reason, str(obj.get("message")))
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield WatchEvent(str(kind), obj)
                else:
                    log.warning("ignoring watch event of unknown type %r for %s", kind, self._resource.kind)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if self._closed:
                return
            raise ApiUnavailable(f"watch {self._resource.kind}: {e}") from e
        finally:
            self._raw.release_conn()


def _error_from_response(status: int, data: bytes | None) -> ApiError | ResourceVersionExpired:
    reason, message = "", ""
    try:
        payload = json.loads(data or b"{}")
        reason, message = str(payload.get("reason") or ""), str(payload.get("message") or "")
    except (ValueError, AttributeError):
        message = (data or b"").decode(errors="replace")[:500]
    if status == 410:
        return ResourceVersionExpired(message or "resource version expired")
    return ApiError(status, reason, message)


def _json_lines(raw: Any) -> Iterator[bytes]:
    """Complete lines of a streamed watch response (one JSON event per line)."""
    pending = b""
    for chunk in raw.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending
