"""The merge-tool role: the pinned archfleet itself on a host, in a virtualenv of its own.

What a Jenkins merge agent runs as `archfleet` (jenkins/vars/multiArchBuild.groovy without
`archfleetImage:`). The inventory's `archfleet:` section pins it (toolkit/inventory.py
ArchfleetSettings): a wheel (https URL, or a file here uploaded over SFTP) and its sha256, and
the lock its dependencies come from (default: the one archfleet ships,
ci-templates/image/requirements.txt).

Layout on the host, all root's, readable by everyone (umask 022), so agent users run it:

    /opt/archfleet-versions/<version>.XXXXXX/   one virtualenv per install
    /opt/archfleet -> /opt/archfleet-versions/<version>.XXXXXX
    /usr/local/bin/archfleet -> /opt/archfleet/bin/archfleet

Why a directory per install and a link: a virtualenv cannot be moved (its scripts' `#!` lines
name its path), so the new one is made where it stays, and only the link `/opt/archfleet` is
swapped — by rename(2), atomically. Whatever fails before that (download, sha256, venv, pip,
the version check) leaves the link, and so the installed archfleet, as it was; the new
directory is removed. The replaced version's directory is kept until the next install (a merge
job may still be running from it).

Order on the host: the wheel is downloaded (curl `--proto =https`, or GNU wget
`--https-only`; as gitlab_host.install_runner_script does) or copied from the upload into a
private temp directory, its sha256 checked BEFORE pip sees it; then `pip install
--require-hashes --only-binary :all:` of the lock and the wheel (its hash again) in one
resolution — every dependency pinned and hashed, no sdist (whose build would run code and fetch
unpinned build requirements), from the host's configured index or the inventory's
`index_url`/`find_links`. Pure script builders, every value through shlex.quote; then the
SSH side.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shlex
from pathlib import Path
from typing import Any

from ..inventory import ArchfleetSettings, Host
from .apt import APT_GET_FUNCTION
from .connect import CommandResult, run_script
from .pins import VERSION_PATTERN, check_lock, wheel_version

VENV = "/opt/archfleet"
VERSIONS = "/opt/archfleet-versions"
COMMAND = f"{VENV}/bin/archfleet"
LINK = "/usr/local/bin/archfleet"
# In each virtualenv: the sha256 of the wheel it was made from (a re-pinned wheel of the same
# version is a change too).
WHEEL_SHA256_FILE = "archfleet-wheel.sha256"
# What the install-python-venv step may install (Debian/Ubuntu package names).
PYTHON_PACKAGES = ("python3-venv", "python3 python3-venv")

# Exit codes of install_script, for the error message.
EXIT_MISSING = 3  # python3/venv/sha256sum/downloader missing
EXIT_DOWNLOAD = 4
EXIT_SHA256 = 5
EXIT_NOT_OURS = 6  # /opt/archfleet or /usr/local/bin/archfleet is somebody else's
EXIT_VENV = 7
EXIT_PIP = 8
EXIT_VERSION = 9
EXIT_BUSY = 10
_TAIL = 600
_SHA256 = re.compile(r"[0-9a-f]{64}")

# For facts.py's one command: constants only, no inventory string. `archfleet --version` runs
# only where the virtualenv is (a host without the role pays nothing but two tests); running
# it, rather than reading metadata, is what tells a working tool from one whose python went
# away (a dist-upgrade that removed the python3.X it was made with).
FACTS_FRAGMENT = rf"""
if [ -e {VENV} ] || [ -L {VENV} ]; then
  echo "archfleet_venv=yes"
  echo "archfleet=$({COMMAND} --version 2>/dev/null | head -n1)"
  [ -r {VENV}/{WHEEL_SHA256_FILE} ] &&
    echo "archfleet_wheel_sha256=$(head -c 64 {VENV}/{WHEEL_SHA256_FILE})"
fi
[ "$(readlink {LINK} 2>/dev/null)" = {COMMAND} ] && echo "archfleet_linked=yes"
"""
# What installing needs (python3 with venv, apt-get for it): asked only of merge-tool hosts,
# because starting python3 costs every facts run a process (about a second under QEMU).
PYTHON_FACTS_FRAGMENT = r"""
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sys
print("python3=%d.%d.%d" % sys.version_info[:3])
try:
    import ensurepip, venv
except ImportError:
    pass
else:
    print("python3_venv=yes")' 2>/dev/null
fi
command -v apt-get >/dev/null 2>&1 && echo "apt_get=yes"
"""


class MergeToolError(RuntimeError):
    """Installing the pinned archfleet on a host failed; names the host, the step and why."""


def _q(value: str) -> str:
    return shlex.quote(value)


def parse_version(line: str | None) -> str | None:
    """`archfleet --version` prints `archfleet 0.1.0` (Invoke's Program: name, version)."""
    found = re.fullmatch(r"archfleet (\S+)", (line or "").strip())
    return found[1] if found else None


# --- pure script builders --------------------------------------------------------------------


def install_python_script(packages: str) -> str:
    """python3 with its venv module (Debian's python3-venv brings ensurepip and the pip wheel
    a new virtualenv gets), through apt.py's lock-aware apt_get."""
    if packages not in PYTHON_PACKAGES:
        raise ValueError(f"packages {packages!r}: expected one of {', '.join(PYTHON_PACKAGES)}")
    names = " ".join(_q(p) for p in packages.split())
    return (
        "set -e\n"
        + APT_GET_FUNCTION
        + f"""
if ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install {packages}: no apt-get on this host; install python3 with venv" >&2
  exit {EXIT_MISSING}
fi
apt_get update -qq
apt_get install -y -qq --no-install-recommends {names}
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "{packages} installed, but python3 still has no venv module with ensurepip" >&2
  exit {EXIT_MISSING}
fi
"""
    )


# Point `$2` at `$1` atomically: a new symlink renamed over the old one (rename(2)); python3 is
# there by then, and `ln -sfn` unlinks first (a moment with no link) and `mv -T` is GNU's.
_SWAP = r"""swap_link() {
  python3 -c 'import os, sys
target, path = sys.argv[1:]
tmp = "%s.new.%d" % (path, os.getpid())
if os.path.lexists(tmp):
    os.unlink(tmp)
os.symlink(target, tmp)
os.replace(tmp, path)' "$1" "$2"
}
"""

# Refuse to replace what is not ours: a real directory at the venv path or a file (not a
# symlink) at the link path, e.g. an archfleet somebody pip-installed by hand.
_OURS = r"""check_ours() {
  if [ -e "$venv" ] && [ ! -L "$venv" ]; then
    echo "$venv exists and is not a link into $versions: not replacing it; move it away" >&2
    exit 6
  fi
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "$link exists and is not a link to $command: not replacing it; move it away" >&2
    exit 6
  fi
}
"""


def link_script(*, venv: str = VENV, link: str = LINK) -> str:
    """`/usr/local/bin/archfleet` -> `/opt/archfleet/bin/archfleet` (archfleet on PATH)."""
    return f"""set -eu
umask 022
venv={_q(venv)}
versions={_q(VERSIONS)}
command={_q(venv + "/bin/archfleet")}
link={_q(link)}
{_SWAP}{_OURS}check_ours
mkdir -p "$(dirname "$link")"
swap_link "$command" "$link"
"""


def install_script(
    tool: ArchfleetSettings,
    lock: str,
    *,
    uploaded: str = "",
    venv: str = VENV,
    versions: str = VERSIONS,
    link: str = LINK,
) -> str:
    """POSIX sh, run as root: the pinned wheel and its locked dependencies into a new
    virtualenv under `versions`, then `venv` and `link` switched to it (see the module
    docstring). `uploaded`: where an SFTP upload put the wheel when it is not a URL.
    Nothing changes unless every step worked; the exit codes are EXIT_*."""
    _check_inputs(tool, lock, uploaded)
    command = f"{venv}/bin/archfleet"
    return f"""set -eu
umask 022
export LC_ALL=C PATH="$PATH:/usr/local/bin:/usr/sbin:/sbin"
version={_q(tool.version)}
want={_q(tool.sha256)}
name={_q(tool.wheel_name)}
url={_q(tool.wheel_url or "")}
uploaded={_q(uploaded)}
index_url={_q(tool.index_url or "")}
find_links={_q(tool.find_links or "")}
lock={_q(lock)}
venv={_q(venv)}
versions={_q(versions)}
command={_q(command)}
link={_q(link)}
{_SWAP}{_OURS}fail() {{
  code=$1
  shift
  echo "$*" >&2
  exit "$code"
}}
command -v python3 >/dev/null 2>&1 || fail {EXIT_MISSING} "python3 is not installed"
python3 -c 'import ensurepip, venv' 2>/dev/null ||
  fail {EXIT_MISSING} "python3 has no venv module with ensurepip (Debian: python3-venv)"
command -v sha256sum >/dev/null 2>&1 ||
  fail {EXIT_MISSING} "cannot verify the wheel: sha256sum is not installed"
check_ours
work=$(mktemp -d)
new=
trap 'rm -rf "$work"; if [ -n "$new" ]; then rm -rf "$new"; fi' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -n "$url" ]; then
  if command -v curl >/dev/null 2>&1; then
    fetch() {{ curl -fsSL --proto =https --proto-redir =https --retry 3 -o "$2" "$1"; }}
  elif command -v wget >/dev/null 2>&1 && wget --version 2>/dev/null | grep -q 'GNU Wget'; then
    fetch() {{ wget -q --https-only -O "$2" "$1"; }}
  else
    fail {EXIT_MISSING} "cannot download the archfleet wheel over https: install curl or GNU wget"
  fi
  fetch "$url" "$work/$name" ||
    fail {EXIT_DOWNLOAD} "download of the archfleet wheel from $url failed"
else
  cp "$uploaded" "$work/$name" || fail {EXIT_DOWNLOAD} "cannot read the uploaded wheel $uploaded"
fi
got=$(sha256sum "$work/$name" | cut -d' ' -f1)
[ "$got" = "$want" ] ||
  fail {EXIT_SHA256} "$name has sha256 $got, expected $want; not installed"
printf '%s\\n' "$lock" >"$work/requirements.txt"
printf '%s --hash=sha256:%s\\n' "$work/$name" "$want" >"$work/archfleet.txt"
mkdir -p "$versions"
chmod 755 "$versions"
# One install at a time per host: the clean-up below removes what is not the new or the
# previous version, which would include another run's venv under construction.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$versions/.lock"
  flock -n 9 || fail {EXIT_BUSY} "another archfleet install is running on this host; try again"
fi
new=$(mktemp -d "$versions/$version.XXXXXX")
chmod 755 "$new"
python3 -m venv "$new" >&2 || fail {EXIT_VENV} "python3 -m venv $new failed"
set -- --require-hashes --only-binary :all: --no-cache-dir --disable-pip-version-check --no-input
if [ -n "$index_url" ]; then set -- "$@" --index-url "$index_url"; fi
if [ -n "$find_links" ]; then set -- "$@" --find-links "$find_links"; fi
"$new/bin/python" -m pip install -q "$@" -r "$work/requirements.txt" -r "$work/archfleet.txt" ||
  fail {EXIT_PIP} "pip could not install archfleet $version with its locked dependencies; \
the installed archfleet is unchanged"
said=$("$new/bin/archfleet" --version 2>&1 | head -n1) || said=
[ "$said" = "archfleet $version" ] ||
  fail {EXIT_VERSION} "the new archfleet says '$said', not 'archfleet $version'; not switched to it"
printf '%s\\n' "$want" >"$new/{WHEEL_SHA256_FILE}"
previous=$(readlink "$venv" 2>/dev/null) || previous=
swap_link "$new" "$venv"
installed=$new
new=
mkdir -p "$(dirname "$link")"
swap_link "$command" "$link"
# The version just replaced stays (a merge job may run from it); older ones go.
for dir in "$versions"/*; do
  if [ "$dir" != "$installed" ] && [ "$dir" != "$previous" ]; then rm -rf "$dir"; fi
done
echo "archfleet $version in $installed"
"""


def _check_inputs(tool: ArchfleetSettings, lock: str, uploaded: str) -> None:
    """What the inventory checked already, checked again where it becomes shell: nothing
    unpinned, nothing without a hash, nothing that is not https."""
    if not re.fullmatch(VERSION_PATTERN, tool.version):
        raise ValueError(f"archfleet version {tool.version!r} is not a version")
    if not _SHA256.fullmatch(tool.sha256):
        raise ValueError(f"archfleet sha256 must be 64 lowercase hex digits; got {tool.sha256!r}")
    if wheel_version(tool.wheel_name, "archfleet") != tool.version:
        raise ValueError(f"{tool.wheel_name!r} is not a wheel of archfleet {tool.version}")
    for what, value in (
        ("wheel URL", tool.wheel_url),
        ("index_url", tool.index_url),
        ("find_links", tool.find_links),
    ):
        if value and not value.startswith("https://"):
            raise ValueError(f"archfleet {what} must be https://…; got {value!r}")
    if not tool.wheel_url and not uploaded.startswith("/"):
        raise ValueError("a local wheel must be uploaded first: no absolute upload path given")
    problems = check_lock(lock).problems
    if problems:
        line, problem = problems[0]
        raise ValueError(f"the lock is not pinned and hashed (line {line}: {problem})")


# --- on a host -------------------------------------------------------------------------------


def install(connection: Any, host: Host, tool: ArchfleetSettings, *, timeout: float) -> None:
    """Install `tool` on the host: a local wheel is checked here, uploaded over SFTP as the
    login user into a fresh directory of its home, and removed again afterwards."""
    try:
        lock = tool.requirements.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MergeToolError(
            f"{host.name}: cannot read the lock {tool.requirements} ({exc})"
        ) from None
    local = tool.wheel_path
    upload: tuple[str, str] | None = None
    if local is not None:
        _check_local_wheel(host, local, tool.sha256)
        upload = _upload(connection, host, local, tool.wheel_name)
    try:
        script = install_script(tool, lock, uploaded=upload[1] if upload else "")
        result = run_script(connection, script, timeout=timeout, host=host.name)
    finally:
        if upload is not None:
            _remove_upload(connection, *upload)
    _check(result, host, f"installing archfleet {tool.version} into {VENV}")


def _check_local_wheel(host: Host, path: Path, sha256: str) -> None:
    """The file is checked again here: it may have changed since the inventory was loaded."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise MergeToolError(
            f"{host.name}: cannot read the archfleet wheel {path} ({exc.strerror or exc})"
        ) from None
    if digest != sha256:
        raise MergeToolError(
            f"{host.name}: {path} has sha256 {digest}, the inventory pins {sha256}; not uploaded"
        )


def _upload(connection: Any, host: Host, local: Path, name: str) -> tuple[str, str]:
    """(directory, file) of the wheel uploaded into a new directory in the login's home.
    mkdir fails on an existing name, so nobody can have prepared it; 0755, since with
    `become: sudo` root reads it, and a home on NFS may not let root into a 0700 one."""
    try:
        sftp = connection.sftp()
        home = sftp.normalize(".")
        directory = f"{home.rstrip('/')}/.archfleet-upload-{secrets.token_hex(8)}"
        sftp.mkdir(directory, 0o755)
        remote = f"{directory}/{name}"
        sftp.put(str(local), remote)
    except OSError as exc:
        raise MergeToolError(
            f"{host.name}: cannot upload {local} over SFTP ({exc}); the host's sshd needs its "
            "sftp subsystem, or give archfleet.wheel as an https:// URL"
        ) from None
    return directory, remote


def _remove_upload(connection: Any, directory: str, remote: str) -> None:
    sftp = connection.sftp()
    for remove, path in ((sftp.remove, remote), (sftp.rmdir, directory)):
        # Already gone (or never there): nothing left to clean.
        with contextlib.suppress(OSError):
            remove(path)


def install_python(connection: Any, host: Host, packages: str, *, timeout: float) -> None:
    result = run_script(
        connection, install_python_script(packages), timeout=timeout, host=host.name
    )
    _check(result, host, f"installing {packages}")


def link(connection: Any, host: Host, *, timeout: float) -> None:
    result = run_script(connection, link_script(), timeout=timeout, host=host.name)
    _check(result, host, f"linking {LINK} to {COMMAND}")


def _check(result: CommandResult, host: Host, what: str) -> None:
    if not result.ok:
        from .apt import failure_line  # apt's failure, classified by its cause (one line)

        said = (
            failure_line(result.stderr) or (result.stderr.strip() or result.stdout.strip())[-_TAIL:]
        )
        raise MergeToolError(f"{host.name}: {what} failed (exit {result.exit_code}): {said}")
