"""`pyambient ztunnel-config` (alias `zc`): istioctl-compatible views of a ztunnel's `/config_dump`."""

from __future__ import annotations

import argparse
import sys

from pyambient.proxyconfig.dump import ProxyConfigError

_SUBS = {
    "workloads": ["workload", "w"],
    "services": ["service", "s"],
    "policies": ["policy", "p"],
    "certificates": ["certificate", "certs", "cert", "secrets", "secret"],
    "all": ["a"],
}


ZTUNNEL_ADMIN_PORT = 15000  # on the ztunnel pod's loopback: reached through the API server's port-forward


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    zc = subparsers.add_parser(
        "ztunnel-config",
        aliases=["zc"],
        help="Retrieve information about a ztunnel's configuration",
        description="Views of a ztunnel's configuration from its admin /config_dump (a ztunnel pod through the API "
        "server's port-forward, an address, or a file).",
    )
    zc.set_defaults(func=lambda args: zc.print_help() or 0)
    subs = zc.add_subparsers(dest="zc_command", metavar="TYPE")
    for sub, aliases in _SUBS.items():
        p = subs.add_parser(sub, aliases=aliases, help=f"ztunnel {sub}")
        p.add_argument(
            "target",
            nargs="?",
            default="",
            help="ztunnel pod (NAME[.NAMESPACE] or pod/NAME[.NAMESPACE]); default: a running ztunnel pod "
            "(app=ztunnel) in istio-system, as istioctl picks one",
        )
        p.add_argument("--kubeconfig", default=None)
        p.add_argument("--address", default="", help="ztunnel admin address HOST:PORT (GET /config_dump)")
        p.add_argument("-f", "--file", default="", help="ztunnel config dump file ('-' for stdin)")
        p.add_argument("-o", "--output", default="short", help="short, json or yaml")
        p.add_argument("--workload-address", default="", help="workloads: only this IP")
        p.add_argument("--node", default="", help="workloads: only this node")
        p.add_argument("--workload-namespace", default="", help="only this namespace")
        p.set_defaults(func=run, zc_sub=sub)


def run(args: argparse.Namespace) -> int:
    from pyambient import ztunnelconfig
    from pyambient.proxyconfig import source
    from pyambient.proxyconfig.dump import parse_json

    try:
        if sum(map(bool, (args.address, args.file, args.target))) > 1:
            raise ProxyConfigError(f"{args.zc_sub}: give one of a ztunnel pod, --address or --file")
        if args.file:
            raw = source.read_file(args.file)
        elif args.address:
            raw = source.admin_get(args.address, "/config_dump")
        else:
            from pyambient.proxyconfig import kube

            raw = kube.ztunnel_admin_get(args.target, "/config_dump", ZTUNNEL_ADMIN_PORT, args.kubeconfig)
        dump = parse_json(raw, "ztunnel config dump")
        flt = ztunnelconfig.WorkloadFilter(args.workload_address, args.node, args.workload_namespace)
        sys.stdout.write(ztunnelconfig.render(dump, args.zc_sub, args.output, flt))
    except ProxyConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `pyambient zc … | head`
        from pyambient.commands.proxy_config import quiet_stdout

        quiet_stdout()
    return 0
