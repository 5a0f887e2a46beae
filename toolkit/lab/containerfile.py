"""Read the subset of a Containerfile (Dockerfile) that a builder without namespaces can honour.

The lab builds its sample app on each SSH host with umoci + skopeo (toolkit/lab/native_build.py):
no daemon and no mount namespace, so it works inside an emulated chroot where buildah cannot.
That rules out RUN; what remains is ARG, FROM, COPY, ENV, LABEL, WORKDIR, ENTRYPOINT and CMD,
with Docker's meaning. Anything else is refused with the file, line and instruction, rather
than silently built into a different image. Pure: text in, recipe out.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

SUPPORTED = ("ARG", "FROM", "COPY", "ENV", "LABEL", "WORKDIR", "ENTRYPOINT", "CMD")
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ContainerfileError(ValueError):
    """The file asks for something this builder cannot do, or is malformed; names file:line."""


@dataclass(frozen=True)
class Copy:
    # Paths relative to the build context, as written.
    sources: tuple[str, ...]
    # Absolute path in the image of each source, in order.
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    base: str
    copies: tuple[Copy, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    # Every context file the build reads (what has to travel to the build host).
    context_files: tuple[str, ...] = field(default=())


@dataclass
class _State:
    args: dict[str, str] = field(default_factory=dict)
    base: str | None = None
    copies: list[Copy] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    workdir_set: bool = False
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None


def parse_containerfile(
    text: str, *, path: str = "Containerfile", build_args: Mapping[str, str] | None = None
) -> Recipe:
    """The recipe `text` describes; `build_args` override ARG defaults, as `--build-arg` does."""
    given = dict(build_args or {})
    state = _State()
    declared: set[str] = set()
    for line_number, instruction, rest in _instructions(text, path):
        where = f"{path}:{line_number}"
        if instruction not in SUPPORTED:
            raise ContainerfileError(
                f"{where}: {instruction} is not supported by the lab's builder (umoci + skopeo "
                f"cannot run commands or do {instruction}); supported: {', '.join(SUPPORTED)}"
            )
        if instruction == "ARG":
            name, value = _arg(rest, where)
            declared.add(name)
            state.args[name] = given.get(name, _expand(value, state.args, where))
            continue
        if instruction != "FROM" and state.base is None:
            raise ContainerfileError(f"{where}: {instruction} before FROM")
        _apply(state, instruction, _expand(rest, state.args, where), where)
    undeclared = sorted(set(given) - declared)
    if undeclared:
        raise ContainerfileError(
            f"{path}: build argument(s) {', '.join(undeclared)} given but not declared by ARG"
        )
    if state.base is None:
        raise ContainerfileError(f"{path}: no FROM instruction")
    context_files = tuple(dict.fromkeys(s for copy in state.copies for s in copy.sources))
    return Recipe(
        base=state.base,
        copies=tuple(state.copies),
        env=tuple(state.env.items()),
        labels=tuple(state.labels.items()),
        workdir=state.workdir if state.workdir_set else None,
        entrypoint=state.entrypoint,
        cmd=state.cmd,
        context_files=context_files,
    )


def _instructions(text: str, path: str) -> list[tuple[int, str, str]]:
    """(first line number, INSTRUCTION, arguments) with comments dropped, continuations joined."""
    found: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction, as Docker allows
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, rest = joined.partition(" ")
        found.append((start, keyword.upper(), rest.strip()))
    if pending:
        raise ContainerfileError(f"{path}:{start}: the file ends inside a continued line")
    return found


def _arg(rest: str, where: str) -> tuple[str, str]:
    name, sep, value = rest.partition("=")
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ContainerfileError(f"{where}: ARG expects NAME or NAME=default, got {rest!r}")
    return name, _unquote(value.strip(), where) if sep else ""


def _expand(value: str, args: Mapping[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in args:
            raise ContainerfileError(f"{where}: ${name} is not an ARG declared above")
        return args[name]

    return _VARIABLE.sub(substitute, value)


def _apply(state: _State, instruction: str, rest: str, where: str) -> None:
    if instruction == "FROM":
        if state.base is not None:
            raise ContainerfileError(
                f"{where}: a second FROM (multi-stage builds) is not supported"
            )
        parts = rest.split()
        if len(parts) != 1:
            raise ContainerfileError(f"{where}: FROM expects one image reference, got {rest!r}")
        state.base = parts[0]
    elif instruction == "COPY":
        state.copies.append(_copy(rest, state.workdir, where))
    elif instruction in ("ENV", "LABEL"):
        target = state.env if instruction == "ENV" else state.labels
        target.update(_pairs(rest, instruction, where))
    elif instruction == "WORKDIR":
        state.workdir = posixpath.normpath(posixpath.join(state.workdir, _unquote(rest, where)))
        state.workdir_set = True
    elif instruction == "ENTRYPOINT":
        state.entrypoint = _command(rest, where)
        # As Docker does: a new ENTRYPOINT drops the CMD inherited from the base image.
        state.cmd = ()
    else:  # CMD
        state.cmd = _command(rest, where)


def _copy(rest: str, workdir: str, where: str) -> Copy:
    words = _json_list(rest, where) if rest.startswith("[") else _split(rest, where)
    if any(word.startswith("--") for word in words):
        raise ContainerfileError(f"{where}: COPY flags (--from, --chown, ...) are not supported")
    if len(words) < 2:
        raise ContainerfileError(f"{where}: COPY expects one or more sources and a destination")
    *sources, dest = words
    for source in sources:
        pure = PurePosixPath(source)
        if pure.is_absolute() or ".." in pure.parts or any(c in source for c in "*?["):
            raise ContainerfileError(
                f"{where}: COPY source {source!r} must be a plain path inside the build context "
                "(no absolute path, no '..', no wildcard)"
            )
    if len(sources) > 1 and not dest.endswith("/"):
        raise ContainerfileError(
            f"{where}: COPY with several sources needs a destination ending in /"
        )
    base = posixpath.join(workdir, dest)
    if dest.endswith("/"):
        targets = [posixpath.join(base, PurePosixPath(s).name) for s in sources]
    else:
        targets = [posixpath.normpath(base)]
    return Copy(tuple(sources), tuple(posixpath.normpath(t) for t in targets))


def _pairs(rest: str, instruction: str, where: str) -> list[tuple[str, str]]:
    words = _split(rest, where)
    if len(words) >= 2 and "=" not in words[0] and instruction == "ENV":
        return [(words[0], " ".join(words[1:]))]  # the legacy `ENV NAME value` form
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ContainerfileError(
                f"{where}: {instruction} expects key=value pairs, got {word!r}"
            )
        pairs.append((key, value))
    return pairs


def _command(rest: str, where: str) -> tuple[str, ...]:
    if rest.startswith("["):
        return tuple(_json_list(rest, where))
    # The shell form, with Docker's meaning.
    return ("/bin/sh", "-c", rest)


def _json_list(rest: str, where: str) -> list[str]:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError as error:
        raise ContainerfileError(f"{where}: not a JSON list of strings ({error.msg})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ContainerfileError(f"{where}: expected a JSON list of strings, got {rest!r}")
    return value


def _split(rest: str, where: str) -> list[str]:
    try:
        return shlex.split(rest, comments=False)
    except ValueError as error:
        raise ContainerfileError(f"{where}: {error}") from None


def _unquote(value: str, where: str) -> str:
    words = _split(value, where)
    return " ".join(words)
