"""The merge, with its I/O: read every source, plan (merge.py), then write as one transaction
(transaction.py, commit.py) — child tags first, the index last, rolled back on failure and read
back after.

Requests go out in rounds of parallel requests (parallel.py, at most `workers` at a time), so
a merge costs round trips of latency, not requests. For N same-repository image sources, T
targets and child tags on (C = N*T child tags):

  round 1  N manifest GETs
  round 2  N config GETs
  round 3  T target GETs + C child-tag HEADs (the snapshot a rollback restores)
  round 4  C child-tag PUTs
  round 5  T index PUTs
  round 6  T + C HEADs: the read-back that catches another writer

2N + 3 requests for one target without child tags, 5N + 3 with them (one read-back HEAD per
child tag: N more than a target-only read-back, which cannot see another writer's child tags).
An identical re-run stops after round 3: 3N + 1, nothing written. Index sources add a round
for their children's manifests; attestations they list are read (one GET each) in round 3 and
must match their descriptor's size and media type, since the index we write copies those
descriptors. Cross-repository children add a round of blob mounts and one of manifest PUTs by
digest before round 4. Everything is read and checked before the first write, so a bad
source changes nothing and copies nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from . import digest as digests
from .client import FetchedManifest, RegistryClient, RegistryError
from .commit import commit, snapshot_reads
from .manifest import (
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    ManifestError,
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
from .parallel import DEFAULT_WORKERS, ordered_map
from .reference import Reference, ReferenceError, parse_reference
from .transaction import TagState, plan_writes

T = TypeVar("T")


@dataclass(frozen=True)
class MergeOptions:
    attestations: AttestationMode = "keep"
    child_tags: bool = True
    dry_run: bool = False
    # Requests in flight at once (parallel.py); 1 sends them one after another.
    workers: int = DEFAULT_WORKERS


@dataclass
class MergeResult:
    plan: MergePlan
    dry_run: bool
    index_written: list[str] = field(default_factory=list)
    index_unchanged: list[str] = field(default_factory=list)
    child_tags_written: list[str] = field(default_factory=list)
    child_tags_unchanged: list[str] = field(default_factory=list)
    # Child tags another writer had moved after our PUT, put back by the read-back.
    child_tags_repaired: list[str] = field(default_factory=list)
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
            "childTagsRepaired": self.child_tags_repaired,
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


def _source_context(spec: SourceSpec) -> str:
    expected = f" (expected {spec.expected})" if spec.expected else ""
    return f"source {spec.text!r}{expected}"


def _for_source(spec: SourceSpec, read: Callable[[], T]) -> Callable[[], T]:
    """`read`, with a registry or content error re-raised (same type) naming the `--source`
    text and the platform expected from it: a 404 on a digest alone does not say which
    of a job's sources it was."""

    def run() -> T:
        try:
            return read()
        except (RegistryError, ManifestError) as exc:
            if str(exc).startswith(f"source {spec.text!r}"):
                raise
            message = f"{_source_context(spec)}: {exc}"
            try:
                renamed = type(exc)(message)
            except TypeError:  # an error type with another constructor: keep the family
                renamed = RegistryError(message) if isinstance(exc, RegistryError) else exc
            raise renamed from None

    return run


@dataclass(frozen=True)
class _Image:
    """An image found in a source, before its config is read."""

    spec: SourceSpec
    repository: str
    fetched: FetchedManifest
    manifest: ImageManifest
    entry: Descriptor | None = None


@dataclass
class _Source:
    spec: SourceSpec
    fetched: FetchedManifest
    images: list[_Image] = field(default_factory=list)
    pending: list[Descriptor] = field(default_factory=list)  # children still to read
    attestations: list[Descriptor] = field(default_factory=list)
    ignored: list[Descriptor] = field(default_factory=list)


def _run(thunks: Sequence[Callable[[], T]], workers: int) -> list[T]:
    return ordered_map(lambda thunk: thunk(), thunks, workers)


def _open_source(spec: SourceSpec, fetched: FetchedManifest) -> _Source:
    """Parse a source's manifest: an image, or an index whose children are read next round."""
    where = f"source {spec.text!r}"
    parsed = parse_manifest(fetched.raw, fetched.media_type, where=where)
    _check_digests(parsed, where)
    source = _Source(spec, fetched)
    if isinstance(parsed, ImageManifest):
        source.images.append(_Image(spec, spec.reference.repository, fetched, parsed))
        return source
    assert isinstance(parsed, ImageIndex)
    for entry in parsed.manifests:
        if entry.is_attestation:
            source.attestations.append(entry)
        elif entry.platform is None or entry.platform.is_unknown:
            source.ignored.append(entry)
        elif entry.media_type in INDEX_TYPES:
            raise MergeError(f"{where}: nested index {entry.digest} is not supported")
        elif entry.media_type in IMAGE_MANIFEST_TYPES:
            source.pending.append(entry)
        else:
            source.ignored.append(entry)
    return source


def _child_image(source: _Source, entry: Descriptor, child: FetchedManifest) -> _Image:
    where = f"source {source.spec.text!r} child {entry.digest}"
    parsed = parse_manifest(child.raw, child.media_type, where=where)
    if not isinstance(parsed, ImageManifest):
        raise MergeError(f"source {source.spec.text!r}: child {entry.digest} is not an image")
    _check_digests(parsed, where)
    _check_against(entry, child, where)
    return _Image(source.spec, source.spec.reference.repository, child, parsed, entry)


def _resolved(image: _Image, config: bytes) -> ResolvedImage:
    where = f"source {image.spec.text!r} ({image.fetched.digest})"
    entry = image.entry
    return ResolvedImage(
        source=image.spec,
        repository=image.repository,
        digest=image.fetched.digest,
        media_type=image.fetched.media_type,
        size=len(image.fetched.raw),
        raw_manifest=image.fetched.raw,
        manifest=image.manifest,
        platform=platform_from_config(config, where=where),
        claimed_platform=entry.platform if entry else None,
        annotations=tuple(sorted(entry.annotations.items())) if entry else (),
    )


def resolve_sources(
    client: RegistryClient, specs: Sequence[SourceSpec], workers: int = DEFAULT_WORKERS
) -> list[ResolvedSource]:
    """Read every source in rounds of parallel requests: their manifests, the children of index
    sources, then every image's config. An error names the first failing source in input
    order, whatever order the answers came in."""
    fetched = _run(
        [
            _for_source(
                s, partial(client.get_manifest, s.reference.repository, s.reference.reference)
            )
            for s in specs
        ],
        workers,
    )
    sources = [_open_source(spec, raw) for spec, raw in zip(specs, fetched, strict=True)]
    pending = [(source, entry) for source in sources for entry in source.pending]
    children = _run(
        [
            _for_source(
                source.spec,
                partial(client.get_manifest, source.spec.reference.repository, entry.digest),
            )
            for source, entry in pending
        ],
        workers,
    )
    for (source, entry), child in zip(pending, children, strict=True):
        source.images.append(_child_image(source, entry, child))
    images = [image for source in sources for image in source.images]
    configs = _run(
        [
            _for_source(
                image.spec,
                partial(client.get_blob, image.repository, image.manifest.config.digest),
            )
            for image in images
        ],
        workers,
    )
    resolved = iter(
        [_resolved(image, config) for image, config in zip(images, configs, strict=True)]
    )
    return [
        ResolvedSource(
            source.spec,
            source.fetched.digest,
            source.fetched.media_type,
            tuple(next(resolved) for _ in source.images),
            tuple(source.attestations),
            tuple(source.ignored),
        )
        for source in sources
    ]


def resolve_source(client: RegistryClient, spec: SourceSpec) -> ResolvedSource:
    """One source (its manifest, an index's children, each image's config)."""
    return resolve_sources(client, [spec], workers=1)[0]


@dataclass(frozen=True)
class _Copy:
    """A manifest (child or attestation) to bring into the target repository."""

    from_repository: str
    digest: str
    media_type: str
    raw: bytes
    manifest: ImageManifest


@dataclass
class _LastReads:
    tags: dict[str, TagState]
    attestations: list[FetchedManifest]
    copies: list[_Copy]


def _last_reads(
    client: RegistryClient,
    plan: MergePlan,
    sources: Sequence[ResolvedSource],
    workers: int,
) -> _LastReads:
    """One round, right before the first write: what every tag of the merge holds now (the
    snapshot), the attestations the index will list, and which children of other repositories
    the target repository lacks."""
    repository = plan.targets[0].repository
    snapshot = snapshot_reads(client, repository, plan)
    spec_of = {a.digest: s.spec for s in sources for a in s.attestations}
    attestation_reads = [
        _for_source(
            spec_of[a.digest],
            partial(client.get_manifest, spec_of[a.digest].reference.repository, a.digest),
        )
        for a in plan.attestations
    ]
    foreign = [c for c in plan.children if c.repository != repository]
    presence = [partial(client.head_manifest, repository, c.digest) for c in foreign]
    answers: list[Any] = _run([*snapshot, *attestation_reads, *presence], workers)
    tags = answers[: len(snapshot)]
    attestations = answers[len(snapshot) : len(snapshot) + len(attestation_reads)]
    present = answers[len(snapshot) + len(attestation_reads) :]
    copies = [
        _Copy(c.repository, c.digest, c.media_type, c.raw_manifest, c.manifest)
        for c, here in zip(foreign, present, strict=True)
        if here != c.digest
    ]
    checked = []
    for attestation, fetched in zip(plan.attestations, attestations, strict=True):
        spec = spec_of[attestation.digest]
        where = f"source {spec.text!r} attestation {attestation.digest}"
        _check_against(attestation, fetched, where)
        parsed = parse_manifest(fetched.raw, fetched.media_type, where=where)
        if not isinstance(parsed, ImageManifest):
            raise MergeError(f"{where} is not an image manifest")
        _check_digests(parsed, where)
        checked.append(fetched)
        if spec.reference.repository != repository:
            copies.append(
                _Copy(
                    spec.reference.repository,
                    fetched.digest,
                    fetched.media_type,
                    fetched.raw,
                    parsed,
                )
            )
    return _LastReads({state.tag: state for state in tags}, checked, copies)


def _bring_over(
    client: RegistryClient,
    repository: str,
    copies: Sequence[_Copy],
    result: MergeResult,
    workers: int,
) -> None:
    """Make manifests of other repositories exist in the target repository: mount their blobs
    (one round; no bytes pass through us), then PUT them by digest (one round)."""
    if not copies:
        return
    mounts = list(
        dict.fromkeys(
            (copy.from_repository, blob.digest)
            for copy in copies
            for blob in (copy.manifest.config, *copy.manifest.layers)
        )
    )
    ordered_map(lambda m: client.mount_blob(repository, m[1], m[0]), mounts, workers)
    result.blobs_mounted += len(mounts)
    ordered_map(
        lambda c: client.put_manifest(repository, c.digest, c.raw, c.media_type), copies, workers
    )
    result.manifests_copied.extend(c.digest for c in copies)


def merge_manifest(
    client: RegistryClient,
    targets: Sequence[Reference],
    sources: Sequence[SourceSpec],
    options: MergeOptions | None = None,
) -> MergeResult:
    """Merge `sources` into one index under every target tag, as one transaction."""
    options = options or MergeOptions()
    workers = max(1, options.workers)
    start = client.stats.registry
    for spec in sources:
        if spec.reference.registry != client.registry:
            raise MergeError(
                f"source {spec.text!r} is on {spec.reference.registry}, the target on "
                f"{client.registry}: sources must be in the target's registry"
            )
    resolved = resolve_sources(client, sources, workers)
    plan = plan_merge(
        targets, resolved, attestations=options.attestations, child_tags=options.child_tags
    )
    repository = plan.targets[0].repository
    reads = _last_reads(client, plan, resolved, workers)
    writes = plan_writes(plan, reads.tags)
    plan = replace(plan, warnings=plan.warnings + writes.warnings)
    result = MergeResult(
        plan=plan,
        dry_run=options.dry_run,
        index_unchanged=list(writes.unchanged_indexes),
        child_tags_unchanged=list(writes.unchanged_children),
    )
    if not options.dry_run:
        # Nothing is copied before every source, attestation and tag has been read.
        _bring_over(client, repository, reads.copies, result, workers)
        committed = commit(client, repository, writes, reads.tags, workers)
        result.child_tags_repaired = list(committed.repaired)
        if committed.repaired:
            moved = ", ".join(
                f"{t} (to {was or 'nothing'})" for t, was in committed.repaired.items()
            )
            note = (
                f"another writer moved child tags after this merge wrote them: {moved}; they "
                "were put back to this merge's children, which the target's index lists"
            )
            result.plan = replace(plan, warnings=(*plan.warnings, note))
    result.index_written = [w.tag for w in writes.indexes]
    result.child_tags_written = [w.tag for w in writes.children]
    result.registry_requests = client.stats.registry - start
    return result
