"""inspect-manifest: what a tag (or digest) holds, as `docker buildx imagetools inspect` shows it.

One manifest GET; for a single image (not an index) one more GET for its config, to name its
platform. Attestation entries are buildx's: an index entry annotated
`vnd.docker.reference.type: attestation-manifest` (platform unknown/unknown) whose
`vnd.docker.reference.digest` names the image it describes (manifest.py).

`--format` is a small template rendered once per image entry (once for a single image);
attestation entries are left out, since their unknown/unknown is no platform to run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .client import RegistryClient
from .manifest import (
    REFERENCE_DIGEST,
    ImageIndex,
    ManifestError,
    Platform,
    parse_manifest,
    platform_from_config,
)
from .reference import Reference

# Template fields, documented in the --format help (tool_commands.py).
FORMAT_FIELDS = (
    "platform",
    "os",
    "architecture",
    "variant",
    "digest",
    "size",
    "mediaType",
    "name",
    "index",
)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z]+)\s*\}\}")


@dataclass(frozen=True)
class Entry:
    digest: str
    size: int
    media_type: str
    platform: Platform | None
    attestation: bool = False
    subject: str | None = None  # the image an attestation describes
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "platform": str(self.platform) if self.platform else None,
            "digest": self.digest,
            "size": self.size,
            "mediaType": self.media_type,
            "attestation": self.attestation,
        }
        if self.subject:
            data["subject"] = self.subject
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        return data


@dataclass(frozen=True)
class ManifestView:
    name: str
    media_type: str
    digest: str
    size: int
    raw: bytes
    is_index: bool
    entries: tuple[Entry, ...] = ()  # an index's manifests
    # A single image: its platform (from the config; None if the config names none, as an
    # artifact's may not) and its config digest.
    platform: Platform | None = None
    config_digest: str | None = None
    layers: int = 0
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def images(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if not e.attestation)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.is_index:
            data["manifests"] = [e.to_json() for e in self.entries]
        else:
            data["platform"] = str(self.platform) if self.platform else None
            data["config"] = self.config_digest
            data["layers"] = self.layers
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        return data


def inspect_reference(
    client: RegistryClient, reference: Reference, *, read_config: bool = True
) -> ManifestView:
    """The manifest `reference` names; without `read_config` a single image's platform is left
    unknown and only the manifest is read (what --raw needs)."""
    fetched = client.get_manifest(reference.repository, reference.reference)
    parsed = parse_manifest(fetched.raw, fetched.media_type, where=str(reference))
    name, size = str(reference), len(fetched.raw)
    if isinstance(parsed, ImageIndex):
        entries = tuple(
            Entry(
                d.digest,
                d.size,
                d.media_type,
                d.platform,
                d.is_attestation,
                d.annotations.get(REFERENCE_DIGEST) if d.is_attestation else None,
                d.annotations,
            )
            for d in parsed.manifests
        )
        return ManifestView(
            name,
            fetched.media_type,
            fetched.digest,
            size,
            fetched.raw,
            is_index=True,
            entries=entries,
            annotations=parsed.annotations,
        )
    platform: Platform | None = None
    if read_config:
        config = client.get_blob(reference.repository, parsed.config.digest)
        try:
            platform = platform_from_config(config, where=f"{reference} config")
        except ManifestError:
            platform = None  # an artifact's config need not name a platform
    return ManifestView(
        name,
        fetched.media_type,
        fetched.digest,
        size,
        fetched.raw,
        is_index=False,
        platform=platform,
        config_digest=parsed.config.digest,
        layers=len(parsed.layers),
    )


def check_template(template: str) -> None:
    """Refuse a template with unknown fields before any request is sent."""
    unknown = sorted({m for m in _PLACEHOLDER.findall(template) if m not in FORMAT_FIELDS})
    if unknown:
        raise ValueError(
            f"--format: unknown field(s) {', '.join(unknown)}; known: "
            + ", ".join(f"{{{{{f}}}}}" for f in FORMAT_FIELDS)
        )


def render(template: str, view: ManifestView) -> list[str]:
    """One line per image entry (one for a single image). `\\n` and `\\t` in the template are
    a newline and a tab, so one entry may span lines."""
    check_template(template)
    template = template.replace("\\n", "\n").replace("\\t", "\t")
    if view.is_index:
        rows = [_fields(view, e.platform, e.digest, e.size, e.media_type) for e in view.images]
    else:
        rows = [_fields(view, view.platform, view.digest, view.size, view.media_type)]
    return [_fill(template, row) for row in rows]


def _fill(template: str, row: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: row[m[1]], template)


def _fields(
    view: ManifestView, platform: Platform | None, digest: str, size: int, media_type: str
) -> dict[str, str]:
    return {
        "platform": str(platform) if platform else "",
        "os": platform.os if platform else "",
        "architecture": platform.architecture if platform else "",
        "variant": platform.variant if platform else "",
        "digest": digest,
        "size": str(size),
        "mediaType": media_type,
        "name": view.name,
        "index": view.digest,
    }
