"""`pyambient waypoint agent`: the identity agent of a waypoint pod (pilot-agent's SDS/CA part).

Defaults follow pilot-agent inside a pod: `CA_ADDR`, `POD_NAMESPACE`, `SERVICE_ACCOUNT`, `TRUST_DOMAIN`
and `SECRET_TTL` from the environment, the projected token at /var/run/secrets/tokens/istio-token,
the root from the `istio-ca-root-cert` ConfigMap at /var/run/secrets/istio/root-cert.pem, and the
SDS socket at /var/run/secrets/workload-spiffe-uds/socket. Envoy's ADS is proxied from
/etc/istio/proxy/XDS to the control plane's secure port (`--xds-address`, default the CA's address,
as istiod serves both on 15012) with the same token; `--xds-socket ''` turns the proxy off.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path


def register_agent_subcommand(waypoint_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = os.environ.get
    p = waypoint_subparsers.add_parser("agent", help="make the waypoint's key, get it signed, serve it to Envoy (SDS)")
    p.add_argument("--ca-address", default=env("CA_ADDR", "istiod.istio-system.svc:15012"), help="host:port (15012)")
    p.add_argument("--ca-server-name", default=None, help="name to check on the CA's certificate (ALT_CA_HOSTNAME)")
    p.add_argument("--root-cert", type=Path, default=Path("/var/run/secrets/istio/root-cert.pem"))
    p.add_argument("--token-path", type=Path, default=Path("/var/run/secrets/tokens/istio-token"))
    p.add_argument("-n", "--namespace", default=env("POD_NAMESPACE"))
    p.add_argument("--service-account", default=env("SERVICE_ACCOUNT"))
    p.add_argument("--trust-domain", default=env("TRUST_DOMAIN", "cluster.local"))
    p.add_argument("--sds-socket", type=Path, default=Path("/var/run/secrets/workload-spiffe-uds/socket"))
    p.add_argument(
        "--xds-socket",
        default="/etc/istio/proxy/XDS",
        help="where Envoy's bootstrap finds xDS (relayed over TLS with the token); '' for no proxy",
    )
    p.add_argument("--xds-address", default=None, help="host:port of the secure xDS port (default: --ca-address)")
    p.add_argument("--ttl", type=int, default=int(env("SECRET_TTL_SECONDS", "86400")), help="seconds")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    missing = [
        flag
        for flag, value in (("--namespace", args.namespace), ("--service-account", args.service_account))
        if not value
    ]
    if missing:
        print(f"error: {', '.join(missing)} required (or POD_NAMESPACE / SERVICE_ACCOUNT)", file=sys.stderr)
        return 1
    try:
        root_pem = args.root_cert.read_bytes()
        args.token_path.read_text()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_serve(args, root_pem))


async def _serve(args: argparse.Namespace, root_pem: bytes) -> int:
    from waypoint.agent import WaypointAgent, token_from_file
    from xds.ca import spiffe_id

    agent = WaypointAgent(
        spiffe_id(args.namespace, args.service_account, args.trust_domain),
        args.ca_address,
        root_pem,
        token_from_file(args.token_path),
        args.sds_socket,
        ttl_seconds=args.ttl,
        ca_server_name=args.ca_server_name,
        xds_socket=Path(args.xds_socket) if args.xds_socket else None,
        xds_address=args.xds_address,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.ensure_future(agent.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():
        starting.result()
        await stop.wait()
    starting.cancel()
    await agent.stop()
    return 0
