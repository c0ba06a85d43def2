"""`pyambient controller`: the waypoint controller and the xDS server, in one process.

The controller watches the API server (Gateways → waypoint Deployments, status, and the whole
object set → mesh model); the control plane serves that mesh to Envoy waypoints and ztunnels over
ADS. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from waypoint.settings import ControllerSettings, RenderSettings

log = logging.getLogger("pyambient.controller")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "controller",
        help="run the waypoint controller and the xDS server against a Kubernetes API server",
        description=__doc__,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account, "
                                             "then $KUBECONFIG / ~/.kube/config)")
    parser.add_argument("--xds-address", default="127.0.0.1:15010",
                        help="host:port the plaintext xDS server listens on (never serves secrets); off if empty")
    parser.add_argument("--secure-address", default="127.0.0.1:15012",
                        help="host:port of istiod's secure port (TLS: ADS + CA, callers authenticated with "
                             "TokenReview); off if empty")
    parser.add_argument("--ca-dir", type=Path,
                        help="keep the CA root in this directory (root.crt/root.key) instead of the Secrets "
                             "istiod uses (cacerts, istio-ca-secret in --namespace)")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE") or "istio-system",
                        help="the controller's own namespace, where the CA Secrets live (as istiod: "
                             "$POD_NAMESPACE, else istio-system)")
    parser.add_argument(
        "--waypoint-xds-address",
        help="secure xDS address (15012) the waypoint agents relay Envoy's ADS to, as pods reach it "
             f"(default: {RenderSettings.xds_address})",
    )
    parser.add_argument("--proxy-image", default=RenderSettings.proxy_image,
                        help="image with envoy and pyambient, for waypoint Deployments")
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    render = RenderSettings(
        xds_address=args.waypoint_xds_address or RenderSettings.xds_address,
        proxy_image=args.proxy_image,
    )
    return asyncio.run(_serve(args, ControllerSettings(render=render)))


async def _serve(args: argparse.Namespace, settings: ControllerSettings) -> int:
    # Imported here so `pyambient --help` does not load grpc and the kubernetes client.
    from waypoint.controller import WaypointController
    from waypoint.kube.api import ApiError, ApiUnavailable, KubeApi, api_client_from_kubeconfig
    from waypoint.kube.casecret import CaSecretError, load_or_create_ca
    from waypoint.kube.tokenreview import TokenReviewAuthenticator
    from waypoint.policystatus import PolicyStatusWriter
    from xds.ca import CertificateAuthority
    from xds.controlplane import ControlPlane
    from xds.mesh.objects import mesh_from_objects

    api = KubeApi(api_client_from_kubeconfig(args.kubeconfig))
    if args.ca_dir:
        ca = CertificateAuthority.load_or_create(args.ca_dir)
    else:
        try:
            ca, _ = await asyncio.to_thread(load_or_create_ca, api, args.namespace)
        except (CaSecretError, ApiError, ApiUnavailable) as exc:
            # Never a fresh root instead: workloads trust the one the Secret holds.
            log.error("cannot start: no usable mesh CA in namespace %s: %s", args.namespace, exc)
            api.close()
            return 1
    control_plane = ControlPlane(ca=ca)
    port = await control_plane.start(
        args.xds_address or None,
        secure_address=args.secure_address or None,
        authenticator=TokenReviewAuthenticator(api),
    )
    log.info("xDS server listening on port %d; secure port (TLS, ADS + CA) on %d", port, control_plane.secure_port)

    policy_status = PolicyStatusWriter(api)

    def publish(objects: list[dict[str, Any]]) -> None:
        mesh = mesh_from_objects(objects)
        control_plane.update(mesh)
        policy_status.write(objects, mesh)  # Istio's ZtunnelAccepted/WaypointAccepted conditions

    controller = WaypointController(api, settings, publish=publish, root_cert=control_plane.ca.root_pem)
    controller.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("controller started")
    await stop.wait()
    log.info("shutting down")
    await loop.run_in_executor(None, controller.stop)
    api.close()
    await control_plane.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m pyambient.commands.controller`)."""
    parser = argparse.ArgumentParser(prog="pyambient controller", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
