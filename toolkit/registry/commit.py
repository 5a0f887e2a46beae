"""The I/O of a merge's transaction (transaction.py says what and why): snapshot the tags,
write them in two rounds, roll back on a failed write, read back and repair child tags.

Every round is one batch of parallel requests (parallel.py), so a round costs one round trip
of latency whatever N is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .client import FetchedManifest, RegistryClient, RegistryError
from .merge import MergePlan
from .parallel import attempt_all, ordered_map
from .transaction import (
    ConcurrentWriteError,
    Conflict,
    PartialWriteError,
    TagFate,
    TagState,
    TagWrite,
    WritePlan,
    tags_to_read,
)

# Read back, repair child tags, read back again: at most this many reads in all. Each repair
# means another writer moved a child tag between our PUT and our read-back; a writer that
# keeps doing so is reported rather than fought.
READ_BACK_ROUNDS = 3


def snapshot_reads(
    client: RegistryClient, repository: str, plan: MergePlan
) -> list[Callable[[], TagState]]:
    """One thunk per tag the merge will write (targets, then child tags), to run in the same
    round as the merge's other last reads."""
    targets, children = tags_to_read(plan)

    def target(tag: str) -> Callable[[], TagState]:
        def read() -> TagState:
            held = client.get_tag(repository, tag)
            return TagState(tag, held.digest if held else None, held)

        return read

    def child(tag: str) -> Callable[[], TagState]:
        return lambda: TagState(tag, client.head_manifest(repository, tag))

    return [target(t) for t in targets] + [child(c) for c in children]


@dataclass
class Committed:
    written: list[TagWrite]
    # Child tags the read-back found moved by another writer (to the digest given) and put back.
    repaired: dict[str, str | None]


def commit(
    client: RegistryClient,
    repository: str,
    writes: WritePlan,
    before: Mapping[str, TagState],
    workers: int,
) -> Committed:
    """Write `writes` (child tags, then indexes), roll back on failure, read back; returns what
    was written and which child tags had to be repaired."""
    sent: list[TagWrite] = []
    for batch in (writes.children, writes.indexes):
        if not batch:
            continue
        outcomes = attempt_all(_put(client, repository), batch, workers)
        # A PUT that failed may still have taken effect (a dropped answer): all are "sent".
        sent.extend(batch)
        failed = [o.error for o in outcomes if o.error is not None]
        if failed:
            fates = rollback(client, repository, sent, before, workers)
            raise PartialWriteError(_name(client, repository), failed[0], fates) from failed[0]
    repaired = read_back(client, repository, writes, workers) if sent else {}
    return Committed(sent, repaired)


def _name(client: RegistryClient, repository: str) -> str:
    return f"{client.registry}/{repository}"


def _head(client: RegistryClient, repository: str) -> Callable[[str], str | None]:
    return lambda tag: client.head_manifest(repository, tag)


def _put(client: RegistryClient, repository: str) -> Callable[[TagWrite], str]:
    return lambda w: client.put_manifest(repository, w.tag, w.raw, w.media_type)


def rollback(
    client: RegistryClient,
    repository: str,
    sent: Sequence[TagWrite],
    before: Mapping[str, TagState],
    workers: int,
) -> list[TagFate]:
    """Put every tag in `sent` back to what it held in `before`; never raises.

    Only a tag that still holds what we wrote is put back. If any holds a third digest,
    another writer is at work: then nothing is put back (its before-values may be older than
    that writer's), and every tag's state is reported instead.
    """
    reads = attempt_all(_head(client, repository), [w.tag for w in sent], workers)
    current: dict[str, str | None] = {}
    fates: dict[str, TagFate] = {}
    for write, read in zip(sent, reads, strict=True):
        if read.error is not None:
            fates[write.tag] = TagFate(
                write.tag, "failed", f"reading it back to decide failed: {read.error}"
            )
        else:
            current[write.tag] = read.value
    foreign = [w for w in sent if w.tag in current and current[w.tag] not in (w.before, w.digest)]
    for write in sent:
        if write.tag in fates:
            continue
        now = current[write.tag]
        if now == write.before:
            fates[write.tag] = TagFate(write.tag, "never moved", "not moved")
        elif now != write.digest:
            fates[write.tag] = TagFate(
                write.tag,
                "moved by another writer",
                f"another writer moved it to {now or 'nothing'}",
            )
        elif foreign:
            fates[write.tag] = TagFate(
                write.tag,
                "left",
                f"holds this merge's {write.digest}; not put back to "
                f"{write.before or 'nothing'}, because another writer moved "
                f"{', '.join(w.tag for w in foreign)}",
            )
    # Indexes first: the release tag is what users pull, so it goes back first.
    for kind in ("index", "child"):
        pending = [w for w in sent if w.kind == kind and w.tag not in fates]
        outcomes = attempt_all(
            lambda w: _restore(client, repository, w.tag, w.before, before[w.tag].manifest),
            pending,
            workers,
        )
        for write, outcome in zip(pending, outcomes, strict=True):
            if outcome.error is not None:
                fates[write.tag] = TagFate(
                    write.tag,
                    "failed",
                    f"holds this merge's {write.digest}; putting back "
                    f"{write.before or 'nothing'} failed: {outcome.error}",
                )
            else:
                assert outcome.value is not None
                fates[write.tag] = outcome.value
    return [fates[w.tag] for w in sent]


def _restore(
    client: RegistryClient,
    repository: str,
    tag: str,
    to: str | None,
    known: FetchedManifest | None,
) -> TagFate:
    """Make `tag` hold `to` again: PUT those bytes back, or delete the tag if `to` is None."""
    if to is None:
        removed, answer = client.delete_tag(repository, tag)
        if removed:
            return TagFate(tag, "removed", "deleted (it did not exist before)")
        return TagFate(
            tag,
            "left",
            f"it did not exist before, and the registry does not delete tags ({answer}); it "
            "points at this merge's image: delete it by hand if it is not wanted",
        )
    old = known if known is not None and known.digest == to else client.get_manifest(repository, to)
    client.put_manifest(repository, tag, old.raw, old.media_type)
    return TagFate(tag, "restored", f"put back to {to}")


def read_back(
    client: RegistryClient, repository: str, writes: WritePlan, workers: int
) -> dict[str, str | None]:
    """Read every tag of the merge back; repair child tags another writer moved while our index
    holds the targets; fail if a target holds another index. Returns the repaired child tags
    and what each held before the repair."""
    tags = [tag for tag, _, _ in writes.expected]
    puts = {w.tag: w for w in writes.every_child}
    # What each repaired child tag held before we repaired it: put back if we lose a target.
    displaced: dict[str, str | None] = {}
    found: list[str | None] = []
    for attempt in range(1, READ_BACK_ROUNDS + 1):
        try:
            found = ordered_map(_head(client, repository), tags, workers)
        except RegistryError as exc:
            raise RegistryError(
                f"the merge was written to {_name(client, repository)}, but reading it back "
                f"failed: {exc}"
            ) from exc
        conflicts = _conflicts(writes, found)
        moved_targets = [c for c in conflicts if c.kind == "index"]
        if moved_targets:
            notes = _undo_repairs(client, repository, writes, displaced, workers)
            raise ConcurrentWriteError(_name(client, repository), moved_targets, notes)
        if not conflicts:
            return dict(displaced)
        if attempt == READ_BACK_ROUNDS:
            break
        # Our index holds every target, but a child tag points elsewhere: another writer's
        # child-tag PUT landed after ours. Put ours back, so the children agree with the index.
        for conflict in conflicts:
            displaced.setdefault(conflict.tag, conflict.found)
        put = [puts[c.tag] for c in conflicts]
        ordered_map(_put(client, repository), put, workers)
    raise ConcurrentWriteError(
        _name(client, repository),
        _conflicts(writes, found),
        [f"child tags kept changing after {READ_BACK_ROUNDS} reads; another writer is at work"],
    )


def _conflicts(writes: WritePlan, found: Sequence[str | None]) -> list[Conflict]:
    return [
        Conflict(tag, kind, expected, now)
        for (tag, expected, kind), now in zip(writes.expected, found, strict=True)
        if now != expected
    ]


def _undo_repairs(
    client: RegistryClient,
    repository: str,
    writes: WritePlan,
    displaced: Mapping[str, str | None],
    workers: int,
) -> list[str]:
    """We lost a target after repairing child tags: give the repaired tags back to what the
    other writer had put there (if they still hold ours), so they agree with its index."""
    if not displaced:
        return []
    puts = {w.tag: w for w in writes.every_child}
    repaired = [
        TagWrite(tag, "child", puts[tag].raw, puts[tag].media_type, puts[tag].digest, was)
        for tag, was in displaced.items()
    ]
    states = {w.tag: TagState(w.tag, w.before) for w in repaired}
    fates = rollback(client, repository, repaired, states, workers)
    wording = {
        "restored": "given back to the other writer's image",
        "never moved": "already back to the other writer's image",
        "removed": "removed again (the other writer had deleted it)",
    }
    return [
        f"this merge had repaired child tag {f.tag}; "
        + wording.get(f.fate, f"NOT given back: {f.detail}")
        for f in fates
    ]
