"""Benchmark: `archfleet merge-manifest` against buildah's manifest sequence, on one registry.

Run as `python bench/merge.py [--arches 2,8] [--runs 5] [--json] [--verbose]`.

A benchmark, not a test: it prints figures, ratios and the goals beside them, and exits 0
whatever the times are (non-zero only when something could not run at all).

Both tools run as whole processes (start-up included, as a CI job pays it), timed with
time.perf_counter around subprocess.run. Registry requests are counted from the registry's
own access log between marks, so nothing relies on a tool's account of itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python bench/merge.py` puts bench/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from toolkit.lab.images import build_image  # noqa: E402
from toolkit.lab.registry import LocalRegistry, RequestRecord, start_registry  # noqa: E402

PLATFORMS = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v5",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/mips64le",
)
REPOSITORY = "bench/app"
_STDERR_TAIL_LINES = 15

OURS = "ours --no-child-tags"
OURS_TAGS = "ours (child tags)"
BUILDAH = "buildah create+add+push"
TOOLS = (OURS, OURS_TAGS, BUILDAH)


class BenchError(RuntimeError):
    """A tool could not run or did not do its job; the figures would mean nothing."""


@dataclass
class Measurement:
    tool: str
    requests: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    # Request kinds of the first run, in order, as (method, kind, status).
    first_run: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, seconds: float, records: Sequence[RequestRecord]) -> None:
        if not self.wall:
            self.first_run = [(r.method, request_kind(r.path), r.status) for r in records]
        self.wall.append(seconds)
        self.requests.append(len(records))

    @property
    def requests_median(self) -> float:
        return statistics.median(self.requests)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "requests": self.requests,
            "requestsMedian": self.requests_median,
            "wallSeconds": [round(s, 4) for s in self.wall],
            "wallMin": round(min(self.wall), 4),
            "wallMedian": round(self.wall_median, 4),
            "wallMax": round(max(self.wall), 4),
            "firstRunRequests": [
                {"method": m, "kind": k, "status": s} for m, k, s in self.first_run
            ],
        }


def request_kind(path: str) -> str:
    path = path.split("?", 1)[0]
    if path.rstrip("/") == "/v2":
        return "/v2/ ping"
    if "/blobs/uploads" in path:
        return "blobs/uploads"
    for kind in ("manifests", "blobs", "tags"):
        if f"/{kind}/" in path:
            return kind
    return "other"


def run_length(first_run: Sequence[tuple[str, str, int]]) -> str:
    """`HEAD manifests 404, GET manifests 200 x2, …` in request order."""
    groups: list[list[Any]] = []
    for item in first_run:
        if groups and groups[-1][0] == item:
            groups[-1][1] += 1
        else:
            groups.append([item, 1])
    parts = []
    for (method, kind, status), count in groups:
        parts.append(f"{method} {kind} {status}" + (f" x{count}" if count > 1 else ""))
    return ", ".join(parts)


def run(args: Sequence[str], *, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run one whole process; its wall time and stdout. A failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(
        list(args), capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise BenchError(f"`{' '.join(args)}` failed with status {done.returncode}:\n{tail}")
    return elapsed, done.stdout


def arch_tag(platform_name: str) -> str:
    return platform_name.replace("/", "-")


class Buildah:
    """buildah with a private storage root (vfs) in a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.base = [
            "buildah",
            "--root",
            str(tmp / "root"),
            "--runroot",
            str(tmp / "runroot"),
            "--storage-driver",
            "vfs",
        ]
        # buildah's scratch files stay inside the private directory too.
        self.env = {**os.environ, "TMPDIR": str(tmp)}

    def __call__(self, *args: str) -> float:
        return run([*self.base, *args], env=self.env)[0]

    def remove_list(self, name: str) -> None:
        try:
            self("manifest", "rm", name)
        except BenchError:
            # The private storage goes at the end anyway; never mask the run's own error.
            with contextlib.suppress(BenchError):
                self("rmi", name)


def wrote_index(records: Sequence[RequestRecord], tag: str) -> bool:
    suffix = f"/v2/{REPOSITORY}/manifests/{tag}"
    return any(r.method == "PUT" and r.path == suffix and r.status == 201 for r in records)


def measure(
    registry: LocalRegistry,
    buildah: Buildah,
    digests: dict[str, str],
    n: int,
    runs: int,
) -> dict[str, Measurement]:
    platforms = PLATFORMS[:n]
    reg = registry.address
    sources = [arg for p in platforms for arg in ("--source", f"{p}=@{digests[p]}")]
    # The CI entry (argparse, no Invoke); `archfleet merge-manifest` runs the same code.
    ours = [sys.executable, "-m", "toolkit.registry", "merge-manifest", "--insecure"]
    results = {tool: Measurement(tool) for tool in TOOLS}

    def timed(tool: str, tag: str, commands: Sequence[Sequence[str]] | None = None) -> None:
        mark = registry.mark()
        if tool == BUILDAH:
            assert commands is not None
            seconds = sum(buildah(*command) for command in commands)
        else:
            flags = ["--no-child-tags"] if tool == OURS else []
            seconds, _ = run([*ours, *flags, "--target", f"{reg}/{REPOSITORY}:{tag}", *sources])
        records = registry.requests_since(mark)
        # A run that wrote nothing would measure a no-op, not a merge.
        if not wrote_index(records, tag):
            raise BenchError(f"{tool}: run for tag {tag} did not PUT the index (201)")
        results[tool].add(seconds, records)

    for i in range(runs):
        timed(OURS, f"ours-{n}-{i}")
        timed(OURS_TAGS, f"ours-tags-{n}-{i}")
        tag = f"buildah-{n}-{i}"
        local_list = f"localhost/bench-list-{n}-{i}"
        commands: list[list[str]] = [["manifest", "create", local_list]]
        for p in platforms:
            commands.append(
                [
                    "manifest",
                    "add",
                    "--tls-verify=false",
                    local_list,
                    f"docker://{reg}/{REPOSITORY}@{digests[p]}",
                ]
            )
        commands.append(
            [
                "manifest",
                "push",
                "--all",
                "--tls-verify=false",
                local_list,
                f"docker://{reg}/{REPOSITORY}:{tag}",
            ]
        )
        try:
            timed(BUILDAH, tag, commands)
        finally:
            buildah.remove_list(local_list)  # not timed
    return results


def startup_floor(buildah: Buildah, runs: int) -> dict[str, float]:
    """Median wall of processes that start and do no registry work: what start-up costs."""
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m toolkit.registry merge-manifest --help": [
            sys.executable,
            "-m",
            "toolkit.registry",
            "merge-manifest",
            "--help",
        ],
        "archfleet merge-manifest --help (Invoke)": [
            sys.executable,
            "-m",
            "toolkit",
            "merge-manifest",
            "--help",
        ],
        "buildah --version": [*buildah.base, "--version"],
    }
    return {
        label: round(statistics.median(run(command, env=buildah.env)[0] for _ in range(runs)), 4)
        for label, command in commands.items()
    }


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    versions = {}
    for name, command in (
        ("buildah", ["buildah", "--version"]),
        ("registry", ["docker-registry", "--version"]),
    ):
        versions[name] = subprocess.run(
            command, capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "nproc": nproc,
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "buildah": versions["buildah"],
        "registry": versions["registry"],
    }


def summarise(n: int, results: dict[str, Measurement]) -> dict[str, Any]:
    ours, tags, peer = results[OURS], results[OURS_TAGS], results[BUILDAH]
    budget, budget_tags = 2 * n + 2, 3 * n + 2
    # Rounded as in the table, so the goal lines quote the same figures.
    ours_s, tags_s, peer_s = (round(m.wall_median, 4) for m in (ours, tags, peer))
    return {
        "n": n,
        "platforms": list(PLATFORMS[:n]),
        "results": [results[t].to_json() for t in TOOLS],
        "ratios": {
            "oursOverBuildahRequests": round(ours.requests_median / peer.requests_median, 3),
            "oursOverBuildahWallMedian": round(ours.wall_median / peer.wall_median, 3),
            "oursTagsOverBuildahRequests": round(tags.requests_median / peer.requests_median, 3),
            "oursTagsOverBuildahWallMedian": round(tags.wall_median / peer.wall_median, 3),
        },
        "goals": {
            "oursRequests": {
                "goal": f"<= 2N+2 = {budget}",
                "measured": max(ours.requests),
                "met": max(ours.requests) <= budget,
            },
            "oursTagsRequests": {
                "goal": f"<= 3N+2 = {budget_tags}",
                "measured": max(tags.requests),
                "met": max(tags.requests) <= budget_tags,
            },
            "oursFasterThanBuildah": {
                "goal": "median wall < buildah's",
                "measured": f"{ours_s:.3f} s vs {peer_s:.3f} s",
                "met": ours.wall_median < peer.wall_median,
            },
            "oursTagsFasterThanBuildah": {
                "goal": "median wall < buildah's",
                "measured": f"{tags_s:.3f} s vs {peer_s:.3f} s",
                "met": tags.wall_median < peer.wall_median,
            },
        },
    }


def print_text(report: dict[str, Any], verbose: bool) -> None:
    m = report["machine"]
    print(f"archfleet merge-manifest benchmark, {report['date']}")
    print(f"machine:  nproc {m['nproc']}, {m['cpu']}, {m['kernel']}")
    print(f"          Python {m['python']}; {m['buildah']}")
    print(f"registry: {m['registry']} on loopback; requests from its access log")
    print(
        f"runs:     {report['runs']} per tool and N; wall = whole processes "
        "(buildah: create + add per arch + push, summed)"
    )
    images = ", ".join(f"{i['tag']}@{i['digest'][:19]}" for i in report["images"].values())
    print(f"images:   {report['registry']}/{REPOSITORY}: {images}")
    floor = ", ".join(f"{label} {s:.3f}s" for label, s in report["startupMedianSeconds"].items())
    print(f"start-up: (median, no registry work) {floor}")
    for section in report["sections"]:
        n = section["n"]
        print()
        print(f"N = {n}: {', '.join(section['platforms'])}")
        print(f"  {'tool':<26} {'requests':>8}  {'wall min':>8} {'median':>8} {'max':>8}")
        for r in section["results"]:
            spread = (
                ""
                if min(r["requests"]) == max(r["requests"])
                else f" ({min(r['requests'])}-{max(r['requests'])})"
            )
            print(
                f"  {r['tool']:<26} {r['requestsMedian']:>8g}  {r['wallMin']:>7.3f}s "
                f"{r['wallMedian']:>7.3f}s {r['wallMax']:>7.3f}s{spread}"
            )
        ratios = section["ratios"]
        print(
            f"  ours/buildah:        requests {ratios['oursOverBuildahRequests']:.2f}, "
            f"median wall {ratios['oursOverBuildahWallMedian']:.2f}"
        )
        print(
            f"  ours+tags/buildah:   requests {ratios['oursTagsOverBuildahRequests']:.2f}, "
            f"median wall {ratios['oursTagsOverBuildahWallMedian']:.2f}"
        )
        goals = section["goals"]
        labels = {
            "oursRequests": "ours --no-child-tags requests",
            "oursTagsRequests": "ours (child tags) requests",
            "oursFasterThanBuildah": "ours --no-child-tags faster",
            "oursTagsFasterThanBuildah": "ours (child tags) faster",
        }
        print("  goals:")
        for key, label in labels.items():
            goal = goals[key]
            verdict = "met" if goal["met"] else "NOT met"
            print(f"    {label:<30} {goal['goal']:<24} measured {goal['measured']}: {verdict}")
        if verbose:
            print("  requests of the first run:")
            for r in section["results"]:
                kinds = [(q["method"], q["kind"], q["status"]) for q in r["firstRunRequests"]]
                print(f"    {r['tool']}: {run_length(kinds)}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arches",
        default="2,8",
        help=f"comma-separated numbers of arches N (each 1..{len(PLATFORMS)}); default 2,8",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and N (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="also list the first run's requests per tool"
    )
    args = parser.parse_args(argv)
    try:
        args.ns = [int(part) for part in args.arches.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--arches: not a list of numbers: {args.arches!r}")
    if not args.ns or any(not 1 <= n <= len(PLATFORMS) for n in args.ns):
        parser.error(f"--arches: each N must be 1..{len(PLATFORMS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM would otherwise skip the `finally` that stops the registry.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    registry: LocalRegistry | None = None
    with tempfile.TemporaryDirectory(prefix="archfleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        buildah_dir = tmp / "buildah"
        buildah_dir.mkdir()
        try:
            registry = start_registry(tmp / "registry")
            buildah = Buildah(buildah_dir)
            # Set up buildah's storage now, so the first timed run does not pay for it.
            buildah("images")
            digests: dict[str, str] = {}
            for p in PLATFORMS[: max(args.ns)]:
                print(f"building {p} ...", file=sys.stderr)
                built = build_image(p, f"{registry.address}/{REPOSITORY}:{arch_tag(p)}")
                digests[p] = built.digest
            startup = startup_floor(buildah, args.runs)
            sections = []
            for n in args.ns:
                print(f"measuring N = {n} ({args.runs} runs) ...", file=sys.stderr)
                sections.append(summarise(n, measure(registry, buildah, digests, n, args.runs)))
            report = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "runs": args.runs,
                "registry": registry.address,
                "startupMedianSeconds": startup,
                "images": {p: {"tag": arch_tag(p), "digest": d} for p, d in digests.items()},
                "sections": sections,
            }
        except BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        finally:
            if registry is not None:
                registry.stop()
            # buildah's vfs storage can hold read-only directories; rmtree copes as root.
            shutil.rmtree(buildah_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_text(report, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
