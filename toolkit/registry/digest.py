"""Content digests: the one place that says which digests we accept and how we check them.

The grammar and the registered algorithms follow the OCI image-spec, descriptor.md
"Digests" (opencontainers/image-spec): `algorithm ":" encoded`, where `sha256` needs 64 and
`sha512` 128 lowercase hex digits (`[A-F]` MUST NOT be used). The spec lets unrecognised
algorithms pass *validation*; we refuse them instead, because a digest we cannot compute is a
check we cannot make: accepting `sha384:…` would accept any content under it (fail open).

A digest from a fetched manifest is untrusted input that goes into URL paths
(`/v2/<name>/blobs/<digest>`): `validate` is called on it before any request is built, so
nothing but `sha256:<hex>` or `sha512:<hex>` ever reaches a path.
"""

from __future__ import annotations

import hashlib
import re

# Algorithms we can verify, with the length of their hex encoding (image-spec "Registered
# algorithms"; blake3 is registered too, but Python's hashlib has no BLAKE3).
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
# descriptor.md's EBNF: algorithm-component ([a-z0-9]+) joined by [+._-], ':', [a-zA-Z0-9=_-]+.
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[a-f0-9]+")
# Longest text quoted back in an error: a hostile manifest's digest can be megabytes.
_QUOTE_LIMIT = 80


class DigestError(ValueError):
    """A digest that is malformed, or uses an algorithm we cannot verify."""


def _quoted(text: str) -> str:
    if len(text) <= _QUOTE_LIMIT:
        return repr(text)
    return repr(text[:_QUOTE_LIMIT]) + f"… ({len(text)} characters)"


def validate(digest: object, *, where: str = "") -> str:
    """`digest` if it is `sha256:<64 hex>` or `sha512:<128 hex>`; DigestError otherwise."""
    prefix = f"{where}: " if where else ""
    if not isinstance(digest, str) or not _GRAMMAR.fullmatch(digest):
        raise DigestError(
            f"{prefix}invalid digest {_quoted(str(digest))}: expected ALGORITHM:ENCODED, "
            "e.g. sha256:<64 lowercase hex digits>"
        )
    algorithm, _, encoded = digest.partition(":")
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise DigestError(
            f"{prefix}unsupported digest algorithm {_quoted(algorithm)} in {_quoted(digest)}: "
            f"only {' and '.join(ALGORITHMS)} can be verified"
        )
    if len(encoded) != length or not _HEX.fullmatch(encoded):
        raise DigestError(
            f"{prefix}invalid digest {_quoted(digest)}: {algorithm} needs {length} lowercase "
            "hex digits"
        )
    return digest


def hasher(digest: str, *, where: str = "") -> hashlib._Hash:
    """A fresh hash object for `digest`'s algorithm (validated first)."""
    return hashlib.new(validate(digest, where=where).partition(":")[0])


def compute(data: bytes, algorithm: str = "sha256") -> str:
    """`algorithm:hex` of `data`."""
    if algorithm not in ALGORITHMS:
        raise DigestError(
            f"unsupported digest algorithm {_quoted(algorithm)}: only "
            f"{' and '.join(ALGORITHMS)} can be verified"
        )
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def matches(data: bytes, digest: str, *, where: str = "") -> bool:
    """Whether `data` hashes to `digest` (validated first: an unknown algorithm is an error,
    never a silent pass)."""
    validate(digest, where=where)
    return compute(data, digest.partition(":")[0]) == digest
