"""inspect-manifest's --format template (toolkit/registry/inspection.py), on hand-made views."""

from __future__ import annotations

import pytest

from toolkit.registry.inspection import Entry, ManifestView, check_template, render
from toolkit.registry.manifest import OCI_INDEX, OCI_MANIFEST, Platform

DIGEST = "sha256:" + "1" * 64
CHILD = "sha256:" + "2" * 64
ATTESTATION = "sha256:" + "3" * 64


def index_view() -> ManifestView:
    return ManifestView(
        name="r.example/app:1",
        media_type=OCI_INDEX,
        digest=DIGEST,
        size=900,
        raw=b"{}",
        is_index=True,
        entries=(
            Entry(CHILD, 500, OCI_MANIFEST, Platform.parse("linux/arm/v7")),
            Entry(ATTESTATION, 480, OCI_MANIFEST, Platform("unknown", "unknown"), True, CHILD),
        ),
    )


def test_one_line_per_image_entry_attestations_left_out() -> None:
    assert render("{{platform}}", index_view()) == ["linux/arm/v7"]
    assert render("{{ os }}/{{architecture}}:{{variant}} {{size}}", index_view()) == [
        "linux/arm:v7 500"
    ]
    assert render("{{name}}@{{index}} -> {{digest}}\\t{{mediaType}}", index_view()) == [
        f"r.example/app:1@{DIGEST} -> {CHILD}\t{OCI_MANIFEST}"
    ]


def test_a_single_image_is_one_line() -> None:
    view = ManifestView(
        "r.example/app:amd64", OCI_MANIFEST, CHILD, 500, b"{}", False, platform=None
    )
    assert render("[{{platform}}] {{digest}}", view) == [f"[] {CHILD}"]


def test_unknown_fields_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) arch, tag; known: \{\{platform\}\}"):
        check_template("{{arch}} {{tag}}")
    check_template("plain text, no fields")
