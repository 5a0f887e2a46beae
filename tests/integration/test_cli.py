"""One collection, three doors: `invoke` in the repo, the installed `archfleet` script (both
Invoke), and the lean `python -m toolkit.registry` (argparse) for CI merge jobs. They must
offer the same tasks and flags."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TASKS = ("merge-manifest", "verify-manifest", "demo", "lab.up", "lab.status", "lab.down")


def output(*args: str) -> str:
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["invoke", "--list"],
        ["archfleet", "--list"],
        [sys.executable, "-m", "toolkit", "--list"],
    ],
)
def test_every_door_lists_every_task_with_help(command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[dev]' provides it")
    listing = output(*command)
    for name in TASKS:
        line = next((ln for ln in listing.splitlines() if ln.strip().startswith(name)), "")
        # A one-line help follows each task name.
        assert len(line.split()) > 1, f"{name} has no help line in: {listing}"


def test_same_flags_through_invoke_and_archfleet() -> None:
    via_invoke = output("invoke", "merge-manifest", "--help")
    via_script = output("archfleet", "merge-manifest", "--help")
    body = via_invoke.split("Docstring:", 1)[1]
    assert body == via_script.split("Docstring:", 1)[1]
    for flag in (
        "--target",
        "--source",
        "--insecure",
        "--dry-run",
        "--json",
        "--attestations",
        "--[no-]child-tags",
    ):
        assert flag in body
    verify_help = output("archfleet", "verify-manifest", "--help")
    assert "--check-binaries" in verify_help and "--platforms" in verify_help


def test_bad_flag_values_are_clear() -> None:
    done = subprocess.run(
        [
            "archfleet",
            "merge-manifest",
            "--target",
            "r.io/app:v1",
            "--source",
            ":a",
            "--attestations",
            "maybe",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--attestations must be keep or strip, not 'maybe'" in done.stderr


def _long_flags(help_text: str) -> set[str]:
    import re

    return {f.replace("[no-]", "") for f in re.findall(r"--(?:\[no-\])?[a-z][a-z-]+", help_text)}


@pytest.mark.parametrize("command", ["merge-manifest", "verify-manifest"])
def test_lean_module_entry_has_the_same_flags(command: str) -> None:
    via_invoke = output("archfleet", command, "--help")
    lean = output(sys.executable, "-m", "toolkit.registry", command, "--help")
    expected = _long_flags(via_invoke.split("Options:", 1)[1])
    assert expected and expected <= _long_flags(lean)
    assert _long_flags(lean) - {"--help", "--no-child-tags"} <= expected | {"--child-tags"}
