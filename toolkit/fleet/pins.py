"""Pinned Python artefacts, checked without I/O: a wheel's file name and a hash-checked lock.

The merge-tool role installs archfleet from a wheel pinned by its sha256, and its dependencies
from a lock that pip reads in hash-checking mode (`--require-hashes`). pip would refuse an
unpinned or unhashed line itself — on the host, after a venv was made; these checks say so
when the inventory is loaded, with the lock's file and line. They also refuse what pip would
accept but we must not: option lines (`--index-url`, `--extra-index-url`, `-f`, `-r`, `-e`,
`--trusted-host`…) that would make the lock, not the inventory, choose where packages come
from, and `--hash` algorithms other than sha256.

Wheel file names follow the binary distribution format (packaging.python.org
specifications/binary-distribution-format):
`{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`, `-` in name and version as `_`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A normalised PEP 440 version as `archfleet --version` and wheel file names print it.
VERSION_PATTERN = (
    r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?"
    r"(\+[a-z0-9]+(\.[a-z0-9]+)*)?$"
)
_WHEEL = re.compile(
    r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.+!]+)(-[0-9][A-Za-z0-9_.]*)?"
    r"-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl"
)
# `name[extras]==version`, then maybe `; markers` (PEP 508).
_PINNED = re.compile(
    r"(?P<name>[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)(\[[A-Za-z0-9._,\s-]*\])?\s*"
    r"==\s*(?P<version>[A-Za-z0-9._+!-]+)\s*(;.*)?"
)
_HASH = re.compile(r"--hash[=\s]\s*(?P<algorithm>[a-z0-9]+):(?P<digest>[0-9a-fA-F]+)")
# pip's comment rule (req_file.py COMMENT_RE): `#` at the start or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")
LOCK_MAX_BYTES = 64 * 1024


def wheel_version(filename: str, project: str) -> str | None:
    """The version in a wheel file name of `project`, or None when `filename` is not one."""
    found = _WHEEL.fullmatch(filename)
    if found is None or _normal(found["name"]) != _normal(project):
        return None
    return found["version"].replace("_", "-")


def _normal(name: str) -> str:
    """PEP 503 normalisation: runs of `-`, `_`, `.` are one `-`, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockLine:
    line: int  # 1-based, where the requirement starts
    name: str  # as written
    version: str


@dataclass(frozen=True)
class LockCheck:
    requirements: tuple[LockLine, ...]
    problems: tuple[tuple[int, str], ...]  # (line, what is wrong and what was expected)


def check_lock(text: str) -> LockCheck:
    """Every requirement of a pip requirements file, and each line that is not `name==version`
    with at least one `--hash=sha256:<64 hex>` (continuation lines joined, as pip joins them)."""
    problems: list[tuple[int, str]] = []
    found: list[LockLine] = []
    if len(text.encode()) > LOCK_MAX_BYTES:
        return LockCheck((), ((1, f"the lock is over {LOCK_MAX_BYTES // 1024} KiB"),))
    for number, logical in _logical_lines(text):
        if logical.startswith("-"):
            option = logical.split()[0].split("=")[0]
            problems.append(
                (
                    number,
                    f"option {option} is not allowed in the lock: expected only "
                    "`name==version --hash=sha256:…` lines (where packages come from is the "
                    "inventory's archfleet.index_url / find_links, or the host's pip config)",
                )
            )
            continue
        split = re.search(r"\s--", logical)
        spec, options = (
            (logical[: split.start()], logical[split.start() :]) if split else (logical, "")
        )
        pinned = _PINNED.fullmatch(spec.strip())
        if pinned is None:
            problems.append(
                (number, f"{spec.strip()!r} is not pinned: expected name==version --hash=sha256:…")
            )
            continue
        hashes = list(_HASH.finditer(options))
        leftover = _HASH.sub("", options).strip()
        if leftover:
            problems.append(
                (number, f"unexpected {leftover!r} after {spec.strip()!r}: expected only --hash")
            )
            continue
        bad = [h for h in hashes if h["algorithm"] != "sha256" or len(h["digest"]) != 64]
        if not hashes or bad:
            what = f"{bad[0]['algorithm']}:{bad[0]['digest'][:16]}…" if bad else "no hash"
            problems.append(
                (
                    number,
                    f"{pinned['name']}=={pinned['version']} has {what}: expected "
                    "--hash=sha256:<64 hex digits> (pip's hash-checking mode)",
                )
            )
            continue
        found.append(LockLine(number, pinned["name"], pinned["version"]))
    if not found and not problems:
        problems.append((1, "no requirement in the lock: expected name==version --hash=sha256:…"))
    return LockCheck(tuple(found), tuple(problems))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per logical line: comments dropped, `\\` continuations joined."""
    lines: list[tuple[int, str]] = []
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not parts:
            start = number
        stripped = _COMMENT.sub("", raw)
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        joined = " ".join(p.strip() for p in parts).strip()
        parts = []
        if joined:
            lines.append((start, joined))
    if parts:
        joined = " ".join(p.strip() for p in parts).strip()
        if joined:
            lines.append((start, joined))
    return lines
