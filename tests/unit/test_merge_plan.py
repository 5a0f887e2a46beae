"""The pure merge planner: what goes into the index, and what is refused (no registry here)."""

import dataclasses
import json

import pytest

from toolkit.registry.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageManifest,
    Platform,
)
from toolkit.registry.merge import (
    MergeError,
    ResolvedImage,
    ResolvedSource,
    SourceSpec,
    plan_merge,
)
from toolkit.registry.reference import parse_reference

TARGET = parse_reference("127.0.0.1:5000/app:v1")


def digest(char: str) -> str:
    return "sha256:" + char * 64


def image(
    spec: SourceSpec,
    char: str,
    platform: str,
    media_type: str = OCI_MANIFEST,
    claimed: str | None = None,
) -> ResolvedImage:
    config = Descriptor("application/vnd.oci.image.config.v1+json", digest("c"), 10)
    return ResolvedImage(
        source=spec,
        repository="app",
        digest=digest(char),
        media_type=media_type,
        size=100,
        raw_manifest=b"{}",
        manifest=ImageManifest(media_type, config, ()),
        platform=Platform.parse(platform),
        claimed_platform=Platform.parse(claimed) if claimed else None,
    )


def single(text: str, char: str, actual: str, media_type: str = OCI_MANIFEST) -> ResolvedSource:
    spec = SourceSpec.parse(text, target=TARGET)
    return ResolvedSource(spec, digest(char), media_type, (image(spec, char, actual, media_type),))


def attestation(char: str, subject: str) -> Descriptor:
    return Descriptor(
        OCI_MANIFEST,
        digest(char),
        50,
        Platform("unknown", "unknown"),
        {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject,
        },
    )


def test_source_spec_forms() -> None:
    spec = SourceSpec.parse("linux/arm/v7=@" + digest("a"), target=TARGET)
    assert spec.expected == Platform("linux", "arm", "v7")
    assert spec.reference.repository == "app" and spec.reference.digest == digest("a")
    bare = SourceSpec.parse("127.0.0.1:5000/other:amd64", target=TARGET)
    assert bare.expected is None and bare.reference.repository == "other"
    with pytest.raises(MergeError, match="linux"):
        SourceSpec.parse("linux=:amd64", target=TARGET)


def test_two_platforms_make_an_oci_index_with_child_tags() -> None:
    plan = plan_merge(
        [TARGET],
        [
            single("linux/amd64=:amd64", "1", "linux/amd64"),
            single("linux/arm64=:arm64", "2", "linux/arm64"),
        ],
    )
    index = json.loads(plan.index)
    assert plan.media_type == OCI_INDEX == index["mediaType"]
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert [t.tag for t in plan.child_tags] == ["v1-amd64", "v1-arm64"]
    assert plan.digest.startswith("sha256:")


def test_same_inputs_same_digest() -> None:
    sources = [single(":a", "1", "linux/amd64"), single(":b", "2", "linux/arm64")]
    assert plan_merge([TARGET], sources).digest == plan_merge([TARGET], sources).digest


def test_docker_children_make_a_docker_list() -> None:
    plan = plan_merge(
        [TARGET],
        [
            single(":a", "1", "linux/amd64", DOCKER_MANIFEST),
            single(":b", "2", "linux/arm64", DOCKER_MANIFEST),
        ],
        child_tags=False,
    )
    assert plan.media_type == DOCKER_LIST and plan.child_tags == ()


def test_mixed_children_make_an_oci_index() -> None:
    plan = plan_merge(
        [TARGET],
        [single(":a", "1", "linux/amd64", DOCKER_MANIFEST), single(":b", "2", "linux/arm64")],
    )
    assert plan.media_type == OCI_INDEX


def test_wrong_arch_is_refused_naming_source_expected_and_actual() -> None:
    with pytest.raises(MergeError) as info:
        plan_merge([TARGET], [single("linux/arm64=:arm64", "1", "linux/amd64")])
    message = str(info.value)
    assert "linux/arm64=:arm64" in message
    assert "expected linux/arm64" in message and "image is linux/amd64" in message


def test_arm64_v8_equals_arm64_but_arm_variants_differ() -> None:
    plan_merge([TARGET], [single("linux/arm64/v8=:x", "1", "linux/arm64")])
    with pytest.raises(MergeError, match="expected linux/arm/v7"):
        plan_merge([TARGET], [single("linux/arm/v7=:x", "1", "linux/arm/v6")])


def test_duplicate_platform_is_refused() -> None:
    with pytest.raises(MergeError, match="both linux/amd64"):
        plan_merge([TARGET], [single(":a", "1", "linux/amd64"), single(":b", "2", "linux/amd64")])


def test_unknown_platform_image_is_refused() -> None:
    with pytest.raises(MergeError, match="not a runnable platform"):
        plan_merge([TARGET], [single(":a", "1", "unknown/unknown")])


def test_digest_target_and_mixed_repositories_are_refused() -> None:
    sources = [single(":a", "1", "linux/amd64")]
    with pytest.raises(MergeError, match="must be a tag"):
        plan_merge([parse_reference("r.io/app@" + digest("f"))], sources)
    with pytest.raises(MergeError, match="one repository"):
        plan_merge([TARGET, parse_reference("127.0.0.1:5000/other:v1")], sources)
    with pytest.raises(MergeError, match="no source"):
        plan_merge([TARGET], [])


def buildx_index_source(text: str) -> ResolvedSource:
    """What `docker buildx build --platform linux/amd64,linux/arm64 --provenance=true` pushes."""
    spec = SourceSpec.parse(text, target=TARGET)
    images = (
        image(spec, "1", "linux/amd64", claimed="linux/amd64"),
        image(spec, "2", "linux/arm64", claimed="linux/arm64"),
    )
    return ResolvedSource(
        spec,
        digest("9"),
        OCI_INDEX,
        images,
        attestations=(attestation("a", digest("1")), attestation("b", digest("2"))),
    )


def test_index_source_keeps_attestations_pointing_at_children() -> None:
    plan = plan_merge([TARGET], [buildx_index_source(":multi")])
    entries = json.loads(plan.index)["manifests"]
    assert [str(p) for p in plan.platforms] == ["linux/amd64", "linux/arm64"]
    children = {e["digest"] for e in entries[:2]}
    subjects = {e["annotations"]["vnd.docker.reference.digest"] for e in entries[2:]}
    assert len(entries) == 4 and subjects == children
    assert all(e["platform"] == {"architecture": "unknown", "os": "unknown"} for e in entries[2:])
    # Child tags only for platforms: attestations are not counted as platforms.
    assert [t.tag for t in plan.child_tags] == ["v1-amd64", "v1-arm64"]


def test_attestations_strip() -> None:
    plan = plan_merge([TARGET], [buildx_index_source(":multi")], attestations="strip")
    assert len(json.loads(plan.index)["manifests"]) == 2 and plan.attestations == ()


def test_index_source_with_expectation_must_be_that_platform_only() -> None:
    with pytest.raises(
        MergeError, match="expected linux/arm64, but the image is linux/amd64, linux/arm64"
    ):
        plan_merge([TARGET], [buildx_index_source("linux/arm64=:multi")])


def test_index_entry_lying_about_its_platform_is_refused() -> None:
    spec = SourceSpec.parse(":multi", target=TARGET)
    lying = ResolvedSource(
        spec, digest("9"), OCI_INDEX, (image(spec, "1", "linux/amd64", claimed="linux/arm64"),)
    )
    with pytest.raises(MergeError, match="claims linux/arm64 but its config says linux/amd64"):
        plan_merge([TARGET], [lying])


def test_dangling_attestation_is_refused() -> None:
    spec = SourceSpec.parse(":multi", target=TARGET)
    source = ResolvedSource(
        spec,
        digest("9"),
        OCI_INDEX,
        (image(spec, "1", "linux/amd64"),),
        attestations=(attestation("a", digest("7")),),
    )
    with pytest.raises(MergeError, match="refers to sha256:7777"):
        plan_merge([TARGET], [source])


def test_child_tag_too_long_is_a_clear_error() -> None:
    target = parse_reference("127.0.0.1:5000/app:" + "t" * 125)
    with pytest.raises(MergeError, match="--no-child-tags"):
        plan_merge([target], [single(":a", "1", "linux/amd64")])


def test_several_targets_get_child_tags_each() -> None:
    plan = plan_merge(
        [TARGET, TARGET.with_tag("latest")],
        [single(":a", "1", "linux/amd64"), single(":b", "2", "linux/arm/v7")],
    )
    assert [t.tag for t in plan.child_tags] == [
        "v1-amd64",
        "v1-arm-v7",
        "latest-amd64",
        "latest-arm-v7",
    ]


# --- containerd's platform rules (toolkit/registry/platforms.py) in the planner --------------


def from_config(spec: SourceSpec, char: str, config: dict[str, str | None]) -> ResolvedImage:
    """An image whose platform is read the way the engine reads a config (Platform.from_json)."""
    made = image(spec, char, "linux/amd64")
    return dataclasses.replace(made, platform=Platform.from_json(config))


@pytest.mark.parametrize(
    ("declared", "actual"),
    [
        ("linux/arm64/v8", "linux/arm64"),  # database.go: arm64 "8", "v8", "v8.0" -> ""
        ("linux/arm64/8", "linux/arm64"),
        ("linux/arm64/v8.0", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),  # database.go: case "aarch64", "arm64"
        ("linux/arm", "linux/arm/v7"),  # database.go: case "arm": "", "7" -> v7
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),  # database.go: case "armhf"
        ("linux/armel", "linux/arm/v6"),  # database.go: case "armel"
        ("linux/x86_64/v1", "linux/amd64"),  # database.go: x86_64 -> amd64, v1 -> ""
        ("linux/i386", "linux/386"),  # database.go: case "i386"
    ],
)
def test_declared_platform_is_normalised_like_containerd(declared: str, actual: str) -> None:
    plan = plan_merge([TARGET], [single(f"{declared}=:x", "1", actual)])
    assert [str(p) for p in plan.platforms] == [actual]


def test_declared_platform_is_strict_not_only_compatible() -> None:
    """compare.go OnlyStrict, not Only: an arm/v7 host runs arm/v6, but a source declared
    arm/v7 that is an arm/v6 image is still refused (the declaration is a check)."""
    with pytest.raises(MergeError, match="expected linux/arm/v7, but the image is linux/arm/v6"):
        plan_merge([TARGET], [single("linux/arm=:x", "1", "linux/arm/v6")])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            {"os": "linux", "architecture": "arm"},
            {"os": "linux", "architecture": "arm", "variant": "v7"},
        ),
        (
            {"os": "linux", "architecture": "arm64", "variant": "v8"},
            {"os": "linux", "architecture": "arm64"},
        ),
        (
            {"os": "linux", "architecture": "aarch64"},
            {"os": "linux", "architecture": "arm64", "variant": "8"},
        ),
        (
            {"os": "linux", "architecture": "amd64", "variant": "v1"},
            {"os": "linux", "architecture": "x86_64"},
        ),
        (
            {"os": "linux", "architecture": "armhf"},
            {"os": "linux", "architecture": "arm", "variant": "7"},
        ),
        (
            {"os": "linux", "architecture": "arm", "variant": None},
            {"os": "linux", "architecture": "arm"},
        ),
    ],
)
def test_duplicates_over_normalised_platforms(
    first: dict[str, str | None], second: dict[str, str | None]
) -> None:
    a, b = SourceSpec.parse(":a", target=TARGET), SourceSpec.parse(":b", target=TARGET)
    sources = [
        ResolvedSource(a, digest("1"), OCI_MANIFEST, (from_config(a, "1", first),)),
        ResolvedSource(b, digest("2"), OCI_MANIFEST, (from_config(b, "2", second),)),
    ]
    with pytest.raises(MergeError, match="sources ':a' and ':b' are both linux/"):
        plan_merge([TARGET], sources)


def test_duplicates_inside_one_index_source() -> None:
    """Every child counts, also two of one index source (a hand-made index)."""
    spec = SourceSpec.parse(":multi", target=TARGET)
    children = (
        from_config(spec, "1", {"os": "linux", "architecture": "arm"}),
        from_config(spec, "2", {"os": "linux", "architecture": "arm", "variant": "v7"}),
    )
    source = ResolvedSource(spec, digest("9"), OCI_INDEX, children)
    with pytest.raises(
        MergeError, match=r"source ':multi' holds sha256:1+ and sha256:2+, both linux/arm/v7"
    ):
        plan_merge([TARGET], [source])


def test_child_tags_name_the_os_when_not_linux_and_are_unique() -> None:
    """Issue 13: a 40-platform merge over 4 OSes left 30 children without a tag."""
    platforms = [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
        "windows/amd64",
        "windows/arm64",
        "freebsd/amd64",
        "freebsd/arm64",
        "darwin/arm64",
    ]
    sources = [single(f":{i}", "0123456789abcdef"[i], p) for i, p in enumerate(platforms)]
    plan = plan_merge([TARGET], sources)
    tags = [t.tag for t in plan.child_tags]
    assert tags == [
        "v1-amd64",
        "v1-arm64",
        "v1-arm-v7",
        "v1-windows-amd64",
        "v1-windows-arm64",
        "v1-freebsd-amd64",
        "v1-freebsd-arm64",
        "v1-darwin-arm64",
    ]
    assert len(set(tags)) == len(plan.children)
    assert [t.digest for t in plan.child_tags] == [c.digest for c in plan.children]


def test_colliding_child_tags_are_refused() -> None:
    """An architecture named `arm-v7` (no variant) would share `v1-arm-v7` with arm/v7."""
    sources = [single(":a", "1", "linux/arm/v7"), single(":b", "2", "linux/arm-v7")]
    with pytest.raises(MergeError, match="would name both linux/arm/v7 and linux/arm-v7"):
        plan_merge([TARGET], sources)
    assert len(plan_merge([TARGET], sources, child_tags=False).children) == 2


def test_unknown_architecture_is_warned_about() -> None:
    """database.go isKnownArch: `i686` is a uname value, not an architecture clients know."""
    plan = plan_merge([TARGET], [single(":a", "1", "linux/i686"), single(":b", "2", "linux/386")])
    assert len(plan.warnings) == 1 and "linux/i686 is not an OS/architecture" in plan.warnings[0]
