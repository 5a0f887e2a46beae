"""Debian root filesystems for lab hosts: debootstrapped once per arch, cached as a tarball.

A foreign root (arm64 on x86) holds only foreign binaries; they run under qemu-user through
binfmt_misc, so whatever runs inside — sshd, the shell, `uname -m` — is the real thing for
that architecture. Building one takes minutes (debootstrap's second stage runs emulated),
extracting the cached tarball takes seconds.

A root is one Debian suite (bookworm = 12, trixie = 13) and holds what a small real server
has and provisioning relies on: sshd, sudo, ca-certificates + GNU wget (https downloads with
verification), procps, and the System V service tools a host without systemd uses —
/lib/lsb/init-functions and start-stop-daemon, which gitlab-runner's
helpers/service/scripts.go (isDebianSysv) looks for before writing a Debian init script, and
`service` (init-system-helpers), which kardianos/service's service_sysv_linux.go runs.
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

# Debian suites a lab root can be; the default keeps every existing caller on bookworm.
SUITES = ("bookworm", "trixie")
DEFAULT_SUITE = "bookworm"
SUITE = DEFAULT_SUITE  # the default suite, under its older name
# Bump when the recipe below changes, so tarballs made by an older recipe are not reused.
# r2: sudo, ca-certificates, wget, sysvinit-utils, init-system-helpers; suites.
RECIPE_REVISION = 2
# What a lab host needs: sshd (with sftp-server), a shell toolbox, ps/free for facts, and
# what provisioning uses on a real server (see the module docstring). In both suites
# sysvinit-utils ships /lib/lsb/init-functions (lsb-base 11.6 is only a transitional package
# depending on it), and dpkg ships start-stop-daemon.
BASE_PACKAGES = (
    "openssh-server",
    "busybox",
    "procps",
    "sudo",
    "ca-certificates",
    "wget",
    "sysvinit-utils",
    "init-system-helpers",
)
# Per suite, swapped in by apt inside the new root after debootstrap: (install, remove).
# trixie's openssh-server depends on `systemd | systemd-standalone-sysusers |
# systemd-sysusers` (it creates its user through sysusers.d) and debootstrap always takes
# the first (its --exclude does not stop a dependency; including the standalone one makes
# dpkg refuse it as conflicting): full systemd, with a systemctl nothing runs behind.
# kardianos/service (service_systemd_linux.go isSystemd), which gitlab-runner installs its
# service with, takes a host with systemctl for systemd when /proc/1/comm says "systemd" —
# true in a chroot on a systemd machine — and then fails. The standalone sysusers keeps
# lab roots init-less and the choice of System V certain, in both suites.
SUITE_SWAPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "trixie": (("systemd-standalone-sysusers",), ("systemd", "libsystemd-shared")),
}
_APT_TIMEOUT = 900.0
# Files a finished root must not have: see SUITE_SWAPS.
FORBIDDEN_FILES = ("usr/bin/systemctl", "run/systemd/system")
# Files a finished root must have (relative, resolved through the merged-/usr links): a
# recipe that lost one fails the build instead of a provisioning test much later.
REQUIRED_FILES = (
    "usr/sbin/sshd",
    "usr/bin/sudo",
    "usr/bin/wget",
    "etc/ssl/certs/ca-certificates.crt",
    "lib/lsb/init-functions",
    "sbin/start-stop-daemon",
    "usr/sbin/service",
    "etc/debian_version",
)
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
# debootstrap's script for every current suite; used when it has none under the suite's name.
_FALLBACK_SCRIPT = "sid"
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
    debian_arch: str,
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    extra_packages: Sequence[str] = (),
) -> Path:
    """The cached tarball of a minimal Debian `suite` root for `debian_arch`; built on first use.

    `mirror` defaults to `$ARCHFLEET_DEBIAN_MIRROR`, else the Debian mirror of the machine's
    own apt sources. `extra_packages` go into the root too and into the cache key, so roots
    with different package sets are cached side by side.
    """
    if debian_arch not in SUPPORTED_ARCHES:
        raise ValueError(
            f"unsupported lab host architecture {debian_arch!r}; use one of {SUPPORTED_ARCHES}"
        )
    check_suite(suite)
    packages = _package_list(extra_packages)
    directory = cache_dir() / "rootfs"
    directory.mkdir(parents=True, exist_ok=True)
    name = rootfs_name(debian_arch, extra_packages, suite=suite)
    cached = _cached_tarball(directory, name)
    if cached is not None:
        return cached
    # One builder per tarball: a second process waits here and then finds the tarball.
    with file_lock(directory / f".{name}.lock"):
        cached = _cached_tarball(directory, name)
        if cached is not None:
            return cached
        _check_build_prerequisites(debian_arch)
        source = mirror or debian_mirror(suite=suite)
        return _build(directory, name, debian_arch, suite, packages, source)


def check_suite(suite: str) -> None:
    """Refuse a suite the lab does not build (its name reaches debootstrap and cache names)."""
    if suite not in SUITES:
        raise ValueError(f"unsupported Debian suite {suite!r} for a lab root; use one of {SUITES}")


def rootfs_name(
    debian_arch: str, extra_packages: Sequence[str] = (), *, suite: str = DEFAULT_SUITE
) -> str:
    """`<arch>-<suite>-r<revision>[-<hash of extra packages>]`: the tarball's name sans suffix."""
    check_suite(suite)
    name = f"{debian_arch}-{suite}-r{RECIPE_REVISION}"
    if extra_packages:
        digest = hashlib.sha256(",".join(sorted(set(extra_packages))).encode()).hexdigest()
        name = f"{name}-{digest[:10]}"
    return name


def cached_rootfs(
    debian_arch: str, extra_packages: Sequence[str] = (), *, suite: str = DEFAULT_SUITE
) -> Path | None:
    """The cached tarball `build_rootfs` would return at once, or None if it must build one."""
    name = rootfs_name(debian_arch, extra_packages, suite=suite)
    return _cached_tarball(cache_dir() / "rootfs", name)


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
    sources_dir: Path = APT_SOURCES_DIR,
    sources_list: Path = APT_SOURCES_LIST,
    *,
    suite: str = DEFAULT_SUITE,
) -> str:
    """The Debian archive the machine's apt already uses (never a hard-coded one).

    An entry for `suite` wins; otherwise a URI ending in `/debian` (the archive's usual
    path), since any Debian archive serves every current suite — a bookworm machine's
    mirror serves trixie too.
    """
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return env
    entries = apt_source_entries(sources_dir, sources_list)
    for uri, suites in entries:
        if suite in suites:
            return uri
    for uri, _ in entries:
        if urlparse(uri).path.rstrip("/").endswith("/debian"):
            return uri
    seen = ", ".join(uri for uri, _ in entries) or "none"
    raise RootfsError(
        f"no Debian mirror for {suite} in {sources_list} or {sources_dir}/*.sources|*.list "
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


def _build(
    directory: Path, name: str, debian_arch: str, suite: str, packages: list[str], mirror: str
) -> Path:
    log_path = directory / f"{name}.build.log"
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=directory))
    try:
        root = work / "root"
        started = time.monotonic()
        script = _debootstrap(root, debian_arch, suite, packages, mirror, log_path)
        _swap_packages(root, suite, log_path)
        recipe = {"arch": debian_arch, "suite": suite, "script": script}
        _finish_root(root, recipe, packages, mirror, time.monotonic() - started)
        suffix, compressor = _compressor()
        partial = work / f"{name}{suffix}"
        _pack(root, partial, compressor)
        tarball = directory / f"{name}{suffix}"
        # Renamed into place whole: no reader ever sees half a tarball.
        partial.rename(tarball)
        return tarball
    finally:
        _remove_build_dir(work)


def debootstrap_script(suite: str, scripts: Path = DEBOOTSTRAP_SCRIPTS) -> str | None:
    """None when debootstrap knows `suite` by name; else the script to name as its 4th argument.

    debootstrap(8): `debootstrap SUITE TARGET MIRROR [SCRIPT]` — an older debootstrap that
    has no script for a newer suite builds it with `sid`'s (every current suite's script is
    a symlink to it anyway).
    """
    if (scripts / suite).exists():
        return None
    if (scripts / _FALLBACK_SCRIPT).is_file():
        return str(scripts / _FALLBACK_SCRIPT)
    raise RootfsError(
        f"debootstrap has no script for {suite} nor {_FALLBACK_SCRIPT} under {scripts}; "
        "apt-get install a newer debootstrap"
    )


def _debootstrap(
    root: Path, debian_arch: str, suite: str, packages: list[str], mirror: str, log_path: Path
) -> str:
    """Run debootstrap into `root`; returns the script it used (its name, or a path)."""
    script = debootstrap_script(suite)
    command = [
        "debootstrap",
        f"--arch={debian_arch}",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        suite,
        str(root),
        mirror,
        *([script] if script else []),
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
            f"debootstrap {suite} {debian_arch} from {mirror} failed with status {status}; "
            f"log {log_path}:\n{_tail(log_path.read_text(errors='replace'))}"
            + (f"\n{inner}:\n{detail}" if detail else "")
        )
    return script or suite


def _swap_packages(root: Path, suite: str, log_path: Path) -> None:
    """Install and remove SUITE_SWAPS[suite] with the root's own apt (lists still there)."""
    if suite not in SUITE_SWAPS:
        return
    install, remove = SUITE_SWAPS[suite]
    # `pkg-` removes pkg in the same transaction as the install that replaces it.
    command = [
        "chroot",
        str(root),
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        *install,
        *(f"{package}-" for package in remove),
    ]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    _run_logged(command, env, log_path, f"swapping packages in the {suite} root")


def _run_logged(command: list[str], env: dict[str, str], log_path: Path, what: str) -> None:
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=_APT_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        raise RootfsError(
            f"{what} failed with status {done.returncode}; log {log_path}:\n"
            f"{_tail(log_path.read_text(errors='replace'))}"
        )


def _finish_root(
    root: Path, recipe: dict[str, str], packages: list[str], mirror: str, seconds: float
) -> None:
    missing = [path for path in REQUIRED_FILES if not _exists_in_root(root, path)]
    unwanted = [path for path in FORBIDDEN_FILES if _exists_in_root(root, path)]
    if missing or unwanted:
        raise RootfsError(
            f"debootstrap {recipe['suite']} {recipe['arch']} finished but {root} "
            + (f"lacks {', '.join(missing)}" if missing else f"has {', '.join(unwanted)}")
            + f"; the recipe (packages {packages}) no longer gives the lab's root"
        )
    # Host keys are made per host at start; keys baked in here would be shared by all hosts.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Like `apt-get clean` plus dropped lists (a third of the size): package lists go stale
    # anyway, so a host runs `apt-get update` before installing, as on a fresh image.
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    # apt's package caches (pkgcache.bin, srcpkgcache.bin: tens of MB), rebuilt on demand.
    for cache in (root / "var" / "cache" / "apt").glob("*.bin"):
        cache.unlink()
    for listed in (root / "var" / "lib" / "apt" / "lists").iterdir():
        if listed.is_file():
            listed.unlink()
    marker = {
        "arch": recipe["arch"],
        "suite": recipe["suite"],
        # What the root itself says, e.g. "12.13" for bookworm, "13.8" for trixie.
        "debian_version": (root / "etc" / "debian_version").read_text().strip(),
        "debootstrap_script": recipe["script"],
        "revision": RECIPE_REVISION,
        "packages": packages,
        "swapped": [list(group) for group in SUITE_SWAPS.get(recipe["suite"], ((), ()))],
        "mirror": mirror,
        "debootstrap_seconds": round(seconds, 1),
    }
    (root / RECIPE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _exists_in_root(root: Path, relative: str) -> bool:
    """Whether `relative` exists in `root`, following symlinks as the root itself would.

    Merged-/usr roots make /lib and /sbin relative links (`lib -> usr/lib`), but a file's
    own link may be absolute (`/usr/...`): each absolute target is resolved inside `root`.
    """
    path = root
    for part in Path(relative).parts:
        path = path / part
        for _ in range(40):
            if not path.is_symlink():
                break
            target = Path(os.readlink(path))
            path = root / target.relative_to("/") if target.is_absolute() else path.parent / target
    return path.exists()


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
