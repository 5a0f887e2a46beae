"""The I/O of a merge's transaction (transaction.py says what and why): snapshot the tags,
write the index then the child tags, roll back on a failed write or a signal, read the
targets back and, having lost one to another writer, make our child tags agree with it.

Every round is one batch of parallel requests (parallel.py), so a round costs one round trip
of latency whatever N is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .client import FetchedManifest, RegistryClient, RegistryError
from .manifest import ImageIndex, ManifestError, parse_manifest
from .merge import MergePlan, child_tag_suffix
from .parallel import attempt_all, ordered_map
from .signals import write_phase
from .transaction import (
    ConcurrentWriteError,
    Conflict,
    Interrupted,
    MergeInterrupted,
    PartialWriteError,
    TagFate,
    TagState,
    TagWrite,
    WritePlan,
    tags_to_read,
)

# Repair towards the index a target holds, read the target again: at most this many rounds.
# Each further round means yet another writer's index landed meanwhile; one that keeps
# doing so is reported rather than fought.
SETTLE_ROUNDS = 5


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
    # SIGTERM/SIGINT that came after every write had landed (during the read-back): the merge
    # stands, and the caller exits 128 + this number.
    late_signal: int | None = None


def commit(
    client: RegistryClient,
    repository: str,
    writes: WritePlan,
    before: Mapping[str, TagState],
    workers: int,
) -> Committed:
    """Write `writes` (indexes, then child tags), roll back on a failure or a signal, read the
    targets back."""
    known = _known(writes, before)
    sent: list[TagWrite] = []
    with write_phase() as phase:
        try:
            for batch in (writes.indexes, writes.children):
                if not batch:
                    continue
                # A PUT that failed or was interrupted may still have taken effect: all are
                # "sent", and the rollback reads each back before deciding.
                sent.extend(batch)
                outcomes = attempt_all(_put(client, repository), batch, workers)
                failed = [o.error for o in outcomes if o.error is not None]
                if failed:
                    with phase.defer():
                        fates, notes = _roll_back(client, repository, sent, before, known, workers)
                    raise PartialWriteError(
                        _name(client, repository), failed[0], fates, notes
                    ) from failed[0]
            if sent:
                with phase.defer():
                    read_back(client, repository, writes, sent, known, workers)
        except Interrupted as stop:
            with phase.defer():
                fates, notes = _roll_back(client, repository, sent, before, known, workers)
            raise MergeInterrupted(_name(client, repository), stop, fates, notes) from None
        late = phase.pending()
    return Committed(sent, late.signum if late else None)


def _known(writes: WritePlan, before: Mapping[str, TagState]) -> dict[str, FetchedManifest]:
    """Manifests whose bytes this merge has in hand, by digest: no GET needed to PUT them."""
    known = {w.digest: FetchedManifest(w.raw, w.media_type, w.digest) for w in writes.writes}
    known.update({s.digest: s.manifest for s in before.values() if s.manifest and s.digest})
    return known


def _roll_back(
    client: RegistryClient,
    repository: str,
    sent: Sequence[TagWrite],
    before: Mapping[str, TagState],
    known: Mapping[str, FetchedManifest],
    workers: int,
) -> tuple[list[TagFate], list[str]]:
    """`rollback`, then for a target another writer holds now: our child tags made to agree
    with its index (the rollback leaves every tag alone once it sees another writer)."""
    fates = rollback(client, repository, sent, before, workers)
    fate = {f.tag: f for f in fates}
    notes: list[str] = []
    for write in sent:
        if write.kind != "index" or fate[write.tag].fate != "moved by another writer":
            continue
        ours = {
            w.tag: w.digest
            for w in sent
            if w.kind == "child" and w.target == write.tag and fate[w.tag].fate == "left"
        }
        if not ours:
            continue
        try:
            holder = client.head_manifest(repository, write.tag)
        except RegistryError as exc:
            notes.append(f"reading {write.tag} again to repair its child tags failed: {exc}")
            continue
        more, _ = settle(client, repository, write.tag, holder, write.digest, ours, known, workers)
        notes += more
    return fates, notes


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
    client: RegistryClient,
    repository: str,
    writes: WritePlan,
    sent: Sequence[TagWrite],
    known: Mapping[str, FetchedManifest],
    workers: int,
) -> None:
    """One HEAD per target. A target that holds another index: another writer's index PUT came
    after ours. Make the child tags we wrote agree with its index (`settle`) and fail, naming
    the index that holds it; never roll back over the other writer."""
    targets = list(writes.targets)
    try:
        found = ordered_map(_head(client, repository), targets, workers)
    except RegistryError as exc:
        raise RegistryError(
            f"the merge was written to {_name(client, repository)}, but reading it back "
            f"failed: {exc}"
        ) from exc
    conflicts: list[Conflict] = []
    notes: list[str] = []
    for target, holder in zip(targets, found, strict=True):
        if holder == writes.digest:
            continue
        ours = {w.tag: w.digest for w in sent if w.kind == "child" and w.target == target}
        if ours:
            more, holder = settle(
                client, repository, target, holder, writes.digest, ours, known, workers
            )
            notes += more
        conflicts.append(Conflict(target, "index", writes.digest, holder))
    if conflicts:
        raise ConcurrentWriteError(_name(client, repository), conflicts, notes)


def settle(
    client: RegistryClient,
    repository: str,
    target: str,
    holder: str | None,
    aimed: str,
    ours: Mapping[str, str],
    known: Mapping[str, FetchedManifest],
    workers: int,
) -> tuple[list[str], str | None]:
    """Make the child tags in `ours` (tag -> the digest we last PUT there) agree with the index
    `target` holds (`holder`, read after those PUTs), then read `target` again; repeat until it
    holds the index we last repaired towards. Returns notes for the error message and the
    index the target holds at the end. Never raises: what could not be repaired is said."""
    notes: list[str] = []
    wrote = dict(ours)
    repaired: dict[str, str] = {}
    unmapped: list[str] = []
    name = f"{_name(client, repository)}:{target}"
    try:
        for _ in range(SETTLE_ROUNDS):
            if holder == aimed:
                break
            mapped = _child_tags_of(client, repository, target, holder, known)
            if mapped is None:
                notes.append(
                    f"{name} holds {holder or 'nothing'}, which is not an index whose "
                    f"children map to child tags: {', '.join(sorted(wrote))} left as they are"
                )
                return notes, holder
            fix = {t: mapped[t] for t in wrote if t in mapped and mapped[t] != wrote[t]}
            unmapped = [t for t in wrote if t not in mapped and t not in repaired]
            needed = [d for d in dict.fromkeys(fix.values()) if d not in known]
            fetched = ordered_map(lambda d: client.get_manifest(repository, d), needed, workers)
            bytes_of = {**known, **{f.digest: f for f in fetched}}
            puts = [(tag, bytes_of[digest]) for tag, digest in fix.items()]
            ordered_map(
                lambda put: client.put_manifest(repository, put[0], put[1].raw, put[1].media_type),
                puts,
                workers,
            )
            wrote.update(fix)
            repaired.update(fix)
            assert holder is not None  # _child_tags_of maps no index out of nothing
            aimed = holder
            holder = client.head_manifest(repository, target)
        if holder != aimed:
            notes.append(
                f"{name} kept changing after {SETTLE_ROUNDS} repairs of its child tags; "
                "another writer is at work"
            )
    except (RegistryError, ManifestError) as exc:
        notes.append(f"repairing the child tags of {name} failed: {exc}")
    notes += [
        f"child tag {t} repaired: it points at {d}, as the index {name} holds lists"
        for t, d in sorted(repaired.items())
    ]
    if unmapped:
        notes.append(
            f"child tags {', '.join(sorted(unmapped))} still point at this merge's images: the "
            f"index {name} holds has no such platform"
        )
    return notes, holder


def _child_tags_of(
    client: RegistryClient,
    repository: str,
    target: str,
    holder: str | None,
    known: Mapping[str, FetchedManifest],
) -> dict[str, str] | None:
    """`{child tag: child digest}` for the index `holder`, named as this merge names them
    (`<target>-<platform>`, merge.child_tag_suffix); None if `holder` is not an index whose
    platform children map to distinct child tags (deleted, a single image, not parseable)."""
    if holder is None:
        return None
    fetched = known.get(holder) or client.get_manifest(repository, holder)
    try:
        parsed = parse_manifest(fetched.raw, fetched.media_type, where=f"{target}@{holder}")
    except ValueError:  # ManifestError, or a platform no normalisation accepts
        return None
    if not isinstance(parsed, ImageIndex):
        return None
    mapped: dict[str, str] = {}
    for entry in parsed.manifests:
        if entry.is_attestation or entry.platform is None or entry.platform.is_unknown:
            continue
        tag = f"{target}-{child_tag_suffix(entry.platform)}"
        if tag in mapped:
            return None
        mapped[tag] = entry.digest
    return mapped
