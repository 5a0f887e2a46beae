"""Benchmark: `archfleet merge-manifest` against buildah's and docker's manifest commands, on
one registry, with and without added network latency.

Run as `python bench/merge.py [--arches 2,8] [--runs 5] [--latency 100ms] [--json] [--verbose]`.

A benchmark, not a test: it prints figures, ratios and the goals beside them, and exits 0
whatever the times are (non-zero only when something could not run at all).

Every tool runs as whole processes (start-up included, as a CI job pays it), timed with
time.perf_counter around subprocess.run. Registry requests are counted from the registry's
own access log between marks, so nothing relies on a tool's account of itself. Every tool
talks to the registry through one loopback proxy (tests/support/proxy.py); with `--latency`
it delays every request by that much before forwarding it, as a registry across the internet
costs, and the round trips a tool waits for are (wall at that latency - wall at none) /
latency.
"""

from __future__ import annotations

import argparse
import compileall
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

from tests.support.proxy import ReverseProxy, Rule, delay  # noqa: E402
from tests.support.registry_http import get_manifest, put_manifest, upload_blob  # noqa: E402
from toolkit.lab.images import build_image  # noqa: E402
from toolkit.lab.registry import LocalRegistry, RequestRecord, start_registry  # noqa: E402

LINUX_PLATFORMS = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v5",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/mips64le",
)
# Past the 8 architectures Debian's busybox-static is built for, the same images again with a
# config that says freebsd (an index holds one image per platform): N up to 16.
PLATFORMS = LINUX_PLATFORMS + tuple(p.replace("linux/", "freebsd/") for p in LINUX_PLATFORMS)
REPOSITORY = "bench/app"
_STDERR_TAIL_LINES = 15

OURS = "ours --no-child-tags"
OURS_TAGS = "ours (child tags)"
BUILDAH = "buildah create+add+push"
DOCKER = "docker manifest create+push"
BASELINE = "baseline (child tags)"
# Debian's docker.io client (20.10); a newer client may stand first on PATH.
DOCKER_CLIENT = Path("/usr/bin/docker")


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


def run(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> tuple[float, str]:
    """Run one whole process; its wall time and stdout. A failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise BenchError(f"`{' '.join(args)}` failed with status {done.returncode}:\n{tail}")
    return elapsed, done.stdout


def with_os(registry: LocalRegistry, digest: str, os_name: str, tag: str) -> str:
    """Push a copy of image `digest` whose config says `os_name` (layers shared); its digest."""
    import requests  # the bench's set-up only

    manifest = json.loads(get_manifest(registry.url, REPOSITORY, digest)[0])
    config_url = f"{registry.url}/v2/{REPOSITORY}/blobs/{manifest['config']['digest']}"
    response = requests.get(config_url, timeout=30)
    response.raise_for_status()
    config = {**response.json(), "os": os_name}
    raw_config = json.dumps(config).encode()
    manifest["config"] = {
        **manifest["config"],
        "digest": upload_blob(registry.url, REPOSITORY, raw_config),
        "size": len(raw_config),
    }
    return put_manifest(registry.url, REPOSITORY, tag, manifest)


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


class Docker:
    """Debian's docker client; `docker manifest` is client-side (it reads and writes the
    registry itself), so no engine runs: DOCKER_HOST names a socket nobody listens on. Its
    manifest lists live in a private DOCKER_CONFIG."""

    def __init__(self, tmp: Path) -> None:
        self.env = {
            **os.environ,
            "DOCKER_CONFIG": str(tmp / "config"),
            "DOCKER_HOST": f"unix://{tmp / 'no-engine.sock'}",
        }

    def __call__(self, *args: str) -> float:
        return run([str(DOCKER_CLIENT), *args], env=self.env)[0]


def wrote_index(records: Sequence[RequestRecord], tag: str) -> bool:
    suffix = f"/v2/{REPOSITORY}/manifests/{tag}"
    return any(r.method == "PUT" and r.path == suffix and r.status == 201 for r in records)


@dataclass(frozen=True)
class Setup:
    registry: LocalRegistry
    proxy: ReverseProxy  # every tool's way to the registry
    buildah: Buildah
    docker: Docker | None
    digests: dict[str, str]
    tools: tuple[str, ...]
    baseline: Path | None  # a checkout of another revision, run like ours (child tags)


def measure(setup: Setup, n: int, latency: float, runs: int) -> dict[str, Measurement]:
    platforms = PLATFORMS[:n]
    reg = setup.proxy.address
    sources = [arg for p in platforms for arg in ("--source", f"{p}=@{setup.digests[p]}")]
    # The CI entry (argparse, no Invoke); `archfleet merge-manifest` runs the same code.
    ours = [sys.executable, "-m", "toolkit.registry", "merge-manifest", "--insecure"]
    results = {tool: Measurement(tool) for tool in setup.tools}
    label = f"{n}-{round(latency * 1000)}ms"
    if latency:
        setup.proxy.set_rules([Rule(None, None, 10**9, delay(latency))])
    else:
        setup.proxy.clear_rules()

    def timed(tool: str, tag: str) -> None:
        mark = setup.registry.mark()
        target = f"{reg}/{REPOSITORY}:{tag}"
        if tool == BUILDAH:
            seconds = buildah_merge(setup.buildah, reg, setup.digests, platforms, tag)
        elif tool == DOCKER:
            assert setup.docker is not None
            refs = [f"{reg}/{REPOSITORY}@{setup.digests[p]}" for p in platforms]
            seconds = setup.docker("manifest", "create", "--insecure", target, *refs)
            seconds += setup.docker("manifest", "push", "--insecure", "--purge", target)
        elif tool == BASELINE:
            assert setup.baseline is not None
            seconds, _ = run([*ours, "--target", target, *sources], cwd=setup.baseline)
        else:
            flags = ["--no-child-tags"] if tool == OURS else []
            seconds, _ = run([*ours, *flags, "--target", target, *sources])
        records = setup.registry.requests_since(mark)
        # A run that wrote nothing would measure a no-op, not a merge.
        if not wrote_index(records, tag):
            raise BenchError(f"{tool}: run for tag {tag} did not PUT the index (201)")
        results[tool].add(seconds, records)

    # Round-robin, so drift in the machine's load spreads over every tool alike.
    for i in range(runs):
        for tool in setup.tools:
            timed(tool, f"{tool.split()[0]}-{'tags-' if tool == OURS_TAGS else ''}{label}-{i}")
    return results


def buildah_merge(
    buildah: Buildah, reg: str, digests: dict[str, str], platforms: Sequence[str], tag: str
) -> float:
    """buildah manifest create, add per arch, push --all: the summed wall of its processes."""
    local_list = f"localhost/bench-list-{tag}"
    seconds = buildah("manifest", "create", local_list)
    try:
        for p in platforms:
            seconds += buildah(
                "manifest",
                "add",
                "--tls-verify=false",
                local_list,
                f"docker://{reg}/{REPOSITORY}@{digests[p]}",
            )
        seconds += buildah(
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            local_list,
            f"docker://{reg}/{REPOSITORY}:{tag}",
        )
    finally:
        buildah.remove_list(local_list)  # not timed
    return seconds


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
        ("docker", [str(DOCKER_CLIENT), "--version"]),
    ):
        try:
            versions[name] = subprocess.run(
                command, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            versions[name] = "not installed"
    return {
        "nproc": nproc,
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        **versions,
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarise(
    n: int, latency: float, results: dict[str, Measurement], unloaded: dict[str, Measurement]
) -> dict[str, Any]:
    """Figures, ratios and goals of one (N, latency); `unloaded` is the same N without added
    latency, for the round trips each tool waited for."""
    ours, tags = results[OURS], results[OURS_TAGS]
    peers = [t for t in (BUILDAH, DOCKER) if t in results]
    trips = {
        tool: round((m.wall_median - unloaded[tool].wall_median) / latency, 1)
        for tool, m in results.items()
        if latency and tool in unloaded
    }
    ratios: dict[str, float | None] = {}
    for peer in peers:
        key = peer.split()[0].capitalize()
        ratios[f"oursOver{key}Requests"] = _ratio(
            ours.requests_median, results[peer].requests_median
        )
        ratios[f"oursOver{key}WallMedian"] = _ratio(ours.wall_median, results[peer].wall_median)
        ratios[f"oursTagsOver{key}WallMedian"] = _ratio(tags.wall_median, results[peer].wall_median)
        if latency:
            ratios[f"oursTagsOver{key}RoundTrips"] = _ratio(trips[OURS_TAGS], trips[peer])
    budget, budget_tags = 2 * n + 3, 4 * n + 3
    goals: dict[str, dict[str, Any]] = {
        "oursRequests": {
            "goal": f"<= 2N+3 = {budget}",
            "measured": max(ours.requests),
            "met": max(ours.requests) <= budget,
        },
        "oursTagsRequests": {
            "goal": f"<= 4N+3 = {budget_tags}",
            "measured": max(tags.requests),
            "met": max(tags.requests) <= budget_tags,
        },
    }
    for peer in peers:
        key = peer.split()[0]
        goals[f"oursTagsFasterThan{key.capitalize()}"] = {
            "label": f"ours (child tags) faster than {key}",
            "goal": f"median wall < {key}'s",
            "measured": f"{tags.wall_median:.3f} s vs {results[peer].wall_median:.3f} s",
            "met": tags.wall_median < results[peer].wall_median,
        }
    if latency and n <= 8:
        goals["oursTagsRoundTrips"] = {
            "goal": "<= 6 round trips",
            "measured": trips[OURS_TAGS],
            "met": trips[OURS_TAGS] <= 6.5,  # half a round trip of noise either way
        }
    return {
        "n": n,
        "latencySeconds": latency,
        "platforms": list(PLATFORMS[:n]),
        "results": [{**m.to_json(), "roundTrips": trips.get(t)} for t, m in results.items()],
        "ratios": ratios,
        "goals": goals,
    }


GOAL_LABELS = {
    "oursRequests": "ours --no-child-tags requests",
    "oursTagsRequests": "ours (child tags) requests",
    "oursTagsRoundTrips": "ours (child tags) round trips",
}


def print_text(report: dict[str, Any], verbose: bool) -> None:
    m = report["machine"]
    print(f"archfleet merge-manifest benchmark, {report['date']}")
    print(f"machine:  nproc {m['nproc']}, {m['cpu']}, {m['kernel']}")
    print(f"          Python {m['python']}; {m['buildah']}; {m['docker']}")
    print(f"registry: {m['registry']} on loopback; requests from its access log")
    print(
        f"network:  every tool through a loopback proxy; latency added per request: "
        f"{', '.join(f'{round(x * 1000)} ms' for x in report['latencies'])}"
    )
    print(
        f"runs:     {report['runs']} per tool, N and latency, round-robin; wall = whole "
        "processes (buildah: create + add per arch + push; docker: create + push; summed)"
    )
    if report.get("baseline"):
        print(f"baseline: {report['baseline']}")
    images = ", ".join(f"{i['tag']}@{i['digest'][:19]}" for i in report["images"].values())
    print(f"images:   {REPOSITORY} (Docker v2 schema 2 manifests): {images}")
    floor = ", ".join(f"{label} {s:.3f}s" for label, s in report["startupMedianSeconds"].items())
    print(f"start-up: (median, no registry work) {floor}")
    for section in report["sections"]:
        n, latency = section["n"], section["latencySeconds"]
        print()
        print(f"N = {n}, latency {round(latency * 1000)} ms: {', '.join(section['platforms'])}")
        trips = " round trips" if latency else ""
        print(f"  {'tool':<28} {'requests':>8}  {'wall min':>8} {'median':>8} {'max':>8}{trips}")
        for r in section["results"]:
            spread = (
                ""
                if min(r["requests"]) == max(r["requests"])
                else f" ({min(r['requests'])}-{max(r['requests'])})"
            )
            depth = f" {r['roundTrips']:>11.1f}" if latency and r["roundTrips"] is not None else ""
            print(
                f"  {r['tool']:<28} {r['requestsMedian']:>8g}  {r['wallMin']:>7.3f}s "
                f"{r['wallMedian']:>7.3f}s {r['wallMax']:>7.3f}s{depth}{spread}"
            )
        for key, value in section["ratios"].items():
            if value is not None:
                print(f"  {key:<36} {value:.2f}")
        print("  goals:")
        for key, goal in section["goals"].items():
            label = goal.get("label") or GOAL_LABELS[key]
            verdict = "met" if goal["met"] else "NOT met"
            print(f"    {label:<40} {goal['goal']:<24} measured {goal['measured']}: {verdict}")
        if verbose:
            print("  requests of the first run:")
            for r in section["results"]:
                kinds = [(q["method"], q["kind"], q["status"]) for q in r["firstRunRequests"]]
                print(f"    {r['tool']}: {run_length(kinds)}")


def parse_latency(text: str) -> float:
    """`100ms`, `0.1s`, `100` (milliseconds) -> seconds."""
    text = text.strip().lower()
    try:
        if text.endswith("ms"):
            return float(text[:-2]) / 1000
        if text.endswith("s"):
            return float(text[:-1])
        return float(text) / 1000
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a latency: {text!r} (e.g. 100ms)") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arches",
        default="2,8",
        help=f"comma-separated numbers of arches N (each 1..{len(PLATFORMS)}); default 2,8",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and N (default 5)")
    parser.add_argument(
        "--latency",
        default="0",
        help="comma-separated latencies added per request, e.g. 100ms or 50ms,100ms; a run "
        "without added latency is always measured too (default: 0 only)",
    )
    parser.add_argument(
        "--no-docker", action="store_true", help="leave out docker manifest create/push"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run ours (child tags) from this directory (another revision's checkout, "
        "e.g. `git archive HEAD toolkit | tar -x -C DIR`)",
    )
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
    try:
        latencies = {parse_latency(part) for part in args.latency.split(",") if part.strip()}
    except argparse.ArgumentTypeError as error:
        parser.error(f"--latency: {error}")
    if any(x < 0 for x in latencies):
        parser.error("--latency: must not be negative")
    args.latencies = sorted(latencies | {0.0})
    if args.baseline and not (args.baseline / "toolkit" / "registry").is_dir():
        parser.error(f"--baseline: {args.baseline} has no toolkit/registry")
    return args


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM would otherwise skip the `finally` that stops the registry.
    raise SystemExit(128 + signum)


def compile_bytecode() -> bool:
    """Write our .pyc files, as pip install does: with PYTHONDONTWRITEBYTECODE=1 (set on the
    machines here) a checkout would compile every module of ours again in every timed run,
    while buildah and docker are compiled programs."""
    paths = [REPO_ROOT / "toolkit"]
    return all(compileall.compile_dir(path, quiet=1) for path in paths)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    registry: LocalRegistry | None = None
    with tempfile.TemporaryDirectory(prefix="archfleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        buildah_dir = tmp / "buildah"
        buildah_dir.mkdir()
        try:
            if not compile_bytecode():
                raise BenchError(f"compileall could not write .pyc files under {REPO_ROOT}")
            if args.baseline and not compileall.compile_dir(args.baseline / "toolkit", quiet=1):
                raise BenchError(f"compileall could not write .pyc files under {args.baseline}")
            registry = start_registry(tmp / "registry")
            buildah = Buildah(buildah_dir)
            # Set up buildah's storage now, so the first timed run does not pay for it.
            buildah("images")
            docker = None
            if not args.no_docker and DOCKER_CLIENT.exists():
                (tmp / "docker").mkdir()
                docker = Docker(tmp / "docker")
            tools = [OURS, OURS_TAGS, BUILDAH] + ([DOCKER] if docker else [])
            tools += [BASELINE] if args.baseline else []
            digests: dict[str, str] = {}
            for p in PLATFORMS[: max(args.ns)]:
                print(f"building {p} ...", file=sys.stderr)
                if p.startswith("freebsd/"):
                    linux = digests[p.replace("freebsd/", "linux/")]
                    digests[p] = with_os(registry, linux, "freebsd", arch_tag(p))
                    continue
                # Docker v2 schema 2: docker manifest (20.10) reads no OCI manifests.
                built = build_image(
                    p, f"{registry.address}/{REPOSITORY}:{arch_tag(p)}", manifest_format="docker"
                )
                digests[p] = built.digest
            startup = startup_floor(buildah, args.runs)
            sections = []
            with ReverseProxy(registry.address) as proxy:
                setup = Setup(
                    registry, proxy, buildah, docker, digests, tuple(tools), args.baseline
                )
                for n in args.ns:
                    unloaded: dict[str, Measurement] = {}
                    for latency in args.latencies:
                        print(
                            f"measuring N = {n}, latency {round(latency * 1000)} ms "
                            f"({args.runs} runs) ...",
                            file=sys.stderr,
                        )
                        results = measure(setup, n, latency, args.runs)
                        if not latency:
                            unloaded = results
                        sections.append(summarise(n, latency, results, unloaded))
            report = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "runs": args.runs,
                "latencies": args.latencies,
                "registry": registry.address,
                "baseline": str(args.baseline) if args.baseline else None,
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
