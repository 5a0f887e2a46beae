"""`--annotation KEY=VALUE` for the index a merge writes, checked against the OCI image-spec's
annotation rules (opencontainers/image-spec annotations.md, "Rules" and "Pre-Defined
Annotation Keys"):

- keys and values are strings; a value may be empty; keys MUST be unique within the map (a key
  given twice is refused here rather than one of them silently winning);
- keys SHOULD use reverse domain notation (`com.example.myKey`): a key without a dot is
  accepted with a warning;
- the prefix `org.opencontainers` is reserved for keys the OCI specifications define: there,
  only the image-spec's pre-defined keys are accepted, and a misspelt one is an error;
- `org.opencontainers.image.created` is an RFC 3339 date-time; `base.digest` is a digest;
- `ref.name` and `referrer.*` are meaningful only on descriptors in an image layout's
  `index.json`, not on an index in a registry: refused.

Docker's manifest list format has no annotations field (docker/distribution
docs/spec/manifest-v2-2.md), so an index with annotations is always written as an OCI index.
buildx's `imagetools create --annotation` takes a `TYPE:` prefix; only `index:` (the default)
is meaningful for the one index a merge writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import digest as digests
from .merge import MergeError

OCI_PREFIX = "org.opencontainers"
PREDEFINED = frozenset(
    f"org.opencontainers.image.{name}"
    for name in (
        "created",
        "authors",
        "url",
        "documentation",
        "source",
        "version",
        "revision",
        "vendor",
        "licenses",
        "title",
        "description",
        "base.digest",
        "base.name",
    )
)
# Pre-defined, but only for descriptors in an image layout's index.json.
LAYOUT_ONLY = frozenset(
    {
        "org.opencontainers.image.ref.name",
        "org.opencontainers.image.referrer.subject",
        "org.opencontainers.image.referrer.convert",
    }
)
# RFC 3339 section 5.6 date-time: full-date "T" full-time (time-offset Z or +hh:mm).
_RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_TYPES = ("index", "manifest", "manifest-descriptor", "index-descriptor")


@dataclass(frozen=True)
class Annotations:
    values: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


def parse_annotations(texts: Sequence[str]) -> Annotations:
    """`KEY=VALUE` (or `index:KEY=VALUE`) strings, validated; in the order given."""
    values: dict[str, str] = {}
    warnings: list[str] = []
    for text in texts:
        where = f"--annotation {text!r}"
        key, eq, value = text.partition("=")
        if not eq:
            raise MergeError(f"{where}: expected KEY=VALUE")
        kind, colon, rest = key.partition(":")
        if colon and kind in _TYPES:
            if kind != "index":
                raise MergeError(
                    f"{where}: only index annotations are written (the one index a merge "
                    f"makes); {kind}: is not supported"
                )
            key = rest
        check_key(key, value, where)
        if key in values:
            raise MergeError(f"{where}: {key} given twice (OCI: keys MUST be unique)")
        if "." not in key:
            warnings.append(
                f"{where}: keys SHOULD be in reverse domain notation (com.example.key), "
                "as the OCI image-spec's annotation rules ask"
            )
        values[key] = value
    return Annotations(tuple(values.items()), tuple(warnings))


def check_key(key: str, value: str, where: str) -> None:
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise MergeError(f"{where}: the key must be a non-empty string without spaces")
    if key in LAYOUT_ONLY:
        raise MergeError(
            f"{where}: {key} is only valid on descriptors in an image layout's index.json "
            "(OCI image-spec annotations.md), not on an index in a registry"
        )
    if (key == OCI_PREFIX or key.startswith(OCI_PREFIX + ".")) and key not in PREDEFINED:
        raise MergeError(
            f"{where}: {key} is in the org.opencontainers namespace, which is reserved for "
            "keys the OCI specifications define; known keys: "
            + ", ".join(sorted(k.removeprefix("org.opencontainers.image.") for k in PREDEFINED))
        )
    if key == "org.opencontainers.image.created" and not _RFC3339.match(value):
        raise MergeError(
            f"{where}: created must be an RFC 3339 date-time, e.g. 2026-12-03T02:30:00Z"
        )
    if key == "org.opencontainers.image.base.digest":
        try:
            digests.validate(value, where=where)
        except digests.DigestError as exc:
            raise MergeError(str(exc)) from None
