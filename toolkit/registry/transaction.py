"""Pure: which tags a merge writes, in which order, and how to say what a failure left behind.

A registry moves one tag per request, so a merge (an index under T targets, plus N child tags
per target) cannot be atomic. It is made a transaction the way a client can (commit.py does the
I/O):

1. **Snapshot.** Right before the first write, every tag the merge will write is read: targets
   with a GET (their bytes are what a rollback puts back), child tags with a HEAD.
2. **Write, children first.** All child tags in one round, then the index under every target.
   So the index a reader finds under a target always has its children tagged — the new index
   is never visible before its children are — and the window in which the *old* index's
   children have lost their child tag is the one round trip between the two rounds. Child tags
   matter: distribution's `garbage-collect --delete-untagged` deletes every manifest no tag
   points at, index children included (registry/storage/garbagecollect.go, v2.8.2: Lookup of
   the digest's tags, no look at indexes).
3. **On a failed write, roll back** every tag whose PUT was sent (a PUT that failed may still
   have taken effect): a tag that held a manifest gets those bytes PUT back; a tag that did not
   exist is deleted as a tag (OCI distribution-spec v1.1 "Deleting tags"), which distribution
   2.8 refuses — then the error says it is left. A tag that holds neither our digest nor its
   old one was moved by someone else and is left alone.
4. **Read back** every target and child tag. A target that holds another index means another
   writer came after us: fail, naming it; never roll back over another writer. A child tag
   moved while our index holds the target is put back (the holder of the target repairs its
   children), so child tags agree with the index the target holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .client import FetchedManifest, RegistryError
from .manifest import IMAGE_MANIFEST_TYPES, INDEX_TYPES, ImageManifest, parse_manifest
from .merge import MergePlan

TagKind = Literal["index", "child"]


@dataclass(frozen=True)
class TagState:
    """What a tag held when the merge read it: a digest, or None if it did not exist."""

    tag: str
    digest: str | None
    # The bytes (targets only: read with a GET, so a rollback can PUT them back).
    manifest: FetchedManifest | None = None


@dataclass(frozen=True)
class TagWrite:
    """One PUT of the transaction: `tag` moves from `before` to `digest`."""

    tag: str
    kind: TagKind
    raw: bytes
    media_type: str
    digest: str
    before: str | None


@dataclass(frozen=True)
class WritePlan:
    children: tuple[TagWrite, ...]  # first round
    indexes: tuple[TagWrite, ...]  # second round, after every child tag is in place
    unchanged_children: tuple[str, ...]
    unchanged_indexes: tuple[str, ...]
    # Every tag of the merge and the digest it must hold once the merge is done.
    expected: tuple[tuple[str, str, TagKind], ...]
    warnings: tuple[str, ...]
    # The PUT of every child tag, written or not: a read-back may have to repair any of them.
    every_child: tuple[TagWrite, ...] = ()

    @property
    def writes(self) -> tuple[TagWrite, ...]:
        return self.children + self.indexes


def tags_to_read(plan: MergePlan) -> tuple[list[str], list[str]]:
    """(target tags, child tags): what the snapshot reads, in the order messages list them."""
    targets = [t.tag for t in plan.targets if t.tag is not None]
    return targets, [c.tag for c in plan.child_tags]


def plan_writes(plan: MergePlan, before: Mapping[str, TagState]) -> WritePlan:
    """The writes that turn `before` into the merge's result; a tag already right is skipped,
    so an identical re-run writes nothing."""
    every_child = [
        TagWrite(c.tag, "child", c.raw_manifest, c.media_type, c.digest, before[c.tag].digest)
        for c in plan.child_tags
    ]
    children = [w for w in every_child if w.before != w.digest]
    unchanged_children = [w.tag for w in every_child if w.before == w.digest]
    indexes: list[TagWrite] = []
    unchanged_indexes: list[str] = []
    for tag in tags_to_read(plan)[0]:
        was = before[tag].digest
        if was == plan.digest:
            unchanged_indexes.append(tag)
            continue
        indexes.append(TagWrite(tag, "index", plan.index, plan.media_type, plan.digest, was))
    expected: list[tuple[str, str, TagKind]] = [
        (t, plan.digest, "index") for t in tags_to_read(plan)[0]
    ]
    expected += [(c.tag, c.digest, "child") for c in plan.child_tags]
    return WritePlan(
        tuple(children),
        tuple(indexes),
        tuple(unchanged_children),
        tuple(unchanged_indexes),
        tuple(expected),
        tuple(overwrite_warnings(plan, before)),
        tuple(every_child),
    )


def overwrite_warnings(plan: MergePlan, before: Mapping[str, TagState]) -> list[str]:
    """A target that held more than the new index will: platforms that disappear, or a
    single-platform image (or something that is not an image at all) replaced by an index."""
    warnings: list[str] = []
    new = set(plan.platforms)
    for tag in tags_to_read(plan)[0]:
        state = before[tag]
        old = state.manifest
        if old is None or state.digest == plan.digest:
            continue
        what = f"target {tag!r} held {old.digest}"
        if old.media_type not in IMAGE_MANIFEST_TYPES | INDEX_TYPES:
            warnings.append(f"{what} ({old.media_type}), not an image; it is replaced")
            continue
        try:
            parsed = parse_manifest(old.raw, old.media_type, where=what)
        except ValueError:  # ManifestError, or a platform no normalisation accepts
            warnings.append(f"{what}, which is not a manifest we can read; it is replaced")
            continue
        if isinstance(parsed, ImageManifest):
            warnings.append(
                f"{what}, a single-platform image; it becomes an index of "
                f"{', '.join(str(p) for p in plan.platforms)}"
            )
            continue
        held = {
            d.platform
            for d in parsed.manifests
            if d.platform is not None and not d.platform.is_unknown and not d.is_attestation
        }
        lost = held - new
        if lost:
            names = ", ".join(sorted(str(p) for p in lost))
            warnings.append(f"{what} with {names}, which the new index does not have")
    return warnings


# --- what a failure left behind ----------------------------------------------------------

Fate = Literal["restored", "removed", "never moved", "left", "moved by another writer", "failed"]


@dataclass(frozen=True)
class TagFate:
    """What became of one tag the merge tried to write, after a rollback."""

    tag: str
    fate: Fate
    detail: str = ""

    @property
    def undone(self) -> bool:
        return self.fate in ("restored", "removed", "never moved")


def _short(digest: str | None) -> str:
    if digest is None:
        return "nothing"
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


def describe_fates(fates: Sequence[TagFate]) -> str:
    """One line per tag: put back or deleted first, then not moved, then NOT rolled back."""
    if not fates:
        return "nothing had been written"
    rank = {"restored": 0, "removed": 0, "never moved": 1}
    order = sorted(fates, key=lambda f: rank.get(f.fate, 2))
    return "\n  ".join(
        f"{f.tag}: {f.detail}" if f.undone else f"{f.tag}: NOT rolled back: {f.detail}"
        for f in order
    )


class PartialWriteError(RegistryError):
    """A write of the merge failed; the message says what was rolled back and what was not."""

    def __init__(self, repository: str, cause: BaseException, fates: Sequence[TagFate]) -> None:
        self.cause = cause
        self.fates = tuple(fates)
        if all(f.fate == "never moved" for f in fates):
            verdict = "no tag had moved; every tag is as it was before"
        elif all(f.undone for f in fates):
            verdict = "it was rolled back; every tag is as it was before"
        else:
            verdict = "it was rolled back, but some tags could NOT be put back (listed below)"
        super().__init__(
            f"{cause}\nthe merge into {repository} failed; {verdict}:\n  " + describe_fates(fates)
        )


@dataclass(frozen=True)
class Conflict:
    """A tag that holds something other than what this merge wrote."""

    tag: str
    kind: TagKind
    expected: str
    found: str | None


class ConcurrentWriteError(RegistryError):
    """Another writer moved a tag of this merge while it ran (read back after writing)."""

    def __init__(
        self,
        repository: str,
        conflicts: Sequence[Conflict],
        notes: Sequence[str] = (),
    ) -> None:
        self.conflicts = tuple(conflicts)
        lines = []
        for c in conflicts:
            held = c.found if c.found else "nothing (the tag was deleted)"
            noun = "target" if c.kind == "index" else "child tag"
            lines.append(f"{noun} {repository}:{c.tag} holds {held}, not this merge's {c.expected}")
        super().__init__(
            "another writer changed tags of this merge while it ran; this merge's result is "
            "NOT what the registry holds:\n  "
            + "\n  ".join([*lines, *notes])
            + "\n(serialise merges to one tag: GitLab resource_group, Jenkins lock/milestone)"
        )
