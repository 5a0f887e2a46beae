"""Faults between the merger and a REAL registry: a loopback proxy (tests/support/proxy.py, a
test stand-in for a flaky network or load balancer) injects 503/429, dropped connections,
cut-off and corrupted bodies. The merge either succeeds within its retry budget or fails
cleanly with the target tag untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LabImages
from tests.support.cli import archfleet
from tests.support.proxy import (
    ReverseProxy,
    Rule,
    corrupt_body,
    drop_after_forward,
    drop_before_response,
    free_port,
    status,
    truncate_body,
)
from tests.support.registry_http import head_digest
from toolkit.registry.client import (
    DigestMismatchError,
    RegistryClient,
    RetryPolicy,
    TransportError,
)
from toolkit.registry.engine import MergeOptions, MergeResult, merge_manifest
from toolkit.registry.merge import SourceSpec
from toolkit.registry.reference import parse_reference

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, max_retry_after=0.2)


@pytest.fixture
def proxy(lab_images: LabImages) -> Iterator[ReverseProxy]:
    with ReverseProxy(lab_images.registry.address) as running:
        yield running


def merge_through(
    proxy: ReverseProxy, lab_images: LabImages, tag: str, *, child_tags: bool = False
) -> tuple[RegistryClient, MergeResult]:
    client = RegistryClient(proxy.address, insecure=True, retry=FAST, use_env_credentials=False)
    target = parse_reference(f"{proxy.address}/src:{tag}")
    sources = [
        SourceSpec.parse(f"linux/amd64=@{lab_images.amd64.digest}", target=target),
        SourceSpec.parse(f"linux/arm64=@{lab_images.arm64.digest}", target=target),
    ]
    result = merge_manifest(client, [target], sources, MergeOptions(child_tags=child_tags))
    return client, result


def test_transient_faults_are_retried_within_budget(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    proxy.set_rules(
        [
            Rule("GET", r"/manifests/sha256:", 2, status(503, retry_after="0")),
            Rule("GET", r"/blobs/", 1, status(429, retry_after="0")),
            Rule("GET", r"/blobs/", 1, drop_before_response()),
            Rule("HEAD", rf"/manifests/{unique_tag}$", 1, status(502)),
            Rule("GET", r"/manifests/sha256:", 1, truncate_body()),
        ]
    )
    client, result = merge_through(proxy, lab_images, unique_tag)
    assert all(rule.remaining == 0 for rule in proxy.rules)
    assert client.stats.retries == 6
    assert head_digest(lab_images.registry.url, "src", unique_tag) == result.plan.digest


def test_dropped_connection_after_the_put_took_effect_is_not_resent(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}$", 1, drop_after_forward())])
    _, result = merge_through(proxy, lab_images, unique_tag)
    assert head_digest(lab_images.registry.url, "src", unique_tag) == result.plan.digest
    # The client checked (HEAD) instead of sending the body again.
    puts = [r for r in proxy.records if r.method == "PUT"]
    assert len(puts) == 1 and puts[0].status is None
    after_put = proxy.records[proxy.records.index(puts[0]) + 1]
    assert (after_put.method, after_put.path) == ("HEAD", f"/v2/src/manifests/{unique_tag}")


def test_put_refused_with_503_is_checked_then_resent(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}$", 1, status(503))])
    _, result = merge_through(proxy, lab_images, unique_tag)
    assert head_digest(lab_images.registry.url, "src", unique_tag) == result.plan.digest
    sequence = [r.method for r in proxy.records if r.path.endswith(f"/manifests/{unique_tag}")]
    assert sequence == ["HEAD", "PUT", "HEAD", "PUT"]


@pytest.mark.parametrize(
    ("rule", "error", "fragment"),
    [
        (
            Rule("PUT", r"/manifests/", 50, status(503)),
            TransportError,
            # The registry's own explanation survives the last retry.
            "HTTP 503 (UNAVAILABLE: injected fault: status 503) after 5 attempts",
        ),
        (
            Rule("GET", r"/manifests/sha256:", 1, corrupt_body()),
            DigestMismatchError,
            "does not match its digest",
        ),
        (
            Rule("GET", r"/blobs/", 1, corrupt_body()),
            DigestMismatchError,
            "does not match its digest",
        ),
        (Rule("GET", r"/blobs/", 50, drop_before_response()), TransportError, "connection failed"),
    ],
    ids=["put-503-forever", "corrupt-manifest", "corrupt-config", "blob-drops-forever"],
)
def test_faults_beyond_budget_fail_cleanly_tag_untouched(
    proxy: ReverseProxy,
    lab_images: LabImages,
    unique_tag: str,
    rule: Rule,
    error: type[Exception],
    fragment: str,
) -> None:
    before = lab_images.seed(unique_tag)
    proxy.set_rules([rule])
    with pytest.raises(error) as info:
        merge_through(proxy, lab_images, unique_tag, child_tags=True)
    assert fragment in str(info.value)
    assert head_digest(lab_images.registry.url, "src", unique_tag) == before
    # Nothing half-written: no child tag either.
    assert head_digest(lab_images.registry.url, "src", f"{unique_tag}-arm64") is None


def test_corrupt_layer_fails_the_binary_check_cleanly(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    lab_images.seed(unique_tag)
    proxy.set_rules([Rule("GET", r"/blobs/", 20, corrupt_body())])
    run = archfleet(
        "verify-manifest",
        "--insecure",
        "--check-binaries",
        "--target",
        f"{proxy.address}/src:{unique_tag}",
    )
    assert run.code == 1
    assert "does not match its digest" in run.stderr and "Traceback" not in run.stderr


def test_unreachable_registry_is_a_clear_error() -> None:
    port = free_port()
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        f"127.0.0.1:{port}/app:v1",
        "--source",
        "linux/amd64=:amd64",
    )
    assert run.code == 1
    assert f"127.0.0.1:{port}" in run.stderr and "connection failed" in run.stderr
    assert "after 5 attempts" in run.stderr and "Traceback" not in run.stderr
