"""merge-manifest and verify-manifest against a REAL registry (Debian's docker-registry), with
REAL per-arch images built by buildah, confirmed by a real third-party client (skopeo)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import LabImages
from tests.support.cli import Run as CliRun
from tests.support.cli import archfleet
from tests.support.registry_http import (
    digest_of,
    get_manifest,
    head_digest,
    push_buildx_style_index,
    put_manifest,
    upload_blob,
)
from toolkit.lab.images import BuiltImage
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
    # Cost, 4N + 3 in six rounds (engine.py): N manifest GETs, N config GETs; the snapshot (GET
    # of the target, HEAD of each child tag); ONE index PUT, the first write; N child-tag PUTs;
    # the read-back, a HEAD of the target only (transaction.py says why that is enough).
    requests = reg.requests_since(mark)
    calls = [
        (r.method, r.path.rsplit("/", 1)[-1] if "/manifests/" in r.path else "blob")
        for r in requests
    ]
    child_tags = [f"{unique_tag}-amd64", f"{unique_tag}-arm64"]
    assert len(requests) == 4 * 2 + 3, calls
    assert sorted(calls[:2]) == sorted([("GET", lab_images.amd64.digest), ("GET", "arm64")])
    assert calls[2:4] == [("GET", "blob"), ("GET", "blob")]
    assert sorted(calls[4:7]) == sorted([("GET", unique_tag)] + [("HEAD", t) for t in child_tags])
    assert calls[7] == ("PUT", unique_tag)
    assert sorted(calls[8:10]) == [("PUT", t) for t in child_tags]
    assert calls[10:] == [("HEAD", unique_tag)]
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


def test_no_child_tags_costs_2n_plus_3(lab_images: LabImages, unique_tag: str) -> None:
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
    # N manifests, N configs, the target's GET, its PUT and its read-back HEAD.
    assert len(reg.requests_since(mark)) == 2 * 3 + 3
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
        (
            "missing",
            [
                # The --source text and its expected platform, then the registry's answer.
                "source 'linux/arm64=@sha256:" + "0" * 64 + "' (expected linux/arm64): ",
                "manifest not found",
            ],
        ),
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


# --- containerd's platform rules and child tags (issue 13 items 3-5) -------------------------
# The registry and the images' layers are real; the per-OS/variant configs below are written by
# hand (what other builders push: a config without `variant`, arm64 `v8`, a windows config).


def push_with_config(lab_images: LabImages, base: str, **changes: object) -> str:
    """Push (by digest, into `src`) a copy of image `base` whose config has `changes` applied
    (a value None deletes the key). Layers are shared with `base`. Returns the new digest."""
    reg = lab_images.registry
    manifest = json.loads(get_manifest(reg.url, "src", base)[0])
    config_response = requests.get(
        f"{reg.url}/v2/src/blobs/{manifest['config']['digest']}", timeout=10
    )
    config_response.raise_for_status()
    config = config_response.json()
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    raw_config = json.dumps(config).encode()
    manifest["config"] = {
        **manifest["config"],
        "digest": upload_blob(reg.url, "src", raw_config),
        "size": len(raw_config),
    }
    raw = json.dumps(manifest).encode()
    return put_manifest(reg.url, "src", digest_of(raw), manifest)


def merge(lab_images: LabImages, tag: str, *sources: str, json_out: bool = False) -> CliRun:
    args = ["merge-manifest", "--insecure", "--target", f"{lab_images.registry.address}/src:{tag}"]
    if json_out:
        args.append("--json")
    for source in sources:
        args += ["--source", source]
    return archfleet(*args)


def verify(lab_images: LabImages, tag: str, platforms: str) -> CliRun:
    target = f"{lab_images.registry.address}/src:{tag}"
    return archfleet(
        "verify-manifest", "--insecure", "--json", "--target", target, "--platforms", platforms
    )


@pytest.mark.parametrize(
    "declared",
    ["linux/arm64/v8", "linux/arm64/v8.0", "linux/aarch64/8"],
    ids=["v8", "v8.0", "aarch64-8"],
)
def test_source_declared_arm64_v8_merges_an_arm64_image(
    lab_images: LabImages, unique_tag: str, declared: str
) -> None:
    """containerd/platforms database.go normalizeArch: arm64 "8", "v8", "v8.0" -> no variant."""
    reg = lab_images.registry
    run = merge(lab_images, unique_tag, f"{declared}=@{lab_images.arm64.digest}", json_out=True)
    assert run.code == 0, run.stderr
    assert run.json()["platforms"][0]["platform"] == "linux/arm64"
    index = json.loads(get_manifest(reg.url, "src", unique_tag)[0])
    assert index["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux"}
    assert head_digest(reg.url, "src", f"{unique_tag}-arm64") == lab_images.arm64.digest
    assert skopeo_digest(f"{reg.address}/src:{unique_tag}", "arm64") == lab_images.arm64.digest


@pytest.mark.parametrize(
    ("changes", "twin", "platform"),
    [
        # A config with arm and no variant is arm/v7 to containerd (database.go case "arm").
        ({"variant": None}, "arm_v7", "linux/arm/v7"),
        ({"architecture": "armhf", "variant": None}, "arm_v7", "linux/arm/v7"),
        # arm64 "v8" is plain arm64 (database.go case "aarch64", "arm64").
        ({"variant": "v8"}, "arm64", "linux/arm64"),
    ],
    ids=["arm-no-variant", "armhf", "arm64-v8"],
)
def test_normalised_duplicates_are_refused(
    lab_images: LabImages, unique_tag: str, changes: dict[str, object], twin: str, platform: str
) -> None:
    reg = lab_images.registry
    original: BuiltImage = getattr(lab_images, twin)
    other = push_with_config(lab_images, original.digest, **changes)
    before = lab_images.seed(unique_tag)
    mark = reg.mark()
    run = merge(lab_images, unique_tag, f"@{other}", f"@{original.digest}")
    assert run.code == 1
    assert f"are both {platform}" in run.stderr and "Traceback" not in run.stderr
    assert head_digest(reg.url, "src", unique_tag) == before
    assert not [r for r in reg.requests_since(mark) if r.method in ("PUT", "POST", "DELETE")]


def test_arm_without_variant_is_written_as_arm_v7_and_skopeo_picks_it(
    lab_images: LabImages, unique_tag: str
) -> None:
    """The index says what every client normalises to; skopeo's --override-variant choice is
    the same as for buildah's own arm/v7 image (test_no_child_tags_costs_2n_plus_3)."""
    reg = lab_images.registry
    arm = push_with_config(lab_images, lab_images.arm_v7.digest, variant=None)
    run = merge(
        lab_images,
        unique_tag,
        f"linux/arm=@{arm}",
        f"linux/amd64=@{lab_images.amd64.digest}",
        f"linux/arm64/v8=@{lab_images.arm64.digest}",
    )
    assert run.code == 0, run.stderr
    index = json.loads(get_manifest(reg.url, "src", unique_tag)[0])
    assert index["manifests"][0]["platform"] == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
    }
    ref = f"{reg.address}/src:{unique_tag}"
    assert skopeo_digest(ref, "arm", "v7") == arm
    assert skopeo_digest(ref, "arm64") == lab_images.arm64.digest
    assert skopeo_digest(ref, "arm64", "v8") == lab_images.arm64.digest
    assert skopeo_digest(ref, "amd64") == lab_images.amd64.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-arm-v7") == arm


def test_verify_platforms_linux_arm_finds_the_arm_v7_child(
    lab_images: LabImages, unique_tag: str
) -> None:
    run = merge(
        lab_images, unique_tag, f"@{lab_images.amd64.digest}", f"@{lab_images.arm_v7.digest}"
    )
    assert run.code == 0, run.stderr
    found = verify(lab_images, unique_tag, "linux/amd64,linux/arm")
    assert found.code == 0, found.stderr
    assert found.json()["problems"] == []
    missing = verify(lab_images, unique_tag, "linux/arm/v6")
    assert missing.code == 1
    assert "platform linux/arm/v6 is missing" in "\n".join(missing.json()["problems"])


def hand_made_index(
    lab_images: LabImages,
    tag: str,
    children: list[tuple[str, dict[str, str]]],
    sizes: dict[str, int] | None = None,
) -> str:
    """Push an index written by hand (as a careless tool would) over real child manifests."""
    reg = lab_images.registry
    entries = []
    for digest, platform in children:
        raw, media_type = get_manifest(reg.url, "src", digest)
        entries.append(
            {
                "mediaType": media_type.split(";")[0],
                "digest": digest,
                "size": (sizes or {}).get(digest, len(raw)),
                "platform": platform,
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return put_manifest(reg.url, "src", tag, index)


def test_verify_counts_duplicates_over_every_child(lab_images: LabImages, unique_tag: str) -> None:
    """arm + arm/v7 are one platform twice, though only amd64 was asked for."""
    arm = push_with_config(lab_images, lab_images.arm_v7.digest, variant=None)
    hand_made_index(
        lab_images,
        unique_tag,
        [
            (lab_images.amd64.digest, {"os": "linux", "architecture": "amd64"}),
            (arm, {"os": "linux", "architecture": "arm"}),
            (lab_images.arm_v7.digest, {"os": "linux", "architecture": "arm", "variant": "v7"}),
        ],
    )
    run = verify(lab_images, unique_tag, "linux/amd64")
    assert run.code == 1
    problems = run.json()["problems"]
    assert len(problems) == 1 and "platform linux/arm/v7 appears 2 times" in problems[0]
    assert arm in problems[0] and lab_images.arm_v7.digest in problems[0]


def test_verify_compares_every_child_descriptor_with_the_bytes(
    lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    raw_arm64, _ = get_manifest(reg.url, "src", lab_images.arm64.digest)
    hand_made_index(
        lab_images,
        unique_tag,
        [
            (lab_images.amd64.digest, {"os": "linux", "architecture": "amd64"}),
            (lab_images.arm64.digest, {"os": "linux", "architecture": "arm64"}),
        ],
        sizes={lab_images.arm64.digest: len(raw_arm64) + 7},
    )
    run = verify(lab_images, unique_tag, "linux/amd64,linux/arm64")
    assert run.code == 1
    problems = run.json()["problems"]
    assert problems == [
        f"linux/arm64 ({lab_images.arm64.digest}): descriptor size {len(raw_arm64) + 7} but "
        f"the manifest is {len(raw_arm64)} bytes"
    ]


def test_verify_checks_attestation_descriptors_too(lab_images: LabImages, unique_tag: str) -> None:
    reg = lab_images.registry
    _, attestations = push_buildx_style_index(
        reg.url, "src", f"{unique_tag}-buildx", [(lab_images.amd64.digest, "linux/amd64")]
    )
    index = json.loads(get_manifest(reg.url, "src", f"{unique_tag}-buildx")[0])
    index["manifests"][1]["size"] += 1
    put_manifest(reg.url, "src", unique_tag, index)
    run = verify(lab_images, unique_tag, "linux/amd64")
    assert run.code == 1
    problems = run.json()["problems"]
    assert len(problems) == 1 and problems[0].startswith(
        f"entry {attestations[0]}: descriptor size"
    )


OSES = ("linux", "windows", "freebsd", "darwin")


def test_four_os_merge_gives_every_child_its_own_tag(
    lab_images: LabImages, unique_tag: str
) -> None:
    """Issue 13: children of one arch on several OSes shared a child tag (30 of 40 untagged)."""
    reg = lab_images.registry
    sources: list[str] = []
    expected: dict[str, str] = {}
    for os_name in OSES:
        for arch, base in (("amd64", lab_images.amd64), ("arm64", lab_images.arm64)):
            digest = (
                base.digest
                if os_name == "linux"
                else push_with_config(lab_images, base.digest, os=os_name)
            )
            sources.append(f"{os_name}/{arch}=@{digest}")
            suffix = arch if os_name == "linux" else f"{os_name}-{arch}"
            expected[f"{unique_tag}-{suffix}"] = digest
    first = merge(lab_images, unique_tag, *sources, json_out=True)
    assert first.code == 0, first.stderr
    assert sorted(first.json()["childTagsWritten"]) == sorted(expected)
    assert f"{unique_tag}-windows-amd64" in expected and f"{unique_tag}-amd64" in expected
    for tag, digest in expected.items():
        assert head_digest(reg.url, "src", tag) == digest, tag
    assert len(set(expected.values())) == len(expected) == 8
    # An identical re-run writes nothing.
    mark = reg.mark()
    again = merge(lab_images, unique_tag, *sources, json_out=True)
    assert again.code == 0, again.stderr
    assert again.json()["changed"] is False
    assert sorted(again.json()["childTagsUnchanged"]) == sorted(expected)
    assert not [r for r in reg.requests_since(mark) if r.method in ("PUT", "POST", "DELETE")]


# --- smaller items of issue 13 ----------------------------------------------------------------


def test_overwriting_a_target_with_fewer_platforms_warns(
    lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    wide = merge(
        lab_images,
        unique_tag,
        f"@{lab_images.amd64.digest}",
        f"@{lab_images.arm64.digest}",
        f"@{lab_images.arm_v7.digest}",
    )
    assert wide.code == 0, wide.stderr
    narrow = merge(
        lab_images, unique_tag, f"@{lab_images.amd64.digest}", f"@{lab_images.arm64.digest}"
    )
    assert narrow.code == 0, narrow.stderr
    assert (
        f"warning: target {unique_tag!r} held {wide.stdout.strip()} with linux/arm/v7, which "
        "the new index does not have" in narrow.stderr
    )
    raw, _ = get_manifest(reg.url, "src", lab_images.amd64.digest)
    single_digest = put_manifest(reg.url, "src", f"{unique_tag}-single", json.loads(raw))
    single = merge(
        lab_images,
        f"{unique_tag}-single",
        f"@{lab_images.amd64.digest}",
        f"@{lab_images.arm64.digest}",
        json_out=True,
    )
    assert single.code == 0, single.stderr
    assert single.json()["warnings"] == [
        f"target '{unique_tag}-single' held {single_digest}, a single-platform image; "
        "it becomes an index of linux/amd64, linux/arm64"
    ]


def test_refused_cross_repository_merge_copies_nothing(
    lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    mark = reg.mark()
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        f"{reg.address}/cross/{unique_tag}:v1",
        "--source",
        f"linux/amd64={lab_images.ref(lab_images.amd64)}",
        "--source",
        f"linux/arm64={lab_images.ref(lab_images.amd64)}",
    )
    assert run.code == 1 and "expected linux/arm64" in run.stderr, run.stderr
    assert not [r for r in reg.requests_since(mark) if r.method in ("PUT", "POST", "DELETE")]


def test_missing_blob_in_a_cross_repository_source_is_named(
    lab_images: LabImages, unique_tag: str
) -> None:
    """A source repository whose image lost a layer (deleted by hand or a clean-up): the
    mount falls back to an upload, as for a mount policy, but the error says what is wrong."""
    reg = lab_images.registry
    broken = f"broken/{unique_tag}"
    copied = archfleet(
        "merge-manifest",
        "--insecure",
        "--no-child-tags",
        "--target",
        f"{reg.address}/{broken}:src",
        "--source",
        lab_images.ref(lab_images.amd64),
    )
    assert copied.code == 0, copied.stderr
    layer = json.loads(get_manifest(reg.url, "src", lab_images.amd64.digest)[0])["layers"][0]
    deleted = requests.delete(f"{reg.url}/v2/{broken}/blobs/{layer['digest']}", timeout=10)
    assert deleted.status_code == 202
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        f"{reg.address}/cross/{unique_tag}:v1",
        "--source",
        f"{reg.address}/{broken}@{lab_images.amd64.digest}",
    )
    assert run.code == 1
    assert f"could not mount {layer['digest']} from {broken}" in run.stderr
    assert "the blob is missing from the source repository" in run.stderr
    assert "cross-repository mounts" not in run.stderr and "Traceback" not in run.stderr
