"""Benchmark: the same work as native amd64 code and as arm64 code under qemu-user, here.

Run as `python bench/emulation.py [--runs 5] [--mib 64] [--json]`.

Why archfleet exists in one figure: on an x86 machine an "arm64 build" runs every arm64
instruction through QEMU. This times one workload — Debian's busybox-static, the very binary
in the lab's images, compressing and hashing a file — once as the machine's own amd64 build
and once as the arm64 build through binfmt_misc + qemu-user, in the same script, and prints
the ratio. A benchmark, not a test: it never fails on time (exit 1 only when it cannot run).

The workloads are CPU-bound on purpose: compilers, `npm ci`, `pip wheel` and test suites are
what a real image build spends its time on, and those are CPU-bound too. I/O-bound steps run
at nearly native speed under qemu-user (the kernel is native), so a whole build's slowdown
lies between the I/O figure (about 1x) and these.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from toolkit.lab.images import busybox_rootfs, ensure_binfmt  # noqa: E402

WORKLOADS = {
    "gzip -9": ["gzip", "-9", "-c"],
    "sha256sum": ["sha256sum"],
}


def _input_file(directory: Path, mib: int) -> Path:
    """Compressible, non-trivial bytes: a text dump of counters, so gzip has work to do."""
    path = directory / "input.txt"
    with path.open("w") as out:
        line = 0
        while out.tell() < mib * 1024 * 1024:
            out.write(f"{line:012d} archfleet builds natively {line * 2654435761 % 2**32:08x}\n")
            line += 1
    return path


def _time(command: list[str], stdin: Path) -> float:
    with stdin.open("rb") as source:
        started = time.perf_counter()
        subprocess.run(command, stdin=source, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=32, help="input size in MiB")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    ensure_binfmt("arm64")
    busybox = {arch: busybox_rootfs(arch) / "bin" / "busybox" for arch in ("amd64", "arm64")}
    machine = {
        arch: subprocess.run([str(b), "uname", "-m"], capture_output=True, text=True).stdout.strip()
        for arch, b in busybox.items()
    }
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="archfleet-bench-emu-") as tmp:
        data = _input_file(Path(tmp), args.mib)
        for name, applet in WORKLOADS.items():
            medians = {}
            for arch, binary in busybox.items():
                _time([str(binary), *applet], data)  # warm the page cache and QEMU's start
                times = [_time([str(binary), *applet], data) for _ in range(args.runs)]
                medians[arch] = statistics.median(times)
            results[name] = {
                "native_amd64_s": round(medians["amd64"], 3),
                "emulated_arm64_s": round(medians["arm64"], 3),
                "ratio": round(medians["arm64"] / medians["amd64"], 1),
            }
    if args.json:
        print(json.dumps({"mib": args.mib, "runs": args.runs, "workloads": results}, indent=2))
        return 0
    print(
        f"busybox-static on {args.mib} MiB, median of {args.runs} runs; "
        f"amd64 binary says uname -m = {machine['amd64']}, arm64 binary says {machine['arm64']}"
    )
    print(f"{'workload':<12} {'native amd64':>13} {'arm64 (QEMU)':>13} {'emulated/native':>16}")
    for name, row in results.items():
        print(
            f"{name:<12} {row['native_amd64_s']:>12.3f}s {row['emulated_arm64_s']:>12.3f}s "
            f"{row['ratio']:>15.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
