"""Pure merge logic: resolved sources in, one index (and its checks) out. No I/O here.

The engine (engine.py) reads the registry and hands this module what it found; everything
that decides *what* to write lives here so it can be tested without a registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_field
from typing import Literal

from .manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    REFERENCE_DIGEST,
    Descriptor,
    ImageManifest,
    Platform,
    canonical_json,
    compute_digest,
)
from .reference import Reference, ReferenceError, parse_reference, validate_tag

AttestationMode = Literal["keep", "strip"]


class MergeError(ValueError):
    """The sources cannot be merged as asked; the message names the source and the reason."""


@dataclass(frozen=True)
class SourceSpec:
    """`[PLATFORM=]REF` as the caller gave it."""

    text: str
    reference: Reference
    expected: Platform | None

    @classmethod
    def parse(cls, text: str, *, target: Reference | None = None) -> SourceSpec:
        platform_text, eq, ref_text = text.partition("=")
        if not eq:
            platform_text, ref_text = "", text
        try:
            expected = Platform.parse(platform_text) if platform_text else None
        except ValueError as exc:
            raise MergeError(f"source {text!r}: {exc}") from None
        if target is not None and ref_text[:1] in (":", "@"):
            # A bare `:tag` or `@digest` names an image in the target's repository: what a CI
            # job that pushed by digest has in hand.
            ref_text = f"{target.registry}/{target.repository}{ref_text}"
        try:
            reference = parse_reference(ref_text)
        except ReferenceError as exc:
            raise MergeError(f"source {text!r}: {exc}") from None
        return cls(text, reference, expected)


@dataclass(frozen=True)
class ResolvedImage:
    """One platform image, read from the registry: its manifest and the platform its config says."""

    source: SourceSpec
    repository: str
    digest: str
    media_type: str
    size: int
    raw_manifest: bytes
    manifest: ImageManifest
    platform: Platform
    # What an index source's descriptor claimed, if the image came out of an index.
    claimed_platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    # The registry it was read from ("" = the target's).
    registry: str = ""

    def descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type, self.digest, self.size, self.platform, dict(self.annotations)
        )


@dataclass(frozen=True)
class ResolvedSource:
    spec: SourceSpec
    digest: str
    media_type: str
    images: tuple[ResolvedImage, ...]
    # Attestation manifests of an index source (buildx provenance/SBOM), as descriptors.
    attestations: tuple[Descriptor, ...] = ()
    # Non-platform entries dropped (unknown/unknown without an attestation annotation).
    ignored: tuple[Descriptor, ...] = ()


@dataclass(frozen=True)
class ChildTag:
    tag: str
    target_tag: str
    digest: str
    media_type: str
    raw_manifest: bytes


@dataclass(frozen=True)
class MergePlan:
    targets: tuple[Reference, ...]
    media_type: str
    index: bytes
    digest: str
    children: tuple[ResolvedImage, ...]
    attestations: tuple[Descriptor, ...]
    child_tags: tuple[ChildTag, ...]
    warnings: tuple[str, ...]

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(child.platform for child in self.children)


def select_images(source: ResolvedSource) -> tuple[ResolvedImage, ...]:
    """The images a source contributes, after checking them against the caller's expectation."""
    name = source.spec.text
    for image in source.images:
        if image.platform.is_unknown:
            raise MergeError(
                f"source {name!r}: image {image.digest} has platform {image.platform}, "
                "which is not a runnable platform"
            )
        if image.claimed_platform is not None and image.claimed_platform != image.platform:
            raise MergeError(
                f"source {name!r}: index entry {image.digest} claims {image.claimed_platform} "
                f"but its config says {image.platform}"
            )
    if not source.images:
        raise MergeError(f"source {name!r}: contains no platform image")
    expected = source.spec.expected
    if expected is None:
        return source.images
    actual = [image.platform for image in source.images]
    if actual != [expected]:
        what = ", ".join(str(p) for p in actual)
        raise MergeError(
            f"source {name!r}: expected {expected}, but the image is {what} — pushing it "
            f"under {expected} would end in 'exec format error' on {expected} hosts"
        )
    return source.images


def plan_merge(
    targets: Sequence[Reference],
    sources: Sequence[ResolvedSource],
    *,
    attestations: AttestationMode = "keep",
    child_tags: bool = True,
    annotations: Sequence[tuple[str, str]] = (),
    base: ResolvedSource | None = None,
    replace: bool = False,
) -> MergePlan:
    """The index of `sources` (after `base`'s images, with --append), with `annotations` on it.

    With `base` (the index the target holds, read and checked like any source): its entries
    are kept first, in their order; a source giving a platform `base` has with the *same*
    image is dropped (so a re-run of an append writes nothing); with another image it is an
    error unless `replace`, and then the new image takes the old entry's place (its
    attestations go with it)."""
    if not targets:
        raise MergeError("no target given")
    if not sources:
        raise MergeError("no source given: pass at least one --source")
    appended: list[str] = []
    # With --append, the old index's order: a replacing image takes its old entry's place.
    place = {image.platform: i for i, image in enumerate(base.images)} if base else {}
    if base is not None:
        base, added, appended = _append(base, sources, replace=replace)
        # Every entry of the old index replaced: nothing of it is left to keep.
        sources = [base, *added] if base.images else added
    first = targets[0]
    for target in targets:
        if target.digest or not target.tag:
            raise MergeError(f"target {target}: must be a tag, not a digest")
        if (target.registry, target.repository) != (first.registry, first.repository):
            raise MergeError(
                f"targets {first} and {target}: all targets must be tags of one repository"
            )

    children: list[ResolvedImage] = []
    by_platform: dict[Platform, ResolvedImage] = {}
    warnings: list[str] = []
    for source in sources:
        for image in select_images(source):
            # Platforms are normalised (manifest.Platform, containerd's rules), so arm + arm/v7
            # and arm64 + arm64/v8 are caught here: every client would see one platform twice.
            other = by_platform.get(image.platform)
            if other is not None:
                raise MergeError(_duplicate_message(other, image))
            by_platform[image.platform] = image
            children.append(image)
            if not image.platform.is_known:
                warnings.append(
                    f"source {source.spec.text!r}: {image.platform} is not an OS/architecture "
                    "containerd knows (containerd/platforms database.go); no client may pick it"
                )
        for ignored in source.ignored:
            warnings.append(
                f"source {source.spec.text!r}: ignored {ignored.digest} (platform "
                f"{ignored.platform or 'none'}, not an image platform nor an attestation)"
            )

    children.sort(key=lambda child: place.get(child.platform, len(place)))  # stable
    kept = _attestations(sources, children, attestations)
    descriptors = [child.descriptor() for child in children] + list(kept)
    media_types = {d.media_type for d in descriptors}
    # A Docker manifest list may only hold Docker manifests; anything OCI makes it an OCI index.
    media_type = DOCKER_LIST if media_types == {DOCKER_MANIFEST} else OCI_INDEX
    if annotations:
        # Docker's manifest list has no annotations field (manifest-v2-2.md): OCI then.
        media_type = OCI_INDEX
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [d.to_json() for d in descriptors],
    }
    if annotations:
        body["annotations"] = dict(annotations)
    index = canonical_json(body)
    warnings += appended
    tags = _child_tags(targets, children) if child_tags else ()
    return MergePlan(
        targets=tuple(targets),
        media_type=media_type,
        index=index,
        digest=compute_digest(index),
        children=tuple(children),
        attestations=kept,
        child_tags=tags,
        warnings=tuple(warnings),
    )


def _attestations(
    sources: Sequence[ResolvedSource], children: Sequence[ResolvedImage], mode: AttestationMode
) -> tuple[Descriptor, ...]:
    if mode == "strip":
        return ()
    included = {child.digest for child in children}
    kept: list[Descriptor] = []
    for source in sources:
        own = {image.digest for image in source.images}
        for attestation in source.attestations:
            subject = attestation.annotations.get(REFERENCE_DIGEST)
            if subject is None or subject not in own:
                raise MergeError(
                    f"source {source.spec.text!r}: attestation {attestation.digest} refers to "
                    f"{subject or 'nothing'}, which is not an image of that source"
                )
            # Kept only while the image it describes is in the new index.
            if subject in included:
                kept.append(attestation)
    return tuple(kept)


def _duplicate_message(first: ResolvedImage, second: ResolvedImage) -> str:
    where = (
        f"source {first.source.text!r} holds {first.digest} and {second.digest}, both"
        if first.source == second.source
        else f"sources {first.source.text!r} and {second.source.text!r} are both"
    )
    return (
        f"{where} {second.platform} (platforms compared as containerd normalises them: "
        "arm = arm/v7, arm64/v8 = arm64, amd64/v1 = amd64): an index holds one image per platform"
    )


def child_tag_suffix(platform: Platform) -> str:
    """`arm64`, `arm-v7` for linux (as before); `windows-amd64`, `freebsd-arm64` for any
    other OS, so children of one arch on several OSes keep a tag each."""
    if platform.os == "linux":
        return platform.tag_suffix
    return f"{platform.os}-{platform.tag_suffix}"


def _child_tags(
    targets: Sequence[Reference], children: Sequence[ResolvedImage]
) -> tuple[ChildTag, ...]:
    tags: list[ChildTag] = []
    for target in targets:
        assert target.tag is not None
        owner: dict[str, Platform] = {}
        for child in children:
            name = f"{target.tag}-{child_tag_suffix(child.platform)}"
            if name in owner:
                # Odd architecture names can collide (`arm-v7` vs arch `arm`, variant `v7`);
                # a child without its own tag is exposed to clean-up, so refuse.
                raise MergeError(
                    f"child tag {name!r} would name both {owner[name]} and {child.platform}; "
                    "use --no-child-tags"
                )
            owner[name] = child.platform
            try:
                validate_tag(name)
            except ReferenceError:
                raise MergeError(
                    f"child tag {name!r} for target {target} is not a valid tag (too long?); "
                    "use a shorter target tag or --no-child-tags"
                ) from None
            tags.append(
                ChildTag(name, target.tag, child.digest, child.media_type, child.raw_manifest)
            )
    return tuple(tags)


def _append(
    base: ResolvedSource, sources: Sequence[ResolvedSource], *, replace: bool
) -> tuple[ResolvedSource, list[ResolvedSource], list[str]]:
    """(base without replaced entries, sources without images base already has, notes)."""
    held = {image.platform: image for image in select_images(base)}
    notes: list[str] = []
    replaced: set[str] = set()
    kept_sources: list[ResolvedSource] = []
    for source in sources:
        images = []
        dropped: set[str] = set()
        for image in select_images(source):
            old = held.get(image.platform)
            if old is None:
                images.append(image)
            elif old.digest == image.digest:
                dropped.add(image.digest)  # already in the index: kept where it is
                continue
            elif not replace:
                raise MergeError(
                    f"source {source.spec.text!r}: --append: the index the target holds "
                    f"already has {image.platform} ({old.digest}); this source gives "
                    f"{image.digest}. Pass --replace to replace that entry"
                )
            else:
                replaced.add(old.digest)
                notes.append(f"--append --replace: {image.platform} {old.digest} -> {image.digest}")
                images.append(image)
        if images:
            # Attestations of an image the index already has stay with its old entry.
            attestations = tuple(
                a for a in source.attestations if a.annotations.get(REFERENCE_DIGEST) not in dropped
            )
            kept_sources.append(
                replace_field(source, images=tuple(images), attestations=attestations)
            )
    kept_base = replace_field(
        base,
        images=tuple(i for i in base.images if i.digest not in replaced),
        attestations=tuple(
            a for a in base.attestations if a.annotations.get(REFERENCE_DIGEST) not in replaced
        ),
    )
    return kept_base, kept_sources, notes
