"""`pyambient waypoint bootstrap`: print the Envoy bootstrap (JSON) of one waypoint."""

from __future__ import annotations

import argparse
import sys


def register_waypoint_subcommand(waypoint_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = waypoint_subparsers.add_parser("bootstrap", help="print the Envoy bootstrap of a waypoint")
    parser.add_argument("--name", required=True, help="the waypoint Gateway's name")
    parser.add_argument("--namespace", "-n", required=True, help="the waypoint Gateway's namespace")
    parser.add_argument(
        "--xds",
        metavar="HOST:PORT",
        help="plaintext ADS address (15010, local tools only); default: through the agent's --xds-socket",
    )
    parser.add_argument(
        "--xds-socket",
        default="/etc/istio/proxy/XDS",
        help="the waypoint agent's xDS socket (relayed to the secure port 15012 with the pod's token)",
    )
    parser.add_argument("--admin-port", type=int, default=15000, help="Envoy admin port on 127.0.0.1")
    parser.add_argument(
        "--listen-address", default="0.0.0.0", help="address the HBONE listener (15008) binds; a pod IP locally"
    )
    parser.add_argument("--sotw", action="store_true", help="state-of-the-world ADS instead of delta")
    parser.add_argument(
        "--sds-socket",
        default="/var/run/secrets/workload-spiffe-uds/socket",
        help="the waypoint agent's SDS socket (`pyambient waypoint agent`)",
    )
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.set_defaults(func=run)
    from pyambient.commands.waypoint_agent import register_agent_subcommand

    register_agent_subcommand(waypoint_subparsers)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Standalone `waypoint` group, used until the waypoint CLI module provides the group."""
    group = subparsers.add_parser("waypoint", help="waypoint commands")
    register_waypoint_subcommand(group.add_subparsers(dest="waypoint_command", required=True))


def run(args: argparse.Namespace) -> int:
    from xds.envoy.bootstrap import WaypointNode, bootstrap_json, waypoint_bootstrap  # lazy: fast --help

    host: str | None = None
    port: int | None = None
    if args.xds is not None:
        host, sep, port_text = args.xds.rpartition(":")
        if not sep or not port_text.isdigit() or not host:
            print(f"error: --xds {args.xds!r} is not HOST:PORT", file=sys.stderr)
            return 1
        port = int(port_text)
    text = bootstrap_json(
        waypoint_bootstrap(
            WaypointNode(args.name, args.namespace, args.listen_address),
            host,
            port,
            xds_socket=args.xds_socket,
            admin_port=args.admin_port,
            delta=not args.sotw,
            sds_socket=args.sds_socket,
        )
    )
    if args.output:
        with open(args.output, "w") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0
