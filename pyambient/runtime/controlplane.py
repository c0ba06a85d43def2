"""Our control plane on its own asyncio loop in a thread, for callers that are synchronous (demo, tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from xds.ca import CertificateAuthority
from xds.controlplane import ControlPlane
from xds.mesh.model import Mesh
from xds.mesh.objects import mesh_from_objects
from xds.tokens import Authenticator


class ControlPlaneThread:
    def __init__(self, objects: Iterable[Mapping[str, Any]] | Mesh, *, ca: CertificateAuthority | None = None) -> None:
        self.control_plane = ControlPlane(ca=ca, debounce=0.05)
        self.control_plane.update(objects if isinstance(objects, Mesh) else mesh_from_objects(objects))
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.secure_port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="control-plane")

    def start(
        self,
        address: str | None = "127.0.0.1:0",
        *,
        secure_address: str | None = None,
        authenticator: Authenticator | None = None,
    ) -> ControlPlaneThread:
        """Serve plaintext xDS on `address` and, given `secure_address`, the istiod-compatible secure port."""
        self._thread.start()
        start = self.control_plane.start(address, secure_address=secure_address, authenticator=authenticator)
        port = asyncio.run_coroutine_threadsafe(start, self.loop).result(30)
        self.secure_port = self.control_plane.secure_port
        self.port = port if address is not None else 0
        return self

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self.control_plane.update(mesh_from_objects(objects))

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.control_plane.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
