"""What installing archfleet costs a job: packages, megabytes on disk, install seconds.

Builds the wheel from this checkout (tests/support/wheel.py), then for the lean install
(`archfleet`, what a merge/verify job needs) and for `archfleet[fleet]` makes fresh virtualenvs
(without pip, so they hold exactly what the install put there) and installs the wheel into each,
`--runs` times. Installs are offline from a local wheelhouse (filled once from the configured
package indexes): the seconds are pip resolving, unpacking and byte-compiling, not downloading,
which a job pays on top. `--from-index` times installs from the package indexes instead (network
dependent; pip's cache is not used), which is closer to a CI job's fresh `pip install`.

    python bench/install_size.py [--runs 3] [--from-index] [--json]
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
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# `python bench/install_size.py` puts bench/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.wheel import Venv, build_wheel, clean_env, fill_wheelhouse  # noqa: E402

NO_CACHE = ("-q", "--no-cache-dir")  # every run downloads, as a fresh CI job does
VARIANTS = (("archfleet", ""), ("archfleet[fleet]", "fleet"))


def install_from_index(venv: Venv, wheel: Path, extra: str) -> float:
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv.python), "install", *NO_CACHE, spec],
        env=clean_env(),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def measure(wheel: Path, work: Path, extra: str, runs: int, from_index: bool) -> dict[str, Any]:
    seconds = []
    venv = None
    for run in range(runs):
        venv = Venv.create(work / f"venv-{extra or 'lean'}-{run}")
        if from_index:
            seconds.append(install_from_index(venv, wheel, extra))
        else:
            seconds.append(venv.install(wheel, extra))
    assert venv is not None
    names = venv.distributions()
    return {
        "packages": len(names),
        "names": names,
        "megabytes": round(venv.disk_bytes() / 1e6, 1),
        "seconds": [round(s, 2) for s in seconds],
        "median_seconds": round(statistics.median(seconds), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--from-index", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archfleet-install-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        if not args.from_index:
            fill_wheelhouse(wheel, "fleet")  # so no timed run includes the first download
        results = {
            label: measure(wheel, work, extra, args.runs, args.from_index)
            for label, extra in VARIANTS
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    source = "package indexes, no pip cache" if args.from_index else "local wheelhouse, offline"
    print(f"archfleet install size, Python {sys.version.split()[0]}, {source}, {args.runs} runs")
    print(f"  {'install':<18} {'packages':>8} {'MB on disk':>10} {'seconds (median)':>17}")
    for label, figures in results.items():
        print(
            f"  {label:<18} {figures['packages']:>8} {figures['megabytes']:>10} "
            f"{figures['median_seconds']:>17}"
        )
    lean = results["archfleet"]["names"]
    print(f"  lean install: {', '.join(lean)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
