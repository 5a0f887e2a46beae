"""transaction.py, the pure half of the merge's transaction: which tags are written (and which
are already right), what a target is about to lose, and how a rollback is reported."""

from __future__ import annotations

import json

from toolkit.registry.client import FetchedManifest
from toolkit.registry.manifest import OCI_INDEX, OCI_MANIFEST, Descriptor, ImageManifest, Platform
from toolkit.registry.merge import ResolvedImage, ResolvedSource, SourceSpec, plan_merge
from toolkit.registry.reference import parse_reference
from toolkit.registry.transaction import (
    ConcurrentWriteError,
    Conflict,
    PartialWriteError,
    TagFate,
    TagState,
    plan_writes,
)

TARGET = parse_reference("127.0.0.1:5000/app:v1")


def digest(char: str) -> str:
    return "sha256:" + char * 64


def source(char: str, platform: str) -> ResolvedSource:
    spec = SourceSpec.parse(f"@{digest(char)}", target=TARGET)
    config = Descriptor("application/vnd.oci.image.config.v1+json", digest("c"), 10)
    image = ResolvedImage(
        spec,
        "app",
        digest(char),
        OCI_MANIFEST,
        100,
        b"{}",
        ImageManifest(OCI_MANIFEST, config, ()),
        Platform.parse(platform),
    )
    return ResolvedSource(spec, digest(char), OCI_MANIFEST, (image,))


PLAN = plan_merge([TARGET], [source("a", "linux/amd64"), source("b", "linux/arm64")])


def states(**held: str | None) -> dict[str, TagState]:
    tags: dict[str, str | None] = {"v1": None, "v1-amd64": None, "v1-arm64": None}
    tags.update({k.replace("_", "-"): v for k, v in held.items()})
    return {tag: TagState(tag, value) for tag, value in tags.items()}


def test_fresh_tags_are_all_written_index_first() -> None:
    writes = plan_writes(PLAN, states())
    assert [w.tag for w in writes.writes] == ["v1", "v1-amd64", "v1-arm64"]
    assert [w.tag for w in writes.children] == ["v1-amd64", "v1-arm64"]
    assert [w.target for w in writes.children] == ["v1", "v1"]
    assert [w.tag for w in writes.indexes] == ["v1"]
    assert writes.targets == ("v1",)
    assert writes.indexes[0].digest == PLAN.digest and writes.indexes[0].before is None
    assert [(t, k) for t, _, k in writes.expected] == [
        ("v1", "index"),
        ("v1-amd64", "child"),
        ("v1-arm64", "child"),
    ]


def test_an_identical_rerun_writes_nothing() -> None:
    writes = plan_writes(PLAN, states(v1=PLAN.digest, v1_amd64=digest("a"), v1_arm64=digest("b")))
    assert writes.writes == ()
    assert writes.unchanged_indexes == ("v1",)
    assert writes.unchanged_children == ("v1-amd64", "v1-arm64")


def test_only_tags_that_differ_are_written_and_remember_what_they_held() -> None:
    writes = plan_writes(PLAN, states(v1=PLAN.digest, v1_amd64=digest("e"), v1_arm64=digest("b")))
    assert [(w.tag, w.before, w.digest) for w in writes.writes] == [
        ("v1-amd64", digest("e"), digest("a"))
    ]
    assert writes.unchanged_children == ("v1-arm64",)


def test_a_moving_index_puts_every_child_tag_even_unchanged_ones() -> None:
    """The ordering argument (transaction.py) needs the writer of the index a target ends up
    holding to PUT all its child tags after its index: one it skipped as "unchanged" could have
    been moved by another writer between the snapshot and the index PUT."""
    writes = plan_writes(PLAN, states(v1=digest("f"), v1_amd64=digest("a"), v1_arm64=digest("b")))
    assert [(w.tag, w.before, w.digest) for w in writes.writes] == [
        ("v1", digest("f"), PLAN.digest),
        ("v1-amd64", digest("a"), digest("a")),
        ("v1-arm64", digest("b"), digest("b")),
    ]
    assert writes.unchanged_children == ()


def target_holding(raw: bytes, media_type: str) -> dict[str, TagState]:
    held = FetchedManifest(raw, media_type, digest("f"))
    return {**states(), "v1": TagState("v1", digest("f"), held)}


def test_a_target_that_loses_platforms_is_warned_about() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest(c),
                "size": 1,
                "platform": {"os": "linux", "architecture": arch},
            }
            for c, arch in (("a", "amd64"), ("d", "s390x"), ("e", "arm"))
        ],
    }
    writes = plan_writes(PLAN, target_holding(json.dumps(index).encode(), OCI_INDEX))
    assert writes.warnings == (
        f"target 'v1' held {digest('f')} with linux/arm/v7, linux/s390x, which the new index "
        "does not have",
    )


def test_a_target_holding_something_else_is_warned_about() -> None:
    artifact = target_holding(b"{}", "application/vnd.cncf.helm.config.v1+json")
    assert plan_writes(PLAN, artifact).warnings == (
        f"target 'v1' held {digest('f')} (application/vnd.cncf.helm.config.v1+json), not an "
        "image; it is replaced",
    )
    assert plan_writes(PLAN, target_holding(b"not json", OCI_INDEX)).warnings == (
        f"target 'v1' held {digest('f')}, which is not a manifest we can read; it is replaced",
    )


def test_rollback_report_lists_undone_first_and_says_what_is_left() -> None:
    error = PartialWriteError(
        "reg/app",
        RuntimeError("PUT failed"),
        [
            TagFate("v1-s390x", "left", "it did not exist before, and …"),
            TagFate("v1", "never moved", "not moved"),
            TagFate("v1-amd64", "restored", f"put back to {digest('a')}"),
        ],
    )
    assert str(error) == (
        "PUT failed\n"
        "the merge into reg/app failed; it was rolled back, but some tags could NOT be put "
        "back (listed below):\n"
        f"  v1-amd64: put back to {digest('a')}\n"
        "  v1: not moved\n"
        "  v1-s390x: NOT rolled back: it did not exist before, and …"
    )


def test_a_failure_before_anything_moved_says_so() -> None:
    error = PartialWriteError(
        "reg/app", RuntimeError("refused"), [TagFate("v1", "never moved", "not moved")]
    )
    assert str(error) == (
        "refused\nthe merge into reg/app failed; no tag had moved; every tag is as it was "
        "before:\n  v1: not moved"
    )


def test_concurrent_write_error_names_tag_expected_and_found() -> None:
    error = ConcurrentWriteError("reg/app", [Conflict("v1", "index", digest("a"), digest("b"))])
    assert f"target reg/app:v1 holds {digest('b')}, not this merge's {digest('a')}" in str(error)
    deleted = ConcurrentWriteError("reg/app", [Conflict("v1-amd64", "child", digest("a"), None)])
    assert "child tag reg/app:v1-amd64 holds nothing (the tag was deleted)" in str(deleted)
