"""`pyambient demo [--check]`: run a whole ambient mesh locally and walk its scenarios."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path

DEFAULT_MESH = Path(__file__).resolve().parents[2] / "examples" / "mesh"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run a whole ambient mesh on this machine and walk its scenarios")
    parser.add_argument("--mesh", type=Path, default=DEFAULT_MESH, help="mesh directory to copy and run")
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="where logs, certs and the mesh copy go")
    parser.add_argument("--check", action="store_true", help="non-interactive: exit non-zero if any scenario fails")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pyambient.demo.runtime import DemoMesh
    from pyambient.demo.scenarios import SCENARIOS

    if not args.mesh.is_dir():
        print(f"error: mesh directory {args.mesh} does not exist", file=sys.stderr)
        return 1
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    mesh_dir = workdir / "mesh"
    shutil.copytree(args.mesh, mesh_dir)
    print(f"» starting the mesh from {mesh_dir} (logs in {workdir})", flush=True)
    demo = DemoMesh(mesh_dir, workdir)
    failed = 0
    try:
        started = time.monotonic()
        demo.start()
        assert demo.plan is not None and demo.control is not None
        print(
            f"  control plane on 127.0.0.1:{demo.control.port}; "
            + "; ".join(f"ztunnel {n.name} on {n.ip}" for n in demo.plan.nodes)
            + "; "
            + "; ".join(
                f"waypoint {w.waypoint.namespace}/{w.waypoint.name} (Envoy) on {w.pod.ip}:15008"
                for w in demo.plan.waypoints
            )
            + f"; {len(demo.backends)} backends — up in {time.monotonic() - started:.1f}s",
            flush=True,
        )
        for index, scenario in enumerate(SCENARIOS, 1):
            print(f"\n[{index}/{len(SCENARIOS)}] ", end="", flush=True)
            try:
                result = scenario(demo)
            except Exception as exc:  # noqa: BLE001 - a failing scenario is reported, the next one still runs
                print(f"{scenario.__name__}: ERROR {exc!r}")
                traceback.print_exc(limit=3)
                failed += 1
                continue
            print(f"{result.title}: {'PASS' if result.ok else 'FAIL'}")
            for line in result.evidence:
                print(f"      {line}")
            failed += 0 if result.ok else 1
        print(f"\n» {len(SCENARIOS) - failed}/{len(SCENARIOS)} scenarios passed", flush=True)
        if not args.check and sys.stdin.isatty():
            print(f"» the mesh keeps running: edit files in {mesh_dir} and they apply live. Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    finally:
        demo.stop()
    return 1 if failed else 0
