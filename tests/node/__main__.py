"""`python -m tests.node`: start the test node and keep it until Ctrl-C (for a look around with kubectl).

It prints the kubeconfig to use (the API server through the loopback relay of this process).
"""

from __future__ import annotations

import signal
import threading

from tests.node.node import RUN_DIR, TestNode


def main() -> None:
    node = TestNode()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        node.start()
        print(f"node Ready in {node.timings['ready']:.1f}s; logs in {RUN_DIR / 'logs'}", flush=True)
        print(f"export KUBECONFIG={node.kubeconfig}", flush=True)
        stop.wait()
    finally:
        node.stop()


if __name__ == "__main__":
    main()
