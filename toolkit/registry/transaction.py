"""Pure: which tags a merge writes, in which order, and how to say what a failure left behind.

A registry moves one tag per request, so a merge (an index under T targets, plus N child tags
per target) cannot be atomic. It is made a transaction the way a client can (commit.py does the
I/O):

1. **Snapshot.** Right before the first write, every tag the merge will write is read: targets
   with a GET (their bytes are what a rollback puts back), child tags with a HEAD.
2. **Write, index first.** The index under every target in one round, then the child tags in
   one round. A target whose index is written gets *all* its child tags PUT, changed or not
   (see 4 for why); a target whose index is already right gets only the child tags that
   differ. An identical re-run writes nothing.
3. **On a failed write, roll back** every tag whose PUT was sent (a PUT that failed may still
   have taken effect), indexes first: a tag that held a manifest gets those bytes PUT back; a
   tag that did not exist is deleted as a tag (OCI distribution-spec v1.1 "Deleting tags"),
   which distribution 2.8 refuses — then the error says it is left. A tag that holds neither
   our digest nor its old one was moved by someone else and is left alone.
4. **Read back the targets only** (one HEAD each). A target that holds our index: done. A target
   that holds another index means another writer's index PUT came after ours: this merge has
   lost. It never rolls back over the other writer; it makes the child tags it wrote agree with
   the index the target now holds (read it, map its children to `<tag>-<platform>` names, PUT
   those that differ), reads the target again, and repeats until the target holds the index
   it repaired towards; then it fails, naming that index.

   Why that keeps every child tag in agreement with the index the target ends up holding (H,
   PUT last, at time t_H): H's writer PUTs all of H's child tags after t_H. Take the last PUT
   to any of those child tags; its writer reads the target after it, hence after t_H, and
   finds H. If that PUT aimed at another index, its writer repairs towards H, a later PUT —
   a contradiction; so the last PUT aimed at H and carries H's child. (Which is also why a
   target whose index is written gets every child tag PUT: a writer that skipped an
   "unchanged" child tag could not rely on it after another writer's PUT in between.)

   Between the index PUT and the child-tag PUTs (one round trip) the new index's children
   may have no tag of their own yet. The tagged index protects them where garbage is
   collected while the registry takes writes: GitLab's registry (metadata database,
   `manifest_references` rows for every index child) and Harbor (its `artifact_reference`
   graph). distribution's `garbage-collect --delete-untagged` keeps a tagged index's
   children only from v3 on (registry/storage/garbagecollect.go, `unmarkReferencedManifest`,
   the fix of issue #3178; not in 2.8.x) — but distribution's collection is offline ("the
   registry in read-only mode or not running at all", its GC docs), so no merge writes while
   it runs, and what it meets is the finished state, with every child tag in place.
   The rollback (3) keeps the same order: the index goes back first, then the child tags.
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
    # The target tag a child tag belongs to ("" for an index).
    target: str = ""


@dataclass(frozen=True)
class WritePlan:
    indexes: tuple[TagWrite, ...]  # first round
    children: tuple[TagWrite, ...]  # second round, after every index is in place
    unchanged_children: tuple[str, ...]
    unchanged_indexes: tuple[str, ...]
    # Every tag of the merge and the digest it must hold once the merge is done.
    expected: tuple[tuple[str, str, TagKind], ...]
    warnings: tuple[str, ...]
    # The index digest every target must hold.
    digest: str = ""

    @property
    def writes(self) -> tuple[TagWrite, ...]:
        return self.indexes + self.children

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(tag for tag, _, kind in self.expected if kind == "index")


def tags_to_read(plan: MergePlan) -> tuple[list[str], list[str]]:
    """(target tags, child tags): what the snapshot reads, in the order messages list them."""
    targets = [t.tag for t in plan.targets if t.tag is not None]
    return targets, [c.tag for c in plan.child_tags]


def plan_writes(plan: MergePlan, before: Mapping[str, TagState]) -> WritePlan:
    """The writes that turn `before` into the merge's result. A target whose index changes gets
    every child tag PUT (the ordering argument in this module's docstring needs it); where the
    index is already right only differing child tags are, so an identical re-run writes
    nothing."""
    indexes: list[TagWrite] = []
    unchanged_indexes: list[str] = []
    for tag in tags_to_read(plan)[0]:
        was = before[tag].digest
        if was == plan.digest:
            unchanged_indexes.append(tag)
            continue
        indexes.append(TagWrite(tag, "index", plan.index, plan.media_type, plan.digest, was))
    moving = {w.tag for w in indexes}
    children: list[TagWrite] = []
    unchanged_children: list[str] = []
    for c in plan.child_tags:
        was = before[c.tag].digest
        if c.target_tag in moving or was != c.digest:
            children.append(
                TagWrite(c.tag, "child", c.raw_manifest, c.media_type, c.digest, was, c.target_tag)
            )
        else:
            unchanged_children.append(c.tag)
    expected: list[tuple[str, str, TagKind]] = [
        (t, plan.digest, "index") for t in tags_to_read(plan)[0]
    ]
    expected += [(c.tag, c.digest, "child") for c in plan.child_tags]
    return WritePlan(
        tuple(indexes),
        tuple(children),
        tuple(unchanged_children),
        tuple(unchanged_indexes),
        tuple(expected),
        tuple(overwrite_warnings(plan, before)),
        plan.digest,
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

    def __init__(
        self,
        repository: str,
        cause: BaseException,
        fates: Sequence[TagFate],
        notes: Sequence[str] = (),
    ) -> None:
        self.cause = cause
        self.fates = tuple(fates)
        if all(f.fate == "never moved" for f in fates):
            verdict = "no tag had moved; every tag is as it was before"
        elif all(f.undone for f in fates):
            verdict = "it was rolled back; every tag is as it was before"
        else:
            verdict = "it was rolled back, but some tags could NOT be put back (listed below)"
        super().__init__(
            f"{cause}\nthe merge into {repository} failed; {verdict}:\n  "
            + describe_fates(fates)
            + "".join(f"\n  {note}" for note in notes)
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


class Interrupted(BaseException):
    """SIGTERM or SIGINT during the merge's writes (signals.py). A BaseException, like
    KeyboardInterrupt, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"interrupted by {name} while writing (a cancelled CI job sends it)")
        self.signum = signum


class MergeInterrupted(PartialWriteError):
    """The merge was stopped by a signal during its writes and rolled back; the process exits
    128 + the signal's number (143 for SIGTERM, 130 for SIGINT), as a shell reports it."""

    def __init__(
        self,
        repository: str,
        cause: Interrupted,
        fates: Sequence[TagFate],
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(repository, cause, fates, notes)
        self.signum = cause.signum
