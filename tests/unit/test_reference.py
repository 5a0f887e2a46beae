"""Reference parsing follows Docker's normalisation (distribution/reference)."""

import pytest

from toolkit.registry.reference import ReferenceError, parse_reference


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app", "localhost:5000", "app", "latest", None),
        ("127.0.0.1:5000/group/sub/app:1.0", "127.0.0.1:5000", "group/sub/app", "1.0", None),
        ("registry.example.com/a/b_c/d-e.f", "registry.example.com", "a/b_c/d-e.f", "latest", None),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("r.io/app@sha256:" + "a" * 64, "r.io", "app", None, "sha256:" + "a" * 64),
        ("r.io/app:v1@sha256:" + "b" * 64, "r.io", "app", "v1", "sha256:" + "b" * 64),
        ("r.io:443/app:v1", "r.io:443", "app", "v1", None),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str, digest: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository) == (registry, repository)
    assert (ref.tag, ref.digest) == (tag, digest)


def test_round_trip_and_api_host() -> None:
    ref = parse_reference("alpine")
    assert str(ref) == "docker.io/library/alpine:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/app:v1").api_host == "localhost:5000"


def test_reference_prefers_digest() -> None:
    ref = parse_reference("r.io/app:v1@sha256:" + "c" * 64)
    assert ref.reference == "sha256:" + "c" * 64
    assert parse_reference("r.io/app:v1").reference == "v1"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("r.io:port/app", "bad registry host"),
        ("r.io/App", "must be lowercase"),
        ("r.io/app:-bad", "invalid tag"),
        ("r.io/app:" + "x" * 129, "invalid tag"),
        ("r.io/app@sha256:abc", "invalid digest"),
        ("r.io/app@sha256:" + "G" * 64, "invalid digest"),
        ("r.io/app; rm -rf /", "whitespace"),
        ("r.io//app", "must be lowercase"),
        ("r.io/app:v1\n", "whitespace"),
    ],
)
def test_bad_references_are_named(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_reference(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value) or text == ""


def test_digest_pins_use_the_strict_rules() -> None:
    """A `@sha384:` pin used to parse (any 32+ characters did) and then verify nothing."""
    with pytest.raises(ReferenceError) as info:
        parse_reference("r.io/app@sha384:" + "a" * 96)
    assert "unsupported digest algorithm 'sha384'" in str(info.value)
    sha512 = "sha512:" + "b" * 128
    assert parse_reference("r.io/app@" + sha512).digest == sha512
    with pytest.raises(ReferenceError, match="128 lowercase hex"):
        parse_reference("r.io/app@sha512:" + "b" * 64)


@pytest.mark.parametrize(
    ("text", "repository"),
    [
        ("docker.io/team/app", "team/app"),
        ("index.docker.io/team/app", "team/app"),
        ("team/app", "team/app"),
        ("app", "library/app"),
        ("docker.io/app", "library/app"),
        ("index.docker.io/app:1", "library/app"),
    ],
)
def test_docker_hub_names_go_to_its_api_host(text: str, repository: str) -> None:
    """distribution/reference normalize.go: docker.io and index.docker.io are Docker Hub, whose
    API host is registry-1.docker.io; one-part names get `library/`."""
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.api_host) == (
        "docker.io",
        repository,
        "registry-1.docker.io",
    )


def test_other_registries_keep_their_host() -> None:
    assert parse_reference("ghcr.io/team/app").api_host == "ghcr.io"
    assert parse_reference("ghcr.io/app").repository == "app"  # no library/ off Hub


def test_a_64_hex_repository_name_is_refused_like_docker() -> None:
    with pytest.raises(ReferenceError, match="64 hex digits"):
        parse_reference("a" * 64)
