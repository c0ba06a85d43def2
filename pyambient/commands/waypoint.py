"""`pyambient waypoint generate|apply|delete|list|status` (like `istioctl waypoint`).

Backends: `--mesh DIR` (local mode, YAML files) or a kubeconfig (`--kubeconfig`, default loading rules).
`waypoint bootstrap` is registered by `pyambient.commands.waypoint_bootstrap` when that module provides
`register_waypoint_subcommand(waypoint_subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import Any

from pyambient.waypointctl.model import (
    FOR_VALUES,
    LABEL_DATAPLANE,
    LABEL_USE_WAYPOINT,
    Backend,
    WaypointError,
    WaypointInfo,
    gateway,
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    wp = subparsers.add_parser("waypoint", help="Manage waypoint configuration (like istioctl waypoint)")
    wp.set_defaults(func=lambda args: wp.print_help() or 0)
    subs = wp.add_subparsers(dest="waypoint_command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", default=None)
        p.add_argument("--name", default="waypoint", help="waypoint name (default: waypoint)")
        p.add_argument("--mesh", default=None, metavar="DIR", help="local mode: the mesh directory")
        p.add_argument("--kubeconfig", default=None)
        p.add_argument("--context", default=None)

    gen = subs.add_parser("generate", help="Print the waypoint Gateway YAML")
    common(gen)
    gen.add_argument("--for", dest="traffic_for", default=None, choices=FOR_VALUES)
    gen.add_argument("-r", "--revision", default="")
    gen.set_defaults(func=cmd_generate)

    app = subs.add_parser("apply", help="Apply a waypoint Gateway")
    common(app)
    app.add_argument("--for", dest="traffic_for", default=None, choices=FOR_VALUES)
    app.add_argument("-r", "--revision", default="")
    app.add_argument("--enroll-namespace", action="store_true")
    app.add_argument("--overwrite", action="store_true")
    app.add_argument("-w", "--wait", action="store_true")
    app.add_argument("--waypoint-timeout", type=float, default=90.0)
    app.set_defaults(func=cmd_apply)

    dele = subs.add_parser("delete", help="Delete waypoint Gateways")
    common(dele)
    dele.add_argument("names", nargs="*")
    dele.add_argument("--all", action="store_true")
    dele.add_argument("-r", "--revision", default="")
    dele.set_defaults(func=cmd_delete)

    lst = subs.add_parser("list", help="List waypoint Gateways")
    common(lst)
    lst.add_argument("-A", "--all-namespaces", action="store_true")
    lst.set_defaults(func=cmd_list)

    st = subs.add_parser("status", help="Show the Programmed status of a waypoint")
    common(st)
    st.add_argument("-A", "--all-namespaces", action="store_true")
    st.add_argument(
        "-w", "--wait", type=lambda s: s.lower() in ("1", "t", "true"), nargs="?", const=True, default=True
    )
    st.add_argument("--waypoint-timeout", type=float, default=90.0)
    st.set_defaults(func=cmd_status)

    try:
        bootstrap = importlib.import_module("pyambient.commands.waypoint_bootstrap")
    except ImportError:
        bootstrap = None
    hook = getattr(bootstrap, "register_waypoint_subcommand", None)
    if callable(hook):
        hook(subs)


def _backend(args: argparse.Namespace) -> Backend:
    if args.mesh:
        from pyambient.waypointctl.local import LocalBackend

        return LocalBackend(args.mesh)
    from pyambient.waypointctl.kube import KubeBackend

    return KubeBackend(args.kubeconfig, args.context)


def _check_name(name: str) -> None:
    if name == "none":
        raise WaypointError('invalid name provided for waypoint, "none" is a reserved value')
    if not name:
        raise WaypointError("waypoint name must not be empty")


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args) or 0)
    except WaypointError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


def cmd_generate(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> int:
        from pyambient.render.goyaml import to_yaml

        _check_name(a.name)
        sys.stdout.write(to_yaml(gateway(a.name, a.namespace, a.traffic_for, a.revision or None)))
        return 0

    return _run(body, args)


def _wait_programmed(backend: Backend, ns: str, name: str, timeout: float) -> WaypointInfo:
    deadline = time.monotonic() + timeout
    while True:
        info = backend.get(ns, name)
        if info is not None and info.programmed is not None and info.programmed.status == "True":
            return info
        if time.monotonic() >= deadline:
            raise WaypointError(f"timed out waiting for waypoint {ns}/{name} to be programmed")
        time.sleep(1)


def cmd_apply(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> int:
        _check_name(a.name)
        ns = a.namespace or "default"
        backend = _backend(a)
        labels = backend.namespace_labels(ns)
        if labels is not None and labels.get(LABEL_DATAPLANE) != "ambient":
            print(
                f"⚠️ namespace {ns} is not enrolled in ambient mode; to enroll it run: "
                f"kubectl label namespace {ns} {LABEL_DATAPLANE}=ambient",
                file=sys.stderr,
            )
        backend.apply(gateway(a.name, ns, a.traffic_for, a.revision or None))
        print(f"✅ waypoint {ns}/{a.name} applied")
        if a.enroll_namespace:
            current = (labels or {}).get(LABEL_USE_WAYPOINT)
            if current and current != a.name and not a.overwrite:
                print(
                    f"⚠️ namespace {ns} already uses waypoint {current}; use --overwrite to replace it",
                    file=sys.stderr,
                )
            else:
                backend.label_namespace(ns, LABEL_USE_WAYPOINT, a.name)
                print(f'✅ namespace {ns} labeled with "{LABEL_USE_WAYPOINT}: {a.name}"')
        if a.wait:
            _wait_programmed(backend, ns, a.name, a.waypoint_timeout)
            print(f"✅ waypoint {ns}/{a.name} is ready!")
        return 0

    return _run(body, args)


def cmd_delete(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> int:
        ns = a.namespace or "default"
        backend = _backend(a)
        if a.all or a.revision:
            targets = [i.name for i in backend.list(ns) if a.all or (a.revision and i.revision == a.revision)]
        else:
            targets = a.names or [a.name]
        for name in targets:
            _check_name(name)
            if backend.delete(ns, name):
                print(f"waypoint {ns}/{name} deleted")
            else:
                print(f"waypoint {ns}/{name} not found")
        return 0

    return _run(body, args)


def cmd_list(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> int:
        from pyambient.render.tabwriter import TabWriter

        backend = _backend(a)
        infos = backend.list(None if a.all_namespaces else (a.namespace or "default"))
        if not infos:
            print("No waypoints found.")
            return 0
        infos.sort(key=lambda i: (i.namespace, i.name))
        w = TabWriter(0, 8, 3)
        head = ["NAMESPACE"] if a.all_namespaces else []
        w.line(*head, "NAME", "REVISION", "TRAFFIC TYPE", "PROGRAMMED")
        for i in infos:
            programmed = i.programmed.status if i.programmed else "False"
            w.line(
                *([i.namespace] if a.all_namespaces else []), i.name, i.revision, i.traffic_type, programmed
            )
        sys.stdout.write(w.getvalue())
        return 0

    return _run(body, args)


def cmd_status(args: argparse.Namespace) -> int:
    def body(a: argparse.Namespace) -> int:
        from pyambient.render.tabwriter import TabWriter

        backend = _backend(a)
        ns = a.namespace or "default"
        if a.all_namespaces:
            infos = sorted(backend.list(None), key=lambda i: (i.namespace, i.name))
        else:
            _check_name(a.name)
            info = backend.get(ns, a.name)
            if info is None:
                raise WaypointError(f"waypoint {ns}/{a.name} not found")
            if a.wait:
                info = _wait_programmed(backend, ns, a.name, a.waypoint_timeout)
            infos = [info]
        if not infos:
            print("No waypoints found.")
            return 0
        w = TabWriter(0, 8, 3)
        head = ["NAMESPACE"] if a.all_namespaces else []
        w.line(*head, "NAME", "STATUS", "TYPE", "REASON", "MESSAGE")
        for i in infos:
            c = i.programmed
            cells = [c.status, c.type, c.reason, c.message] if c else ["Unknown", "Programmed", "", ""]
            w.line(*([i.namespace] if a.all_namespaces else []), i.name, *cells)
        sys.stdout.write(w.getvalue())
        return 0

    return _run(body, args)
