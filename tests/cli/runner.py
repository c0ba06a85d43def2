"""Run the CLI in-process with real argv parsing and captured stdout/stderr."""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass

from pyambient.commands import proxy_config, waypoint, ztunnel_config


@dataclass
class Result:
    code: int
    out: str
    err: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyambient")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (proxy_config, ztunnel_config, waypoint):
        module.register(subparsers)
    return parser


def run_cli(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(list(argv))
            code = int(args.func(args) or 0)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())
