"""`pyambient cni-agent`: the node agent of in-pod capture (installs the CNI plugin, enrols pods with the
node's ztunnel). See pyambient/cni/agent.py."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("cni-agent", help="node agent for in-pod capture: CNI plugin + pod enrolment")
    p.add_argument("--node", default=os.environ.get("NODE_NAME", ""), help="this node's name (default $NODE_NAME)")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster service account)")
    p.add_argument("--ztunnel-socket", type=Path, default=Path("/var/run/ztunnel/ztunnel.sock"))
    p.add_argument("--agent-socket", type=Path, default=Path("/var/run/pyambient/cni-agent.sock"))
    p.add_argument("--cni-bin-dir", type=Path, default=Path("/opt/cni/bin"))
    p.add_argument("--cni-conf-dir", type=Path, default=Path("/etc/cni/net.d"))
    p.add_argument("--skip-install", action="store_true", help="do not install the plugin (it is already there)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pyambient.cni.agent import NodeAgent, install_plugin
    from waypoint.kube.api import KubeApi, api_client_from_kubeconfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.node:
        print("pyambient cni-agent: --node (or $NODE_NAME) is required", file=sys.stderr)
        return 2
    if not args.skip_install:
        try:
            install_plugin(args.cni_bin_dir, args.cni_conf_dir, args.agent_socket)
        except (OSError, ValueError) as e:
            print(f"pyambient cni-agent: cannot install the CNI plugin: {e}", file=sys.stderr)
            return 2
    agent = NodeAgent(KubeApi(api_client_from_kubeconfig(args.kubeconfig)), args.node, args.ztunnel_socket,
                      args.agent_socket)  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    logging.getLogger("cni-agent").info("cni-agent ready node=%s", args.node)
    stop.wait()
    agent.stop()
    return 0
