"""merge-manifest and verify-manifest as plain functions returning an exit code: the invoke
tasks (`invoke`/`archfleet`) and the lean `python -m toolkit.registry` entry both call these,
with the flags and help text defined once here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .. import report
from .annotations import parse_annotations
from .auth import CredentialsError
from .client import RegistryClient, RegistryError
from .engine import MergeOptions, merge_manifest, parse_targets
from .manifest import ManifestError, Platform
from .merge import MergeError, SourceSpec
from .reference import ReferenceError, parse_reference
from .transaction import MergeInterrupted

USER_ERRORS = (MergeError, RegistryError, ReferenceError, ManifestError, CredentialsError)


def merge_command(
    targets: Sequence[str],
    sources: Sequence[str],
    *,
    insecure: bool = False,
    dry_run: bool = False,
    json: bool = False,
    attestations: str = "keep",
    child_tags: bool = True,
    annotations: Sequence[str] = (),
    append: bool = False,
    replace: bool = False,
) -> int:
    try:
        if attestations not in ("keep", "strip"):
            raise MergeError(f"--attestations must be keep or strip, not {attestations!r}")
        if replace and not append:
            raise MergeError("--replace only means something with --append")
        parsed = parse_targets(targets)
        specs = [SourceSpec.parse(text, target=parsed[0]) for text in sources]
        checked = parse_annotations(annotations)
        options = MergeOptions(
            attestations="keep" if attestations == "keep" else "strip",
            child_tags=child_tags,
            dry_run=dry_run,
            annotations=checked.values,
            append=append,
            replace=replace,
        )
        client = RegistryClient(parsed[0].registry, insecure=insecure)
        result = merge_manifest(client, parsed, specs, options)
        result.plan = dataclasses.replace(
            result.plan, warnings=(*checked.warnings, *result.plan.warnings)
        )
    except MergeInterrupted as exc:
        # Rolled back; exit as a shell reports a process the signal ended (143, 130).
        report.error(str(exc))
        return 128 + exc.signum
    except USER_ERRORS as exc:
        report.error(str(exc))
        return 1
    if json:
        report.emit_json(result.to_json())
    else:
        report.merge_summary(result)
        report.emit_value(result.plan.digest)
    if result.late_signal is not None:
        report.error(
            "interrupted by a signal after every write of the merge had landed; the merge "
            "stands as written (above)"
        )
        return 128 + result.late_signal
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
