"""Tasks: check-bases, inspect-manifest. Thin: flags in, registry.tool_commands, exit code."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ..registry.tool_commands import CHECK_BASES_HELP, INSPECT_HELP


@task(iterable=["build_arg"], help=CHECK_BASES_HELP)
def check_bases(
    c: Context,
    file: str = "",
    platforms: str = "",
    build_arg: list[str] | None = None,
    build_platform: str = "",
    stage: str = "",
    insecure: bool = False,
    json: bool = False,
) -> None:
    """Check that every base image of a Dockerfile offers every target platform."""
    from ..registry.tool_commands import check_bases_command

    code = check_bases_command(
        file,
        platforms,
        build_arg or [],
        build_platform=build_platform,
        stage=stage,
        insecure=insecure,
        json=json,
    )
    if code:
        raise Exit(code=code)


@task(help=INSPECT_HELP)
def inspect_manifest(
    c: Context,
    ref: str,
    insecure: bool = False,
    json: bool = False,
    raw: bool = False,
    format: str = "",
) -> None:
    """Show a tag: name, media type, digest, and each platform's manifest (attestations marked)."""
    from ..registry.tool_commands import inspect_command

    if ref in ("--help", "-h"):
        # Invoke hands a task's first positional argument whatever token comes next, its own
        # --help included (invoke/parser/parser.py handle: positional args come before flags).
        _task_help("inspect-manifest")
        return
    code = inspect_command(ref, insecure=insecure, json=json, raw=raw, format=format)
    if code:
        raise Exit(code=code)


def _task_help(name: str) -> None:
    from .. import report

    try:
        from ..cli import program

        program.print_task_help(name)
    except (AttributeError, KeyError):  # run by another Invoke program (`invoke`, tasks.py)
        report.error(f"see: invoke --help {name}")
        raise Exit(code=1) from None
