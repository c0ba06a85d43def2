"""Our control plane on its own asyncio loop in a thread, for callers that are synchronous (demo, tests)."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pyambient.runtime.envoy import PodCredentials
from xds.ca import CertificateAuthority
from xds.controlplane import ControlPlane
from xds.envoy.bootstrap import WaypointNode
from xds.mesh.model import Mesh
from xds.mesh.objects import mesh_from_objects
from xds.tokens import Authenticator, LocalTokenIssuer


class ControlPlaneThread:
    def __init__(self, objects: Iterable[Mapping[str, Any]] | Mesh, *, ca: CertificateAuthority | None = None) -> None:
        self.control_plane = ControlPlane(ca=ca, debounce=0.05)
        self.tokens = LocalTokenIssuer()
        self.control_plane.update(objects if isinstance(objects, Mesh) else mesh_from_objects(objects))
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.secure_port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="control-plane")

    def start(
        self,
        address: str | None = "127.0.0.1:0",
        *,
        secure_address: str | None = "127.0.0.1:0",
        authenticator: Authenticator | None = None,
        serving_ttl: datetime.timedelta = datetime.timedelta(days=90),
    ) -> ControlPlaneThread:
        """Serve plaintext xDS on `address` and the istiod-compatible secure port on `secure_address`.

        Callers of the secure port authenticate with `authenticator`, by default this thread's own
        local-mode token issuer (`self.tokens`).
        """
        self._thread.start()
        start = self.control_plane.start(
            address, secure_address=secure_address, authenticator=authenticator or self.tokens, serving_ttl=serving_ttl
        )
        port = asyncio.run_coroutine_threadsafe(start, self.loop).result(30)
        self.secure_port = self.control_plane.secure_port
        self.port = port if address is not None else 0
        return self

    def credentials(self, namespace: str, service_account: str, ttl_seconds: int = 86400) -> PodCredentials:
        """A pod's token (issued by this control plane) and the CA address and root it needs."""
        return PodCredentials(
            f"127.0.0.1:{self.secure_port}",
            self.control_plane.ca.root_pem,
            self.tokens.issue(namespace, service_account),
            namespace,
            service_account,
            ttl_seconds,
        )

    def waypoint_credentials(self, node: WaypointNode, ttl_seconds: int = 86400) -> PodCredentials:
        """The credentials of the pod of waypoint `node`: its own service account's token."""
        known = self.control_plane.mesh.waypoint(node.namespace, node.name)
        account = (known.service_account or known.name) if known is not None else node.name
        return self.credentials(node.namespace, account, ttl_seconds)

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self.control_plane.update(mesh_from_objects(objects))

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.control_plane.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
