"""`python -m toolkit.registry merge-manifest|verify-manifest …`: the manifest job's entry.

The same commands, flags and help as `archfleet merge-manifest` (toolkit/registry/commands.py),
parsed with argparse instead of Invoke: a CI merge job is a short process, and Invoke's
import costs more than the merge's registry round trips (see bench/README.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import merge_command, verify_command
from .flags import MERGE_HELP, VERIFY_HELP
from .tool_commands import TOOL_COMMANDS, add_parsers, run_parsed


def build_parser() -> argparse.ArgumentParser:
    # Short flags as in every archfleet task (toolkit/tasks/flags.py): only -n (--dry-run) and
    # -j (--json).
    parser = argparse.ArgumentParser(prog="python -m toolkit.registry")
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge-manifest", help="merge per-arch images into one index")
    merge.add_argument("--target", action="append", default=[], help=MERGE_HELP["target"])
    merge.add_argument("--source", action="append", default=[], help=MERGE_HELP["source"])
    merge.add_argument("--insecure", action="store_true", help=MERGE_HELP["insecure"])
    merge.add_argument("--dry-run", "-n", action="store_true", help=MERGE_HELP["dry-run"])
    merge.add_argument("--json", "-j", action="store_true", help=MERGE_HELP["json"])
    merge.add_argument("--attestations", default="keep", help=MERGE_HELP["attestations"])
    merge.add_argument(
        "--child-tags",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=MERGE_HELP["child-tags"],
    )
    merge.add_argument("--annotation", action="append", default=[], help=MERGE_HELP["annotation"])
    merge.add_argument("--append", action="store_true", help=MERGE_HELP["append"])
    merge.add_argument("--replace", action="store_true", help=MERGE_HELP["replace"])
    verify = commands.add_parser("verify-manifest", help="check a multi-arch tag")
    verify.add_argument("--target", default="", help=VERIFY_HELP["target"])
    verify.add_argument("--platforms", default="", help=VERIFY_HELP["platforms"])
    verify.add_argument("--insecure", action="store_true", help=VERIFY_HELP["insecure"])
    verify.add_argument("--check-binaries", action="store_true", help=VERIFY_HELP["check-binaries"])
    verify.add_argument("--json", "-j", action="store_true", help=VERIFY_HELP["json"])
    add_parsers(commands)  # check-bases, inspect-manifest
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TOOL_COMMANDS:
        return run_parsed(args)
    if args.command == "merge-manifest":
        return merge_command(
            args.target,
            args.source,
            insecure=args.insecure,
            dry_run=args.dry_run,
            json=args.json,
            attestations=args.attestations,
            child_tags=args.child_tags,
            annotations=args.annotation,
            append=args.append,
            replace=args.replace,
        )
    return verify_command(
        args.target,
        args.platforms,
        insecure=args.insecure,
        check_binaries=args.check_binaries,
        json=args.json,
    )


if __name__ == "__main__":
    sys.exit(main())
