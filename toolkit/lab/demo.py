"""The demo's story on one machine: per-arch builds pushed by digest, one merge, a verify, and
skopeo as an amd64 and an arm64 client. No printing here: steps report through `progress`.

On one x86 machine the arm64 build runs under QEMU; on a fleet each arch builds natively on its
own runner (provision-runners), and everything from "push by digest" on is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..registry.client import RegistryClient
from ..registry.engine import MergeOptions, MergeResult, merge_manifest
from ..registry.manifest import Platform
from ..registry.merge import SourceSpec
from ..registry.reference import parse_reference
from ..registry.verify import VerifyReport, verify_manifest
from .images import build_image
from .registry import LocalRegistry, start_registry
from .skopeo import inspect_command, resolved_digest

DEMO_PLATFORMS = ("linux/amd64", "linux/arm64")
DEMO_REPOSITORY = "archfleet/demo"
DEMO_TAG = "1.0.0"

Progress = Callable[[str], None]


@dataclass
class ArchBuild:
    platform: str
    digest: str
    seconds: float


@dataclass
class ClientCheck:
    platform: str
    expected: str
    resolved: str
    command: str

    @property
    def ok(self) -> bool:
        return self.expected == self.resolved


@dataclass
class DemoReport:
    registry: str
    target: str
    builds: list[ArchBuild] = field(default_factory=list)
    merge: MergeResult | None = None
    merge_requests: int = 0
    verify: VerifyReport | None = None
    clients: list[ClientCheck] = field(default_factory=list)
    kept: bool = False

    @property
    def ok(self) -> bool:
        return bool(
            self.merge
            and self.verify
            and self.verify.ok
            and self.clients
            and all(c.ok for c in self.clients)
        )


def run_demo(workdir: Path, progress: Progress, *, keep: bool = False) -> DemoReport:
    registry = start_registry(workdir / "registry")
    try:
        progress(f"registry (Debian's docker-registry) on {registry.address}, pid {registry.pid}")
        report = _story(registry, progress)
        report.kept = keep
        return report
    finally:
        if not keep:
            registry.stop()
            progress(f"registry stopped (pid {registry.pid})")


def _story(registry: LocalRegistry, progress: Progress) -> DemoReport:
    repository = f"{registry.address}/{DEMO_REPOSITORY}"
    target = f"{repository}:{DEMO_TAG}"
    report = DemoReport(registry=registry.address, target=target)
    for platform in DEMO_PLATFORMS:
        progress(f"building {platform} with buildah (RUN step executes {platform} code)")
        started = time.perf_counter()
        # Pushed under a scratch tag per arch: the digest is what the merge uses.
        built = build_image(
            platform, f"{repository}:build-{Platform.parse(platform).tag_suffix}", run_step=True
        )
        report.builds.append(ArchBuild(platform, built.digest, time.perf_counter() - started))
        progress(f"  pushed {platform} as {built.digest}")

    client = RegistryClient(registry.address, insecure=True, use_env_credentials=False)
    target_ref = parse_reference(target)
    sources = [
        SourceSpec.parse(f"{b.platform}=@{b.digest}", target=target_ref) for b in report.builds
    ]
    progress(f"merging {len(sources)} digests into {target}")
    mark = registry.mark()
    report.merge = merge_manifest(client, [target_ref], sources, MergeOptions())
    report.merge_requests = len(registry.requests_since(mark))
    progress(f"  index {report.merge.plan.digest} ({report.merge_requests} registry requests)")

    progress("verifying: platforms, configs, and each entrypoint's ELF machine")
    report.verify = verify_manifest(
        client, target_ref, [Platform.parse(p) for p in DEMO_PLATFORMS], check_binaries=True
    )
    for build in report.builds:
        resolved = resolved_digest(target, build.platform)
        report.clients.append(
            ClientCheck(
                build.platform, build.digest, resolved, inspect_command(target, build.platform)
            )
        )
        progress(f"  skopeo as a {build.platform} client gets {resolved}")
    return report
