"""Raw pushes for test set-up: what buildx writes (an index with attestation manifests) built
from real images. The client under test never uses this; it only prepares registry content."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import requests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_blob(base_url: str, repository: str, data: bytes) -> str:
    digest = digest_of(data)
    start = requests.post(f"{base_url}/v2/{repository}/blobs/uploads/", timeout=10)
    start.raise_for_status()
    location = start.headers["Location"]
    if "://" not in location:
        location = base_url + location
    sep = "&" if "?" in location else "?"
    done = requests.put(
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    done.raise_for_status()
    return digest


def put_manifest(base_url: str, repository: str, reference: str, manifest: dict[str, Any]) -> str:
    raw = json.dumps(manifest).encode()
    response = requests.put(
        f"{base_url}/v2/{repository}/manifests/{reference}",
        data=raw,
        headers={"Content-Type": manifest["mediaType"]},
        timeout=10,
    )
    response.raise_for_status()
    return digest_of(raw)


def get_manifest(base_url: str, repository: str, reference: str) -> tuple[bytes, str]:
    response = requests.get(
        f"{base_url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ACCEPT},
        timeout=10,
    )
    response.raise_for_status()
    return response.content, response.headers["Content-Type"]


def head_digest(base_url: str, repository: str, reference: str) -> str | None:
    response = requests.head(
        f"{base_url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ACCEPT},
        timeout=10,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers.get("Docker-Content-Digest")


def push_buildx_style_index(
    base_url: str, repository: str, tag: str, images: list[tuple[str, str]]
) -> tuple[str, list[str]]:
    """Push an index of real images `(digest, platform)` plus one in-toto attestation manifest
    per image, annotated the way buildx does. Returns (index digest, attestation digests)."""
    entries: list[dict[str, Any]] = []
    attestations: list[dict[str, Any]] = []
    for image_digest, platform in images:
        raw, media_type = get_manifest(base_url, repository, image_digest)
        os_name, arch, *variant = platform.split("/")
        entry_platform = {"architecture": arch, "os": os_name}
        if variant:
            entry_platform["variant"] = variant[0]
        entries.append(
            {
                "mediaType": media_type.split(";")[0],
                "digest": image_digest,
                "size": len(raw),
                "platform": entry_platform,
            }
        )
        statement = json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://slsa.dev/provenance/v0.2",
                "subject": [{"name": "app", "digest": {"sha256": image_digest.split(":")[1]}}],
                "predicate": {"builder": {"id": "test"}},
            }
        ).encode()
        config = b"{}"
        config_digest = upload_blob(base_url, repository, config)
        layer_digest = upload_blob(base_url, repository, statement)
        attestation = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.in-toto+json",
                    "digest": layer_digest,
                    "size": len(statement),
                    "annotations": {
                        "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"
                    },
                }
            ],
        }
        raw_attestation = json.dumps(attestation).encode()
        attestation_digest = put_manifest(
            base_url, repository, digest_of(raw_attestation), attestation
        )
        attestations.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": attestation_digest,
                "size": len(raw_attestation),
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": image_digest,
                },
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries + attestations}
    return put_manifest(base_url, repository, tag, index), [a["digest"] for a in attestations]
