"""Which CPU the image's entrypoint is really built for, read from its ELF header.

Pure logic: the caller hands over the parsed config blob and the layer blobs as local
files. Layers are streamed once each to index their members (never extracted), merged
the way overlayfs stacks them, and only the first bytes of the one or two files that
matter (the executable and, for scripts, the interpreter) are read back.

Layers are untrusted input, so every read is bounded (`LayerLimits`): tar members with a
negative size, or a size the layer cannot hold, are refused before tarfile acts on them (a
negative size once made a read-back swallow a whole gzip bomb; a declared 2^40-byte member was
walked block by block); the decompressed bytes read, the members, the metadata held and the
symlinks followed are all capped, and each error names the limit it hit.
"""

from __future__ import annotations

import enum
import gzip
import io
import posixpath
import tarfile
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Linux's MAXSYMLINKS.
MAX_SYMLINK_HOPS = 40
# Linux's PATH_MAX: symlink(2) refuses a longer target (ENAMETOOLONG), so no real image has one.
MAX_LINK_TARGET = 4096
# DEFLATE cannot expand data more than 1032:1 (zlib's technical details, "Maximum
# compression factor"): a gzip layer of N bytes holds at most about 1032*N bytes of tar.
_DEFLATE_MAX_RATIO = 1032
# Linux's BINPRM_BUF_SIZE: the kernel itself only looks at this much of a '#!' line.
_HEAD_SIZE = 256
_ELF_MAGIC = b"\x7fELF"
_WHITEOUT_PREFIX = ".wh."
_OPAQUE_MARKER = ".wh..wh..opq"

ELFCLASS32 = 1
ELFCLASS64 = 2
_ELFDATA2LSB = 1
_ELFDATA2MSB = 2

EM_SPARC = 2
EM_386 = 3
EM_MIPS = 8
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SPARCV9 = 43
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258


class BinaryCheckError(Exception):
    """The entrypoint's binary could not be found or identified; the message says why."""


class _Missing(BinaryCheckError):
    """A path component does not exist (PATH lookup moves on to the next directory)."""


class UnsupportedLayer(BinaryCheckError):
    """A layer this module cannot read with the stdlib (e.g. zstd-compressed)."""


class LayerLimitError(BinaryCheckError):
    """A layer is hostile or too big to inspect; the message names the limit."""


@dataclass(frozen=True)
class LayerLimits:
    """Caps on what inspecting an image's layers may cost (all layers together)."""

    # Decompressed tar bytes read (indexing plus read-backs): bounds time on a gzip bomb.
    max_bytes: int = 16 << 30
    # Tar members (including PAX/GNU metadata members): bounds the index's memory.
    max_entries: int = 1_000_000
    # One PAX extended header or GNU long name/link member, which tarfile reads whole.
    max_header_bytes: int = 1 << 20
    # Member names and link targets kept in the index.
    max_name_bytes: int = 256 << 20
    max_symlink_hops: int = MAX_SYMLINK_HOPS


def _amount(count: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor and count % factor == 0:
            return f"{count // factor} {unit}"
    return f"{count} bytes"


@dataclass(frozen=True)
class BinaryFinding:
    """What the image would execute.

    `path` is the executable as the config names it; `resolved_path` is where it really is
    (after PATH lookup, WorkingDir and symlinks). For a '#!' script, `via_interpreter` is
    the resolved path of the interpreter, and the ELF fields describe that interpreter;
    otherwise they describe `resolved_path` itself.
    """

    path: str
    resolved_path: str
    elf_machine: int
    elf_class: int
    little_endian: bool
    architecture: str
    via_interpreter: str | None = None


def inspect_entrypoint(
    config: Mapping[str, Any],
    layers: Sequence[tuple[Path, str]],
    limits: LayerLimits | None = None,
) -> BinaryFinding:
    """Find the executable `config` would run in the filesystem `layers` build, and its arch.

    `layers` are (blob file, media type) in manifest order, bottom layer first.
    """
    run = config.get("config") or {}
    if not isinstance(run, Mapping):
        raise BinaryCheckError("image config field 'config' is not an object")
    argv0, source = _executable(run)
    search_path = _search_path(run)
    workdir = run.get("WorkingDir") or "/"
    if not isinstance(workdir, str):
        raise BinaryCheckError(f"config.WorkingDir must be a string, got {workdir!r}")
    workdir = _absolute(workdir, "/")

    fs = _MergedFS.build(layers, limits or LayerLimits())
    exe = fs.find_executable(argv0, source, search_path, workdir)
    head = fs.read_head(exe.entry, _HEAD_SIZE)
    if not head.startswith(b"#!"):
        return _finding(argv0, exe.path, head, exe.path, source, None)

    interp_path, command = _shebang(head, exe.path)
    what = f"interpreter of {exe.path}"
    # The kernel opens the '#!' path as written (relative to the working directory).
    interpreter = fs.locate(_absolute(interp_path, workdir), f"{interp_path} ({what})")
    if command is not None:
        # `#!/usr/bin/env NAME`: env is only a launcher; NAME, found on PATH, runs the script.
        interpreter = fs.find_executable(command, what, search_path, workdir)
    interp_head = fs.read_head(interpreter.entry, _HEAD_SIZE)
    if interp_head.startswith(b"#!"):
        raise BinaryCheckError(
            f"{exe.path} is a script for {interpreter.path}, which is itself a '#!' script; "
            "only one level of interpreter is followed"
        )
    return _finding(argv0, exe.path, interp_head, interpreter.path, what, interpreter.path)


def architecture_matches(finding: BinaryFinding, architecture: str) -> bool:
    """Whether `finding` is a binary for the OCI `architecture` (e.g. from a platform).

    Architectures are compared exactly: arm64 is not arm and 386 is not amd64, even where
    the CPU could run both. A variant (`arm/v7`, `arm64/v8`) may be passed but is ignored:
    the ELF header cannot tell arm/v6 from arm/v7 (both are EM_ARM), so only the part
    before '/' is compared.
    """
    claimed = architecture.strip().lower().partition("/")[0]
    return finding.architecture == claimed


# --- config ---------------------------------------------------------------------------


def _executable(run: Mapping[str, Any]) -> tuple[str, str]:
    """argv[0] and which config field it came from (Entrypoint wins, as in Docker)."""
    for key in ("Entrypoint", "Cmd"):
        value = run.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BinaryCheckError(f"config.{key} must be a list of strings, got {value!r}")
        if value:
            if not value[0]:
                raise BinaryCheckError(f"config.{key} starts with an empty string: {value!r}")
            return value[0], f"config.{key}[0]"
    raise BinaryCheckError(
        "image config has neither Entrypoint nor Cmd, so there is no executable to inspect"
    )


def _search_path(run: Mapping[str, Any]) -> list[str]:
    value = DEFAULT_PATH
    env = run.get("Env") or []
    if not isinstance(env, list):
        raise BinaryCheckError(f"config.Env must be a list of 'NAME=value' strings, got {env!r}")
    for item in env:
        if isinstance(item, str) and item.startswith("PATH="):
            value = item.removeprefix("PATH=")  # the last one wins, as in a shell
    return [d for d in value.split(":") if d]


def _absolute(path: str, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, path))


# --- ELF ------------------------------------------------------------------------------


def _parse_elf(head: bytes, path: str, what: str) -> tuple[int, int, bool]:
    """(e_machine, EI_CLASS, little-endian) from the first bytes of an ELF file."""
    if head[:4] != _ELF_MAGIC:
        raise BinaryCheckError(
            f"{path} ({what}) is not an ELF binary: it starts with {head[:16]!r}; a script "
            "needs a '#!' line, and other formats' architecture cannot be checked"
        )
    if len(head) < 20:
        raise BinaryCheckError(f"{path} ({what}) is a truncated ELF file ({len(head)} bytes)")
    elf_class, data = head[4], head[5]
    if elf_class not in (ELFCLASS32, ELFCLASS64):
        raise BinaryCheckError(f"{path} ({what}) has an invalid ELF class byte {elf_class}")
    if data not in (_ELFDATA2LSB, _ELFDATA2MSB):
        raise BinaryCheckError(f"{path} ({what}) has an invalid ELF data (endianness) byte {data}")
    little = data == _ELFDATA2LSB
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    return machine, elf_class, little


def _finding(
    path: str, resolved: str, head: bytes, elf_path: str, what: str, via: str | None
) -> BinaryFinding:
    machine, elf_class, little = _parse_elf(head, elf_path, what)
    return BinaryFinding(
        path=path,
        resolved_path=resolved,
        elf_machine=machine,
        elf_class=elf_class,
        little_endian=little,
        architecture=_architecture(machine, elf_class, little),
        via_interpreter=via,
    )


# Machines whose OCI name does not depend on class or endianness. EM_X86_64 covers x32
# (ELFCLASS32) too: it needs an amd64 kernel. EM_ARM's v5/v6/v7 would be the variant.
_FIXED_ARCH = {
    EM_X86_64: "amd64",
    EM_386: "386",
    EM_AARCH64: "arm64",
    EM_ARM: "arm",
    EM_PPC: "ppc",
    EM_SPARC: "sparc",
    EM_SPARCV9: "sparc64",
}


def _architecture(machine: int, elf_class: int, little: bool) -> str:
    """The OCI (GOARCH) name for an ELF machine; `unknown(<n>)` when there is none."""
    is64 = elf_class == ELFCLASS64
    if machine in _FIXED_ARCH:
        return _FIXED_ARCH[machine]
    if machine == EM_PPC64:
        return "ppc64le" if little else "ppc64"
    if machine == EM_S390:
        return "s390x" if is64 else "s390"
    if machine == EM_RISCV:
        return "riscv64" if is64 else "riscv32"
    if machine == EM_MIPS:
        return ("mips64" if is64 else "mips") + ("le" if little else "")
    if machine == EM_LOONGARCH:
        return "loong64" if is64 else "loong32"
    return f"unknown({machine})"


# --- shebang --------------------------------------------------------------------------


def _shebang(head: bytes, script: str) -> tuple[str, str | None]:
    """The interpreter a '#!' line names, and the command when that is `env COMMAND`."""
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    # Like the kernel: only spaces and tabs separate, so a '\r' stays part of the name.
    words = line.replace("\t", " ").split(" ")
    words = [w for w in words if w]
    if not words:
        raise BinaryCheckError(f"{script} starts with '#!' but names no interpreter")
    if words[0].endswith("\r"):
        raise BinaryCheckError(
            f"{script} has a CRLF '#!' line: the kernel would look for {words[0]!r}, "
            "which does not exist; convert the script to LF line endings"
        )
    if posixpath.basename(words[0]) != "env":
        return words[0], None
    # `env [-S] [-i] [-u NAME] [NAME=value]... COMMAND`: skip to COMMAND.
    skip_next = False
    for word in words[1:]:
        if skip_next:
            skip_next = False
        elif word in ("-u", "--unset", "-C", "--chdir"):
            skip_next = True
        elif not word.startswith("-") and "=" not in word:
            return words[0], word.rstrip("\r")
    raise BinaryCheckError(f"{script} runs {words[0]} from its '#!' line but names no command")


# --- layers ---------------------------------------------------------------------------


class _Kind(enum.Enum):
    FILE = "regular file"
    DIR = "directory"
    SYMLINK = "symlink"
    OTHER = "special file"
    BROKEN_HARDLINK = "hardlink to a missing file"


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: _Kind
    layer: int
    offset: int  # of the member's data in the uncompressed tar stream
    size: int
    mode: int
    linkname: str = ""


@dataclass(frozen=True)
class _Layer:
    path: Path
    media_type: str
    gzipped: bool
    label: str

    def capacity(self) -> tuple[int, str]:
        """The most tar bytes this layer can hold, and why."""
        size = self.path.stat().st_size
        if self.gzipped:
            return size * _DEFLATE_MAX_RATIO, (
                f"{_DEFLATE_MAX_RATIO} times its {size} compressed bytes, DEFLATE's maximum ratio"
            )
        return size, "its size"


_METADATA_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
    | {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)


class _Budget:
    """What inspecting one image may still spend, shared by every layer and read-back."""

    def __init__(self, limits: LayerLimits) -> None:
        self.limits = limits
        self.bytes = 0
        self.entries = 0
        self.names = 0

    def spend_bytes(self, count: int, label: str) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_bytes:
            raise LayerLimitError(
                f"{label}: more than {_amount(self.limits.max_bytes)} of decompressed tar read "
                "in all (LayerLimits.max_bytes); a gzip bomb, or an image too big to inspect"
            )

    def remaining_bytes(self) -> int:
        return max(self.limits.max_bytes - self.bytes, 0)

    def count_header(self, info: tarfile.TarInfo, layer: _Layer, capacity: tuple[int, str]) -> None:
        """Checks on a tar header before tarfile acts on its size (tarfile itself trusts it)."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LayerLimitError(
                f"{layer.label}: more than {self.limits.max_entries} tar members in all "
                "(LayerLimits.max_entries)"
            )
        if info.type in _METADATA_TYPES and info.size > self.limits.max_header_bytes:
            raise LayerLimitError(
                f"{layer.label}: a {info.size}-byte tar extended header, more than "
                f"{_amount(self.limits.max_header_bytes)} (LayerLimits.max_header_bytes)"
            )
        _check_size(info, layer, capacity, self.limits)

    def count_names(self, info: tarfile.TarInfo, label: str) -> None:
        self.names += len(info.name) + len(info.linkname)
        if self.names > self.limits.max_name_bytes:
            raise LayerLimitError(
                f"{label}: member names and link targets exceed "
                f"{_amount(self.limits.max_name_bytes)} in all (LayerLimits.max_name_bytes)"
            )


def _check_size(
    info: tarfile.TarInfo, layer: _Layer, capacity: tuple[int, str], limits: LayerLimits
) -> None:
    """A member's declared size is 0..what the layer can hold (and what we may read)."""
    name = info.name[:200]
    if info.size < 0:
        raise LayerLimitError(
            f"{layer.label}: tar member {name!r} declares a negative size ({info.size}); "
            "tar sizes are never negative"
        )
    bound, why = capacity
    if info.size > bound:
        raise LayerLimitError(
            f"{layer.label}: tar member {name!r} declares {info.size} bytes, more than the "
            f"layer can hold ({bound} bytes: {why})"
        )
    if info.size > limits.max_bytes:
        raise LayerLimitError(
            f"{layer.label}: tar member {name!r} declares {info.size} bytes, more than "
            f"{_amount(limits.max_bytes)} (LayerLimits.max_bytes)"
        )


class _Metered(io.RawIOBase):
    """The decompressed tar stream, charging every byte read to the budget."""

    def __init__(self, stream: io.BufferedIOBase, budget: _Budget, label: str) -> None:
        super().__init__()
        self._stream = stream
        self._budget = budget
        self._label = label

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._budget.remaining_bytes() + 1  # never an unbounded read
        data = self._stream.read(size)
        self._budget.spend_bytes(len(data), self._label)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _checked_tarinfo(layer: _Layer, budget: _Budget) -> type[tarfile.TarInfo]:
    """A TarInfo whose `frombuf` (tarfile's documented constructor from a 512-byte header,
    called for every header, PAX and GNU long-name ones too) checks the header first."""
    capacity = layer.capacity()

    class _Checked(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _Checked:
            info = super().frombuf(buf, encoding, errors)
            budget.count_header(info, layer, capacity)
            return info

    return _Checked


class _Node:
    __slots__ = ("children", "entry")

    def __init__(self, entry: _Entry | None) -> None:
        self.entry = entry  # None: a directory only implied by members below it
        self.children: dict[str, _Node] = {}

    @property
    def is_dir(self) -> bool:
        return self.entry is None or self.entry.kind is _Kind.DIR

    @property
    def kind(self) -> _Kind:
        return _Kind.DIR if self.entry is None else self.entry.kind


@dataclass
class _LayerChanges:
    # Members by normalised path, in tar order (a repeated name moves to the end).
    entries: dict[str, _Entry] = field(default_factory=dict)
    whiteouts: list[str] = field(default_factory=list)
    opaque_dirs: list[str] = field(default_factory=list)
    # Hardlinks to a file not in this layer: path -> target, looked up in the layers below.
    outside_links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Located:
    path: str  # absolute, symlinks resolved
    entry: _Entry


def _layer_of(index: int, path: Path, media_type: str, count: int) -> _Layer:
    label = f"layer {index + 1} of {count} ({path.name}, {media_type})"
    if media_type.endswith(("+zstd", ".zstd")):
        raise UnsupportedLayer(
            f"{label} is zstd-compressed ({media_type}); the Python stdlib cannot decompress "
            "zstd, so push gzip layers (e.g. buildah/podman --compression-format gzip) "
            "to have the binary checked"
        )
    if media_type.endswith(("+gzip", ".gzip")):
        return _Layer(path, media_type, gzipped=True, label=label)
    if media_type.endswith(".tar") or media_type == "application/x-tar":
        return _Layer(path, media_type, gzipped=False, label=label)
    raise UnsupportedLayer(
        f"{label} has media type {media_type!r}, which is not a tar or tar+gzip layer"
    )


def _open_layer(layer: _Layer) -> io.BufferedIOBase:
    """The layer's uncompressed tar stream."""
    if layer.gzipped:
        return gzip.open(layer.path, "rb")
    return layer.path.open("rb")


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _normalise(name: str) -> str:
    """Tar member name as a path relative to the root: `./a/b/`, `/a/b`, `a/b` are `a/b`."""
    # Leading '..' cannot climb above the root, exactly as in a chroot.
    clean = posixpath.normpath("/" + name.lstrip("/"))
    return clean.lstrip("/")


def _read_layer(index: int, layer: _Layer, budget: _Budget) -> _LayerChanges:
    changes = _LayerChanges()
    capacity = layer.capacity()
    try:
        with (
            _open_layer(layer) as stream,
            tarfile.open(
                fileobj=_Metered(stream, budget, layer.label),
                mode="r|",
                tarinfo=_checked_tarinfo(layer, budget),
            ) as tar,
        ):
            # TarFile keeps every TarInfo it reads (undocumented `members`); we have our own,
            # slimmer index, so drop them as we go to stay flat on layers with many files.
            seen = vars(tar).get("members")
            while (info := tar.next()) is not None:
                if isinstance(seen, list):
                    seen.clear()
                # Again after PAX records were applied: a PAX `size` can say anything too.
                _check_size(info, layer, capacity, budget.limits)
                budget.count_names(info, layer.label)
                _index_member(index, info, changes)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BinaryCheckError(f"{layer.label} is not a readable tar stream: {exc}") from exc
    return changes


def _index_member(index: int, info: tarfile.TarInfo, changes: _LayerChanges) -> None:
    path = _normalise(info.name)
    if not path:
        return  # the root directory itself
    parent, base = posixpath.split(path)
    if base == _OPAQUE_MARKER:
        changes.opaque_dirs.append(parent)
        return
    if base.startswith(_WHITEOUT_PREFIX + _WHITEOUT_PREFIX):
        return  # other AUFS bookkeeping (.wh..wh.plnk and friends), not content
    if base.startswith(_WHITEOUT_PREFIX):
        changes.whiteouts.append(posixpath.join(parent, base.removeprefix(_WHITEOUT_PREFIX)))
        return

    if info.islnk():
        target = _normalise(info.linkname)
        # A hardlink shares its target's content: reuse the target's data location.
        linked = changes.entries.get(target)
        if linked is None:
            changes.outside_links[path] = target
            linked = _Entry(_Kind.BROKEN_HARDLINK, index, 0, 0, info.mode, target)
        entry = linked
    elif info.isreg():
        entry = _Entry(_Kind.FILE, index, info.offset_data, info.size, info.mode)
    elif info.isdir():
        entry = _Entry(_Kind.DIR, index, 0, 0, info.mode)
    elif info.issym():
        entry = _Entry(_Kind.SYMLINK, index, 0, 0, info.mode, info.linkname)
    else:
        entry = _Entry(_Kind.OTHER, index, 0, 0, info.mode)
    changes.entries.pop(path, None)
    changes.entries[path] = entry


class _MergedFS:
    """The image's root filesystem as overlayfs would show it, without the file data."""

    def __init__(self, layers: list[_Layer], budget: _Budget) -> None:
        self._layers = layers
        self._budget = budget
        self._root = _Node(None)
        # Paths a whiteout or opaque dir removed, with the (1-based) layer, for errors.
        self._removed: dict[str, int] = {}

    @classmethod
    def build(cls, layers: Sequence[tuple[Path, str]], limits: LayerLimits) -> _MergedFS:
        # Check every media type before reading anything: fail fast on zstd.
        parsed = [_layer_of(i, p, m, len(layers)) for i, (p, m) in enumerate(layers)]
        fs = cls(parsed, _Budget(limits))
        for index, layer in enumerate(parsed):
            fs._apply(index, _read_layer(index, layer, fs._budget))
        return fs

    def _apply(self, index: int, changes: _LayerChanges) -> None:
        # Hardlinks to lower layers see the lower layers as they were before this one.
        for path, target in changes.outside_links.items():
            node = self._literal(target)
            own = changes.entries.get(path)
            if own is None or own.kind is not _Kind.BROKEN_HARDLINK:
                continue  # the name was reused later in this layer
            if node is not None and node.entry is not None and node.kind is not _Kind.DIR:
                changes.entries[path] = node.entry
        # Whiteouts and opaque markers only hide what lies below this layer, wherever
        # the marker sits in the tar relative to this layer's own members.
        for directory in changes.opaque_dirs:
            node = self._literal(directory)
            if node is not None and node.is_dir:
                for name in node.children:
                    self._removed[posixpath.join(directory, name)] = index + 1
                node.children.clear()
        for path in changes.whiteouts:
            parent_path, name = posixpath.split(path)
            parent = self._literal(parent_path)
            if parent is not None and parent.children.pop(name, None) is not None:
                self._removed[path] = index + 1
        for path, entry in changes.entries.items():
            self._add(path, entry)

    def _literal(self, path: str) -> _Node | None:
        """The node at `path` without following symlinks."""
        node = self._root
        for part in path.split("/") if path else []:
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def _add(self, path: str, entry: _Entry) -> None:
        *parents, name = path.split("/")
        node = self._root
        for part in parents:
            child = node.children.get(part)
            if child is None or not child.is_dir:
                # A non-directory in the way (never produced by real diffs) is replaced,
                # as extracting the member would have to do.
                child = node.children[part] = _Node(None)
            node = child
        existing = node.children.get(name)
        if entry.kind is _Kind.DIR and existing is not None and existing.is_dir:
            existing.entry = entry  # directories merge; anything else replaces the subtree
        else:
            node.children[name] = _Node(entry)

    def resolve(self, path: str) -> tuple[_Node, str]:
        """The node an absolute `path` names, following every symlink; and its real path.

        Errors describe the failing component only; callers say what was being looked up.
        """
        remaining = deque(_parts(path))
        stack: list[tuple[str, _Node]] = []
        hops = 0
        last_link = ""
        while remaining:
            name = remaining.popleft()
            if name == "..":
                if stack:
                    stack.pop()
                continue
            parent = stack[-1][1] if stack else self._root
            here = "/" + "/".join([n for n, _ in stack] + [name])
            child = parent.children.get(name)
            if child is None:
                via = f" (after following {last_link})" if last_link else ""
                removed = self._removed.get(here.lstrip("/"))
                gone = f"; a whiteout in layer {removed} deleted it" if removed else ""
                raise _Missing(f"{here} does not exist in the image{via}{gone}")
            entry = child.entry
            if entry is not None and entry.kind is _Kind.SYMLINK:
                hops += 1
                limit = self._budget.limits.max_symlink_hops
                if hops > limit:
                    raise LayerLimitError(
                        f"more than {limit} symlinks to follow (LayerLimits.max_symlink_hops, "
                        f"Linux's MAXSYMLINKS), a symlink loop or chain "
                        f"(last: {here} -> {entry.linkname[:200]})"
                    )
                if not entry.linkname:
                    raise BinaryCheckError(f"{here} is a symlink with an empty target")
                if len(entry.linkname) > MAX_LINK_TARGET:
                    raise LayerLimitError(
                        f"{here} is a symlink to a {len(entry.linkname)}-character target, longer "
                        f"than {MAX_LINK_TARGET} (Linux's PATH_MAX; symlink(2) refuses it)"
                    )
                last_link = f"{here} -> {entry.linkname}"
                if entry.linkname.startswith("/"):
                    stack.clear()  # absolute targets start at the image root, not the host's
                # Relative targets continue from the link's directory, where we are.
                remaining.extendleft(reversed(_parts(entry.linkname)))
                continue
            if remaining and not child.is_dir:
                raise BinaryCheckError(f"{here} is a {child.kind.value}, not a directory")
            stack.append((name, child))
        node = stack[-1][1] if stack else self._root
        return node, "/" + "/".join(n for n, _ in stack)

    def locate(self, path: str, what: str) -> _Located:
        """The regular file at absolute `path`, after symlinks."""
        try:
            node, real = self.resolve(path)
        except BinaryCheckError as exc:
            raise type(exc)(f"{what}: {exc}") from None
        entry = node.entry
        if entry is None or entry.kind is not _Kind.FILE:
            broken = f" {entry.linkname}" if entry and entry.kind is _Kind.BROKEN_HARDLINK else ""
            raise BinaryCheckError(
                f"{what} resolves to {real}, which is a {node.kind.value}{broken}, "
                "not an executable file"
            )
        return _Located(real, entry)

    def find_executable(
        self, name: str, what: str, search_path: Sequence[str], workdir: str
    ) -> _Located:
        """Locate `name` like execvp: a path if it has a '/', else the first hit on PATH."""
        if "/" in name:
            return self.locate(_absolute(name, workdir), f"{name} ({what})")
        skipped: list[str] = []
        for directory in search_path:
            candidate = _absolute(posixpath.join(directory, name), workdir)
            try:
                node, real = self.resolve(candidate)
            except _Missing:
                continue
            except BinaryCheckError as exc:  # e.g. a loop: execvp moves on, so do we
                skipped.append(f"{candidate}: {exc}")
                continue
            entry = node.entry
            if entry is None or entry.kind is not _Kind.FILE:
                skipped.append(f"{candidate} is a {node.kind.value}")
            elif not entry.mode & 0o111:
                skipped.append(f"{candidate} is not executable (mode {entry.mode:o})")
            else:
                return _Located(real, entry)
        why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        raise BinaryCheckError(
            f"{name!r} ({what}) is not on the image's PATH {':'.join(search_path)!r}{why}"
        )

    def read_head(self, entry: _Entry, limit: int) -> bytes:
        """The first `limit` bytes of a file's content, read straight from its layer."""
        layer = self._layers[entry.layer]
        count = max(0, min(limit, entry.size))
        # Seeking a gzip stream decompresses everything before the offset: charge it first.
        self._budget.spend_bytes(entry.offset + count, layer.label)
        try:
            with _open_layer(layer) as stream:
                stream.seek(entry.offset)
                return stream.read(count)
        except (OSError, EOFError, zlib.error) as exc:
            raise BinaryCheckError(f"cannot read a file back from {layer.label}: {exc}") from exc
