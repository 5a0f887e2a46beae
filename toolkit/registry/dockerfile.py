"""What a Dockerfile/Containerfile pulls: its stages' bases, per target platform. Pure.

Follows BuildKit's Dockerfile frontend (moby/buildkit at commit 73ed6825, the behaviour `docker
build`/`buildx` have had since BuildKit became the default builder) and the Dockerfile reference
(docs.docker.com/reference/dockerfile, "Understand how ARG and FROM interact", "Parser
directives", "Automatic platform ARGs in the global scope"; docs.docker.com/build/building/
variables, "Scoping"):

- Lines (`frontend/dockerfile/parser/parser.go` Parse): a byte-order mark is dropped; parser
  directives (`# syntax=`, `# escape=`, `# check=`, `directives.go`) count only before the first
  comment, blank line or instruction, each at most once; `escape` sets the escape token (`\\`
  or a backtick). A line ending in the escape token (trailing blanks allowed) continues on the
  next; comment lines and blank lines inside a continued instruction are skipped. RUN, COPY and
  ADD may carry heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`), whose bodies are not instructions.
- Instructions (`split_command.go`, `instructions/parse.go`): the keyword is case-insensitive;
  leading `--flag=value` words are flags. `FROM [--platform=P] IMAGE [AS NAME]` takes one or
  three arguments; a stage name is lower-cased and must match `^[a-z][a-z0-9-_.]*$`.
- ARG scope (instructions/parse.go Parse, dockerfile2llb/convert.go buildMetaArgs): only the
  ARGs before the first FROM (the global scope) are seen by FROM lines and `--platform`. Each
  takes its `--build-arg` value if given, else its default expanded with the ARGs before it; an
  ARG with neither stays unset. The automatic platform ARGs (platform.go defaultArgs:
  BUILDPLATFORM/BUILDOS/BUILDARCH/BUILDVARIANT, TARGETPLATFORM/TARGETOS/TARGETARCH/
  TARGETVARIANT, TARGETSTAGE) are set in the global scope without an ARG, and a `--build-arg`
  of the same name overrides them.
- Expansion (`shell/lex.go`; dockerfile_expand.py): quotes, the escape token, `$NAME`,
  `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`, `${NAME+word}`,
  `${NAME:?message}`, `${NAME?message}`.
  BuildKit expands an unset name to nothing (a lint warning) and then fails on a blank or
  wrong name; here it is an error that names the ARG. Pattern forms (`#`, `%`, `/`) are refused.
- Stages (convert.go addState, toCommand, resolveReachableStages): `FROM NAME` is an earlier
  stage when NAME (after expansion, as written) is the name of a stage before it; `scratch` is
  no image. Only the stages the target stage (the last, or docker build's `--target`: our
  `--stage`) reaches through FROM, `COPY --from=` (a stage name, an index, or else an image)
  and `RUN --mount=from=` are built.
  Bases without `--platform` are pulled for the target platform (util/imageutil/config.go).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .dockerfile_expand import ExpansionError, expand
from .manifest import Platform
from .platforms import KNOWN_ARCH

SCRATCH = "scratch"
DIRECTIVES = frozenset({"syntax", "escape", "check"})
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
BUILD_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")
TARGET_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT")
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DockerfileError(ValueError):
    """The file is malformed, or a FROM cannot be resolved; the message names file:line."""


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts (1-based)
    keyword: str  # upper case
    flags: tuple[str, ...]  # `--name=value` words, without the leading `--`
    args: str


@dataclass(frozen=True)
class ArgDecl:
    name: str
    default: str | None  # as written (quotes and $ not yet processed)
    line: int


@dataclass(frozen=True)
class Stage:
    index: int
    line: int
    base: str  # as written
    platform: str | None  # the --platform value as written
    name: str | None  # lower-cased
    # `--from` of COPY and `from=` of RUN --mount, as written, with their line.
    sources: tuple[tuple[int, str], ...] = ()

    @property
    def label(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True)
class Dockerfile:
    path: str
    escape: str
    meta_args: tuple[ArgDecl, ...]
    stages: tuple[Stage, ...]
    directives: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BaseUse:
    """One image a build for one target platform pulls, and for which platform."""

    image: str  # the reference after expansion
    platform: Platform
    stage: str
    line: int
    why: str  # "target", "build" ($BUILDPLATFORM and friends) or "explicit" (--platform=...)
    via: str = "FROM"  # or "COPY --from", "RUN --mount"


@dataclass(frozen=True)
class StageUse:
    """How one stage starts, for the report: an image, another stage, or scratch."""

    stage: str
    line: int
    kind: str  # "image", "stage", "scratch"
    base: str
    reachable: bool


@dataclass(frozen=True)
class Resolution:
    target: Platform
    build: Platform
    stages: tuple[StageUse, ...]
    uses: tuple[BaseUse, ...]


# ----------------------------------------------------------------------------- lines


def parse_dockerfile(text: str, *, path: str = "Dockerfile") -> Dockerfile:
    """Stages and global ARGs of `text`; DockerfileError names `path` and the line."""
    escape, directives, instructions = _instructions(text, path)
    meta_args: list[ArgDecl] = []
    stages: list[Stage] = []
    for ins in instructions:
        where = f"{path}:{ins.line}"
        if ins.keyword == "FROM":
            stages.append(_from(ins, len(stages), where))
        elif ins.keyword == "ARG" and not stages:
            meta_args += _arg_decls(ins, escape, where)
        elif not stages:
            raise DockerfileError(
                f"{where}: {ins.keyword} before the first FROM (only ARG may come before it)"
            )
        elif ins.keyword in ("COPY", "RUN"):
            found = _sources(ins, where)
            if found:
                last = stages[-1]
                stages[-1] = Stage(
                    last.index,
                    last.line,
                    last.base,
                    last.platform,
                    last.name,
                    last.sources + tuple((ins.line, s) for s in found),
                )
    if not stages:
        raise DockerfileError(f"{path}: no FROM instruction")
    return Dockerfile(path, escape, tuple(meta_args), tuple(stages), directives)


def _instructions(
    text: str, path: str
) -> tuple[str, tuple[tuple[str, str], ...], list[Instruction]]:
    lines = text.removeprefix("\ufeff").split("\n")
    escape = "\\"
    directives: dict[str, str] = {}
    number = 0
    # Parser directives: only at the very top (directives.go ParseLine).
    while number < len(lines):
        line = lines[number].rstrip("\r").lstrip()
        if not line.startswith("#"):
            break
        match = _DIRECTIVE.match(line[1:].lstrip())
        if not match or match[1].lower() not in DIRECTIVES:
            break
        key = match[1].lower()
        if key in directives:
            raise DockerfileError(
                f"{path}:{number + 1}: only one {key} parser directive can be used"
            )
        directives[key] = match[2]
        if key == "escape":
            if match[2] not in ("\\", "`"):
                raise DockerfileError(
                    f"{path}:{number + 1}: invalid escape token {match[2]!r}: expected ` or \\"
                )
            escape = match[2]
        number += 1
    e = re.escape(escape)
    continuation = re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")

    def trim(line: str) -> tuple[str, bool]:
        """(line without its continuation token, whether the instruction ends here)."""
        if continuation.search(line):
            return continuation.sub(r"\1", line), False
        return line, True

    found: list[Instruction] = []
    while number < len(lines):
        raw = lines[number].rstrip("\r").lstrip()
        number += 1
        start = number
        if not raw or raw.startswith("#"):
            continue
        joined, ended = trim(raw)
        if ended and not joined:
            continue
        parts = [joined]
        while not ended and number < len(lines):
            raw = lines[number].rstrip("\r")
            number += 1
            if raw.lstrip().startswith("#") or not raw.strip():
                continue  # comments and blank lines inside a continued instruction
            piece, ended = trim(raw)
            parts.append(piece)
        instruction = _split(start, "".join(parts), escape, f"{path}:{start}")
        if instruction is None:
            continue
        found.append(instruction)
        if instruction.keyword in HEREDOC_INSTRUCTIONS and "<<" in instruction.args:
            number = _skip_heredocs(instruction, lines, number, path)
    if not found:
        raise DockerfileError(f"{path}: file with no instructions")
    return escape, tuple(directives.items()), found


def _split(line: int, text: str, escape: str, where: str) -> Instruction | None:
    """split_command.go splitCommand + extractBuilderFlags."""
    parts = _WHITESPACE.split(text.strip(), maxsplit=1)
    if not parts[0]:
        return None
    keyword = parts[0].upper()
    rest = parts[1] if len(parts) == 2 else ""
    flags: list[str] = []
    while True:
        rest = rest.lstrip()
        if not rest.startswith("--"):
            break
        word, rest = _flag_word(rest, escape, where)
        if word == "--":
            break
        flags.append(word[2:])
    return Instruction(line, keyword, tuple(flags), rest.strip())


def _flag_word(text: str, escape: str, where: str) -> tuple[str, str]:
    """One `--flag=value` word (quotes and the escape token honoured) and the text after it."""
    out: list[str] = []
    quote = ""
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if not quote and ch.isspace():
            break
        if ch == escape and pos + 1 < len(text):
            pos += 1
            out.append(text[pos])
        elif quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        else:
            out.append(ch)
        pos += 1
    if quote:
        raise DockerfileError(f"{where}: unterminated quote in flag {text.split()[0]!r}")
    return "".join(out), text[pos:]


def _words(text: str, escape: str) -> list[str]:
    """Whitespace-separated words, quotes kept, a quoted blank not splitting (line_parsers.go
    parseWords): how ARG's `NAME=value` pairs and heredoc markers are found."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == escape and pos + 1 < len(text) and quote != "'":
            current += [ch, text[pos + 1]]
            pos += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
            pos += 1
            continue
        current.append(ch)
        pos += 1
    if current:
        words.append("".join(current))
    return words


def _skip_heredocs(instruction: Instruction, lines: list[str], number: int, path: str) -> int:
    """Consume the bodies of the heredocs `instruction` opens (parser.go heredocsFromLine):
    they are file content or script, never instructions."""
    if instruction.args.startswith("["):
        try:
            if isinstance(json.loads(instruction.args), list):
                return number  # the JSON form has no heredocs
        except ValueError:
            pass
    for word in _words(instruction.args, "\\"):
        match = _HEREDOC.match(word)
        if not match or not match[3]:
            continue
        name = match[3].replace('"', "").replace("'", "")
        chomp = match[2] == "-"
        while True:
            if number >= len(lines):
                raise DockerfileError(
                    f"{path}:{instruction.line}: unterminated heredoc <<{name} "
                    f"(no line {name!r} before the end of the file)"
                )
            body = lines[number].rstrip("\r")
            number += 1
            if (body.lstrip("\t") if chomp else body) == name:
                break
    return number


# ----------------------------------------------------------------------------- instructions


def _from(ins: Instruction, index: int, where: str) -> Stage:
    platform: str | None = None
    for flag in ins.flags:
        name, eq, value = flag.partition("=")
        if name != "platform":
            raise DockerfileError(f"{where}: FROM: unknown flag --{name} (only --platform)")
        if not eq:
            raise DockerfileError(f"{where}: FROM: missing a value on flag --platform")
        platform = value
    args = _WHITESPACE.split(ins.args) if ins.args else []
    stage_name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        stage_name = args[2].lower()
        if not _STAGE_NAME.match(stage_name):
            raise DockerfileError(
                f"{where}: invalid name for build stage: {args[2]!r}, name can't start with a "
                "number or contain symbols"
            )
    elif len(args) != 1:
        raise DockerfileError(
            f"{where}: FROM requires either one or three arguments (IMAGE [AS NAME]), "
            f"got {ins.args!r}"
        )
    return Stage(index, ins.line, args[0], platform, stage_name)


def _arg_decls(ins: Instruction, escape: str, where: str) -> list[ArgDecl]:
    words = _words(ins.args, escape)
    if not words:
        raise DockerfileError(f"{where}: ARG requires at least one argument")
    decls = []
    for word in words:
        name, eq, value = word.partition("=")
        if not _ARG_NAME.match(name):
            raise DockerfileError(f"{where}: ARG expects NAME or NAME=default, got {word!r}")
        decls.append(ArgDecl(name, value if eq else None, ins.line))
    return decls


def _sources(ins: Instruction, where: str) -> list[str]:
    """COPY --from=X and RUN --mount=...,from=X (commands_runmount.go): stages or images."""
    found = []
    for flag in ins.flags:
        name, _, value = flag.partition("=")
        if ins.keyword == "COPY" and name == "from":
            found.append(value)
        elif ins.keyword == "RUN" and name == "mount":
            for field_ in value.split(","):
                key, _, item = field_.partition("=")
                if key.strip().lower() == "from" and item:
                    found.append(item.strip())
    for value in found:
        if "$" in value:
            raise DockerfileError(
                f"{where}: variable expansion is not supported for --from ({value!r}); define a "
                "stage with FROM and a global ARG instead, as BuildKit says"
            )
    return found


# ----------------------------------------------------------------------------- resolution


def resolve(
    dockerfile: Dockerfile,
    *,
    target: Platform,
    build: Platform,
    build_args: Mapping[str, str] | None = None,
    stage: str | None = None,
) -> Resolution:
    """The images a build of `dockerfile` for `target`, run on a `build` machine, pulls."""
    given = dict(build_args or {})
    env = _automatic_args(target, build, given, stage or dockerfile.stages[-1].label)
    # Names whose value came from an unset variable: a FROM using them cannot be trusted.
    broken: dict[str, tuple[int, list[str]]] = {}
    declared: dict[str, ArgDecl] = {}
    for decl in dockerfile.meta_args:
        declared[decl.name] = decl
        where = f"{dockerfile.path}:{decl.line}"
        if decl.name in given:
            env[decl.name] = given[decl.name]
            broken.pop(decl.name, None)
        elif decl.default is not None:
            try:
                done = expand(decl.default, env, dockerfile.escape)
            except ExpansionError as exc:
                raise DockerfileError(f"{where}: ARG {decl.name}: {exc}") from None
            env[decl.name] = done.text
            missing = done.unset + [n for n in done.used if n in broken]
            if missing:
                broken[decl.name] = (decl.line, missing)
            else:
                broken.pop(decl.name, None)

    def value_of(text: str, what: str, line: int) -> tuple[str, set[str]]:
        where = f"{dockerfile.path}:{line}"
        try:
            done = expand(text, env, dockerfile.escape)
        except ExpansionError as exc:
            raise DockerfileError(f"{where}: {what} {text!r}: {exc}") from None
        if done.unset:
            reason = _unset_reason(done.unset[0], declared, given)
            raise DockerfileError(f"{where}: {what} {text!r}: {reason}")
        for name in sorted(done.used & broken.keys()):
            line_of, missing = broken[name]
            raise DockerfileError(
                f"{where}: {what} {text!r}: ARG {name} ({dockerfile.path}:{line_of}) uses "
                f"{', '.join(missing)}, which has no value: "
                + _unset_reason(missing[0], declared, given)
            )
        return done.text, done.used

    stages = dockerfile.stages
    by_name = {s.name: s for s in stages if s.name}
    bases: list[tuple[str, str, Platform, str]] = []  # kind, base, platform, why
    deps: dict[int, list[int]] = {s.index: [] for s in stages}
    images: dict[int, list[tuple[int, str, str]]] = {s.index: [] for s in stages}
    earlier: dict[str, int] = {}
    for st in stages:
        base, _ = value_of(st.base, "FROM", st.line)
        if not base:
            raise DockerfileError(
                f"{dockerfile.path}:{st.line}: base name ({st.base}) should not be blank"
            )
        platform, why = target, "target"
        if st.platform is not None:
            text, used = value_of(st.platform, "FROM --platform", st.line)
            platform = _platform(text, f"{dockerfile.path}:{st.line}")
            why = _why(used)
        if base in earlier:  # convert.go addState: a stage defined before this one
            kind = "stage"
            deps[st.index].append(earlier[base])
        elif base == SCRATCH:
            kind = "scratch"
        else:
            kind = "image"
        bases.append((kind, base, platform, why))
        for line, source in st.sources:
            if source.isdigit():
                index = int(source)
                if index >= len(stages):
                    raise DockerfileError(f"{dockerfile.path}:{line}: invalid stage index {index}")
                deps[st.index].append(index)
            elif source.lower() in by_name:
                deps[st.index].append(by_name[source.lower()].index)
            else:
                images[st.index].append((line, source, "COPY --from"))
        if st.name:
            earlier[st.name] = st.index

    if stage:
        if stage.lower() not in by_name:
            names = ", ".join(sorted(by_name)) or "none"
            raise DockerfileError(
                f"{dockerfile.path}: target stage {stage!r} could not be found (stages: {names})"
            )
        goal = by_name[stage.lower()].index
    else:
        goal = stages[-1].index
    reachable = {goal}
    todo = [goal]
    while todo:
        for dep in deps[todo.pop()]:
            if dep not in reachable:
                reachable.add(dep)
                todo.append(dep)

    stage_uses: list[StageUse] = []
    uses: list[BaseUse] = []
    for st, (kind, base, platform, why) in zip(stages, bases, strict=True):
        live = st.index in reachable
        stage_uses.append(StageUse(st.label, st.line, kind, base, live))
        if not live:
            continue
        if kind == "image":
            uses.append(BaseUse(base, platform, st.label, st.line, why))
        for line, image, via in images[st.index]:
            uses.append(BaseUse(image, target, st.label, line, "target", via))
    return Resolution(target, build, tuple(stage_uses), tuple(uses))


def resolve_all(
    dockerfile: Dockerfile,
    targets: Sequence[Platform],
    *,
    build: Platform | None,
    build_args: Mapping[str, str] | None = None,
    stage: str | None = None,
) -> list[Resolution]:
    """One resolution per target platform; `build=None` means each target is built natively
    (on a machine of its own platform, as archfleet's per-arch jobs do)."""
    return [
        resolve(
            dockerfile,
            target=t,
            build=build or t,
            build_args=build_args,
            stage=stage,
        )
        for t in targets
    ]


def _automatic_args(
    target: Platform, build: Platform, given: Mapping[str, str], stage: str
) -> dict[str, str]:
    """platform.go defaultArgs, each overridable by a build arg of its name."""
    env = {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDOSVERSION": "",
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETOSVERSION": "",
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "TARGETSTAGE": stage,
    }
    return {k: given.get(k, v) for k, v in env.items()}


def _why(used: set[str]) -> str:
    if used & set(BUILD_ARGS):
        return "build"
    if used & set(TARGET_ARGS):
        return "target"
    return "explicit"


def _platform(text: str, where: str) -> Platform:
    """containerd's Parse for a FROM --platform value: a lone architecture means linux/ARCH
    (BuildKit's workers run Linux; platforms.go Parse fills the OS from the running program)."""
    if "/" not in text and text.lower() in KNOWN_ARCH | {"x86_64", "aarch64", "armhf", "i386"}:
        text = f"linux/{text}"
    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise DockerfileError(f"{where}: FROM --platform: {exc}") from None


def _unset_reason(name: str, declared: Mapping[str, ArgDecl], given: Mapping[str, str]) -> str:
    decl = declared.get(name)
    if decl is None and name in given:
        return (
            f"--build-arg {name} was given, but no ARG {name} before the first FROM declares it "
            "(only those reach FROM lines)"
        )
    if decl is not None:
        return (
            f"ARG {name} (line {decl.line}) has no default and no --build-arg {name}=VALUE "
            "was given"
        )
    return (
        f"{name} is not set: declare it with ARG {name}=DEFAULT before the first FROM (only "
        f"those ARGs reach FROM lines) or pass --build-arg {name}=VALUE"
    )
