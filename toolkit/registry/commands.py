"""merge-manifest and verify-manifest as plain functions returning an exit code: the invoke
tasks (`invoke`/`archfleet`) and the lean `python -m toolkit.registry` entry both call these,
with the flags and help text defined once here."""

from __future__ import annotations

from collections.abc import Sequence

from .. import report
from .auth import CredentialsError
from .client import RegistryClient, RegistryError
from .engine import MergeOptions, merge_manifest, parse_targets
from .manifest import ManifestError, Platform
from .merge import MergeError, SourceSpec
from .reference import ReferenceError, parse_reference

USER_ERRORS = (MergeError, RegistryError, ReferenceError, ManifestError, CredentialsError)

MERGE_HELP = {
    "target": "Tag to write the index to (REGISTRY/REPO:TAG); repeat for more tags.",
    "source": "[PLATFORM=]REF of a per-arch image: tag or digest, same registry; "
    "`PLATFORM=@sha256:…` means a digest in the target's repository. Repeat per arch.",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "dry-run": "Read and check everything, print what would be written, write nothing.",
    "json": "Print the whole result as JSON on stdout.",
    "attestations": "keep|strip buildx provenance/SBOM manifests (default keep).",
    "child-tags": "Also tag each child <target-tag>-<arch> so clean-up policies keep it "
    "(default on; --no-child-tags to skip).",
}
VERIFY_HELP = {
    "target": "The tag to check (REGISTRY/REPO:TAG).",
    "platforms": "Comma-separated platforms that must each be present exactly once, "
    "e.g. linux/amd64,linux/arm64.",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "check-binaries": "Also read each image's layers and check its entrypoint's ELF machine.",
    "json": "Print the whole report as JSON on stdout.",
}


def merge_command(
    targets: Sequence[str],
    sources: Sequence[str],
    *,
    insecure: bool = False,
    dry_run: bool = False,
    json: bool = False,
    attestations: str = "keep",
    child_tags: bool = True,
) -> int:
    try:
        if attestations not in ("keep", "strip"):
            raise MergeError(f"--attestations must be keep or strip, not {attestations!r}")
        parsed = parse_targets(targets)
        specs = [SourceSpec.parse(text, target=parsed[0]) for text in sources]
        options = MergeOptions(
            attestations="keep" if attestations == "keep" else "strip",
            child_tags=child_tags,
            dry_run=dry_run,
        )
        client = RegistryClient(parsed[0].registry, insecure=insecure)
        result = merge_manifest(client, parsed, specs, options)
    except USER_ERRORS as exc:
        report.error(str(exc))
        return 1
    if json:
        report.emit_json(result.to_json())
    else:
        report.merge_summary(result)
        report.emit_value(result.plan.digest)
    return 0


def verify_command(
    target: str,
    platforms: str = "",
    *,
    insecure: bool = False,
    check_binaries: bool = False,
    json: bool = False,
) -> int:
    # verify pulls in the layer reader (tarfile, gzip): only when asked to verify.
    from .verify import verify_manifest

    try:
        if not target:
            raise MergeError("--target is required: the tag to check (REGISTRY/REPO:TAG)")
        reference = parse_reference(target)
        try:
            required = [Platform.parse(p) for p in platforms.split(",") if p.strip()]
        except ValueError as exc:
            raise MergeError(f"--platforms: {exc}") from None
        client = RegistryClient(reference.registry, insecure=insecure)
        result = verify_manifest(client, reference, required, check_binaries=check_binaries)
    except USER_ERRORS as exc:
        report.error(str(exc))
        return 1
    if json:
        report.emit_json(result.to_json())
    else:
        report.verify_summary(result)
    return 0 if result.ok else 1
