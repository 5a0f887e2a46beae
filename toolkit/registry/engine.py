"""The merge, with its I/O: read every source, plan (merge.py), then write — the index last.

Request budget for N same-repository image sources and T target tags: T HEADs of the targets,
N manifest GETs, N config GETs, T index PUTs (+ N*T child-tag PUTs with child tags on).
Everything is read and checked before the first write, so a bad source changes nothing.
Attestation manifests a source index lists are read too (one GET each, whatever repository
they are in) and must match their descriptor's size and media type: the index we write copies
those descriptors, so a wrong one would be published unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import digest as digests
from .client import FetchedManifest, RegistryClient
from .manifest import (
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
    platform_from_config,
)
from .merge import (
    AttestationMode,
    MergeError,
    MergePlan,
    ResolvedImage,
    ResolvedSource,
    SourceSpec,
    plan_merge,
)
from .reference import Reference, ReferenceError, parse_reference


@dataclass(frozen=True)
class MergeOptions:
    attestations: AttestationMode = "keep"
    child_tags: bool = True
    dry_run: bool = False


@dataclass
class MergeResult:
    plan: MergePlan
    dry_run: bool
    index_written: list[str] = field(default_factory=list)
    index_unchanged: list[str] = field(default_factory=list)
    child_tags_written: list[str] = field(default_factory=list)
    child_tags_unchanged: list[str] = field(default_factory=list)
    manifests_copied: list[str] = field(default_factory=list)
    blobs_mounted: int = 0
    registry_requests: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.index_written or self.child_tags_written or self.manifests_copied)

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "digest": plan.digest,
            "mediaType": plan.media_type,
            "targets": [str(t) for t in plan.targets],
            "platforms": [
                {"platform": str(c.platform), "digest": c.digest, "source": c.source.text}
                for c in plan.children
            ],
            "attestations": [
                {"digest": a.digest, "subject": a.annotations.get("vnd.docker.reference.digest")}
                for a in plan.attestations
            ],
            "dryRun": self.dry_run,
            "changed": self.changed,
            "indexWritten": self.index_written,
            "indexUnchanged": self.index_unchanged,
            "childTagsWritten": self.child_tags_written,
            "childTagsUnchanged": self.child_tags_unchanged,
            "manifestsCopied": self.manifests_copied,
            "blobsMounted": self.blobs_mounted,
            "registryRequests": self.registry_requests,
            "warnings": list(plan.warnings),
            "index": plan.index.decode(),
        }


def parse_targets(texts: Sequence[str]) -> list[Reference]:
    targets = []
    for text in texts:
        try:
            targets.append(parse_reference(text))
        except ReferenceError as exc:
            raise MergeError(f"target {text!r}: {exc}") from None
    if not targets:
        raise MergeError("no target given: pass --target REGISTRY/REPO:TAG")
    return targets


def _check_digests(parsed: ImageManifest | ImageIndex, where: str) -> None:
    """Every descriptor digest of a fetched manifest, validated (digest.py) before any of them
    is used in a URL path or copied into the index we write."""
    if isinstance(parsed, ImageIndex):
        named = [(f"manifests[{i}]", d) for i, d in enumerate(parsed.manifests)]
    else:
        named = [("config", parsed.config)]
        named += [(f"layers[{i}]", d) for i, d in enumerate(parsed.layers)]
    for name, descriptor in named:
        try:
            digests.validate(descriptor.digest, where=f"{where} {name}")
        except digests.DigestError as exc:
            raise MergeError(str(exc)) from None


def _check_against(descriptor: Descriptor, fetched: FetchedManifest, where: str) -> None:
    """The bytes a descriptor points at are what it says: its size and its media type."""
    if len(fetched.raw) != descriptor.size:
        raise MergeError(
            f"{where}: the descriptor says {descriptor.size} bytes, the manifest has "
            f"{len(fetched.raw)}"
        )
    if fetched.media_type != descriptor.media_type:
        raise MergeError(
            f"{where}: the descriptor says {descriptor.media_type}, the manifest is "
            f"{fetched.media_type}"
        )


def _read_image(
    client: RegistryClient,
    spec: SourceSpec,
    repository: str,
    digest: str,
    media_type: str,
    raw: bytes,
    manifest: ImageManifest,
    entry: Descriptor | None = None,
) -> ResolvedImage:
    where = f"source {spec.text!r} ({digest})"
    config = client.get_blob(repository, manifest.config.digest)
    return ResolvedImage(
        source=spec,
        repository=repository,
        digest=digest,
        media_type=media_type,
        size=len(raw),
        raw_manifest=raw,
        manifest=manifest,
        platform=platform_from_config(config, where=where),
        claimed_platform=entry.platform if entry else None,
        annotations=tuple(sorted(entry.annotations.items())) if entry else (),
    )


def resolve_source(client: RegistryClient, spec: SourceSpec) -> ResolvedSource:
    """Read a source's manifest (and each image's config); an index contributes its children."""
    repository = spec.reference.repository
    fetched = client.get_manifest(repository, spec.reference.reference)
    parsed = parse_manifest(fetched.raw, fetched.media_type, where=f"source {spec.text!r}")
    _check_digests(parsed, f"source {spec.text!r}")
    if isinstance(parsed, ImageManifest):
        image = _read_image(
            client, spec, repository, fetched.digest, fetched.media_type, fetched.raw, parsed
        )
        return ResolvedSource(spec, fetched.digest, fetched.media_type, (image,))
    assert isinstance(parsed, ImageIndex)
    images: list[ResolvedImage] = []
    attestations: list[Descriptor] = []
    ignored: list[Descriptor] = []
    for entry in parsed.manifests:
        if entry.is_attestation:
            attestations.append(entry)
        elif entry.platform is None or entry.platform.is_unknown:
            ignored.append(entry)
        elif entry.media_type in INDEX_TYPES:
            raise MergeError(f"source {spec.text!r}: nested index {entry.digest} is not supported")
        elif entry.media_type in IMAGE_MANIFEST_TYPES:
            child = client.get_manifest(repository, entry.digest)
            child_manifest = parse_manifest(
                child.raw, child.media_type, where=f"source {spec.text!r} child {entry.digest}"
            )
            if not isinstance(child_manifest, ImageManifest):
                raise MergeError(f"source {spec.text!r}: child {entry.digest} is not an image")
            _check_digests(child_manifest, f"source {spec.text!r} child {entry.digest}")
            _check_against(entry, child, f"source {spec.text!r} child {entry.digest}")
            images.append(
                _read_image(
                    client,
                    spec,
                    repository,
                    child.digest,
                    child.media_type,
                    child.raw,
                    child_manifest,
                    entry,
                )
            )
        else:
            ignored.append(entry)
    return ResolvedSource(
        spec, fetched.digest, fetched.media_type, tuple(images), tuple(attestations), tuple(ignored)
    )


def _copy_into(
    client: RegistryClient,
    target_repository: str,
    from_repository: str,
    digest: str,
    media_type: str,
    raw: bytes,
    manifest: ImageManifest,
    result: MergeResult,
) -> None:
    """Make a child manifest exist in the target repository: mount its blobs, PUT it by digest."""
    if client.head_manifest(target_repository, digest) == digest:
        return
    for blob in (manifest.config, *manifest.layers):
        client.mount_blob(target_repository, blob.digest, from_repository)
        result.blobs_mounted += 1
    client.put_manifest(target_repository, digest, raw, media_type)
    result.manifests_copied.append(digest)


@dataclass(frozen=True)
class _Attestation:
    repository: str
    fetched: FetchedManifest
    manifest: ImageManifest


def _read_attestations(
    client: RegistryClient, plan: MergePlan, sources: Sequence[ResolvedSource]
) -> list[_Attestation]:
    """Read every attestation the index will list, wherever it lives, and check it against
    its descriptor (size, media type, an image manifest with valid digests)."""
    spec_of = {a.digest: s.spec for s in sources for a in s.attestations}
    read: list[_Attestation] = []
    for attestation in plan.attestations:
        spec = spec_of[attestation.digest]
        where = f"source {spec.text!r} attestation {attestation.digest}"
        fetched = client.get_manifest(spec.reference.repository, attestation.digest)
        _check_against(attestation, fetched, where)
        parsed = parse_manifest(fetched.raw, fetched.media_type, where=where)
        if not isinstance(parsed, ImageManifest):
            raise MergeError(f"{where} is not an image manifest")
        _check_digests(parsed, where)
        read.append(_Attestation(spec.reference.repository, fetched, parsed))
    return read


def _bring_children_over(
    client: RegistryClient,
    plan: MergePlan,
    attestations: Sequence[_Attestation],
    result: MergeResult,
) -> None:
    target_repository = plan.targets[0].repository
    for child in plan.children:
        if child.repository != target_repository:
            _copy_into(
                client,
                target_repository,
                child.repository,
                child.digest,
                child.media_type,
                child.raw_manifest,
                child.manifest,
                result,
            )
    for attestation in attestations:
        if attestation.repository == target_repository:
            continue
        _copy_into(
            client,
            target_repository,
            attestation.repository,
            attestation.fetched.digest,
            attestation.fetched.media_type,
            attestation.fetched.raw,
            attestation.manifest,
            result,
        )


def merge_manifest(
    client: RegistryClient,
    targets: Sequence[Reference],
    sources: Sequence[SourceSpec],
    options: MergeOptions | None = None,
) -> MergeResult:
    """Merge `sources` into one index under every target tag; the index is written last."""
    options = options or MergeOptions()
    start = client.stats.registry
    for spec in sources:
        if spec.reference.registry != client.registry:
            raise MergeError(
                f"source {spec.text!r} is on {spec.reference.registry}, the target on "
                f"{client.registry}: sources must be in the target's registry"
            )
    resolved = [resolve_source(client, spec) for spec in sources]
    plan = plan_merge(
        targets, resolved, attestations=options.attestations, child_tags=options.child_tags
    )
    attestations = _read_attestations(client, plan, resolved)
    result = MergeResult(plan=plan, dry_run=options.dry_run)
    repository = plan.targets[0].repository
    current = {t.tag: client.head_manifest(repository, t.reference) for t in plan.targets}
    if not options.dry_run:
        _bring_children_over(client, plan, attestations, result)
    settled = {tag for tag, digest in current.items() if digest == plan.digest}
    for child_tag in plan.child_tags:
        # Only a re-run (the target already holds this index) pays a HEAD per child tag.
        if child_tag.target_tag in settled and (
            client.head_manifest(repository, child_tag.tag) == child_tag.digest
        ):
            result.child_tags_unchanged.append(child_tag.tag)
            continue
        if not options.dry_run:
            client.put_manifest(
                repository, child_tag.tag, child_tag.raw_manifest, child_tag.media_type
            )
        result.child_tags_written.append(child_tag.tag)
    for target in plan.targets:
        assert target.tag is not None
        if target.tag in settled:
            result.index_unchanged.append(target.tag)
            continue
        if not options.dry_run:
            client.put_manifest(repository, target.tag, plan.index, plan.media_type)
        result.index_written.append(target.tag)
    result.registry_requests = client.stats.registry - start
    return result
