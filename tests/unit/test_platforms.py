"""containerd's platform rules (toolkit/registry/platforms.py), rule by rule, each against the
line of github.com/containerd/platforms (commit 09756f59) it follows. No fakes: pure functions."""

from __future__ import annotations

import json

import pytest

from toolkit.registry import platforms
from toolkit.registry.client import FetchedManifest
from toolkit.registry.manifest import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Descriptor,
    ManifestError,
    Platform,
    compute_digest,
    platform_from_config,
)
from toolkit.registry.platforms import Spec
from toolkit.registry.verify import check_descriptor, check_platform_counts


@pytest.mark.parametrize(
    ("text", "canonical", "source"),
    [
        # database.go normalizeArch: case "aarch64", "arm64": switch variant case "8", "v8", "v8.0"
        ("linux/arm64/8", "linux/arm64", "database.go: arm64 variant 8 -> none"),
        ("linux/arm64/v8", "linux/arm64", "database.go: arm64 variant v8 -> none"),
        ("linux/arm64/v8.0", "linux/arm64", "database.go: arm64 variant v8.0 -> none"),
        # ... case "9", "9.0", "v9.0": variant = "v9"
        ("linux/arm64/9.0", "linux/arm64/v9", "database.go: arm64 9.0 -> v9"),
        ("linux/arm64/v8.2", "linux/arm64/v8.2", "database.go: other arm64 variants kept"),
        ("linux/aarch64", "linux/arm64", 'database.go: case "aarch64", "arm64"'),
        ("linux/aarch64/v8", "linux/arm64", "database.go: aarch64 + v8"),
        # case "arm": switch variant case "", "7": variant = "v7"
        ("linux/arm", "linux/arm/v7", "database.go: arm with no variant -> v7"),
        ("linux/arm/7", "linux/arm/v7", "database.go: arm variant 7 -> v7"),
        # ... case "5", "6", "8": variant = "v" + variant
        ("linux/arm/5", "linux/arm/v5", "database.go: arm 5 -> v5"),
        ("linux/arm/8", "linux/arm/v8", "database.go: arm 8 -> v8"),
        ("linux/arm/v6", "linux/arm/v6", "database.go: arm v6 kept"),
        # case "armhf": arch = "arm"; variant = "v7" / case "armel": variant = "v6"
        ("linux/armhf", "linux/arm/v7", "database.go: armhf -> arm/v7"),
        ("linux/armel", "linux/arm/v6", "database.go: armel -> arm/v6"),
        # case "x86_64", "x86-64", "amd64": arch = "amd64"; if variant == "v1" { variant = "" }
        ("linux/x86_64", "linux/amd64", "database.go: x86_64 -> amd64"),
        ("linux/x86-64", "linux/amd64", "database.go: x86-64 -> amd64"),
        ("linux/amd64/v1", "linux/amd64", "database.go: amd64 v1 -> none"),
        ("linux/amd64/v3", "linux/amd64/v3", "database.go: amd64 v3 kept"),
        # case "i386": arch = "386"; variant = ""
        ("linux/i386", "linux/386", "database.go: i386 -> 386"),
        # normalizeArch: strings.ToLower(arch), strings.ToLower(variant); normalizeOS: ToLower
        ("Linux/AArch64/V8", "linux/arm64", "database.go: lower case"),
        # normalizeOS: case "macos": os = "darwin"
        ("macos/arm64", "darwin/arm64", "database.go: macos -> darwin"),
        ("windows/amd64", "windows/amd64", "other OSes as they are"),
    ],
)
def test_normalisation_rule(text: str, canonical: str, source: str) -> None:
    assert str(Platform.parse(text)) == canonical, source


def test_i686_is_not_a_containerd_spelling() -> None:
    """database.go knows i386 only; i686 is a `uname -m` value, mapped by archmap (not here)."""
    assert str(Platform.parse("linux/i686")) == "linux/i686"


def test_every_constructor_normalises() -> None:
    """One place: a Platform made by hand, parsed, or read from JSON compares the same."""
    assert Platform("linux", "arm") == Platform("linux", "arm", "v7") == Platform.parse("linux/arm")
    assert Platform("linux", "aarch64", "v8") == Platform("linux", "arm64")
    assert hash(Platform("linux", "arm")) == hash(Platform.parse("linux/armhf"))
    assert Platform("linux", "arm64", "v8").to_json() == {"architecture": "arm64", "os": "linux"}


def test_json_null_variant_is_no_variant() -> None:
    """encoding/json: a JSON null leaves a Go string field as it was (""), so image-spec's
    Platform.Variant is empty; it used to become the text "none" here (str(None).lower())."""
    assert Platform.from_json({"os": "linux", "architecture": "amd64", "variant": None}) == (
        Platform("linux", "amd64")
    )
    assert str(Platform.from_json({"os": "linux", "architecture": "arm64", "variant": None})) == (
        "linux/arm64"
    )
    config = json.dumps({"os": "linux", "architecture": "arm", "variant": None}).encode()
    assert platform_from_config(config, where="x") == Platform.parse("linux/arm/v7")
    descriptor = Descriptor.from_json(
        {"mediaType": "m", "digest": "sha256:" + "a" * 64, "size": 1, "platform": None}, where="x"
    )
    assert descriptor.platform is None


def test_json_non_string_is_refused() -> None:
    """encoding/json refuses a number for a string field; so do we, with the field named."""
    with pytest.raises(ManifestError, match="variant must be a string"):
        Platform.from_json({"os": "linux", "architecture": "arm", "variant": 7})


@pytest.mark.parametrize(
    "text", ["linux", "linux/arm/v7/x", "linux//v7", "linux/arm 64", "*/amd64"]
)
def test_parse_refuses(text: str) -> None:
    """Stricter than platforms.go Parse: no OS or arch filled from the running machine;
    components as specifierRe `^[A-Za-z0-9_.-]+$`; no wildcards."""
    with pytest.raises(ValueError, match="invalid platform"):
        Platform.parse(text)


@pytest.mark.parametrize(
    ("host", "image", "runs"),
    [
        # compare.go Only: "For arm/v7, will also match arm/v6 and arm/v5"
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm", "linux/arm/v5", True),  # arm is v7 (database.go), so v7's vector
        # "For arm/v8, will also match arm/v7, arm/v6 and arm/v5"
        ("linux/arm/v8", "linux/arm/v7", True),
        # platformVector case "arm64": the arm64 vector, then arm/v8 and below
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64", "linux/arm/v8", True),
        ("linux/arm64", "linux/arm/v7", True),
        ("linux/arm64", "linux/arm/v5", True),
        ("linux/arm64", "linux/arm64/v8.1", False),
        # "For arm64/v8.x, will also match arm64/v8.{0..x-1}"
        ("linux/arm64/v8.2", "linux/arm64/v8.1", True),
        ("linux/arm64/v8.2", "linux/arm64", True),
        # "For arm64/v9.x, will also match arm64/v9.{0..x-1} and arm64/v8.{0..x+5}"
        ("linux/arm64/v9.1", "linux/arm64/v8.6", True),
        ("linux/arm64/v9.1", "linux/arm64/v8.7", False),
        # "For amd64, will also match 386"
        ("linux/amd64", "linux/386", True),
        ("linux/amd64/v3", "linux/amd64/v2", True),
        ("linux/amd64/v3", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v2", False),
        ("linux/386", "linux/amd64", False),
        # matcher.Match compares OS too
        ("linux/amd64", "windows/amd64", False),
        # platformVector: an arm64 variant not in arm64variantToVersion resets the vector
        ("linux/arm64/v7", "linux/arm64/v7", False),
    ],
)
def test_only_matcher(host: str, image: str, runs: bool) -> None:
    assert Platform.parse(host).runs(Platform.parse(image)) is runs


def test_compatible_order_is_containerds() -> None:
    """compare.go platformVector order: best first (Ordered(...) prefers earlier entries)."""
    vector = [str(p) for p in Platform.parse("linux/arm64").compatible()]
    assert vector == [
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert [str(p) for p in Platform.parse("linux/amd64/v2").compatible()] == [
        "linux/amd64/v2",
        "linux/amd64",
        "linux/386",
    ]


def test_spellings_all_normalise_back() -> None:
    """The lookup tables for shell/Groovy list only spellings normalizeArch maps to the key."""
    arm = platforms.spellings(Spec("linux", "arm", "v7"))
    assert {"linux/arm", "arm", "linux/armhf", "linux/arm/7", "arm/v7"} <= set(arm)
    for name in arm:
        text = name if name.startswith("linux/") else f"linux/{name}"
        assert str(Platform.parse(text)) == "linux/arm/v7", name
    arm64 = platforms.spellings(Spec("linux", "arm64"))
    assert {"linux/aarch64", "linux/arm64/v8", "linux/arm64/8", "arm64/v8.0"} <= set(arm64)
    assert "linux/arm64/v9" not in arm64
    assert platforms.spellings(Spec("linux", "s390x")) == ("linux/s390x", "s390x")
    assert platforms.spellings(Spec("windows", "amd64"), bare_linux=True)[0] == "windows/amd64"


# --- verify's pure checks use the same rules ----------------------------------------------


def entry(char: str, platform: str | None, **extra: object) -> Descriptor:
    data: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + char * 64}
    data["size"] = extra.pop("size", 10)
    if platform is not None:
        os_name, arch, *variant = platform.split("/")
        data["platform"] = {"os": os_name, "architecture": arch, "variant": (variant or [None])[0]}
    data.update(extra)
    return Descriptor.from_json(data, where="test")


def test_verify_required_arm_finds_an_arm_v7_child() -> None:
    entries = [entry("1", "linux/amd64"), entry("2", "linux/arm/v7")]
    assert check_platform_counts(entries, [Platform.parse("linux/arm")]) == []
    assert check_platform_counts(entries, [Platform.parse("linux/armhf")]) == []


def test_verify_counts_duplicates_over_every_child() -> None:
    """arm + arm/v7 is one platform twice, even when only amd64 was asked for."""
    entries = [entry("1", "linux/amd64"), entry("2", "linux/arm"), entry("3", "linux/arm/v7")]
    problems = check_platform_counts(entries, [Platform.parse("linux/amd64")])
    assert len(problems) == 1 and "platform linux/arm/v7 appears 2 times" in problems[0]
    assert "sha256:2222" in problems[0] and "sha256:3333" in problems[0]
    arm64 = [entry("1", "linux/arm64/v8"), entry("2", "linux/aarch64")]
    assert "linux/arm64 appears 2 times" in check_platform_counts(arm64, [])[0]


def test_verify_missing_names_what_a_client_would_fall_back_to() -> None:
    """compare.go Only(arm/v7) also matches arm/v6: said, but still a missing platform."""
    problems = check_platform_counts([entry("1", "linux/arm/v6")], [Platform.parse("linux/arm")])
    assert problems == [
        "platform linux/arm/v7 is missing (present: linux/arm/v6); a linux/arm/v7 client "
        "would fall back to the linux/arm/v6 image"
    ]


def test_descriptor_is_compared_with_the_bytes() -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
    good = Descriptor(OCI_MANIFEST, compute_digest(raw), len(raw))
    fetched = FetchedManifest(raw, OCI_MANIFEST, compute_digest(raw))
    assert check_descriptor(good, fetched) == []
    wrong = Descriptor(DOCKER_MANIFEST, "sha256:" + "0" * 64, len(raw) + 1)
    problems = check_descriptor(wrong, fetched)
    assert [p.split(" but ")[0] for p in problems] == [
        f"descriptor size {len(raw) + 1}",
        "descriptor digest sha256:" + "0" * 64,
        f"descriptor media type {DOCKER_MANIFEST}",
    ]
    odd = Descriptor(OCI_MANIFEST, "sha384:" + "0" * 96, len(raw))
    assert "unsupported digest algorithm 'sha384'" in check_descriptor(odd, fetched)[0]


def test_hostile_descriptor_digest_is_not_fetched() -> None:
    """verify never puts a digest it cannot check into a URL path (no client needed)."""
    from toolkit.registry.verify import _fetch_and_check

    for bad in ("sha384:" + "0" * 96, "sha256:../../x", "sha256:" + "A" * 64):
        fetched, problems = _fetch_and_check(None, "app", entry("1", None, digest=bad))  # type: ignore[arg-type]
        assert fetched is None and "is not a sha256/sha512 digest" in problems[0]
