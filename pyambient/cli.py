"""`pyambient` command line: one argparse tree; each subcommand lives in its own module.

A command module defines `register(subparsers) -> None`, which adds its parser and sets
`func=<callable(args) -> int>` as the parser default. Modules are imported lazily by name so that
`pyambient --help` stays fast and a command's heavy imports load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One line per command module; each registers one or more subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "pyambient.commands.control_plane",
    "pyambient.commands.proxy_config",
    "pyambient.commands.ztunnel_config",
    "pyambient.commands.waypoint",  # also registers `waypoint bootstrap` (waypoint_bootstrap.py)
    "pyambient.commands.ztunnel",
    "pyambient.commands.cni_agent",
    "pyambient.commands.controller",
    "pyambient.commands.demo",
    "pyambient.commands.token",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyambient", description="Istio ambient mesh, in Python.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
