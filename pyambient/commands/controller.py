"""`pyambient controller`: the waypoint controller and the xDS server, in one process.

The controller watches the API server (Gateways → waypoint Deployments, status, and the whole
object set → mesh model); the control plane serves that mesh to Envoy waypoints and ztunnels over
ADS. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
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
                        help="host:port the xDS server listens on")
    parser.add_argument(
        "--waypoint-xds-address",
        help="xDS address written into waypoint bootstraps, as pods reach it "
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
    from waypoint.kube.api import KubeApi, api_client_from_kubeconfig
    from waypoint.policystatus import PolicyStatusWriter
    from xds.controlplane import ControlPlane
    from xds.mesh.objects import mesh_from_objects

    control_plane = ControlPlane()
    port = await control_plane.start(args.xds_address)
    log.info("xDS server listening on port %d", port)

    api = KubeApi(api_client_from_kubeconfig(args.kubeconfig))
    policy_status = PolicyStatusWriter(api)

    def publish(objects: list[dict[str, Any]]) -> None:
        mesh = mesh_from_objects(objects)
        control_plane.update(mesh)
        policy_status.write(objects, mesh)  # Istio's ZtunnelAccepted/WaypointAccepted conditions

    controller = WaypointController(api, settings, publish=publish)
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
