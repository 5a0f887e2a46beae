"""Image references, parsed and normalised the way Docker does.

`alpine` is `docker.io/library/alpine:latest`; the first path component names a registry
only when it looks like a host (has a `.` or a `:`, or is `localhost`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

DEFAULT_REGISTRY = "docker.io"
# docker.io is a name; its API lives on another host.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
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
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

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


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise ReferenceError(
            f"invalid tag {tag!r}: expected letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-', at most 128 characters)"
        )
    return tag


def validate_digest(digest: str) -> str:
    if not _DIGEST_RE.match(digest):
        raise ReferenceError(f"invalid digest {digest!r}: expected ALGORITHM:HEX, e.g. sha256:…")
    algorithm, _, encoded = digest.partition(":")
    if algorithm == "sha256" and not re.fullmatch(r"[a-f0-9]{64}", encoded):
        raise ReferenceError(f"invalid digest {digest!r}: sha256 needs 64 lowercase hex digits")
    if algorithm == "sha512" and not re.fullmatch(r"[a-f0-9]{128}", encoded):
        raise ReferenceError(f"invalid digest {digest!r}: sha512 needs 128 lowercase hex digits")
    return digest


def parse_reference(text: str) -> Reference:
    """Parse `[registry/]repo[:tag][@digest]`, defaulting like Docker."""
    original = text
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError(f"invalid image reference {original!r}: empty or contains whitespace")

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

    if registry in (DEFAULT_REGISTRY, "index.docker.io"):
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
