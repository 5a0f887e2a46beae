"""Verify a published tag: an index holding each required platform once, each child really that
platform — by its config and, with `check_binaries`, by the ELF machine of its entrypoint."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .binaries import BinaryCheckError, architecture_matches, inspect_entrypoint
from .client import RegistryClient
from .manifest import (
    REFERENCE_DIGEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    ManifestError,
    Platform,
    parse_manifest,
    platform_from_config,
)
from .reference import Reference


@dataclass
class ChildReport:
    digest: str
    claimed: Platform
    config_platform: Platform | None = None
    binary: str | None = None
    binary_architecture: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "platform": str(self.claimed),
            "configPlatform": str(self.config_platform) if self.config_platform else None,
            "binary": self.binary,
            "binaryArchitecture": self.binary_architecture,
            "problems": self.problems,
        }


@dataclass
class VerifyReport:
    target: str
    digest: str = ""
    media_type: str = ""
    children: list[ChildReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    registry_requests: int = 0

    @property
    def all_problems(self) -> list[str]:
        return self.problems + [
            f"{c.claimed} ({c.digest}): {p}" for c in self.children for p in c.problems
        ]

    @property
    def ok(self) -> bool:
        return not self.all_problems

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "digest": self.digest,
            "mediaType": self.media_type,
            "ok": self.ok,
            "platforms": [c.to_json() for c in self.children],
            "problems": self.all_problems,
            "registryRequests": self.registry_requests,
        }


def check_platform_counts(entries: Sequence[Descriptor], required: Sequence[Platform]) -> list[str]:
    """Pure: each required platform exactly once; attestations must describe a present child."""
    problems: list[str] = []
    platforms = [e.platform for e in entries if _is_platform_entry(e)]
    counts = Counter(platforms)
    for platform in required:
        if counts[platform] == 0:
            present = ", ".join(str(p) for p in platforms if p) or "none"
            problems.append(f"platform {platform} is missing (present: {present})")
        elif counts[platform] > 1:
            problems.append(f"platform {platform} appears {counts[platform]} times")
    digests = {e.digest for e in entries if _is_platform_entry(e)}
    for entry in entries:
        if entry.is_attestation and entry.annotations.get(REFERENCE_DIGEST) not in digests:
            subject = entry.annotations.get(REFERENCE_DIGEST)
            problems.append(
                f"attestation {entry.digest} refers to {subject}, which is not in the index"
            )
    return problems


def _is_platform_entry(entry: Descriptor) -> bool:
    return not entry.is_attestation and entry.platform is not None and not entry.platform.is_unknown


def verify_manifest(
    client: RegistryClient,
    target: Reference,
    required: Sequence[Platform],
    *,
    check_binaries: bool = False,
) -> VerifyReport:
    start = client.stats.registry
    report = VerifyReport(target=str(target))
    repository = target.repository
    fetched = client.get_manifest(repository, target.reference)
    report.digest, report.media_type = fetched.digest, fetched.media_type
    parsed = parse_manifest(fetched.raw, fetched.media_type, where=str(target))
    if not isinstance(parsed, ImageIndex):
        report.problems.append(
            f"{target} is a single image ({fetched.media_type}), not an index: "
            "clients on other platforms cannot pull it"
        )
        report.registry_requests = client.stats.registry - start
        return report
    report.problems += check_platform_counts(parsed.manifests, required)
    for entry in parsed.manifests:
        if not _is_platform_entry(entry):
            continue
        assert entry.platform is not None
        child = ChildReport(entry.digest, entry.platform)
        report.children.append(child)
        _check_child(client, repository, entry, child, check_binaries)
    report.registry_requests = client.stats.registry - start
    return report


def _check_child(
    client: RegistryClient,
    repository: str,
    entry: Descriptor,
    child: ChildReport,
    check_binaries: bool,
) -> None:
    fetched = client.get_manifest(repository, entry.digest)
    try:
        manifest = parse_manifest(fetched.raw, fetched.media_type, where=entry.digest)
        if not isinstance(manifest, ImageManifest):
            child.problems.append("child is an index, not an image")
            return
        config_raw = client.get_blob(repository, manifest.config.digest)
        child.config_platform = platform_from_config(config_raw, where=entry.digest)
    except ManifestError as exc:
        child.problems.append(str(exc))
        return
    if child.config_platform != entry.platform:
        child.problems.append(
            f"the index says {entry.platform} but the image config says {child.config_platform}"
        )
    if check_binaries:
        _check_binary(client, repository, manifest, config_raw, child)


def _check_binary(
    client: RegistryClient,
    repository: str,
    manifest: ImageManifest,
    config_raw: bytes,
    child: ChildReport,
) -> None:
    config = json.loads(config_raw)
    with tempfile.TemporaryDirectory(prefix="archfleet-layers-") as tmp:
        layers: list[tuple[Path, str]] = []
        for number, layer in enumerate(manifest.layers):
            path = Path(tmp) / f"layer-{number}"
            client.download_blob(repository, layer.digest, path)
            layers.append((path, layer.media_type))
        try:
            finding = inspect_entrypoint(config, layers)
        except BinaryCheckError as exc:
            child.problems.append(f"binary check: {exc}")
            return
    child.binary = finding.resolved_path
    child.binary_architecture = finding.architecture
    if not architecture_matches(finding, child.claimed.architecture):
        child.problems.append(
            f"its entrypoint {finding.path} (-> {finding.resolved_path}) is an "
            f"{finding.architecture} binary, not {child.claimed.architecture}: it would fail "
            "with 'exec format error'"
        )
