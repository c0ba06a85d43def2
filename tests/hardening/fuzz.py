"""Run one fuzz target under atheris (coverage-guided, libFuzzer): `python -m tests.hardening.fuzz TARGET [args]`.

The target modules are imported under `atheris.instrument_imports()`, so Python coverage of the parsers (and
of the pure-Python core) guides the mutations; the Cython core is not instrumented and is checked against its
twin on every input instead. Extra arguments go to libFuzzer (`-runs=N`, `-max_total_time=S`, `-seed=N`, corpus
directories). Seeds for each target are written into the first corpus directory given, or into a temporary one.
A crash makes libFuzzer write the input to `crash-<sha1>` (in `-artifact_prefix`) and exit non-zero.

`make fuzz` runs every target for longer with a corpus kept under ~/.cache/pyambient/fuzz/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["ztunnel", "xds", "_core", "h2", "hpack", "tests.hardening"]):
    from tests.hardening import fuzz_targets

# A few valid inputs per target, so mutation starts from the shapes the parsers accept.
_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_HEADERS_CONNECT = b"\x00\x00\x0e\x01\x04\x00\x00\x00\x01\x82\x01\x0a127.0.0.1:1"  # not valid HPACK: a start
_WINDOW_UPDATE_3 = b"\x00\x00\x04\x08\x00\x00\x00\x00\x03\x00\x00\x10\x00"
_PADDED_DATA_3 = b"\x00\x00\x06\x00\x08\x00\x00\x00\x03\x02ab\x00\x00\x00"
_RST_1 = b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08"
SEEDS: dict[str, list[bytes]] = {
    "pump_frames": [
        b"\x01\x00" + _SETTINGS + b"\x00\x00\x05\x00\x01\x00\x00\x00\x03hello",
        b"\x02\x01" + _WINDOW_UPDATE_3 + _PADDED_DATA_3,
    ],
    "h2streams": [b"\x01\x10" + _SETTINGS + _HEADERS_CONNECT, b"\x00\x10" + _RST_1],
    "socks5": [
        b"\x10\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50hello",
        b"\x16\x05\x01\x00\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x00\x50",
    ],
    "ztunnel_config": [b"\x06\x03" + bytes(range(64))],
    "mesh_objects": [b"\x02\x06\x04" + bytes(range(64))],
    "mesh_file": [
        b"\x00apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {ports: [{port: 80}]}\n",
        b'\x01{"kind": "Pod", "metadata": {"name": "p"}, "status": {"podIP": "10.0.0.1"}}',
    ],
}  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in fuzz_targets.TARGETS:
        sys.exit(f"usage: python -m tests.hardening.fuzz {{{'|'.join(fuzz_targets.TARGETS)}}} [libFuzzer args]")
    name = argv[1]
    args = [argv[0], *argv[2:]]
    corpora = [a for a in args[1:] if not a.startswith("-")]
    if not corpora:
        corpora = [tempfile.mkdtemp(prefix=f"fuzz-{name}-")]
        args.append(corpora[0])
    seed_dir = Path(corpora[0])
    seed_dir.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(SEEDS[name]):
        (seed_dir / f"seed-{i}").write_bytes(seed)
    atheris.Setup(args, fuzz_targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
