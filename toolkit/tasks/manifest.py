"""Tasks: merge-manifest, verify-manifest. Thin: parse flags, call the engine, report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report
from ..registry.auth import CredentialsError
from ..registry.client import RegistryClient, RegistryError
from ..registry.engine import MergeOptions, parse_targets
from ..registry.engine import merge_manifest as run_merge
from ..registry.manifest import ManifestError, Platform
from ..registry.merge import MergeError, SourceSpec
from ..registry.reference import ReferenceError, parse_reference
from ..registry.verify import verify_manifest as run_verify

USER_ERRORS = (MergeError, RegistryError, ReferenceError, ManifestError, CredentialsError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Known failures become one clear line and exit code 1, not a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        report.error(str(exc))
        raise Exit(code=1) from None


def _client(registry: str, insecure: bool) -> RegistryClient:
    return RegistryClient(registry, insecure=insecure)


ClientFactory = Callable[[str, bool], RegistryClient]


@task(
    iterable=["target", "source"],
    help={
        "target": "Tag to write the index to (REGISTRY/REPO:TAG); repeat for more tags.",
        "source": "[PLATFORM=]REF of a per-arch image: tag or digest, same registry; "
        "`PLATFORM=@sha256:…` means a digest in the target's repository. Repeat per arch.",
        "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
        "dry-run": "Read and check everything, print what would be written, write nothing.",
        "json": "Print the whole result as JSON on stdout.",
        "attestations": "keep|strip buildx provenance/SBOM manifests (default keep).",
        "child-tags": "Also tag each child <target-tag>-<arch> so clean-up policies keep it "
        "(default on; --no-child-tags to skip).",
    },
)
def merge_manifest(
    c: Context,
    target: list[str],
    source: list[str],
    insecure: bool = False,
    dry_run: bool = False,
    json: bool = False,
    attestations: str = "keep",
    child_tags: bool = True,
) -> None:
    """Merge per-arch images (by digest) into one multi-arch index under the target tag(s)."""
    with user_errors():
        if attestations not in ("keep", "strip"):
            raise MergeError(f"--attestations must be keep or strip, not {attestations!r}")
        targets = parse_targets(target)
        specs = [SourceSpec.parse(text, target=targets[0]) for text in source]
        options = MergeOptions(
            attestations="keep" if attestations == "keep" else "strip",
            child_tags=child_tags,
            dry_run=dry_run,
        )
        result = run_merge(_client(targets[0].registry, insecure), targets, specs, options)
    if json:
        report.emit_json(result.to_json())
    else:
        report.merge_summary(result)
        report.emit_value(result.plan.digest)


@task(
    help={
        "target": "The tag to check (REGISTRY/REPO:TAG).",
        "platforms": "Comma-separated platforms that must each be present exactly once, "
        "e.g. linux/amd64,linux/arm64.",
        "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
        "check-binaries": "Also read each image's layers and check its entrypoint's ELF machine.",
        "json": "Print the whole report as JSON on stdout.",
    },
)
def verify_manifest(
    c: Context,
    target: str = "",
    platforms: str = "",
    insecure: bool = False,
    check_binaries: bool = False,
    json: bool = False,
) -> None:
    """Check a multi-arch tag: each platform present once, each child really that arch."""
    with user_errors():
        if not target:
            raise MergeError("--target is required: the tag to check (REGISTRY/REPO:TAG)")
        reference = parse_reference(target)
        try:
            required = [Platform.parse(p) for p in platforms.split(",") if p.strip()]
        except ValueError as exc:
            raise MergeError(f"--platforms: {exc}") from None
        result = run_verify(
            _client(reference.registry, insecure),
            reference,
            required,
            check_binaries=check_binaries,
        )
    if json:
        report.emit_json(result.to_json())
    else:
        report.verify_summary(result)
    if not result.ok:
        raise Exit(code=1)
