"""Image references, parsed and normalised the way Docker does.

Follows distribution/reference normalize.go (`splitDockerDomain`, `ParseNormalizedNamed`):
`alpine` is `docker.io/library/alpine:latest`; the first path component names a registry
only when it looks like a host (has a `.` or a `:`, is `localhost`, or has upper case);
`index.docker.io` (legacyDefaultDomain) is `docker.io`, and a one-part name on Docker Hub gets
the `library/` prefix (officialRepoPrefix). `docker.io` is a name, not a server: as that file
notes, Hub's registry API is served by `registry-1.docker.io` (see `api_host`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import DigestError, validate

DEFAULT_REGISTRY = "docker.io"
# docker.io is a name; its API lives on another host.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
LEGACY_DOCKER_HUB = "index.docker.io"
DEFAULT_TAG = "latest"

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_ANCHORED_HEX_RE = re.compile(r"^[a-f0-9]{64}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HOST_RE = re.compile(
    r"^(?:localhost|\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]{1,5})?$"
)


class ReferenceError(ValueError):
    """A string that is not a valid image reference."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return api_host(self.registry)

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one (it is exact)."""
        if self.digest:
            return self.digest
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=validate_digest(digest))

    def same_registry(self, other: Reference) -> bool:
        return self.registry == other.registry

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def api_host(registry: str) -> str:
    """The host:port serving `registry`'s API: Docker Hub's names map to registry-1.docker.io."""
    if registry in (DEFAULT_REGISTRY, LEGACY_DOCKER_HUB, DOCKER_HUB_API_HOST):
        return DOCKER_HUB_API_HOST
    return registry


def is_docker_hub(registry: str) -> bool:
    return api_host(registry) == DOCKER_HUB_API_HOST


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise ReferenceError(
            f"invalid tag {tag!r}: expected letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-', at most 128 characters)"
        )
    return tag


def validate_digest(digest: str) -> str:
    """The digest rules of digest.py (sha256/sha512 only, lowercase hex of the right length)."""
    try:
        return validate(digest)
    except DigestError as exc:
        raise ReferenceError(str(exc)) from None


def parse_reference(text: str) -> Reference:
    """Parse `[registry/]repo[:tag][@digest]`, defaulting like Docker."""
    original = text
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError(f"invalid image reference {original!r}: empty or contains whitespace")

    if _ANCHORED_HEX_RE.match(text):
        # ParseNormalizedNamed refuses it too: 64 hex digits would be mistaken for an image ID.
        raise ReferenceError(
            f"invalid image reference {original!r}: a repository name cannot be 64 hex digits"
        )
    name, at, digest = text.partition("@")
    if at:
        try:
            validate_digest(digest)
        except ReferenceError as exc:
            raise ReferenceError(f"invalid image reference {original!r}: {exc}") from None

    registry = DEFAULT_REGISTRY
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST_RE.match(first):
            raise ReferenceError(
                f"invalid image reference {original!r}: bad registry host {first!r}"
            )
        registry = first
        remainder = rest
    else:
        remainder = name

    tag: str | None = None
    # A ':' after the last '/' separates the tag (a ':' before it would be a port).
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        try:
            validate_tag(tag)
        except ReferenceError as exc:
            raise ReferenceError(f"invalid image reference {original!r}: {exc}") from None

    if registry in (DEFAULT_REGISTRY, LEGACY_DOCKER_HUB):
        registry = DEFAULT_REGISTRY
        if "/" not in remainder:
            remainder = f"library/{remainder}"
    if not _REPOSITORY_RE.match(remainder) or len(remainder) > 255:
        raise ReferenceError(
            f"invalid image reference {original!r}: repository {remainder!r} must be lowercase "
            "path components of letters and digits separated by '/', '.', '_', '__' or '-'"
        )
    if tag is None and not at:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=remainder, tag=tag, digest=digest or None)
