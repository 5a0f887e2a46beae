"""Manifest types: media types, platforms, descriptors, and parsing of manifest JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import platforms

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

# buildx's attestation manifests point at the image they describe through these annotations.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_TYPE = "attestation-manifest"


class ManifestError(ValueError):
    """Manifest or config content that is not what the OCI/Docker specs describe."""


@dataclass(frozen=True, order=True)
class Platform:
    """An image platform, always in containerd's normalised form (platforms.py), so that `==`,
    hashing and `str()` agree with how every containerd-based client compares platforms:
    `Platform("linux", "arm")` IS `linux/arm/v7`, `Platform("linux", "aarch64", "v8")` IS
    `linux/arm64`. Comparing two Platforms is containerd's OnlyStrict (compare.go)."""

    os: str
    architecture: str
    variant: str = ""

    def __post_init__(self) -> None:
        # One place for the rules, however a Platform is made: platforms.go Normalize.
        spec = platforms.normalize(self.os, self.architecture, self.variant or "")
        object.__setattr__(self, "os", spec.os)
        object.__setattr__(self, "architecture", spec.architecture)
        object.__setattr__(self, "variant", spec.variant)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64`, `linux/arm/v7`, `linux/aarch64/v8`: containerd's Parse + Normalize."""
        return cls(*platforms.parse(text))

    @classmethod
    def normalised(cls, os: str, architecture: str, variant: str = "") -> Platform:
        """Kept for callers that read the parts from elsewhere (buildah inspect)."""
        return cls(os, architecture, variant or "")

    @classmethod
    def from_json(cls, data: Any) -> Platform:
        """An OCI `platform` object or an image config's os/architecture/variant.

        A JSON null is no value, as Go's encoding/json decodes it into the string fields of
        image-spec's specs.Platform (null "has no effect on the value"): `"variant": null` is no
        variant, never the text "None". Any other non-string is refused, as Go refuses it.
        """
        if not isinstance(data, dict):
            raise ManifestError(f"platform must be an object, got {data!r}")
        parts: list[str] = []
        for key in ("os", "architecture", "variant"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ManifestError(f"platform {key} must be a string, got {value!r}")
            parts.append(value or "")
        return cls(*parts)

    @property
    def spec(self) -> platforms.Spec:
        return platforms.Spec(self.os, self.architecture, self.variant)

    def runs(self, image: Platform) -> bool:
        """A client of this platform can run (and may pick) `image`: containerd's Only()."""
        return platforms.matches(self.spec, image.spec)

    def compatible(self) -> tuple[Platform, ...]:
        """What a host of this platform also runs, best first (compare.go platformVector)."""
        return tuple(Platform(*spec) for spec in platforms.compatible(self.spec))

    @property
    def is_known(self) -> bool:
        """An OS and architecture containerd knows (database.go isKnownOS/isKnownArch)."""
        return platforms.is_known(self.spec)

    @property
    def is_unknown(self) -> bool:
        return self.os == "unknown" or self.architecture == "unknown"

    @property
    def tag_suffix(self) -> str:
        """`arm64`, `arm-v7`: an arch spelling that is legal inside a tag."""
        return "-".join(p for p in (self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, str]:
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        return data

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: descriptor must be an object")
        try:
            media_type, digest, size = data["mediaType"], data["digest"], data["size"]
        except KeyError as exc:
            raise ManifestError(f"{where}: descriptor lacks {exc.args[0]!r}") from None
        if not isinstance(size, int) or size < 0:
            raise ManifestError(f"{where}: descriptor size must be a non-negative integer")
        # `"platform": null` is no platform, as encoding/json leaves image-spec's *Platform nil.
        raw_platform = data.get("platform")
        platform = Platform.from_json(raw_platform) if raw_platform is not None else None
        annotations = data.get("annotations") or {}
        return cls(str(media_type), str(digest), size, platform, dict(annotations))

    @property
    def is_attestation(self) -> bool:
        return self.annotations.get(REFERENCE_TYPE) == ATTESTATION_TYPE

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            data["platform"] = self.platform.to_json()
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        return data


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm not in ("sha256", "sha512"):
        raise ManifestError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def media_type_of(raw: bytes, header_type: str | None) -> str:
    """The manifest's own mediaType wins; the Content-Type header is the fallback."""
    try:
        declared = json.loads(raw).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    media_type = declared or (header_type or "").split(";")[0].strip()
    if media_type not in IMAGE_MANIFEST_TYPES | INDEX_TYPES:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    return media_type


def parse_manifest(raw: bytes, media_type: str, *, where: str) -> ImageManifest | ImageIndex:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{where}: manifest is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise ManifestError(f"{where}: expected a schemaVersion 2 manifest")
    if media_type in INDEX_TYPES:
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{where}: index has no 'manifests' list")
        return ImageIndex(
            media_type,
            tuple(
                Descriptor.from_json(e, where=f"{where} manifests[{i}]")
                for i, e in enumerate(entries)
            ),
            dict(data.get("annotations") or {}),
        )
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{where}: image manifest has no 'layers' list")
    return ImageManifest(
        media_type,
        Descriptor.from_json(data.get("config"), where=f"{where} config"),
        tuple(Descriptor.from_json(e, where=f"{where} layers[{i}]") for i, e in enumerate(layers)),
    )


def platform_from_config(raw: bytes, *, where: str) -> Platform:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{where}: config is not JSON ({exc})") from None
    if not isinstance(data, dict) or not data.get("architecture") or not data.get("os"):
        raise ManifestError(f"{where}: config has no 'os'/'architecture'")
    return Platform.from_json(data)


def canonical_json(data: Any) -> bytes:
    """Stable bytes: the same index always gets the same digest, so a re-run writes nothing."""
    return json.dumps(data, indent=2, sort_keys=False).encode() + b"\n"
