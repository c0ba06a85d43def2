"""`pyambient ztunnel --config FILE [--xds ADDR]`: run the node proxy."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("ztunnel", help="run the ambient node proxy (ztunnel)")
    p.add_argument("--config", type=Path, help="local YAML config (proxy section, workloads, services, policies)")
    p.add_argument("--xds", help="delta ADS server address host:port (merged over the static config)")
    p.add_argument(
        "--core",
        choices=("cython", "python"),
        default="cython",
        help="data-path implementation: the Cython core or its pure-Python twin",
    )
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--inpod-socket",
        type=Path,
        help="in-pod capture: serve the enrolment socket here (Istio's INPOD_UDS); only without --config",
    )
    ca = p.add_argument_group(
        "identity from the CA (Istio's CA_ADDRESS / CA_ROOT_CA / XDS_ROOT_CA / token): no certificate files"
    )
    ca.add_argument("--ca-address", help="the control plane's secure port host:port (15012)")
    ca.add_argument("--ca-root-cert", type=Path, help="root the secure port's certificate chains to (root-cert.pem)")
    ca.add_argument("--token-path", type=Path, help="this ztunnel's ServiceAccount token (istio-system/ztunnel)")
    ca.add_argument("--ca-server-name", help="name to check on the secure port's certificate (ALT_CA_HOSTNAME)")
    ca.add_argument("--secret-ttl", type=int, default=86400, help="requested workload certificate TTL, seconds")
    ca.add_argument("--xds-tls", action="store_true", help="dial --xds over TLS with the CA root and the token")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ztunnel.app import run as run_ztunnel
    from ztunnel.errors import ConfigError
    from ztunnel.telemetry import setup_logging

    setup_logging(args.log_level)
    if args.config is None and args.xds is None:
        print("pyambient ztunnel: one of --config or --xds is required", file=sys.stderr)
        return 2
    try:
        try:
            import uvloop  # type: ignore[import-not-found]

            uvloop.install()
        except ImportError:
            pass
        ca, xds_channel = _identity(args)
        asyncio.run(run_ztunnel(args.config, args.xds, impl_name=args.core, ca=ca, xds_channel=xds_channel,
                                inpod_socket=args.inpod_socket))
    except ConfigError as e:
        print(f"pyambient ztunnel: invalid config: {e}", file=sys.stderr)
        return 2
    return 0


def _identity(args: argparse.Namespace) -> tuple[Any, Any]:
    """The CA client and xDS channel the flags ask for (None, None without --ca-address)."""
    from ztunnel.errors import ConfigError

    if args.ca_address is None:
        if args.xds_tls:
            raise ConfigError("(command line)", "--xds-tls", "needs --ca-address, --ca-root-cert and --token-path")
        return None, None
    if args.ca_root_cert is None or args.token_path is None:
        raise ConfigError("(command line)", "--ca-address", "needs --ca-root-cert and --token-path")
    try:
        root_pem = args.ca_root_cert.read_bytes()
        args.token_path.read_text()
    except OSError as e:
        raise ConfigError("(command line)", "--ca-root-cert/--token-path", str(e)) from None
    from ztunnel.app import XdsChannel
    from ztunnel.certs import CaCertificates

    token_path: Path = args.token_path

    def token() -> str:
        return token_path.read_text().strip()  # re-read: projected tokens rotate

    def ca() -> CaCertificates:  # made on the proxy's event loop
        return CaCertificates(
            args.ca_address, root_pem, token, server_name=args.ca_server_name, ttl_seconds=args.secret_ttl
        )

    channel = XdsChannel(root_pem, token, args.ca_server_name) if args.xds_tls else None
    return ca, channel
