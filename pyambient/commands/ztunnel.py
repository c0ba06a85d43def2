"""`pyambient ztunnel --config FILE [--xds ADDR]`: run the node proxy."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


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
        asyncio.run(run_ztunnel(args.config, args.xds, impl_name=args.core))
    except ConfigError as e:
        print(f"pyambient ztunnel: invalid config: {e}", file=sys.stderr)
        return 2
    return 0
