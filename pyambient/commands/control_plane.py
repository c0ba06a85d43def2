"""`pyambient control-plane --mesh DIR`: serve xDS and the CA for the mesh in a directory (local mode).

Two ports: plaintext ADS (`--xds-address`, 15010; never serves secrets) and istiod's secure port
(`--secure-address`, 15012: TLS, ADS and the CA API for callers with a token this control plane
signed, see `pyambient token`). `--ca-dir` holds the CA root (`root.crt`/`root.key`), the token
signing key, and the published root `root-cert.pem` (what the `istio-ca-root-cert` ConfigMap carries
in a cluster); without it they live in a temporary directory for this run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xds.mesh.files import MeshDirectory
    from xds.mesh.model import Mesh

log = logging.getLogger("pyambient.control-plane")
ROOT_CERT_FILE = "root-cert.pem"  # the key Istio's `istio-ca-root-cert` ConfigMap uses


def publish_root(ca_dir: Path, root_pem: bytes) -> Path:
    """Local mode's `istio-ca-root-cert`: the root clients of the secure port trust."""
    path = ca_dir / ROOT_CERT_FILE
    path.write_bytes(root_pem)
    return path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "control-plane", help="serve xDS (waypoints, ztunnels) and certificates for a mesh directory"
    )
    parser.add_argument("--mesh", required=True, type=Path, help="directory of Kubernetes YAML/JSON files")
    parser.add_argument("--xds-address", default="127.0.0.1:15010", help="host:port to serve plaintext ADS on")
    parser.add_argument(
        "--secure-address", default="127.0.0.1:15012", help="host:port of the TLS port (ADS + CA API); off if empty"
    )
    parser.add_argument(
        "--metrics-address", default="", help="host:port for Prometheus /metrics (xDS pushes, NACKs); off if empty"
    )
    parser.add_argument(
        "--ca-dir", type=Path, help="keep the CA root here (root.crt/root.key) so restarts keep identities valid"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xds.mesh.files import MeshDirectory, unknown_kinds_line  # imported here: `pyambient --help` stays fast

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    directory = MeshDirectory(args.mesh)  # one reader from the first load on: it keeps each file's last good objects
    try:
        mesh = directory.load()
        unknown = unknown_kinds_line(args.mesh)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if unknown:
        log.warning("%s", unknown)  # once, at start-up: the field-level errors are logged on every change
    ca_dir = args.ca_dir or Path(tempfile.mkdtemp(prefix="pyambient-ca-"))
    return asyncio.run(_serve(directory, args.xds_address, args.secure_address, mesh, args.metrics_address, ca_dir))


async def _serve(
    directory: MeshDirectory, address: str, secure_address: str, mesh: Mesh, metrics_address: str, ca_dir: Path
) -> int:
    from prometheus_client import start_http_server

    from xds.ca import CertificateAuthority
    from xds.controlplane import ControlPlane
    from xds.mesh.files import DirectoryWatcher
    from xds.tokens import LocalTokenIssuer

    ca = CertificateAuthority.load_or_create(ca_dir)
    publish_root(ca_dir, ca.root_pem)
    tokens = LocalTokenIssuer.load_or_create(ca_dir)
    control_plane = ControlPlane(ca=ca)
    control_plane.update(mesh)
    if metrics_address:
        metrics_host, _, metrics_port = metrics_address.rpartition(":")
        start_http_server(int(metrics_port), metrics_host or "127.0.0.1", registry=control_plane.registry)
    try:
        port = await control_plane.start(address or None, secure_address=secure_address or None, authenticator=tokens)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if secure_address:
        log.info(
            "serving the secure port (TLS: ADS, CA) on %s:%d; root %s; tokens: pyambient token --ca-dir %s",
            secure_address.rsplit(":", 1)[0],
            control_plane.secure_port,
            ca_dir / ROOT_CERT_FILE,
            ca_dir,
        )
    host = address.rsplit(":", 1)[0]
    log.info(
        "serving xDS on %s:%d for mesh %s (%d services, %d workloads, %d waypoints)",
        host,
        port,
        directory.directory,
        len(control_plane.mesh.services),
        len(control_plane.mesh.workloads),
        len(control_plane.mesh.waypoints),
    )
    watcher = DirectoryWatcher(directory, control_plane.update).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    watcher.stop()
    await control_plane.stop()
    return 0
