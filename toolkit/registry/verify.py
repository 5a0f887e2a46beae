"""Verify a published tag: an index holding each required platform, no platform twice (as
containerd normalises platforms), every entry's descriptor true to the bytes the registry serves,
each child really its platform — by its config and, with `check_binaries`, by the ELF machine of
its entrypoint."""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .binaries import BinaryCheckError, architecture_matches, inspect_entrypoint
from .client import FetchedManifest, RegistryClient, RegistryError
from .manifest import (
    REFERENCE_DIGEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    ManifestError,
    Platform,
    compute_digest,
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
    """Pure: each required platform present; NO platform twice, required or not (a client picks
    one of two and the other is dead weight or worse); attestations describe a present child.

    Platforms are containerd-normalised (manifest.Platform), so `--platforms linux/arm` finds an
    arm/v7 child, and arm + arm/v7 children count as one platform twice.
    """
    problems: list[str] = []
    children = [e for e in entries if _is_platform_entry(e)]
    platforms = [e.platform for e in children]
    counts = Counter(platforms)
    for platform, count in sorted((p, n) for p, n in counts.items() if p is not None and n > 1):
        which = ", ".join(e.digest for e in children if e.platform == platform)
        problems.append(
            f"platform {platform} appears {count} times ({which}); containerd normalises "
            "arm to arm/v7 and arm64/v8 to arm64, so these are one platform to every client"
        )
    for platform in dict.fromkeys(required):
        if counts[platform] == 0:
            present = ", ".join(str(p) for p in platforms if p) or "none"
            problem = f"platform {platform} is missing (present: {present})"
            fallback = next((p for p in platform.compatible() if counts[p]), None)
            if fallback is not None:
                problem += f"; a {platform} client would fall back to the {fallback} image"
            problems.append(problem)
    digests = {e.digest for e in children}
    for entry in entries:
        if entry.is_attestation and entry.annotations.get(REFERENCE_DIGEST) not in digests:
            subject = entry.annotations.get(REFERENCE_DIGEST)
            problems.append(
                f"attestation {entry.digest} refers to {subject}, which is not in the index"
            )
    return problems


def check_descriptor(entry: Descriptor, fetched: FetchedManifest) -> list[str]:
    """Pure: the index's descriptor against the bytes the registry served for it: size, digest
    (recomputed here with the descriptor's own algorithm) and media type (image-spec
    descriptor.md: a descriptor's size and digest MUST match the content; a client that trusts a
    wrong size rejects the pull)."""
    problems: list[str] = []
    if entry.size != len(fetched.raw):
        problems.append(
            f"descriptor size {entry.size} but the manifest is {len(fetched.raw)} bytes"
        )
    algorithm = entry.digest.partition(":")[0]
    try:
        actual = compute_digest(fetched.raw, algorithm)
    except ManifestError as exc:
        problems.append(f"descriptor digest {entry.digest}: {exc}")
    else:
        if actual != entry.digest:
            problems.append(f"descriptor digest {entry.digest} but the content is {actual}")
    if entry.media_type != fetched.media_type:
        problems.append(
            f"descriptor media type {entry.media_type} but the manifest is {fetched.media_type}"
        )
    return problems


# image-spec descriptor.md: the registered algorithms sha256 and sha512, lower-case hex.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


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
            # Attestations and other entries: their descriptors must be true too.
            report.problems += [
                f"entry {entry.digest}: {p}" for p in _fetch_and_check(client, repository, entry)[1]
            ]
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
    fetched, problems = _fetch_and_check(client, repository, entry)
    child.problems += problems
    if fetched is None:
        return
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


def _fetch_and_check(
    client: RegistryClient, repository: str, entry: Descriptor
) -> tuple[FetchedManifest | None, list[str]]:
    """GET the entry's manifest by digest and compare its descriptor with the bytes. A digest
    that is not `sha256:<64 hex>` / `sha512:<128 hex>` never goes into a URL path."""
    if not _DIGEST.fullmatch(entry.digest):
        return None, [f"descriptor digest {entry.digest!r} is not a sha256/sha512 digest"]
    try:
        fetched = client.get_manifest(repository, entry.digest)
    except (RegistryError, ManifestError) as exc:
        return None, [f"cannot be read: {exc}"]
    return fetched, check_descriptor(entry, fetched)


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
