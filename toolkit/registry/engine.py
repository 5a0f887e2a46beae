"""The merge, with its I/O: read every source, plan (merge.py), then write as one transaction
(transaction.py, commit.py) — the index first, then the child tags, rolled back on failure and
the targets read back after.

Requests go out in rounds of parallel requests (parallel.py, at most `workers` at a time), so
a merge costs round trips of latency, not requests. For N same-repository image sources, T
targets and child tags on (C = N*T child tags):

  round 1  N manifest GETs
  round 2  N config GETs
  round 3  T target GETs + C child-tag HEADs (the snapshot a rollback restores)
  round 4  T index PUTs
  round 5  C child-tag PUTs
  round 6  T HEADs: the read-back that catches another writer (transaction.py says why the
           targets alone are enough)

2N + 3 requests for one target without child tags, 4N + 3 with them. An identical re-run
stops after round 3: 3N + 1, nothing written. A merge that finds another writer's index at
the read-back costs more: a GET of that index, GETs of its children it does not have, PUTs of
the child tags to repair and a HEAD per repair round. Index sources add a round for their
children's manifests; attestations they list are read (one GET each) in round 3 and must match
their descriptor's size and media type, since the index we write copies those descriptors.
Cross-repository children add a round of blob mounts and one of manifest PUTs by digest before
round 4. Children in another registry add, per blob the target repository lacks, a HEAD, a
streamed GET from their registry (into a temporary file, at most the descriptor's size,
digest-checked) and a POST + PUT upload to the target (at most COPY_WORKERS at once); each
registry gets its own client and credentials. `--append` adds one round first (the target's
GET); the index it holds is then read as one more source: its children and their configs,
so the entries kept are checked again. Everything is read and checked before the first
write, so a bad source changes nothing and copies nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from . import digest as digests
from .auth import resolve_credentials
from .client import DigestMismatchError, FetchedManifest, RegistryClient, RegistryError
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
# Blobs copied from another registry at once: layer transfers, bandwidth-bound.
COPY_WORKERS = 4


@dataclass(frozen=True)
class MergeOptions:
    attestations: AttestationMode = "keep"
    child_tags: bool = True
    dry_run: bool = False
    # Requests in flight at once (parallel.py); 1 sends them one after another.
    workers: int = DEFAULT_WORKERS
    # Index annotations (annotations.py validated them), in the order given.
    annotations: tuple[tuple[str, str], ...] = ()
    # Keep the entries of the index the (first) target holds and add the sources to them.
    append: bool = False
    # With append: a source whose platform the index has (another image) replaces that entry.
    replace: bool = False


@dataclass
class MergeResult:
    plan: MergePlan
    dry_run: bool
    index_written: list[str] = field(default_factory=list)
    index_unchanged: list[str] = field(default_factory=list)
    child_tags_written: list[str] = field(default_factory=list)
    child_tags_unchanged: list[str] = field(default_factory=list)
    # SIGTERM/SIGINT received after every write had landed: the merge stands, the process
    # exits 128 + this number all the same (the job was cancelled).
    late_signal: int | None = None
    manifests_copied: list[str] = field(default_factory=list)
    blobs_mounted: int = 0
    # Blobs streamed from another registry (where a cross-repository mount cannot work).
    blobs_copied: int = 0
    bytes_copied: int = 0
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
            "blobsCopied": self.blobs_copied,
            "bytesCopied": self.bytes_copied,
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
        registry=image.spec.reference.registry,
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
    client: RegistryClient,
    specs: Sequence[SourceSpec],
    workers: int = DEFAULT_WORKERS,
    clients: Mapping[str, RegistryClient] | None = None,
) -> list[ResolvedSource]:
    """Read every source in rounds of parallel requests: their manifests, the children of index
    sources, then every image's config. An error names the first failing source in input
    order, whatever order the answers came in. A source on another registry than `client`'s
    is read with `clients[its registry]`."""
    others = clients or {}

    def on(spec: SourceSpec) -> RegistryClient:
        return others.get(spec.reference.registry, client)

    fetched = _run(
        [
            _for_source(
                s, partial(on(s).get_manifest, s.reference.repository, s.reference.reference)
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
                partial(
                    on(source.spec).get_manifest, source.spec.reference.repository, entry.digest
                ),
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
                partial(on(image.spec).get_blob, image.repository, image.manifest.config.digest),
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
    # The registry it comes from ("" or the target's: blobs are mounted, not copied).
    from_registry: str = ""


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
    clients: Mapping[str, RegistryClient],
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
            partial(
                clients.get(spec_of[a.digest].reference.registry, client).get_manifest,
                spec_of[a.digest].reference.repository,
                a.digest,
            ),
        )
        for a in plan.attestations
    ]
    foreign = [
        c
        for c in plan.children
        if c.repository != repository or c.registry not in ("", client.registry)
    ]
    presence = [partial(client.head_manifest, repository, c.digest) for c in foreign]
    answers: list[Any] = _run([*snapshot, *attestation_reads, *presence], workers)
    tags = answers[: len(snapshot)]
    attestations = answers[len(snapshot) : len(snapshot) + len(attestation_reads)]
    present = answers[len(snapshot) + len(attestation_reads) :]
    copies = [
        _Copy(c.repository, c.digest, c.media_type, c.raw_manifest, c.manifest, c.registry)
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
        if (spec.reference.registry, spec.reference.repository) != (client.registry, repository):
            copies.append(
                _Copy(
                    spec.reference.repository,
                    fetched.digest,
                    fetched.media_type,
                    fetched.raw,
                    parsed,
                    spec.reference.registry,
                )
            )
    return _LastReads({state.tag: state for state in tags}, checked, copies)


def _bring_over(
    client: RegistryClient,
    repository: str,
    copies: Sequence[_Copy],
    result: MergeResult,
    workers: int,
    clients: Mapping[str, RegistryClient],
) -> None:
    """Make manifests of other repositories exist in the target repository: their blobs first
    (one round: mounted within the registry, no bytes through us; streamed from another
    registry, see _copy_blob), then the manifests PUT by digest (one round)."""
    if not copies:
        return
    blobs = list(
        dict.fromkeys(
            (copy.from_registry or client.registry, copy.from_repository, blob.digest, blob.size)
            for copy in copies
            for blob in (copy.manifest.config, *copy.manifest.layers)
        )
    )
    mounts = [(repo, digest) for registry, repo, digest, _ in blobs if registry == client.registry]
    crossing = [b for b in blobs if b[0] != client.registry]
    ordered_map(lambda m: client.mount_blob(repository, m[1], m[0]), mounts, workers)
    result.blobs_mounted += len(mounts)
    # Layer transfers, not small requests: fewer at once, as pullers do for bandwidth.
    copied = ordered_map(
        lambda b: _copy_blob(clients[b[0]], b[1], client, repository, b[2], b[3]),
        crossing,
        min(workers, COPY_WORKERS),
    )
    result.blobs_copied += sum(1 for n in copied if n)
    result.bytes_copied += sum(copied)
    ordered_map(
        lambda c: client.put_manifest(repository, c.digest, c.raw, c.media_type), copies, workers
    )
    result.manifests_copied.extend(c.digest for c in copies)


def _copy_blob(
    source: RegistryClient,
    from_repository: str,
    target: RegistryClient,
    repository: str,
    digest: str,
    size: int,
) -> int:
    """One blob from another registry: skipped if the target has it; otherwise streamed to a
    temporary file (at most `size` bytes, the descriptor's, and checked against its digest
    before anything is sent), then uploaded from that file. Returns the bytes copied."""
    if target.blob_exists(repository, digest):
        return 0
    with tempfile.TemporaryDirectory(prefix="archfleet-blob-") as scratch:
        path = Path(scratch) / "blob"
        source.download_blob(from_repository, digest, path, max_bytes=size)
        got = path.stat().st_size
        if got != size:
            raise DigestMismatchError(
                f"{source.registry}/{from_repository}@{digest}: {got} bytes, its descriptor "
                f"says {size}"
            )
        target.upload_blob(repository, digest, size, path)
    return size


def other_registry_client(registry: str, *, insecure: bool) -> RegistryClient:
    """A client for a source registry that is not the target's. Its credentials are that
    host's only: `auths` in docker's config.json for it, or CI_REGISTRY_USER/PASSWORD when it
    is CI_REGISTRY (auth.resolve_credentials). REGISTRY_USER/REGISTRY_PASSWORD name the
    target's credentials and are never sent to another host."""
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_USER", "REGISTRY_PASSWORD")}
    return RegistryClient(
        registry,
        insecure=insecure,
        credentials=resolve_credentials(registry, env=env),
        use_env_credentials=False,
    )


def merge_manifest(
    client: RegistryClient,
    targets: Sequence[Reference],
    sources: Sequence[SourceSpec],
    options: MergeOptions | None = None,
    clients: Mapping[str, RegistryClient] | None = None,
) -> MergeResult:
    """Merge `sources` into one index under every target tag, as one transaction.

    `client` talks to the targets' registry; a source on another registry is read with
    `clients[registry]` (made by `other_registry_client` when not given) and its blobs are
    copied into the target repository before any tag moves."""
    options = options or MergeOptions()
    workers = max(1, options.workers)
    others = dict(clients or {})
    insecure = client.base_url.startswith("http://")
    for spec in sources:
        registry = spec.reference.registry
        if registry != client.registry and registry not in others:
            others[registry] = other_registry_client(registry, insecure=insecure)
    everyone = [client, *others.values()]
    start = sum(c.stats.registry for c in everyone)
    base_spec, current = _append_base(client, targets, options)
    resolved = resolve_sources(
        client, [base_spec, *sources] if base_spec else list(sources), workers, others
    )
    base = resolved.pop(0) if base_spec else None
    annotations = {**_index_annotations(current), **dict(options.annotations)}
    plan = plan_merge(
        targets,
        resolved,
        attestations=options.attestations,
        child_tags=options.child_tags,
        annotations=tuple(annotations.items()),
        base=base,
        replace=options.replace,
    )
    repository = plan.targets[0].repository
    reads = _last_reads(client, plan, resolved, workers, others)
    if current is not None:
        first = plan.targets[0]
        assert first.tag is not None
        now = reads.tags[first.tag].digest
        if now != current.digest:
            raise MergeError(
                f"--append: {first} moved from {current.digest} to {now or 'nothing'} while "
                "this merge read it (another writer); nothing was written: run it again"
            )
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
        _bring_over(client, repository, reads.copies, result, workers, others)
        committed = commit(client, repository, writes, reads.tags, workers)
        result.late_signal = committed.late_signal
    result.index_written = [w.tag for w in writes.indexes]
    result.child_tags_written = [w.tag for w in writes.children]
    result.registry_requests = sum(c.stats.registry for c in everyone) - start
    return result


def _append_base(
    client: RegistryClient, targets: Sequence[Reference], options: MergeOptions
) -> tuple[SourceSpec | None, FetchedManifest | None]:
    """With --append: what the first target holds now, as a source read and checked like any
    other (its children's manifests and configs: the entries kept are re-verified). None when
    the tag does not exist yet: an append to nothing is a plain merge."""
    if not options.append or not targets or targets[0].tag is None or targets[0].digest:
        return None, None
    first = targets[0]
    assert first.tag is not None
    current = client.get_tag(first.repository, first.tag)
    if current is None:
        return None, None
    spec = SourceSpec(
        f"{first} (what it holds, --append)",
        Reference(first.registry, first.repository, digest=current.digest),
        None,
    )
    return spec, current


def _index_annotations(current: FetchedManifest | None) -> dict[str, str]:
    """The annotations of the index --append starts from (kept; --annotation overrides)."""
    if current is None:
        return {}
    try:
        found = json.loads(current.raw).get("annotations") or {}
    except (ValueError, AttributeError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items() if isinstance(v, str)}
