"""Tasks: merge-manifest, verify-manifest. Thin: flags in, toolkit.registry.commands, exit code."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ..registry.flags import MERGE_HELP, VERIFY_HELP


@task(iterable=["target", "source", "annotation"], help=MERGE_HELP)
def merge_manifest(
    c: Context,
    target: list[str],
    source: list[str],
    insecure: bool = False,
    dry_run: bool = False,
    json: bool = False,
    attestations: str = "keep",
    child_tags: bool = True,
    annotation: list[str] | None = None,
    append: bool = False,
    replace: bool = False,
) -> None:
    """Merge per-arch images (by digest) into one multi-arch index under the target tag(s)."""
    from ..registry.commands import merge_command  # the client loads only when it is used

    code = merge_command(
        target,
        source,
        insecure=insecure,
        dry_run=dry_run,
        json=json,
        attestations=attestations,
        child_tags=child_tags,
        annotations=annotation or [],
        append=append,
        replace=replace,
    )
    if code:
        raise Exit(code=code)


@task(help=VERIFY_HELP)
def verify_manifest(
    c: Context,
    target: str = "",
    platforms: str = "",
    insecure: bool = False,
    check_binaries: bool = False,
    json: bool = False,
) -> None:
    """Check a multi-arch tag: each platform present once, each child really that arch."""
    from ..registry.commands import verify_command

    code = verify_command(
        target, platforms, insecure=insecure, check_binaries=check_binaries, json=json
    )
    if code:
        raise Exit(code=code)
