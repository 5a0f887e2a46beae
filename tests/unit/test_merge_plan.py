"""The pure merge planner: what goes into the index, and what is refused (no registry here)."""

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
