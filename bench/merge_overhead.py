"""Benchmark: what a merge job costs from its start to the index written, with the archfleet
tool image against a runtime `pip install`, and against the merge alone.

Run as `python bench/merge_overhead.py [--runs 5] [--storage-driver vfs|overlay2] [--json]`.
Needs root and what scripts/bootstrap installs (docker.io, docker-registry, buildah, debootstrap,
qemu-user-static); the first run builds the cached Python bases (minutes, see
toolkit/lab/tool_image.py).

A benchmark, not a test: it prints figures, ratios and the goal beside them, and exits 0
whatever the times are (non-zero only when something could not run at all).

One registry (Debian's docker-registry on loopback), one private Docker engine
(toolkit/lab/docker_engine.py), the same two per-arch app images (busybox, linux/amd64 and
linux/arm64, built by buildah) merged by every variant into a fresh tag per run:

  image      `docker run <tool image> archfleet merge-manifest …` — the component's default;
  pip        `docker run <python base> sh -c 'python3 -m venv /v && /v/bin/pip install
             --index-url http://127.0.0.151:PORT/simple/ archfleet==V && /v/bin/archfleet
             merge-manifest …'` — the runtime install the tool image replaces. The index is a
             LOCAL PEP 503 index on loopback serving the same wheels, a STAND-IN for the public
             package index: no internet latency, bandwidth or TLS, so this is a lower bound of
             what a job pays that installs from the public index;
  in-process the merge itself (toolkit.registry.engine.merge_manifest) called in this process:
             no container, no interpreter start-up, no imports.

Also timed, to split the overhead: `docker run <tool image> true` (a container's start and
removal, nothing else) and `docker run <tool image> python3 -m toolkit.registry merge-manifest`
(the argparse entry, without Invoke). The python base is the one the tool image is built
FROM (Debian bookworm's python3 3.11), so both containers start from the same files, and a
first pull costs both about the same (the tool image is the base plus a 2 MB layer). Both images
are in the engine before timing starts, as on a runner host that ran such a job before.

Every variant runs `--runs` times, round-robin; figures are medians (min and max beside). A run
is timed from `docker run` to the container's exit (the index is written just before); removing
the container afterwards is not timed, as a runner does it after the job.
Each run must have PUT its index (201, from the registry's access log), or the benchmark stops.
Container start-up depends on the engine's storage driver: vfs (the lab recipe; every new
container copies its image's whole filesystem) or overlay2 (what a runner host uses; needs
overlay mounts), so the driver is printed with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python bench/merge_overhead.py` puts bench/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.wheel import build_wheel  # noqa: E402
from toolkit.lab.docker_engine import (  # noqa: E402
    DEFAULT_STORAGE_DRIVER,
    STORAGE_DRIVERS,
    DockerEngine,
    cached_docker_engine,
)
from toolkit.lab.images import build_image  # noqa: E402
from toolkit.lab.registry import LocalRegistry, RequestRecord, start_registry  # noqa: E402
from toolkit.lab.tool_image import (  # noqa: E402
    ToolImage,
    build_tool_image,
    lock_wheels,
    requirements_path,
    sha256_file,
)
from toolkit.registry.client import RegistryClient  # noqa: E402
from toolkit.registry.engine import MergeOptions, merge_manifest  # noqa: E402
from toolkit.registry.merge import SourceSpec  # noqa: E402
from toolkit.registry.reference import parse_reference  # noqa: E402

PLATFORMS = ("linux/amd64", "linux/arm64")
REPOSITORY = "bench/overhead"
# The package index's loopback address: one of this benchmark's reserved 127.0.0.15x.
INDEX_HOST = "127.0.0.151"
GOAL_SECONDS = 1.0
_TAIL_LINES = 15

IMAGE = "image: archfleet merge-manifest"
IMAGE_LEAN = "image: python3 -m toolkit.registry"
PIP = "pip install at job time"
IN_PROCESS = "in-process merge"
CONTAINER = "container only (true)"
VARIANTS = (IMAGE, IMAGE_LEAN, PIP, IN_PROCESS, CONTAINER)
WRITES = (IMAGE, IMAGE_LEAN, PIP, IN_PROCESS)


class BenchError(RuntimeError):
    """Something could not run or did not do its job; the figures would mean nothing."""


@dataclass
class Measurement:
    variant: str
    wall: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "wallSeconds": [round(s, 4) for s in self.wall],
            "wallMin": round(min(self.wall), 4),
            "wallMedian": round(self.median, 4),
            "wallMax": round(max(self.wall), 4),
        }


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run one whole process: its wall time and stdout. A failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(list(command), capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-_TAIL_LINES:])
        shown = " ".join(shlex.quote(word) for word in command)
        raise BenchError(f"`{shown}` failed with status {done.returncode}:\n{tail}")
    return elapsed, done.stdout


# ---------------------------------------------------------------- the local package index


@contextlib.contextmanager
def package_index(directory: Path, wheels: Sequence[Path]) -> Iterator[str]:
    """A PEP 503 "simple" index of `wheels` on INDEX_HOST, served by `python -m http.server`
    (stopped by pid on the way out); yields its /simple/ URL. Each link carries the file's
    sha256 as PEP 503 allows, which pip checks."""
    files = directory / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        (files / wheel.name).write_bytes(wheel.read_bytes())
        project = wheel.name.split("-", 1)[0].replace("_", "-").lower()
        projects.setdefault(project, []).append(wheel)
    simple = directory / "simple"
    for project, owned in projects.items():
        links = "".join(
            f'<a href="../../files/{html.escape(w.name)}#sha256={sha256_file(w)}">'
            f"{html.escape(w.name)}</a><br>\n"
            for w in owned
        )
        (simple / project).mkdir(parents=True)
        (simple / project / "index.html").write_text(
            f"<!DOCTYPE html><html><body>\n{links}</body></html>\n", encoding="utf-8"
        )
    root_links = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in projects)
    (simple / "index.html").write_text(f"<html><body>\n{root_links}</body></html>\n")
    port = _free_port(INDEX_HOST)
    log = (directory / "http.log").open("wb")
    serve = ["http.server", "--bind", INDEX_HOST, "--directory", str(directory), str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", *serve],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_port(INDEX_HOST, port, server)
        yield f"http://{INDEX_HOST}:{port}/simple/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        log.close()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(host: str, port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the package index server exited ({server.returncode})")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise BenchError(f"the package index on {host}:{port} did not answer")


# ------------------------------------------------------------------------------ the runs


@dataclass(frozen=True)
class Setup:
    engine: DockerEngine
    registry: LocalRegistry
    image: ToolImage
    digests: dict[str, str]
    index_url: str

    @property
    def tool_ref(self) -> str:
        return self.image.tag_ref

    @property
    def base_ref(self) -> str:
        return self.image.base_image

    def merge_args(self, tag: str) -> list[str]:
        target = f"{self.registry.address}/{REPOSITORY}:{tag}"
        args = ["merge-manifest", "--insecure", "--target", target]
        for p, digest in self.digests.items():
            args += ["--source", f"{p}=@{digest}"]
        return args

    def docker_run(self, image: str, *command: str) -> list[str]:
        # Host networking: the only way a container reaches loopback servers here (no bridge).
        # No --rm: removal is after the job, not part of it (see the module docstring).
        docker = ["/usr/bin/docker", "run", "--name", CONTAINER_NAME, "--network", "host"]
        return [*docker, image, *command]


CONTAINER_NAME = "archfleet-bench-overhead"


def run_variant(setup: Setup, variant: str, tag: str) -> float:
    """One timed run; its container (if any) is removed afterwards, untimed."""
    try:
        return _run_variant(setup, variant, tag)
    finally:
        if variant != IN_PROCESS:
            subprocess.run(
                ["/usr/bin/docker", "rm", "--force", CONTAINER_NAME],
                env=setup.engine.env(),
                capture_output=True,
                check=False,
            )


def _run_variant(setup: Setup, variant: str, tag: str) -> float:
    env = setup.engine.env()
    if variant == IMAGE:
        command = setup.docker_run(setup.tool_ref, "archfleet", *setup.merge_args(tag))
        return timed(command, env)[0]
    if variant == IMAGE_LEAN:
        lean = ["python3", "-m", "toolkit.registry", *setup.merge_args(tag)]
        return timed(setup.docker_run(setup.tool_ref, *lean), env)[0]
    if variant == CONTAINER:
        return timed(setup.docker_run(setup.tool_ref, "true"), env)[0]
    if variant == PIP:
        merge = " ".join(shlex.quote(word) for word in setup.merge_args(tag))
        script = (
            "python3 -m venv /v && /v/bin/pip install --quiet --index-url "
            f"{shlex.quote(setup.index_url)} archfleet=={shlex.quote(setup.image.version)} "
            f"&& /v/bin/archfleet {merge}"
        )
        return timed(setup.docker_run(setup.base_ref, "sh", "-c", script), env)[0]
    assert variant == IN_PROCESS
    target = parse_reference(f"{setup.registry.address}/{REPOSITORY}:{tag}")
    start = time.perf_counter()
    client = RegistryClient(setup.registry.address, insecure=True, use_env_credentials=False)
    specs = [SourceSpec.parse(f"{p}=@{d}", target=target) for p, d in setup.digests.items()]
    merge_manifest(client, [target], specs, MergeOptions())
    return time.perf_counter() - start


def wrote_index(records: Sequence[RequestRecord], tag: str) -> bool:
    path = f"/v2/{REPOSITORY}/manifests/{tag}"
    return any(r.method == "PUT" and r.path == path and r.status == 201 for r in records)


def measure(
    setup: Setup, runs: int, say: Callable[[str], None], label: str
) -> dict[str, Measurement]:
    results = {variant: Measurement(variant) for variant in VARIANTS}
    # Round-robin, so drift in the machine's load spreads over every variant alike.
    for i in range(runs):
        say(f"run {i + 1}/{runs}")
        for number, variant in enumerate(VARIANTS):
            tag = f"{label}-v{number}-run{i}"  # fresh per run: every run really writes
            mark = setup.registry.mark()
            seconds = run_variant(setup, variant, tag)
            if variant in WRITES and not wrote_index(setup.registry.requests_since(mark), tag):
                raise BenchError(f"{variant}: run {i} did not PUT the index {tag} (201)")
            results[variant].wall.append(seconds)
    return results


def startup(setup: Setup, runs: int) -> dict[str, dict[str, float]]:
    """Per platform (arm64 under QEMU here): `docker run … archfleet merge-manifest --help`
    as a whole, and the same command timed inside one container (the Python process alone)."""
    probe = (
        "import statistics, subprocess, sys, time\n"
        "def wall(cmd):\n"
        "    t = time.perf_counter(); subprocess.run(cmd, check=True, capture_output=True)\n"
        "    return time.perf_counter() - t\n"
        f"n = {runs}\n"
        "a = statistics.median(wall(['archfleet', 'merge-manifest', '--help']) for _ in range(n))\n"
        "b = statistics.median(wall(['python3', '-m', 'toolkit.registry', 'merge-manifest',"
        " '--help']) for _ in range(n))\n"
        "c = statistics.median(wall(['python3', '-c', 'pass']) for _ in range(n))\n"
        "print(a, b, c)\n"
    )
    env = setup.engine.env()
    figures = {}
    for p in PLATFORMS:
        docker = ["/usr/bin/docker", "run", "--rm", "--network", "none", "--platform", p]
        help_run = [*docker, setup.tool_ref, "archfleet", "merge-manifest", "--help"]
        whole = statistics.median(timed(help_run, env)[0] for _ in range(runs))
        out = timed([*docker, setup.tool_ref, "python3", "-c", probe], env)[1].split()
        figures[p] = {
            "dockerRunArchfleetHelp": round(whole, 3),
            "processArchfleetHelp": round(float(out[0]), 3),
            "processLeanEntryHelp": round(float(out[1]), 3),
            "processPythonPass": round(float(out[2]), 3),
        }
    return figures


# -------------------------------------------------------------------------- the report


def machine(engine: DockerEngine) -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = json.loads(timed(["/usr/bin/docker", "info", "--format", "{{json .}}"], engine.env())[1])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "docker": f"{info.get('ServerVersion')} ({info.get('Driver')} storage)",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def summarise(results: dict[str, Measurement]) -> dict[str, Any]:
    image, pip, inproc = results[IMAGE].median, results[PIP].median, results[IN_PROCESS].median
    container = results[CONTAINER].median
    overhead = image - inproc
    return {
        "results": [m.to_json() for m in results.values()],
        "ratios": {
            "imageOverInProcess": round(image / inproc, 2),
            "pipOverInProcess": round(pip / inproc, 2),
            "pipOverImage": round(pip / image, 2),
            "leanOverImage": round(results[IMAGE_LEAN].median / image, 2),
        },
        "overheadSeconds": {
            "image": round(overhead, 3),
            "leanImage": round(results[IMAGE_LEAN].median - inproc, 3),
            "pip": round(pip - inproc, 3),
            "containerOnly": round(container, 3),
            "imageBeyondContainer": round(image - container - inproc, 3),
            "pipInstallBeyondImage": round(pip - image, 3),
        },
        "goal": {
            "label": "tool image: overhead beyond the merge itself",
            "goal": f"<= {GOAL_SECONDS:.1f} s",
            "measured": f"{overhead:.2f} s",
            "met": overhead <= GOAL_SECONDS,
        },
    }


def print_text(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"archfleet merge-job overhead benchmark, {report['date']}")
    print(f"machine:  nproc {m['nproc']}, {m['cpu']}, {m['kernel']}, load {m['load']}")
    print(f"          Python {m['python']}; Docker engine {m['docker']}")
    print(f"registry: docker-registry on loopback, {report['registry']}")
    print(f"images:   tool {report['toolImage']}")
    print(f"          base {report['baseImage']}")
    sizes = ", ".join(
        f"{p} {s['layerBytes'] / 1e6:.1f} MB" for p, s in report["toolImageSizes"].items()
    )
    print(f"size:     tool image, compressed layers per arch: {sizes}")
    print(
        f"index:    a LOCAL PEP 503 index on {INDEX_HOST} standing in for the public package "
        "index (no internet latency, bandwidth or TLS: a lower bound for `pip install`)"
    )
    print(f"merge:    {len(PLATFORMS)} arches ({', '.join(PLATFORMS)}), child tags on, fresh tag")
    print(f"runs:     {report['runs']} per variant, round-robin; wall = whole `docker run`")
    print()
    print(f"  {'variant':<36} {'wall min':>8} {'median':>8} {'max':>8}")
    for r in report["summary"]["results"]:
        print(
            f"  {r['variant']:<36} {r['wallMin']:>7.3f}s {r['wallMedian']:>7.3f}s "
            f"{r['wallMax']:>7.3f}s"
        )
    ratios, over = report["summary"]["ratios"], report["summary"]["overheadSeconds"]
    print()
    print(
        f"  ratios (median wall): image/in-process {ratios['imageOverInProcess']:.2f}, "
        f"pip/in-process {ratios['pipOverInProcess']:.2f}, pip/image {ratios['pipOverImage']:.2f}"
        f", lean entry/image {ratios['leanOverImage']:.2f}"
    )
    print(
        f"  overhead beyond the merge: image {over['image']:.2f} s (container start "
        f"{over['containerOnly']:.2f} s + archfleet start-up {over['imageBeyondContainer']:.2f} s)"
        f", lean entry {over['leanImage']:.2f} s, pip install {over['pip']:.2f} s "
        f"({over['pipInstallBeyondImage']:.2f} s more than the image)"
    )
    goal = report["summary"]["goal"]
    verdict = "met" if goal["met"] else "NOT met"
    print(f"  goal: {goal['label']} {goal['goal']}: measured {goal['measured']}: {verdict}")
    print()
    print("start-up of `archfleet merge-manifest --help` in the tool image (median):")
    for p, s in report["startup"].items():
        emulated = " (QEMU user emulation: no arm64 CPU here)" if p.endswith("arm64") else ""
        print(
            f"  {p}{emulated}: docker run {s['dockerRunArchfleetHelp']:.3f}s; process alone "
            f"{s['processArchfleetHelp']:.3f}s (python3 -m toolkit.registry "
            f"{s['processLeanEntryHelp']:.3f}s, python3 -c pass {s['processPythonPass']:.3f}s)"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per variant (default 5)")
    parser.add_argument(
        "--storage-driver",
        choices=STORAGE_DRIVERS,
        default=DEFAULT_STORAGE_DRIVER,
        help="the engine's storage driver (default vfs, the lab recipe; overlay2 as on a runner)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM would otherwise skip the `finally`s that stop the registry, engine and index.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="af-overhead-")))
            source_date = subprocess.run(
                ["git", "log", "-1", "--format=%ct"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            # Same sources, same wheel bytes: an unchanged tool image is a BuildKit cache hit.
            os.environ["SOURCE_DATE_EPOCH"] = source_date or "315532800"
            wheel = build_wheel(tmp / "wheel")
            registry = stack.enter_context(start_registry(tmp / "registry"))
            engine = stack.enter_context(
                # Its own cached engine per driver (the data root's name carries the driver).
                cached_docker_engine("bench-overhead", storage_driver=args.storage_driver)
            )
            say("building the tool image (cached after the first run) ...")
            image = build_tool_image(engine, registry.address, wheel, tmp, progress=say)
            digests = {}
            for p in PLATFORMS:
                say(f"building the {p} app image (buildah) ...")
                ref = f"{registry.address}/{REPOSITORY}:{p.replace('/', '-')}"
                digests[p] = build_image(p, ref, manifest_format="docker").digest
            wheels = [wheel, *sorted(lock_wheels(requirements_path()).glob("*.whl"))]
            index_url = stack.enter_context(package_index(tmp / "index", wheels))
            setup = Setup(engine, registry, image, digests, index_url)
            for ref in (setup.tool_ref, setup.base_ref):
                timed(["/usr/bin/docker", "pull", "--quiet", ref], engine.env())
            # One untimed round of every variant: caches warm, and each variant proven to work.
            say("warming up ...")
            measure(setup, 1, lambda _message: None, "warm-up")
            results = measure(setup, args.runs, say, "timed")
            say("start-up in the tool image ...")
            started = startup(setup, args.runs)
            report = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(engine),
                "runs": args.runs,
                "registry": registry.address,
                "toolImage": f"{image.tag_ref}@{image.index_digest}",
                "baseImage": image.base_image,
                "toolImageSizes": {
                    c.platform: {"layerBytes": c.layer_bytes, "configBytes": c.config_bytes}
                    for c in image.children
                },
                "wheelSha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
                "indexUrl": index_url,
                "summary": summarise(results),
                "startup": started,
            }
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
