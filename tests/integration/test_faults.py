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
    strip_header,
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
from toolkit.registry.transaction import PartialWriteError

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, max_retry_after=0.2)


@pytest.fixture
def proxy(lab_images: LabImages) -> Iterator[ReverseProxy]:
    with ReverseProxy(lab_images.registry.address) as running:
        yield running


def merge_via(
    proxy: ReverseProxy, tags: list[str], sources: list[str], *, child_tags: bool = True
) -> tuple[RegistryClient, MergeResult]:
    """merge-manifest through the proxy into `src:<tag>` for each tag, from `@digest` sources."""
    client = RegistryClient(proxy.address, insecure=True, retry=FAST, use_env_credentials=False)
    targets = [parse_reference(f"{proxy.address}/src:{tag}") for tag in tags]
    specs = [SourceSpec.parse(text, target=targets[0]) for text in sources]
    result = merge_manifest(client, targets, specs, MergeOptions(child_tags=child_tags))
    return client, result


def merge_through(
    proxy: ReverseProxy, lab_images: LabImages, tag: str, *, child_tags: bool = False
) -> tuple[RegistryClient, MergeResult]:
    return merge_via(
        proxy,
        [tag],
        [f"linux/amd64=@{lab_images.amd64.digest}", f"linux/arm64=@{lab_images.arm64.digest}"],
        child_tags=child_tags,
    )


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
    # The snapshot GET, the refused PUT, the check that it did not take effect, the PUT again,
    # and the read-back.
    assert sequence == ["GET", "PUT", "HEAD", "PUT", "HEAD"]


@pytest.mark.parametrize(
    ("rule", "error", "fragment"),
    [
        (
            Rule("PUT", r"/manifests/", 50, status(503)),
            PartialWriteError,
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


# --- all or nothing (issue 13 item 1): a failed write is rolled back -------------------------


def seed_with_child_tags(lab_images: LabImages, tag: str) -> str:
    """An earlier merge of amd64 + arm64 under `src:<tag>`, with its child tags."""
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        f"{lab_images.registry.address}/src:{tag}",
        "--source",
        f"@{lab_images.amd64.digest}",
        "--source",
        f"@{lab_images.arm64.digest}",
    )
    assert run.code == 0, run.stderr
    return run.stdout.strip()


def deletes(proxy: ReverseProxy) -> list[str]:
    return [r.path for r in proxy.records if r.method == "DELETE"]


def test_failed_index_put_moves_no_child_tag(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    """The index is the first write: when its PUT fails for good, no child tag has moved."""
    reg = lab_images.registry
    before = seed_with_child_tags(lab_images, unique_tag)
    proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}$", 50, status(500))])
    with pytest.raises(PartialWriteError) as info:
        merge_via(
            proxy,
            [unique_tag],
            [
                f"@{lab_images.docker_amd64.digest}",
                f"@{lab_images.arm64.digest}",
                f"@{lab_images.arm_v7.digest}",
            ],
        )
    message = str(info.value)
    assert isinstance(info.value.cause, TransportError)
    assert head_digest(reg.url, "src", unique_tag) == before
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.amd64.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-arm64") == lab_images.arm64.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-arm-v7") is None
    assert message.endswith(
        f"no tag had moved; every tag is as it was before:\n  {unique_tag}: not moved"
    )
    assert not [r for r in proxy.records if r.method == "PUT" and not r.path.endswith(unique_tag)]


def test_failed_child_tag_put_rolls_back_the_index_and_the_other_child_tags(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    """The index and `-amd64` have moved when the `-arm-v7` PUT fails for good: the index goes
    back first (the tag users pull), then `-amd64`; `-arm-v7` never existed."""
    reg = lab_images.registry
    before = seed_with_child_tags(lab_images, unique_tag)
    proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}-arm-v7$", 50, status(500))])
    with pytest.raises(PartialWriteError) as info:
        merge_via(
            proxy,
            [unique_tag],
            [f"@{lab_images.docker_amd64.digest}", f"@{lab_images.arm_v7.digest}"],
        )
    message = str(info.value)
    assert head_digest(reg.url, "src", unique_tag) == before
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.amd64.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-arm-v7") is None
    assert "it was rolled back; every tag is as it was before" in message
    assert f"\n  {unique_tag}: put back to {before}" in message
    assert f"\n  {unique_tag}-amd64: put back to {lab_images.amd64.digest}" in message
    assert f"\n  {unique_tag}-arm-v7: not moved" in message
    puts = [r.path.rsplit("/", 1)[-1] for r in proxy.records if r.method == "PUT" and r.status]
    # Ours: the index, then the child tags; the rollback's: the index, then -amd64.
    assert puts[0] == unique_tag
    assert puts[-2:] == [unique_tag, f"{unique_tag}-amd64"]


def test_failed_second_target_rolls_back_the_first(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    reg = lab_images.registry
    first, second = f"{unique_tag}-a", f"{unique_tag}-b"
    before_first = lab_images.seed(first)
    proxy.set_rules([Rule("PUT", rf"/manifests/{second}$", 50, status(500))])
    with pytest.raises(PartialWriteError) as info:
        merge_via(
            proxy,
            [first, second],
            [f"@{lab_images.amd64.digest}", f"@{lab_images.arm64.digest}"],
            child_tags=False,
        )
    message = str(info.value)
    assert head_digest(reg.url, "src", first) == before_first
    assert head_digest(reg.url, "src", second) is None
    assert f"PUT {proxy.url}/v2/src/manifests/{second}: HTTP 500" in message
    assert message.endswith(
        "it was rolled back; every tag is as it was before:\n"
        f"  {first}: put back to {before_first}\n"
        f"  {second}: not moved"
    )


def test_new_tags_are_deleted_where_the_registry_deletes_tags(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    """Uses a stand-in for the tag DELETE: the proxy answers it 202 itself, as distribution v3's
    DeleteManifest does for a tag (an Untag; registry/handlers/manifests.go) and as OCI
    distribution-spec v1.1 "Deleting tags" requires; the 2.8 registry behind it cannot (so
    the tags stay upstream, and only the requests and the account are checked here)."""
    proxy.set_rules(
        [
            Rule("PUT", rf"/manifests/{unique_tag}-arm64$", 50, status(500)),
            Rule("DELETE", rf"/manifests/{unique_tag}(-amd64)?$", 2, status(202, body=b"")),
        ]
    )
    with pytest.raises(PartialWriteError) as info:
        merge_via(
            proxy, [unique_tag], [f"@{lab_images.amd64.digest}", f"@{lab_images.arm64.digest}"]
        )
    message = str(info.value)
    # The tags that did not exist and were moved: deleted as tags, the index first.
    assert deletes(proxy) == [
        f"/v2/src/manifests/{unique_tag}",
        f"/v2/src/manifests/{unique_tag}-amd64",
    ]
    assert f"{unique_tag}: deleted (it did not exist before)" in message
    assert f"{unique_tag}-amd64: deleted (it did not exist before)" in message
    assert f"{unique_tag}-arm64: not moved" in message
    assert "every tag is as it was before" in message


def test_rerun_writes_nothing_without_docker_content_digest_on_head(
    proxy: ReverseProxy, lab_images: LabImages, unique_tag: str
) -> None:
    """A registry that omits Docker-Content-Digest on HEAD (a SHOULD in the distribution spec):
    the digest comes from a GET instead, so an identical re-run still writes nothing."""
    proxy.set_rules([Rule("HEAD", r"/manifests/", 10_000, strip_header("Docker-Content-Digest"))])
    sources = [f"@{lab_images.amd64.digest}", f"@{lab_images.arm64.digest}"]
    merge_via(proxy, [unique_tag], sources)
    proxy.clear_records()
    _, again = merge_via(proxy, [unique_tag], sources)
    assert again.changed is False
    assert sorted(again.child_tags_unchanged) == [f"{unique_tag}-amd64", f"{unique_tag}-arm64"]
    assert not [r for r in proxy.records if r.method in ("PUT", "POST", "DELETE")]
    assert any(r.fault == "strip_header:Docker-Content-Digest" for r in proxy.records)
