"""merge-manifest and verify-manifest against a REAL registry (Debian's docker-registry), with
REAL per-arch images built by buildah, confirmed by a real third-party client (skopeo)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import LabImages
from tests.support.cli import archfleet
from tests.support.registry_http import (
    get_manifest,
    head_digest,
    push_buildx_style_index,
)
from toolkit.lab.skopeo import resolved_digest

pytestmark = pytest.mark.integration

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def skopeo_digest(ref: str, arch: str, variant: str | None = None) -> str:
    """The digest of the image skopeo (a real third-party client) pulls as an `arch` client."""
    return resolved_digest(ref, "/".join(p for p in ("linux", arch, variant) if p))


def test_merge_two_arches_skopeo_resolves_each(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    target = f"{reg.address}/src:{unique_tag}"
    mark = reg.mark()
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        target,
        "--source",
        f"linux/amd64=@{lab_images.amd64.digest}",
        "--source",
        f"linux/arm64={reg.address}/src:arm64",
    )
    assert run.code == 0, run.stderr
    index_digest = run.stdout.strip()
    assert index_digest.startswith("sha256:")
    # Cost: per source one manifest + one config GET; a HEAD of the target; N child tags; ONE
    # index PUT, and it is the last request.
    requests = reg.requests_since(mark)
    methods = [(r.method, r.path.split("/")[-2]) for r in requests]
    assert len(requests) == 3 * 2 + 2, methods
    assert [r.method for r in requests].count("PUT") == 3
    assert requests[-1].method == "PUT" and requests[-1].path.endswith(f"/manifests/{unique_tag}")
    assert head_digest(reg.url, "src", unique_tag) == index_digest
    # A real client picks the right child for each architecture.
    assert skopeo_digest(target, "amd64") == lab_images.amd64.digest
    assert skopeo_digest(target, "arm64") == lab_images.arm64.digest
    # Child tags protect the children from clean-up policies.
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.amd64.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-arm64") == lab_images.arm64.digest
    assert get_manifest(reg.url, "src", unique_tag)[1].startswith(OCI_INDEX)


def test_rerun_writes_nothing(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    args = [
        "merge-manifest",
        "--insecure",
        "--json",
        "--target",
        f"{reg.address}/src:{unique_tag}",
        "--source",
        f"linux/amd64=@{lab_images.amd64.digest}",
        "--source",
        f"linux/arm64=@{lab_images.arm64.digest}",
    ]
    first = archfleet(*args)
    assert first.code == 0, first.stderr
    assert first.json()["indexWritten"] == [unique_tag]
    mark = reg.mark()
    second = archfleet(*args)
    assert second.code == 0, second.stderr
    result = second.json()
    assert result["digest"] == first.json()["digest"]
    assert result["changed"] is False and result["indexUnchanged"] == [unique_tag]
    assert not [r for r in reg.requests_since(mark) if r.method in ("PUT", "POST", "DELETE")]


def test_no_child_tags_costs_2n_plus_2(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    mark = reg.mark()
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--no-child-tags",
        "--target",
        f"{reg.address}/src:{unique_tag}",
        "--source",
        f"@{lab_images.amd64.digest}",
        "--source",
        f"@{lab_images.arm64.digest}",
        "--source",
        f"@{lab_images.arm_v7.digest}",
    )
    assert run.code == 0, run.stderr
    assert len(reg.requests_since(mark)) == 2 * 3 + 2
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") is None
    # arm/v7 keeps its variant in the index, and a v7 client gets it.
    index = json.loads(get_manifest(reg.url, "src", unique_tag)[0])
    assert {"architecture": "arm", "os": "linux", "variant": "v7"} in [
        m["platform"] for m in index["manifests"]
    ]
    assert skopeo_digest(f"{reg.address}/src:{unique_tag}", "arm", "v7") == lab_images.arm_v7.digest


def test_dry_run_writes_nothing(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    mark = reg.mark()
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--dry-run",
        "--json",
        "--target",
        f"{reg.address}/src:{unique_tag}",
        "--source",
        f"@{lab_images.amd64.digest}",
        "--source",
        f"@{lab_images.arm64.digest}",
    )
    assert run.code == 0, run.stderr
    assert run.json()["indexWritten"] == [unique_tag] and run.json()["dryRun"] is True
    assert not [r for r in reg.requests_since(mark) if r.method != "GET" and r.method != "HEAD"]
    assert head_digest(reg.url, "src", unique_tag) is None


@pytest.mark.parametrize(
    ("case", "expected_fragments"),
    [
        ("wrong-arch", ["linux/arm64=", "expected linux/arm64", "image is linux/amd64"]),
        ("duplicate", ["are both linux/amd64"]),
        ("missing", ["manifest not found", "sha256:" + "0" * 64]),
        ("bad-ref", ["invalid image reference", "must be lowercase"]),
        ("bad-platform", ["invalid platform", "linux"]),
    ],
)
def test_refusals_leave_the_tag_as_it_was(
    lab_images: LabImages, unique_tag: str, case: str, expected_fragments: list[str]
) -> None:
    reg = lab_images.registry
    before = lab_images.seed(unique_tag)
    sources = {
        # The classic: the "arm64" tag holds an amd64 image.
        "wrong-arch": [f"linux/arm64=@{lab_images.amd64.digest}"],
        "duplicate": [f"@{lab_images.amd64.digest}", f"@{lab_images.docker_amd64.digest}"],
        "missing": [f"linux/amd64=@{lab_images.amd64.digest}", "linux/arm64=@sha256:" + "0" * 64],
        "bad-ref": [f"{reg.address}/Bad/Repo:x"],
        "bad-platform": [f"linux=@{lab_images.amd64.digest}"],
    }[case]
    mark = reg.mark()
    args = ["merge-manifest", "--insecure", "--target", f"{reg.address}/src:{unique_tag}"]
    for source in sources:
        args += ["--source", source]
    run = archfleet(*args)
    assert run.code == 1
    for fragment in expected_fragments:
        assert fragment in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert head_digest(reg.url, "src", unique_tag) == before
    assert not [r for r in reg.requests_since(mark) if r.method in ("PUT", "POST", "DELETE")]


def test_docker_children_make_a_docker_manifest_list(
    lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        f"{reg.address}/src:{unique_tag}",
        "--source",
        f"@{lab_images.docker_amd64.digest}",
        "--source",
        f"@{lab_images.docker_arm64.digest}",
    )
    assert run.code == 0, run.stderr
    raw, media_type = get_manifest(reg.url, "src", unique_tag)
    assert media_type.startswith(DOCKER_LIST) and json.loads(raw)["mediaType"] == DOCKER_LIST
    assert (
        skopeo_digest(f"{reg.address}/src:{unique_tag}", "arm64") == lab_images.docker_arm64.digest
    )


def test_cross_repository_sources_are_mounted(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    target_repo = f"cross/{unique_tag}"
    mark = reg.mark()
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--json",
        "--target",
        f"{reg.address}/{target_repo}:v1",
        "--source",
        f"linux/amd64={lab_images.ref(lab_images.amd64)}",
        "--source",
        f"linux/arm64={lab_images.ref(lab_images.arm64)}",
    )
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["blobsMounted"] >= 4 and len(result["manifestsCopied"]) == 2
    requests = reg.requests_since(mark)
    mounts = [r for r in requests if r.method == "POST" and "mount=" in r.path]
    assert len(mounts) == result["blobsMounted"]
    # No layer passes through the client: the only blob reads are the two configs.
    assert len([r for r in requests if r.method == "GET" and "/blobs/" in r.path]) == 2
    assert skopeo_digest(f"{reg.address}/{target_repo}:v1", "arm64") == lab_images.arm64.digest


def test_buildx_style_index_source_keeps_attestations(
    lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    index_digest, attestations = push_buildx_style_index(
        reg.url,
        "src",
        f"{unique_tag}-buildx",
        [(lab_images.amd64.digest, "linux/amd64"), (lab_images.arm64.digest, "linux/arm64")],
    )
    target = f"{reg.address}/src:{unique_tag}"
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--json",
        "--target",
        target,
        "--source",
        f"{reg.address}/src:{unique_tag}-buildx",
        "--source",
        f"@{lab_images.arm_v7.digest}",
    )
    assert run.code == 0, run.stderr
    index = json.loads(get_manifest(reg.url, "src", unique_tag)[0])
    platforms = [
        m for m in index["manifests"] if "vnd.docker.reference.type" not in m.get("annotations", {})
    ]
    kept = [m for m in index["manifests"] if m not in platforms]
    assert [m["platform"]["architecture"] for m in platforms] == ["amd64", "arm64", "arm"]
    assert sorted(m["digest"] for m in kept) == sorted(attestations)
    assert {m["annotations"]["vnd.docker.reference.digest"] for m in kept} <= {
        m["digest"] for m in platforms
    }
    # Attestations are never counted as platforms: only three child tags.
    assert len(run.json()["childTagsWritten"]) == 3
    verify = archfleet(
        "verify-manifest",
        "--insecure",
        "--target",
        target,
        "--platforms",
        "linux/amd64,linux/arm64,linux/arm/v7",
    )
    assert verify.code == 0, verify.stderr

    stripped = archfleet(
        "merge-manifest",
        "--insecure",
        "--attestations",
        "strip",
        "--target",
        f"{target}-stripped",
        "--source",
        f"{reg.address}/src:{unique_tag}-buildx",
    )
    assert stripped.code == 0, stripped.stderr
    index = json.loads(get_manifest(reg.url, "src", f"{unique_tag}-stripped")[0])
    assert len(index["manifests"]) == 2
    del index_digest


def test_verify_catches_missing_platform_and_lying_binary(
    lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    target = f"{reg.address}/src:{unique_tag}"
    merged = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        target,
        "--source",
        f"@{lab_images.amd64.digest}",
        "--source",
        f"linux/arm64=@{lab_images.lying_arm64.digest}",
    )
    # The config says arm64, so the merge itself cannot know better...
    assert merged.code == 0, merged.stderr
    plain = archfleet(
        "verify-manifest",
        "--insecure",
        "--target",
        target,
        "--platforms",
        "linux/amd64,linux/arm64",
    )
    assert plain.code == 0, plain.stderr
    # ...but the binary check reads the layers and finds an amd64 busybox in the arm64 image.
    deep = archfleet(
        "verify-manifest",
        "--insecure",
        "--json",
        "--check-binaries",
        "--target",
        target,
        "--platforms",
        "linux/amd64,linux/arm64,linux/s390x",
    )
    assert deep.code == 1
    report = deep.json()
    problems = "\n".join(report["problems"])
    assert "platform linux/s390x is missing" in problems
    assert "amd64 binary, not arm64" in problems and "exec format error" in problems
    by_arch = {p["platform"]: p for p in report["platforms"]}
    assert by_arch["linux/amd64"]["binaryArchitecture"] == "amd64"
    assert by_arch["linux/amd64"]["problems"] == []


def test_verify_real_arm64_binary_passes(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    target = f"{reg.address}/src:{unique_tag}"
    assert (
        archfleet(
            "merge-manifest",
            "--insecure",
            "--target",
            target,
            "--source",
            f"@{lab_images.amd64.digest}",
            "--source",
            f"@{lab_images.arm64.digest}",
        ).code
        == 0
    )
    deep = archfleet(
        "verify-manifest",
        "--insecure",
        "--json",
        "--check-binaries",
        "--target",
        target,
        "--platforms",
        "linux/amd64,linux/arm64",
    )
    assert deep.code == 0, deep.stderr
    by_arch = {p["platform"]: p["binaryArchitecture"] for p in deep.json()["platforms"]}
    assert by_arch == {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def test_verify_single_image_is_not_an_index(lab_images: LabImages) -> None:
    reg = lab_images.registry
    run = archfleet(
        "verify-manifest",
        "--insecure",
        "--target",
        f"{reg.address}/src:amd64",
        "--platforms",
        "linux/amd64",
    )
    assert run.code == 1 and "not an index" in run.stderr
