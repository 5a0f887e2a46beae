"""Strict content checks in merge-manifest against a REAL registry (Debian's docker-registry):
only sha256/sha512 digests, every descriptor digest validated before it reaches a URL, and
attestation manifests read and checked against their descriptors (same repository too)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import LabImages
from tests.support.cli import Run, archfleet
from tests.support.proxy import LocalRequest, LocalResponse, ReverseProxy
from tests.support.registry_http import (
    get_manifest,
    head_digest,
    push_buildx_style_index,
    put_manifest,
)
from toolkit.registry.client import RegistryClient, RetryPolicy
from toolkit.registry.engine import MergeOptions, merge_manifest
from toolkit.registry.merge import MergeError, SourceSpec
from toolkit.registry.reference import parse_reference

pytestmark = pytest.mark.integration

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def merge(lab_images: LabImages, tag: str, *sources: str) -> Run:
    args = ["merge-manifest", "--insecure", "--target", f"{lab_images.registry.address}/src:{tag}"]
    for source in sources:
        args += ["--source", source]
    return archfleet(*args)


def test_a_sha384_pin_is_refused_cleanly(lab_images: LabImages, unique_tag: str) -> None:
    """It used to parse and then check nothing: any content passed under the pin."""
    run = merge(lab_images, unique_tag, "linux/amd64=@sha384:" + "0" * 96)
    assert run.code == 1 and "Traceback" not in run.stderr
    assert "unsupported digest algorithm 'sha384'" in run.stderr
    assert "only sha256 and sha512 can be verified" in run.stderr
    assert head_digest(lab_images.registry.url, "src", unique_tag) is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.update(size=d["size"] + 1), "bytes, the manifest has"),
        (lambda d: d.update(mediaType=DOCKER_MANIFEST), f"descriptor says {DOCKER_MANIFEST}"),
    ],
    ids=["size", "media-type"],
)
def test_same_repository_attestation_descriptor_is_checked(
    lab_images: LabImages,
    unique_tag: str,
    change: Callable[[dict[str, Any]], None],
    fragment: str,
) -> None:
    reg = lab_images.registry
    _, attestations = push_buildx_style_index(
        reg.url, "src", f"{unique_tag}-buildx", [(lab_images.amd64.digest, "linux/amd64")]
    )
    index = json.loads(get_manifest(reg.url, "src", f"{unique_tag}-buildx")[0])
    change(index["manifests"][1])
    put_manifest(reg.url, "src", f"{unique_tag}-lying", index)
    run = merge(lab_images, unique_tag, f":{unique_tag}-lying")
    assert run.code == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"attestation {attestations[0]}" in run.stderr and fragment in run.stderr
    assert head_digest(reg.url, "src", unique_tag) is None  # nothing written


@pytest.mark.parametrize(
    "digest",
    [
        "sha384:" + "0" * 96,
        "sha256:../../../../v2/_catalog",
        "sha256:" + "A" * 64,
    ],
)
def test_descriptor_digests_are_validated_before_any_url_uses_them(
    lab_images: LabImages, unique_tag: str, digest: str
) -> None:
    """A source index (served by a proxy local route, standing in for a registry that serves a
    hostile index; the real registry refuses to store one) lists a bad digest: the merge stops
    after reading the index, and no request path ever carries that digest."""
    good = json.loads(get_manifest(lab_images.registry.url, "src", lab_images.amd64.digest)[0])
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": good["mediaType"],
                "digest": digest,
                "size": 100,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    body = json.dumps(index).encode()

    def evil(request: LocalRequest) -> LocalResponse:
        return LocalResponse(200, body, {"Content-Type": OCI_INDEX})

    routes = {f"/v2/src/manifests/{unique_tag}-evil": evil}
    with ReverseProxy(lab_images.registry.address, local_routes=routes) as proxy:
        client = RegistryClient(
            proxy.address, insecure=True, use_env_credentials=False, retry=RetryPolicy(attempts=1)
        )
        target = parse_reference(f"{proxy.address}/src:{unique_tag}")
        spec = SourceSpec.parse(f":{unique_tag}-evil", target=target)
        with pytest.raises(MergeError) as info:
            merge_manifest(client, [target], [spec], MergeOptions())
        paths = [r.path + "?" + r.query for r in proxy.records]
    assert "manifests[0]" in str(info.value) and "digest" in str(info.value)
    assert paths == [f"/v2/src/manifests/{unique_tag}-evil?"]
