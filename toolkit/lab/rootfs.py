"""Debian root filesystems for lab hosts: debootstrapped once per arch, cached as a tarball.

A foreign root (arm64 on x86) holds only foreign binaries; they run under qemu-user through
binfmt_misc, so whatever runs inside — sshd, the shell, `uname -m` — is the real thing for
that architecture. Building one takes minutes (debootstrap's second stage runs emulated),
extracting the cached tarball takes seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from toolkit.lab.cache import cache_dir, file_lock
from toolkit.lab.images import BinfmtError, ensure_binfmt

SUITE = "bookworm"
# Bump when the recipe below changes, so tarballs made by an older recipe are not reused.
RECIPE_REVISION = 1
# What a lab host needs: sshd (with sftp-server), a shell toolbox, ps/free for facts.
BASE_PACKAGES = ("openssh-server", "busybox", "procps")
SUPPORTED_ARCHES = ("amd64", "arm64")
MIRROR_ENV = "ARCHFLEET_DEBIAN_MIRROR"
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
APT_SOURCES_LIST = Path("/etc/apt/sources.list")
# Written into every root: what recipe made it (read by tests and `lab.status`).
RECIPE_MARKER = "etc/archfleet-rootfs.json"
_DEBOOTSTRAP_TIMEOUT = 1800.0
_LOG_TAIL_LINES = 20
_MIRROR_SCHEMES = ("http", "https", "file")


class RootfsError(RuntimeError):
    """A root filesystem could not be built or extracted; says what is missing and how to fix."""


def build_rootfs(
    debian_arch: str, *, mirror: str | None = None, extra_packages: Sequence[str] = ()
) -> Path:
    """The cached tarball of a minimal Debian root for `debian_arch`; built on first use.

    `mirror` defaults to `$ARCHFLEET_DEBIAN_MIRROR`, else the Debian mirror of the machine's
    own apt sources. `extra_packages` go into the root too and into the cache key, so roots
    with different package sets are cached side by side.
    """
    if debian_arch not in SUPPORTED_ARCHES:
        raise ValueError(
            f"unsupported lab host architecture {debian_arch!r}; use one of {SUPPORTED_ARCHES}"
        )
    packages = _package_list(extra_packages)
    directory = cache_dir() / "rootfs"
    directory.mkdir(parents=True, exist_ok=True)
    name = rootfs_name(debian_arch, extra_packages)
    cached = _cached_tarball(directory, name)
    if cached is not None:
        return cached
    # One builder per tarball: a second process waits here and then finds the tarball.
    with file_lock(directory / f".{name}.lock"):
        cached = _cached_tarball(directory, name)
        if cached is not None:
            return cached
        _check_build_prerequisites(debian_arch)
        source = mirror or debian_mirror()
        return _build(directory, name, debian_arch, packages, source)


def rootfs_name(debian_arch: str, extra_packages: Sequence[str] = ()) -> str:
    """`<arch>-<suite>-r<revision>[-<hash of extra packages>]`: the tarball's name sans suffix."""
    name = f"{debian_arch}-{SUITE}-r{RECIPE_REVISION}"
    if extra_packages:
        digest = hashlib.sha256(",".join(sorted(set(extra_packages))).encode()).hexdigest()
        name = f"{name}-{digest[:10]}"
    return name


def cached_rootfs(debian_arch: str, extra_packages: Sequence[str] = ()) -> Path | None:
    """The cached tarball `build_rootfs` would return at once, or None if it must build one."""
    return _cached_tarball(cache_dir() / "rootfs", rootfs_name(debian_arch, extra_packages))


def extract_rootfs(tarball: Path, dest: Path) -> None:
    """Unpack a cached root into `dest` (created; must not hold anything yet)."""
    if dest.exists() and any(dest.iterdir()):
        raise RootfsError(f"not extracting {tarball.name} into {dest}: it is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    command = ["tar", *_compress_flags(tarball), "--numeric-owner", "-xpf", str(tarball)]
    done = subprocess.run([*command, "-C", str(dest)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RootfsError(
            f"cannot extract {tarball} into {dest} (status {done.returncode}); delete the "
            f"tarball to have it rebuilt if it is damaged:\n{_tail(done.stderr)}"
        )


def debian_mirror(
    sources_dir: Path = APT_SOURCES_DIR, sources_list: Path = APT_SOURCES_LIST
) -> str:
    """The Debian archive the machine's apt already uses (never a hard-coded one).

    An entry for SUITE wins; otherwise a URI ending in `/debian` (the archive's usual path),
    since any Debian archive also serves SUITE.
    """
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return env
    entries = apt_source_entries(sources_dir, sources_list)
    for uri, suites in entries:
        if SUITE in suites:
            return uri
    for uri, _ in entries:
        if urlparse(uri).path.rstrip("/").endswith("/debian"):
            return uri
    seen = ", ".join(uri for uri, _ in entries) or "none"
    raise RootfsError(
        f"no Debian mirror for {SUITE} in {sources_list} or {sources_dir}/*.sources|*.list "
        f"(URIs seen: {seen}); pass mirror=... or set {MIRROR_ENV}=http://<debian mirror>/debian"
    )


def apt_source_entries(sources_dir: Path, sources_list: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled binary (`deb`) source, in apt's reading order."""
    entries: list[tuple[str, list[str]]] = []
    files = [
        sources_list,
        *sorted(sources_dir.glob("*.list")),
        *sorted(sources_dir.glob("*.sources")),
    ]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parsed = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        entries += [(uri, suites) for uri, suites in parsed if _usable_uri(uri)]
    return entries


def mounts_under(path: Path) -> list[Path]:
    """Mount points strictly below `path`, deepest first (the order to unmount them in)."""
    prefix = f"{path.resolve()}/"
    found: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape_mount_path(line.split()[4])
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all_under(path: Path) -> None:
    """Unmount everything below `path`; a busy mount is detached lazily instead."""
    for point in mounts_under(path):
        done = subprocess.run(["umount", str(point)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # Busy (a process still has a cwd or file there): detach it from the tree now;
            # the kernel frees it when the last user goes.
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    left = mounts_under(path)
    if left:
        raise RootfsError(f"could not unmount {', '.join(map(str, left))}")


def _build(directory: Path, name: str, debian_arch: str, packages: list[str], mirror: str) -> Path:
    log_path = directory / f"{name}.build.log"
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=directory))
    try:
        root = work / "root"
        started = time.monotonic()
        _debootstrap(root, debian_arch, packages, mirror, log_path)
        _finish_root(root, debian_arch, packages, mirror, time.monotonic() - started)
        suffix, compressor = _compressor()
        partial = work / f"{name}{suffix}"
        _pack(root, partial, compressor)
        tarball = directory / f"{name}{suffix}"
        # Renamed into place whole: no reader ever sees half a tarball.
        partial.rename(tarball)
        return tarball
    finally:
        _remove_build_dir(work)


def _debootstrap(
    root: Path, debian_arch: str, packages: list[str], mirror: str, log_path: Path
) -> None:
    command = [
        "debootstrap",
        f"--arch={debian_arch}",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        SUITE,
        str(root),
        mirror,
    ]
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        # Its own session, so a timeout can stop debootstrap together with the dpkg it runs.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            status = process.wait(timeout=_DEBOOTSTRAP_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    if status != 0:
        # debootstrap's own log inside the target has the failing dpkg step in detail.
        inner = root / "debootstrap" / "debootstrap.log"
        detail = _tail(inner.read_text(errors="replace")) if inner.is_file() else ""
        raise RootfsError(
            f"debootstrap {debian_arch} from {mirror} failed with status {status}; "
            f"log {log_path}:\n{_tail(log_path.read_text(errors='replace'))}"
            + (f"\n{inner}:\n{detail}" if detail else "")
        )


def _finish_root(
    root: Path, debian_arch: str, packages: list[str], mirror: str, seconds: float
) -> None:
    if not (root / "usr" / "sbin" / "sshd").is_file():
        raise RootfsError(f"debootstrap finished but {root}/usr/sbin/sshd is missing")
    # Host keys are made per host at start; keys baked in here would be shared by all hosts.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Like `apt-get clean` plus dropped lists (a third of the size): package lists go stale
    # anyway, so a host runs `apt-get update` before installing, as on a fresh image.
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    for listed in (root / "var" / "lib" / "apt" / "lists").iterdir():
        if listed.is_file():
            listed.unlink()
    marker = {
        "arch": debian_arch,
        "suite": SUITE,
        "revision": RECIPE_REVISION,
        "packages": packages,
        "mirror": mirror,
        "debootstrap_seconds": round(seconds, 1),
    }
    (root / RECIPE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _pack(root: Path, tarball: Path, compressor: str) -> None:
    command = [
        "tar",
        f"--use-compress-program={compressor}",
        "--numeric-owner",
        "-cf",
        str(tarball),
        "-C",
        str(root),
        ".",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RootfsError(f"cannot pack {root} into {tarball}:\n{_tail(done.stderr)}")


def _remove_build_dir(work: Path) -> None:
    # An interrupted debootstrap can leave proc/sys mounted in the target; deleting through
    # a mounted /proc or /sys would be a disaster, so unmount first and refuse if that fails.
    unmount_all_under(work)
    shutil.rmtree(work, ignore_errors=True)


def _check_build_prerequisites(debian_arch: str) -> None:
    if os.geteuid() != 0:
        raise RootfsError("building a lab root needs root (debootstrap, chroot, mknod)")
    missing = [tool for tool in ("debootstrap", "tar") if shutil.which(tool) is None]
    if missing:
        raise RootfsError(f"missing {', '.join(missing)} on PATH (apt-get install debootstrap tar)")
    try:
        ensure_binfmt(debian_arch)
    except BinfmtError as error:
        raise RootfsError(
            f"cannot build an {debian_arch} root: its binaries cannot run on this machine "
            f"(apt-get install qemu-user-static binfmt-support): {error}"
        ) from None


def _package_list(extra: Sequence[str]) -> list[str]:
    for package in extra:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package):
            raise ValueError(f"not a Debian package name: {package!r}")
    return sorted(set(BASE_PACKAGES) | set(extra))


def _cached_tarball(directory: Path, name: str) -> Path | None:
    for suffix in (".tar.zst", ".tar.gz"):
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _compressor() -> tuple[str, str]:
    """(suffix, tar compress program): zstd when present (fast both ways), else gzip."""
    if shutil.which("zstd"):
        return ".tar.zst", "zstd -T0 -q"
    return ".tar.gz", "gzip"


def _compress_flags(tarball: Path) -> list[str]:
    if tarball.name.endswith(".tar.zst"):
        if shutil.which("zstd") is None:
            raise RootfsError(f"{tarball} is zstd-compressed: apt-get install zstd")
        return ["--use-compress-program=zstd -q"]
    return ["-z"] if tarball.name.endswith(".tar.gz") else []


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += f" {line.strip()}"
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        suites = fields.get("suites", "").split()
        entries += [(uri, suites) for uri in fields.get("uris", "").split()]
    return entries


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        # `deb [arch=amd64 signed-by=...] URI SUITE COMPONENT...`
        line = re.sub(r"\[[^\]]*\]", " ", line)
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    return entries


def _usable_uri(uri: str) -> bool:
    # debootstrap fetches over http(s) or from a local tree; apt's mirror+/cdrom: it cannot.
    return urlparse(uri).scheme in _MIRROR_SCHEMES


def _unescape_mount_path(raw: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_LOG_TAIL_LINES:])
