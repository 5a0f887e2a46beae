"""SSH hosts on loopback for the demo and the tests: a Debian root per host with its own sshd.

Each host is a directory `<workdir>/<name>/` holding `root/` (extracted from the cached
tarball of `rootfs.build_rootfs`), `sshd.log` and `host.json` (its state, so another process
— `lab.down` — can stop it by pid). sshd runs chrooted into the root with the machine's
/dev and a proc mounted in, listening on one 127.0.0.x address. In an arm64 root every
binary is arm64 and runs under qemu-user, so a command run over SSH there really is arm64
code and `uname -m` says `aarch64`; nothing of the machine's own system is touched.

Like a real server, a host can also have non-root logins (`LabUser`) with the same keys:
one whose sudo needs no password (what a CI account gets), one whose sudo wants a password.
sudo is setuid code; in an arm64 root it only works when the kernel's binfmt_misc entry for
qemu-aarch64 has the C (credentials) flag — see `check_setuid_works`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from toolkit.lab.images import (
    BINFMT_MOUNT,
    DEBIAN_ARCH_QEMU_BINFMT,
    BinfmtError,
    ensure_binfmt,
    host_debian_arch,
)
from toolkit.lab.rootfs import (
    DEFAULT_SUITE,
    RECIPE_MARKER,
    build_rootfs,
    check_suite,
    extract_rootfs,
    mounts_under,
    unmount_all_under,
)
from toolkit.lab.sshkeys import (
    fingerprint,
    generate_ed25519,
    known_hosts_entry,
    lab_keypair,
    parse_public_key,
    read_public_key,
)

__all__ = [
    "HostStartError",
    "LabHost",
    "LabHostError",
    "LabUser",
    "check_setuid_works",
    "lab_keypair",
    "load_hosts",
    "start_host",
    "write_known_hosts",
]

STATE_FILE = "host.json"
ROOT_DIR = "root"
LOG_FILE = "sshd.log"
# Which tarball the root was extracted from: a root is reused only for the same one.
ROOT_ORIGIN_FILE = "rootfs-origin"
# One host key type keeps known_hosts and every client's choice of key deterministic.
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"
SSHD_PID_FILE = "/run/sshd.pid"
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_SSHD_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Set by start_host's own arguments: the address in particular must stay on loopback.
_SSHD_FIXED = {"listenaddress", "port"}
# sshd sees only this, not the caller's environment (which may hold tokens).
_SSHD_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
_START_MARK = "--- start "
_STOP_GRACE_SECONDS = 5.0
_LOG_TAIL_LINES = 25
# Debian's useradd(8) NAME_REGEX without the trailing `$` machine-account form.
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SudoPolicy = Literal["nopasswd", "password", "none"]
_SUDO_POLICIES = ("nopasswd", "password", "none")
# Written by start_host; sudo(8) reads /etc/sudoers.d via Debian's `@includedir` line and
# skips files whose names contain a `.` or end in `~`, so the name has neither.
SUDOERS_FILE = "etc/sudoers.d/archfleet-lab"
_HOSTS_MARK = "# archfleet lab host name"
# For useradd/usermod/chpasswd/visudo run inside a root (seconds; more under a busy QEMU).
_CHROOT_TIMEOUT = 120.0


@dataclass(frozen=True)
class LabUser:
    """A non-root login on a lab host, with the host's authorized keys and a sudo policy.

    `sudo`: "nopasswd" — `NOPASSWD: ALL` in /etc/sudoers.d, as CI accounts on real servers
    have; "password" — sudo asks for the account's password, so `sudo -n` fails with sudo's
    "a password is required"; "none" — not in sudoers at all. `password` sets the account's
    password (given to chpasswd on stdin, never on a command line or in a log); without one
    the account has none ("*": no password login, yet not locked — a `!` would make sshd
    refuse even keys when UsePAM is off, openssh auth.c allowed_user()).
    """

    name: str
    sudo: SudoPolicy = "nopasswd"
    password: str | None = field(default=None, repr=False)


class LabHostError(RuntimeError):
    """A lab host's state could not be read or its mounts undone; says which file or path."""


class HostStartError(LabHostError):
    """A lab host could not be started; the message says why and carries sshd's log tail."""


@dataclass
class LabHost:
    name: str
    address: str
    port: int
    # Debian architecture of every binary in the root (amd64, arm64).
    arch: str
    root: Path
    # sshd's listener; its per-connection children and anything run over SSH share its root.
    pid: int
    # `ssh-ed25519 AAAA... root@<name>` and its `SHA256:...` fingerprint.
    host_public_key: str
    host_key_fingerprint: str
    state_path: Path
    log_path: Path
    # Debian suite of the root (bookworm, trixie) and the non-root logins start_host made.
    suite: str = DEFAULT_SUITE
    users: tuple[str, ...] = ()
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def known_hosts_line(self) -> str:
        return known_hosts_entry(self.address, self.port, self.host_public_key)

    @property
    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._is_ours(self.pid)

    def processes(self) -> list[int]:
        """Pids of every live process inside this host (sshd, sessions, what they started)."""
        return _processes_in(self.root)

    def stop(self) -> None:
        """Stop sshd, then whatever still runs inside, then unmount; safe to call twice."""
        self._stop_sshd()
        _evacuate(self.root)

    def remove(self) -> None:
        """Stop the host and delete its directory (root, key, log, state); safe to call twice."""
        self.stop()
        # stop() raised if a mount survived; check anyway, as deleting through a bound /dev
        # would delete the machine's device nodes.
        if mounts_under(self.root):
            raise LabHostError(f"not removing {self.root}: mounts are still under it")
        shutil.rmtree(self.state_path.parent, ignore_errors=True)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        # The log gathers every start of this host; the lines of the latest one matter.
        latest = text[text.rfind(_START_MARK) :] if _START_MARK in text else text
        return "\n".join(latest.splitlines()[-lines:])

    def save(self) -> None:
        state = {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "arch": self.arch,
            "root": str(self.root),
            "pid": self.pid,
            "host_public_key": self.host_public_key,
            "host_key_fingerprint": self.host_key_fingerprint,
            "log_path": str(self.log_path),
            "suite": self.suite,
            "users": list(self.users),
        }
        partial = self.state_path.with_name(f".{self.state_path.name}.tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        partial.replace(self.state_path)

    @classmethod
    def load(cls, state_path: Path) -> LabHost:
        """The host described by a state file written at start (e.g. by another process)."""
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            return cls(
                name=str(state["name"]),
                address=str(state["address"]),
                port=int(state["port"]),
                arch=str(state["arch"]),
                root=Path(state["root"]),
                pid=int(state["pid"]),
                host_public_key=str(state["host_public_key"]),
                host_key_fingerprint=str(state["host_key_fingerprint"]),
                state_path=state_path,
                log_path=Path(state["log_path"]),
                # State files written before suites and users existed have neither.
                suite=str(state.get("suite", DEFAULT_SUITE)),
                users=tuple(str(user) for user in state.get("users", ())),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LabHostError(f"cannot read lab host state {state_path}: {error!r}") from None

    def __enter__(self) -> LabHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_sshd(self) -> None:
        process = self._process
        if process is not None:
            # Our own unreaped child: its pid cannot have been reused.
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=_STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return
        _signal_until_gone([self.pid], self._is_ours)

    def _is_ours(self, pid: int) -> bool:
        return _inside(pid, self.root)


def start_host(
    name: str,
    debian_arch: str,
    address: str,
    port: int,
    workdir: Path,
    *,
    authorized_keys: Sequence[str],
    rootfs: Path | None = None,
    mirror: str | None = None,
    fresh: bool = False,
    start_timeout: float = 60.0,
    sshd_options: Mapping[str, str] | None = None,
    suite: str = DEFAULT_SUITE,
    users: Sequence[LabUser] = (),
) -> LabHost:
    """Start host `name` under `workdir/name` with sshd on `address:port` (127.0.0.0/8).

    The root comes from `rootfs` (a tarball from `build_rootfs`, which must hold `suite`),
    else the cached `build_rootfs(debian_arch, suite=suite, mirror=mirror)`, built on first
    use (minutes for arm64). A root left by an earlier start of the same host is reused —
    with its host key, so known_hosts stays valid and what was installed stays installed —
    unless `fresh`. root may log in with any of `authorized_keys`, by key only, and so may
    each of `users` (created on first start, their sudo policy rewritten on every start).
    `sshd_options` are extra `sshd -o Keyword=value` settings (e.g. {"MaxStartups": "1"});
    one of the lab's own settings with the same keyword is replaced, ListenAddress and Port
    cannot be given.
    """
    _check_arguments(name, debian_arch, address, port, authorized_keys)
    check_suite(suite)
    _check_users(users)
    extra_options = _check_sshd_options(sshd_options or {})
    host_dir = (workdir / name).resolve()
    host_dir.mkdir(parents=True, exist_ok=True)
    root = host_dir / ROOT_DIR
    state_path = host_dir / STATE_FILE
    _check_start_prerequisites(debian_arch)
    if any(user.sudo != "none" for user in users):
        check_setuid_works(debian_arch)
    _clear_previous(state_path, root)
    tarball = (
        rootfs if rootfs is not None else build_rootfs(debian_arch, suite=suite, mirror=mirror)
    )
    _prepare_root(root, tarball, debian_arch, suite, fresh=fresh)
    _check_port_free(address, port)
    host_public_key = _ensure_host_key(root, name)
    _install_authorized_keys(root, authorized_keys)
    _name_host(root, name)
    log_path = host_dir / LOG_FILE
    try:
        _mount_system_dirs(root)
        _install_users(root, users, authorized_keys)
        process = _spawn_sshd(root, name, address, port, log_path, extra_options)
    except BaseException:
        unmount_all_under(root)
        raise
    host = LabHost(
        name=name,
        address=address,
        port=port,
        arch=debian_arch,
        root=root,
        pid=process.pid,
        host_public_key=host_public_key,
        host_key_fingerprint=fingerprint(host_public_key),
        state_path=state_path,
        log_path=log_path,
        suite=suite,
        users=tuple(user.name for user in users),
        _process=process,
    )
    try:
        host.save()
        _wait_for_banner(host, process, start_timeout)
    except BaseException:
        host.stop()
        raise
    return host


def check_setuid_works(debian_arch: str) -> None:
    """Raise HostStartError unless setuid programs (sudo) of `debian_arch` can gain root here.

    A foreign binary runs as `qemu-<cpu> binary`; without binfmt_misc's C flag the kernel
    computes the new process's credentials from the interpreter (not setuid), so a setuid
    arm64 sudo starts as the calling user and refuses ("effective uid is not 0").
    Documentation/admin-guide/binfmt-misc.rst: C — "calculate the credentials and security
    token of the new process according to the binary instead of the interpreter" (implies O).
    Debian's qemu-user-static registers qemu-aarch64 with "credentials no" (flags PF).
    """
    if debian_arch == host_debian_arch():
        return
    entry_name = DEBIAN_ARCH_QEMU_BINFMT.get(debian_arch, "")
    entry = BINFMT_MOUNT / entry_name
    try:
        flags = next(
            line.split(":", 1)[1].strip()
            for line in entry.read_text().splitlines()
            if line.startswith("flags:")
        )
    except (OSError, StopIteration) as error:
        raise HostStartError(f"cannot read binfmt_misc entry {entry}: {error!r}") from None
    if "C" not in flags:
        raise HostStartError(
            f"sudo cannot work on an {debian_arch} lab host: binfmt_misc entry {entry} has "
            f"flags {flags!r} without C, so setuid {debian_arch} programs run with the "
            f"caller's uid under QEMU. Re-register it with flags {_with_credentials(flags)!r} "
            "(images.ensure_binfmt does this), or start the host without sudo users"
        )


def _with_credentials(flags: str) -> str:
    # C implies O (the kernel hands the binary over as an open file): both are spelled out.
    return "".join(sorted(set(flags) | {"O", "C"}, key="POCF".find))


def load_hosts(workdir: Path) -> list[LabHost]:
    """Every host started under `workdir` (running or not), by name."""
    return [LabHost.load(path) for path in sorted(workdir.glob(f"*/{STATE_FILE}"))]


def write_known_hosts(path: Path, hosts: Iterable[LabHost]) -> Path:
    """An OpenSSH known_hosts file with one `[127.0.0.x]:PORT ssh-ed25519 ...` line per host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{host.known_hosts_line}\n" for host in hosts), encoding="utf-8")
    return path


def _check_arguments(
    name: str, debian_arch: str, address: str, port: int, authorized_keys: Sequence[str]
) -> None:
    if not _HOST_NAME.fullmatch(name):
        raise ValueError(f"lab host name {name!r} must match {_HOST_NAME.pattern}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"lab host address {address!r} is not an IP address") from None
    # Loopback only: no other machine may ever reach a lab host (root login, lab keys).
    if ip.version != 4 or not ip.is_loopback:
        raise ValueError(f"lab host address {address} is not in 127.0.0.0/8")
    if not 1 <= port <= 65535:
        raise ValueError(f"lab host port {port} is not in 1..65535")
    if not authorized_keys:
        raise ValueError(f"lab host {name}: no authorized key given, nobody could log in")
    for key in authorized_keys:
        parse_public_key(key, source=f"authorized key for {name}")
    if debian_arch not in ("amd64", "arm64"):
        raise ValueError(f"lab host architecture {debian_arch!r}: use amd64 or arm64")


def _check_users(users: Sequence[LabUser]) -> None:
    names = [user.name for user in users]
    for user in users:
        if not _USER_NAME.fullmatch(user.name) or user.name == "root":
            raise ValueError(f"lab user name {user.name!r} must match {_USER_NAME.pattern}")
        if user.sudo not in _SUDO_POLICIES:
            raise ValueError(f"lab user {user.name}: sudo must be one of {_SUDO_POLICIES}")
        if user.password is not None and (
            not user.password or any(c in user.password for c in ":\n\r\x00")
        ):
            # chpasswd reads `name:password` lines.
            raise ValueError(f"lab user {user.name}: password must be one line without ':'")
    if len(set(names)) != len(names):
        raise ValueError(f"lab users are named twice: {names}")


def _check_sshd_options(options: Mapping[str, str]) -> dict[str, str]:
    for keyword, value in options.items():
        if not _SSHD_KEYWORD.fullmatch(keyword):
            raise ValueError(f"sshd option {keyword!r} is not an sshd_config keyword")
        if keyword.lower() in _SSHD_FIXED:
            raise ValueError(f"sshd option {keyword}: use start_host's address/port arguments")
        if not value.strip() or any(c in value for c in "\n\r\x00"):
            raise ValueError(f"sshd option {keyword}: value {value!r} must be one plain line")
    return dict(options)


def _check_start_prerequisites(debian_arch: str) -> None:
    if os.geteuid() != 0:
        raise HostStartError("lab hosts need root (chroot, mount, sshd on a chosen address)")
    missing = [tool for tool in ("unshare", "chroot", "mount", "umount") if not shutil.which(tool)]
    if missing:
        raise HostStartError(f"missing {', '.join(missing)} on PATH (apt-get install util-linux)")
    try:
        ensure_binfmt(debian_arch)
    except BinfmtError as error:
        raise HostStartError(
            f"{debian_arch} binaries cannot run here, so neither can an {debian_arch} host "
            f"(apt-get install qemu-user-static binfmt-support): {error}"
        ) from None


def _clear_previous(state_path: Path, root: Path) -> None:
    if state_path.is_file():
        previous = LabHost.load(state_path)
        if previous.running:
            raise HostStartError(
                f"lab host {previous.name} is already running (sshd pid {previous.pid} on "
                f"{previous.address}:{previous.port}); stop it first: "
                f"LabHost.load({str(state_path)!r}).stop()"
            )
        # Sessions or mounts an earlier run left behind (e.g. it was killed) go now.
        previous.stop()
    elif root.exists():
        _evacuate(root)


def _prepare_root(root: Path, tarball: Path, debian_arch: str, suite: str, *, fresh: bool) -> None:
    origin = root.parent / ROOT_ORIGIN_FILE
    reusable = (
        not fresh
        and (root / "usr" / "sbin" / "sshd").is_file()
        and origin.is_file()
        and origin.read_text().strip() == tarball.name
    )
    if not reusable:
        origin.unlink(missing_ok=True)
        if root.exists():
            # _clear_previous unmounted everything; check again, as removing a tree with
            # the machine's /dev bound into it would remove the machine's device nodes.
            if mounts_under(root):
                raise HostStartError(f"not removing {root}: still has mounts under it")
            shutil.rmtree(root)
        extract_rootfs(tarball, root)
        origin.write_text(f"{tarball.name}\n")
    marker = root / RECIPE_MARKER
    try:
        recipe = json.loads(marker.read_text(encoding="utf-8"))
        built_for, built_suite = recipe["arch"], recipe["suite"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise HostStartError(f"{tarball} is not a lab root ({marker}: {error!r})") from None
    if built_for != debian_arch:
        raise HostStartError(f"{tarball} holds an {built_for} root, not {debian_arch}")
    if built_suite != suite:
        raise HostStartError(f"{tarball} holds a {built_suite} root, not {suite}")


def _check_port_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As sshd does: connections of an earlier sshd in TIME_WAIT must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as error:
            raise HostStartError(f"cannot listen on {address}:{port}: {error}") from None


def _ensure_host_key(root: Path, name: str) -> str:
    private = root / HOST_KEY
    public = private.with_name(f"{private.name}.pub")
    if private.is_file() and public.is_file():
        return read_public_key(public)
    # Made per host by the machine's ssh-keygen (instantly, not under emulation), so every
    # host has its own key, as real machines do.
    return generate_ed25519(private, comment=f"root@{name}")


def _install_authorized_keys(root: Path, keys: Sequence[str]) -> None:
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text("".join(f"{key.strip()}\n" for key in keys), encoding="utf-8")
    # sshd's StrictModes refuses keys in files others can write.
    authorized.chmod(0o600)


def _name_host(root: Path, name: str) -> None:
    """Make the host's own name resolve, as on a real server (Debian's installer writes the
    `127.0.1.1 <name>` line); sudo otherwise warns "unable to resolve host" on every call."""
    hosts = root / "etc" / "hosts"
    try:
        lines = hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = ["127.0.0.1\tlocalhost"]
    lines = [line for line in lines if not line.endswith(_HOSTS_MARK)]
    lines.append(f"127.0.1.1\t{name}\t{_HOSTS_MARK}")
    hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _install_users(root: Path, users: Sequence[LabUser], keys: Sequence[str]) -> None:
    """Create each user (once), give it the keys, and write the sudoers file for all of them."""
    if users and not (root / "usr" / "bin" / "sudo").is_file():
        raise HostStartError(
            f"{root} has no sudo: its tarball predates lab roots with users (rootfs recipe "
            "r2); pass no rootfs= (or one from today's build_rootfs) to have one built"
        )
    for user in users:
        if not _passwd_entry(root, user.name):
            # Debian's own tool, run inside the root (under QEMU for arm64), so the
            # account, its group and home look as on any Debian machine.
            _chroot(root, ["useradd", "--create-home", "--shell", "/bin/bash", user.name])
        # "*": no password, not locked (see LabUser); chpasswd replaces it if one is given.
        _chroot(root, ["usermod", "--password", "*", user.name])
        if user.password is not None:
            _chroot(root, ["chpasswd"], stdin=f"{user.name}:{user.password}\n")
        _install_user_keys(root, user.name, keys)
    _write_sudoers(root, users)


def _passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc" / "passwd").read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) >= 7:
            return fields
    return []


def _install_user_keys(root: Path, name: str, keys: Sequence[str]) -> None:
    fields = _passwd_entry(root, name)
    uid, gid, home = int(fields[2]), int(fields[3]), fields[5]
    ssh_dir = root / home.lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text("".join(f"{key.strip()}\n" for key in keys), encoding="utf-8")
    # StrictModes: owned by the user (its uid in the root's passwd), nobody else may write.
    for path, mode in ((ssh_dir, 0o700), (authorized, 0o600)):
        os.chown(path, uid, gid)
        path.chmod(mode)


def _write_sudoers(root: Path, users: Sequence[LabUser]) -> None:
    sudoers = root / SUDOERS_FILE
    rules = {"nopasswd": "ALL=(ALL:ALL) NOPASSWD: ALL", "password": "ALL=(ALL:ALL) ALL"}
    lines = [f"{user.name} {rules[user.sudo]}" for user in users if user.sudo in rules]
    if not lines:
        sudoers.unlink(missing_ok=True)
        return
    partial = sudoers.with_name(f".{sudoers.name}.tmp")
    partial.write_text("# written by archfleet's lab (hosts.py)\n" + "\n".join(lines) + "\n")
    # sudo ignores sudoers files that others may write; 0440 as visudo leaves them.
    os.chown(partial, 0, 0)
    partial.chmod(0o440)
    _chroot(root, ["visudo", "--check", "--quiet", "--file", f"/{partial.relative_to(root)}"])
    partial.replace(sudoers)


def _chroot(root: Path, command: list[str], *, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["chroot", str(root), *command],
        input=stdin,
        capture_output=True,
        text=True,
        env=_SSHD_ENV,
        timeout=_CHROOT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        # stdin (a password) is never part of the message.
        raise HostStartError(
            f"`{' '.join(command)}` in {root} failed with status {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}"
        )


def _mount_system_dirs(root: Path) -> None:
    _run(["mount", "--bind", "/dev", str(root / "dev")])
    # Read-only: if this root were ever deleted with the bind still in place, the deletion
    # fails instead of removing the machine's device nodes. Devices still open read-write.
    _run(["mount", "-o", "remount,bind,ro", str(root / "dev")])
    # A plain bind does not carry /dev's submounts; sshd needs devpts to hand out ptys.
    _run(["mount", "--bind", "/dev/pts", str(root / "dev" / "pts")])
    _run(["mount", "-t", "proc", "proc", str(root / "proc")])
    # sshd's privilege-separation directory.
    (root / "run" / "sshd").mkdir(mode=0o755, parents=True, exist_ok=True)


def _spawn_sshd(
    root: Path,
    name: str,
    address: str,
    port: int,
    log_path: Path,
    extra_options: Mapping[str, str],
) -> subprocess.Popen[bytes]:
    options = {
        "ListenAddress": address,
        "PidFile": SSHD_PID_FILE,
        "HostKey": f"/{HOST_KEY}",
        "PermitRootLogin": "prohibit-password",
        "PubkeyAuthentication": "yes",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        # PAM's loginuid/systemd session modules fail in a chroot; keys need no PAM.
        "UsePAM": "no",
        "UseDNS": "no",
        "PrintMotd": "no",
        "PrintLastLog": "no",
    }
    # sshd keeps the FIRST value given for most keywords: an extra replaces ours, not follows.
    wanted = {keyword.lower() for keyword in extra_options}
    options = {k: v for k, v in options.items() if k.lower() not in wanted}
    options.update(extra_options)
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-p", str(port)]
    for key, value in options.items():
        sshd += ["-o", f"{key}={value}"]
    # A UTS namespace of its own, so `hostname` on the host says its name. unshare, chroot
    # and the shell each exec the next: the pid we get is sshd's.
    script = 'hostname "$1" || true; shift; exec "$@"'
    command = ["unshare", "--uts", "chroot", str(root), "/bin/sh", "-c", script, "sh", name, *sshd]
    with log_path.open("ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        log.write(f"{_START_MARK}{stamp}: {' '.join(command)}\n".encode())
        log.flush()
        # Its own session: a Ctrl-C meant for the lab command does not reach a host that
        # `lab.up` leaves running.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_SSHD_ENV,
            start_new_session=True,
        )


def _wait_for_banner(host: LabHost, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    # Our sshd's own word that it bound the port, so a banner from some other server that
    # grabbed the port first is not taken for ours.
    listening = f"Server listening on {host.address} port {host.port}."
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HostStartError(
                f"sshd of lab host {host.name} ({host.arch}) exited with status "
                f"{process.returncode} before listening on {host.address}:{host.port}; "
                f"log {host.log_path}:\n{host.log_tail()}"
            )
        banner = _read_banner(host.address, host.port)
        if banner.startswith("SSH-2.0-") and listening in host.log_tail():
            return
        last = banner
        time.sleep(0.1)
    raise HostStartError(
        f"sshd of lab host {host.name} ({host.arch}) did not answer on {host.address}:"
        f"{host.port} within {timeout:.0f}s ({last}); log {host.log_path}:\n{host.log_tail()}"
    )


def _read_banner(address: str, port: int) -> str:
    try:
        with socket.create_connection((address, port), timeout=5.0) as sock:
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            # Say goodbye properly rather than leave sshd waiting for our version string.
            with contextlib.suppress(OSError):
                sock.sendall(b"SSH-2.0-archfleet-lab-probe\r\n")
    except OSError as error:
        return str(error)
    return data.decode("ascii", errors="replace").strip()


def _evacuate(root: Path) -> None:
    """Stop every process inside `root`, then unmount everything under it."""
    # Connections already accepted live on in sshd's children after the listener goes,
    # and anything started over SSH may have daemonised: all of it holds the mounts.
    _signal_until_gone(_processes_in(root), lambda pid: _inside(pid, root))
    unmount_all_under(root)


def _processes_in(root: Path) -> list[int]:
    return [pid for pid in _all_pids() if _inside(pid, root)]


def _inside(pid: int, root: Path) -> bool:
    # A process is inside a host when its root directory is the host's root; a recycled
    # pid, or a zombie (no root link any more), is not.
    try:
        return os.readlink(f"/proc/{pid}/root") == str(root)
    except OSError:
        return False


def _signal_until_gone(pids: Sequence[int], alive: Callable[[int], bool]) -> None:
    for sig, grace in ((signal.SIGTERM, _STOP_GRACE_SECONDS), (signal.SIGKILL, 2.0)):
        remaining = [pid for pid in pids if alive(pid)]
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while remaining and time.monotonic() < deadline:
            time.sleep(0.05)
            remaining = [pid for pid in remaining if alive(pid)]
        if not remaining:
            return


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HostStartError(
            f"`{' '.join(command)}` failed with status {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}"
        )
