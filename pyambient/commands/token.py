"""`pyambient token`: a local-mode ServiceAccount token, signed by the control plane's key in `--ca-dir`.

Local mode's stand-in for the kubelet's projected token (audience `istio-ca`): give it to a waypoint
agent or a ztunnel (`AUTH_TOKEN` / `--token-path`) so it can call the secure port.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("token", help="issue a local-mode ServiceAccount token for the secure port")
    p.add_argument("--ca-dir", type=Path, required=True, help="the control plane's --ca-dir")
    p.add_argument("-n", "--namespace", required=True)
    p.add_argument("--service-account", required=True)
    p.add_argument("--pod", default="", help="pod the token is bound to")
    p.add_argument("--node", default="", help="node of that pod (a ztunnel's node, for impersonation)")
    p.add_argument("--audience", default="istio-ca")
    p.add_argument("--ttl", type=int, default=43200, help="seconds (default 12 h, like the projected token)")
    p.add_argument("-o", "--output", type=Path, help="write to this file (mode 0600) instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xds.tokens import LocalTokenIssuer

    if not (args.ca_dir / "token-signing.key").exists():
        print(
            f"error: {args.ca_dir} has no token-signing.key: start `pyambient control-plane --ca-dir` there first",
            file=sys.stderr,
        )
        return 1
    token = LocalTokenIssuer.load_or_create(args.ca_dir).issue(
        args.namespace,
        args.service_account,
        pod=args.pod,
        node=args.node,
        audience=args.audience,
        ttl_seconds=args.ttl,
    )
    if args.output:
        args.output.touch(mode=0o600)
        args.output.write_text(token + "\n")
    else:
        print(token)
    return 0
