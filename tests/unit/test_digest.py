"""digest.py: the one set of digest rules (OCI image-spec descriptor.md "Digests"), used by
reference parsing, the client and the engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from toolkit.registry import digest as digests
from toolkit.registry.client import InvalidDigestError, RegistryClient, _verify

SHA256 = "sha256:" + hashlib.sha256(b"x").hexdigest()
SHA512 = "sha512:" + hashlib.sha512(b"x").hexdigest()


def test_sha256_and_sha512_are_accepted_and_checked() -> None:
    assert digests.validate(SHA256) == SHA256 and digests.validate(SHA512) == SHA512
    assert digests.matches(b"x", SHA256) and digests.matches(b"x", SHA512)
    assert not digests.matches(b"y", SHA256)
    assert digests.compute(b"x", "sha512") == SHA512


@pytest.mark.parametrize(
    ("digest", "fragment"),
    [
        ("sha384:" + "a" * 96, "unsupported digest algorithm 'sha384'"),
        ("blake3:" + "a" * 64, "unsupported digest algorithm 'blake3'"),
        ("sha256:" + "A" * 64, "64 lowercase hex"),
        ("sha256:" + "a" * 63, "64 lowercase hex"),
        ("sha512:" + "a" * 64, "128 lowercase hex"),
        ("sha256:" + "g" * 64, "64 lowercase hex"),
        ("sha256:../../x", "expected ALGORITHM:ENCODED"),
        ("sha256/" + "a" * 64, "expected ALGORITHM:ENCODED"),
        ("SHA256:" + "a" * 64, "expected ALGORITHM:ENCODED"),
        ("", "expected ALGORITHM:ENCODED"),
    ],
)
def test_everything_else_is_refused_by_name(digest: str, fragment: str) -> None:
    with pytest.raises(digests.DigestError) as info:
        digests.validate(digest, where="layers[0]")
    assert fragment in str(info.value) and str(info.value).startswith("layers[0]: ")


def test_a_huge_digest_is_not_quoted_whole() -> None:
    with pytest.raises(digests.DigestError) as info:
        digests.validate("sha256:" + "a" * 100_000)
    assert len(str(info.value)) < 400 and "100007 characters" in str(info.value)


def test_matches_refuses_an_unknown_algorithm_instead_of_passing() -> None:
    with pytest.raises(digests.DigestError):
        digests.matches(b"anything", "sha384:" + "0" * 96)


def test_client_verify_fails_closed_on_a_sha384_expectation() -> None:
    """It used to fall back to sha256 and compare nothing: any content passed a sha384 pin."""
    with pytest.raises(InvalidDigestError, match="sha384"):
        _verify(b"any content", "sha384:" + "0" * 96, "r.io/app@sha384:…")
    assert _verify(b"x", SHA512, "w") == SHA512
    assert _verify(b"x", None, "w") == SHA256


def test_client_refuses_bad_digests_before_any_request() -> None:
    """No server at all: each call must fail on the digest, before a connection is tried."""
    client = RegistryClient("127.0.0.1:9", insecure=True, use_env_credentials=False)
    bad = "sha384:" + "0" * 96
    with pytest.raises(InvalidDigestError, match="unsupported digest algorithm 'sha384'"):
        client.get_manifest("app", bad)
    with pytest.raises(InvalidDigestError, match="sha384"):
        client.get_blob("app", bad)
    with pytest.raises(InvalidDigestError, match="sha384"):
        client.download_blob("app", bad, Path("/nonexistent/x"))
    with pytest.raises(InvalidDigestError):
        client.blob_exists("app", "sha256:../../../v2/_catalog")
    with pytest.raises(InvalidDigestError):
        client.mount_blob("app", "sha256:" + "A" * 64, "other")
    assert client.stats.registry == 0
