"""`pyambient proxy-config` (alias `pc`): istioctl-compatible views of an Envoy's configuration."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from pyambient.proxyconfig.dump import ConfigDump, ProxyConfigError, parse_json

# sub -> (aliases, the word used in "requires pod name", admin path, default -o)
_SUBS: dict[str, tuple[list[str], str, str, str]] = {
    "cluster": (
        ["clusters", "c"],
        "cluster",
        "/config_dump?mask=dynamic_active_clusters,dynamic_warming_clusters,static_clusters",
        "short",
    ),
    "listener": (
        ["listeners", "l"],
        "listener",
        "/config_dump?mask=dynamic_listeners,static_listeners",
        "short",
    ),
    "route": (
        ["routes", "r"],
        "route",
        "/config_dump?mask=dynamic_route_configs,static_route_configs",
        "short",
    ),
    "endpoint": (["endpoints", "ep"], "endpoints", "/clusters?format=json", "short"),
    "eds": ([], "eds", "/config_dump?include_eds=true", "short"),
    "secret": (
        ["secrets", "s"],
        "secret",
        "/config_dump?mask=dynamic_active_secrets,dynamic_warming_secrets",
        "short",
    ),
    "bootstrap": (["b"], "bootstrap", "/config_dump?mask=bootstrap", "json"),
    "ecds": (["ec"], "ecds", "/config_dump?include_eds=true", "short"),
    "all": (["a"], "all", "/config_dump?include_eds=true", "short"),
}
_ALIASES = {alias: sub for sub, (aliases, *_rest) in _SUBS.items() for alias in aliases}


def _bool(text: str) -> bool:
    """Go-style bool flag value (`--verbose=false`)."""
    low = text.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pc = subparsers.add_parser(
        "proxy-config",
        aliases=["pc"],
        help="Retrieve information about an Envoy's configuration (like istioctl proxy-config)",
        description="A group of commands used to retrieve information about proxy configuration from the "
        "Envoy config dump (file, admin address, or Kubernetes pod).",
    )
    pc.set_defaults(func=lambda args: _no_sub(pc))
    subs = pc.add_subparsers(dest="pc_command", metavar="TYPE")
    for sub, (aliases, *_rest) in _SUBS.items():
        p = subs.add_parser(sub, aliases=aliases, help=f"{sub} configuration")
        p.add_argument(
            "target", nargs="?", help="HOST:PORT of an Envoy admin listener, or [pod/|deploy/]NAME[.NS]"
        )
        p.add_argument("-f", "--file", default="", help="Envoy config dump file ('-' for stdin)")
        p.add_argument("-o", "--output", default=_SUBS[sub][3], help="short, json or yaml")
        p.add_argument("--proxy-admin-port", type=int, default=15000)
        p.add_argument("--kubeconfig", default=None)
        p.add_argument("-n", "--namespace", default=None)
        if sub in ("cluster", "listener", "endpoint", "eds", "all"):
            p.add_argument("--port", type=int, default=0)
        if sub in ("listener", "endpoint", "eds", "all"):
            p.add_argument("--address", default="")
        if sub in ("listener", "all"):
            p.add_argument("--type", default="")
        if sub in ("cluster", "all"):
            p.add_argument("--fqdn", default="")
            p.add_argument("--direction", default="")
            p.add_argument("--subset", default="")
        if sub in ("route", "all"):
            p.add_argument("--name", default="")
        if sub in ("endpoint", "eds"):
            p.add_argument("--cluster", default="")
            p.add_argument("--status", default="")
        if sub in ("listener", "route", "all"):
            # a Go bool flag: `--verbose`, `--verbose=false`; a following word that is not a bool is the target
            p.add_argument("--verbose", nargs="?", const="true", default="true")
        if sub == "listener":
            p.add_argument("--waypoint", action="store_true", help=argparse.SUPPRESS)
        if sub == "all":
            p.add_argument("--with-headers", action="store_true")
        p.set_defaults(func=run, pc_sub=sub)


def _no_sub(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        _run(args, _stdout)
    except ProxyConfigError as exc:
        sys.stdout.flush()
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `pyambient pc … | head`
        quiet_stdout()
    return 0


def quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (captured output)
        pass
    finally:
        os.close(devnull)


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _load(args: argparse.Namespace, path: str) -> str:
    from pyambient.proxyconfig import source

    if args.file:
        return source.read_file(args.file)
    return source.fetch(args.target, path, args.proxy_admin_port, args.kubeconfig, args.namespace)


def _run(args: argparse.Namespace, write: Callable[[str], None]) -> None:
    from pyambient.proxyconfig import all as all_
    from pyambient.proxyconfig import bootstrap, cluster, ecds, eds, endpoint, listener, route, secret
    from pyambient.proxyconfig.common import check_format

    sub: str = args.pc_sub
    _aliases, word, path, _default = _SUBS[sub]
    if isinstance(getattr(args, "verbose", None), str):
        try:
            args.verbose = _bool(args.verbose)
        except argparse.ArgumentTypeError:
            if args.target is not None:
                raise ProxyConfigError(f"invalid argument {args.verbose!r} for --verbose") from None
            args.target, args.verbose = args.verbose, True
    if (args.target is not None) == bool(args.file):
        raise ProxyConfigError(f"{word} requires pod name or --file parameter")
    fmt: str = args.output
    if not (sub == "listener" and args.waypoint):
        check_format(fmt)
    raw = _load(args, path)

    if sub == "endpoint":
        data = parse_json(raw, "clusters output")
        eflt = endpoint.EndpointFilter(args.address, args.port, args.cluster, args.status)
        write(endpoint.summary(data, eflt) if fmt == "short" else endpoint.dump_output(data, eflt, fmt))
        return

    dump = ConfigDump.from_text(raw)
    if sub == "cluster":
        cflt = cluster.ClusterFilter(args.fqdn, args.direction, args.subset, args.port)
        write(cluster.summary(dump, cflt) if fmt == "short" else cluster.dump_output(dump, cflt, fmt))
    elif sub == "listener":
        if args.waypoint:
            write(listener.waypoint_summary(dump))
            return
        lflt = listener.ListenerFilter(args.address, args.port, args.type, args.verbose)
        write(listener.summary(dump, lflt) if fmt == "short" else listener.dump_output(dump, lflt, fmt))
    elif sub == "route":
        rflt = route.RouteFilter(args.name, args.verbose)
        write(route.summary(dump, rflt) if fmt == "short" else route.dump_output(dump, rflt, fmt))
    elif sub == "eds":
        edsflt = eds.EndpointFilter(args.address, args.port, args.cluster, args.status)
        write(eds.summary(dump, edsflt) if fmt == "short" else eds.dump_output(dump, edsflt, fmt))
    elif sub == "secret":
        write(secret.summary(dump) if fmt == "short" else secret.dump_output(dump, fmt))
    elif sub == "bootstrap":
        write(bootstrap.summary(dump) if fmt == "short" else bootstrap.dump_output(dump, fmt))
    elif sub == "ecds":
        write(ecds.summary(dump) if fmt == "short" else ecds.dump_output(dump, fmt))
    else:  # all
        if fmt == "json":
            write(raw + "\n")
        elif fmt == "yaml":
            from pyambient.render.goyaml import json_text_to_yaml

            write(json_text_to_yaml(raw) + "\n")
        else:
            all_.summary(
                dump,
                cluster.ClusterFilter(args.fqdn, args.direction, args.subset, args.port),
                listener.ListenerFilter(args.address, args.port, args.type, args.verbose),
                route.RouteFilter(args.name, args.verbose),
                eds.EndpointFilter(args.address, args.port),
                with_headers=args.with_headers,
                write=write,
            )
