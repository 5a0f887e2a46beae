"""check-bases and inspect-manifest as plain functions returning an exit code: the Invoke tasks
(toolkit/tasks/registry_tools.py) and the lean `python -m toolkit.registry` entry both call
these, with the flags' help defined once here. The registry client loads only when a command
runs, so the task collection can import the help without it.
"""

from __future__ import annotations

import argparse
import os
import platform as host
from collections.abc import Sequence
from pathlib import Path

CHECK_BASES_HELP = {
    "file": "The Dockerfile/Containerfile to read (default: ./Dockerfile, else ./Containerfile).",
    "platforms": "Comma-separated target platforms every base must offer, "
    "e.g. linux/amd64,linux/arm64.",
    "build-arg": "NAME=VALUE, as docker build --build-arg (a bare NAME takes $NAME); repeat.",
    "build-platform": "The build machine's platform, for stages pinned to $BUILDPLATFORM: a "
    "platform, or `native` when each platform builds on its own kind of machine "
    "(default: this machine's).",
    "stage": "The stage to build, as docker build --target (default: the last); stages it "
    "does not reach are not checked.",
    "insecure": "Plain HTTP for every registry read (a loopback or lab registry).",
    "json": "Print the whole result as JSON on stdout.",
}
INSPECT_HELP = {
    "ref": "The image to show: REGISTRY/REPO:TAG or @DIGEST (Docker Hub names as docker does).",
    "insecure": "Plain HTTP (a loopback or lab registry); TLS is verified otherwise.",
    "json": "Print name, media type, digest and every entry as JSON on stdout.",
    "raw": "Print the manifest's exact bytes on stdout (what its digest covers).",
    "format": "One line per image entry (attestations left out), e.g. '{{platform}}'. Fields: "
    "{{platform}} {{os}} {{architecture}} {{variant}} {{digest}} {{size}} {{mediaType}} "
    "{{name}} (the reference) {{index}} (the digest REF resolves to); \\n and \\t allowed.",
}


def _user_errors(*extra: type[Exception]) -> tuple[type[Exception], ...]:
    """What a user can act on (bad input, a registry's refusal): one error line, exit 1."""
    from .auth import CredentialsError
    from .client import RegistryError
    from .dockerfile import DockerfileError
    from .manifest import ManifestError
    from .reference import ReferenceError

    return (RegistryError, ReferenceError, ManifestError, CredentialsError, DockerfileError, *extra)


def default_dockerfile(directory: Path) -> Path:
    """docker build's default, then buildah's (which also reads a Containerfile)."""
    for name in ("Dockerfile", "Containerfile"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no Dockerfile or Containerfile in {directory}; pass --file PATH")


def local_platform() -> str:
    from ..archmap import ArchError, platform_for_uname

    try:
        return str(platform_for_uname(host.machine()))
    except ArchError as exc:
        raise ValueError(f"{exc}; pass --build-platform OS/ARCH") from None


def check_bases_command(
    file: str = "",
    platforms: str = "",
    build_args: Sequence[str] = (),
    *,
    build_platform: str = "",
    stage: str = "",
    insecure: bool = False,
    json: bool = False,
) -> int:
    from .. import report
    from . import tool_output
    from .bases import BaseLookup, check_bases, parse_build_args
    from .dockerfile import parse_dockerfile, resolve_all
    from .manifest import Platform

    try:
        path = Path(file) if file else default_dockerfile(Path.cwd())
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        dockerfile = parse_dockerfile(text, path=str(path))
        if not platforms.strip():
            raise ValueError("--platforms is required: the target platforms, e.g. linux/amd64")
        try:
            targets = list(
                dict.fromkeys(Platform.parse(p) for p in platforms.split(",") if p.strip())
            )
        except ValueError as exc:
            raise ValueError(f"--platforms: {exc}") from None
        build_text = build_platform.strip() or local_platform()
        try:
            build = None if build_text == "native" else Platform.parse(build_text)
        except ValueError as exc:
            raise ValueError(f"--build-platform: {exc}") from None
        args = parse_build_args(build_args, os.environ)
        resolutions = resolve_all(
            dockerfile, targets, build=build, build_args=args, stage=stage or None
        )
        # Bases live on many registries (Docker Hub, a vendor's, your own): each is asked with
        # its own host's credentials only (docker's config.json, CI_REGISTRY_* for
        # CI_REGISTRY), never with REGISTRY_USER/REGISTRY_PASSWORD, which name a push target's.
        from .engine import other_registry_client

        lookup = BaseLookup(lambda registry: other_registry_client(registry, insecure=insecure))
        result = check_bases(str(path), resolutions, lookup, build=build_text)
    except _user_errors(ValueError, FileNotFoundError) as exc:
        report.error(str(exc))
        return 1
    if json:
        report.emit_json(result.to_json())
        for problem in result.problems:
            report.error(problem)
    else:
        tool_output.bases_table(result)
    return 0 if result.ok else 1


def inspect_command(
    ref: str,
    *,
    insecure: bool = False,
    json: bool = False,
    raw: bool = False,
    format: str = "",
) -> int:
    from .. import report
    from . import tool_output
    from .client import RegistryClient
    from .inspection import check_template, inspect_reference, render
    from .reference import parse_reference

    try:
        chosen = [
            name for name, on in (("--json", json), ("--raw", raw), ("--format", format)) if on
        ]
        if len(chosen) > 1:
            raise ValueError(f"{' and '.join(chosen)} exclude each other: pick one output")
        if not ref:
            raise ValueError("REF is required: the image to show (REGISTRY/REPO:TAG)")
        if format:
            check_template(format)
        reference = parse_reference(ref)
        client = RegistryClient(reference.registry, insecure=insecure)
        view = inspect_reference(client, reference, read_config=not raw)
    except _user_errors(ValueError) as exc:
        report.error(str(exc))
        return 1
    if raw:
        tool_output.emit_raw(view.raw)
    elif json:
        report.emit_json(view.to_json())
    elif format:
        tool_output.emit_lines(render(format, view))
    else:
        tool_output.manifest_view(view)
        report.emit_value(view.digest)
    return 0


# ------------------------------------------------------------------ lean argparse entry

TOOL_COMMANDS = frozenset({"check-bases", "inspect-manifest"})


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The two subcommands of `python -m toolkit.registry`, flags as the Invoke tasks'."""
    bases = commands.add_parser(
        "check-bases", help="check that every base image offers every target platform"
    )
    bases.add_argument("--file", default="", help=CHECK_BASES_HELP["file"])
    bases.add_argument("--platforms", default="", help=CHECK_BASES_HELP["platforms"])
    bases.add_argument(
        "--build-arg", action="append", default=[], help=CHECK_BASES_HELP["build-arg"]
    )
    bases.add_argument("--build-platform", default="", help=CHECK_BASES_HELP["build-platform"])
    bases.add_argument("--stage", default="", help=CHECK_BASES_HELP["stage"])
    bases.add_argument("--insecure", action="store_true", help=CHECK_BASES_HELP["insecure"])
    bases.add_argument("--json", "-j", action="store_true", help=CHECK_BASES_HELP["json"])
    show = commands.add_parser("inspect-manifest", help="show a tag's manifest and platforms")
    show.add_argument("ref", metavar="REF", help=INSPECT_HELP["ref"])
    show.add_argument("--insecure", action="store_true", help=INSPECT_HELP["insecure"])
    show.add_argument("--json", "-j", action="store_true", help=INSPECT_HELP["json"])
    show.add_argument("--raw", action="store_true", help=INSPECT_HELP["raw"])
    show.add_argument("--format", default="", help=INSPECT_HELP["format"])


def run_parsed(args: argparse.Namespace) -> int:
    if args.command == "check-bases":
        return check_bases_command(
            args.file,
            args.platforms,
            args.build_arg,
            build_platform=args.build_platform,
            stage=args.stage,
            insecure=args.insecure,
            json=args.json,
        )
    return inspect_command(
        args.ref, insecure=args.insecure, json=args.json, raw=args.raw, format=args.format
    )
