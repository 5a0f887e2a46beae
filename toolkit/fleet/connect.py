"""Fabric connections with a safe host-key policy, timeouts, jump hosts and a bounded retry.

Fabric's default accepts any unknown host key (AutoAddPolicy) and loads no known_hosts; a
provisioning tool hands runner tokens to the host it talks to, so here keys come from the
inventory's known_hosts file and an unknown key is refused (RejectPolicy). A task's
`--accept-new-host-keys` (SshSettings.accept_new_host_keys) is OpenSSH's
StrictHostKeyChecking=accept-new instead: a host with NO entry at all is accepted and its key
appended to that file. A changed key is refused either way and never overwritten — paramiko
raises BadHostKeyException before it consults the policy — and so is a key that differs from
the one another thread or process recorded for the same host meanwhile.

Connecting is retried, a few times with jittered backoff inside the inventory's
connect_timeout, but ONLY on what sshd's MaxStartups does to a busy server: it accepts the
TCP connection and closes it before (or while) the SSH banner and key exchange are sent.
Nothing after the key exchange is retried — a refused or changed host key, an authentication
failure — and nothing once a command has started: `connect` opens the connection before the
first command, and `run_script` never retries, so no command can run twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko
from fabric import Config, Connection

from ..inventory import Host, NewHostKey, SshSettings

# Attempts per connection (the first one included); the connect_timeout bounds them all.
CONNECT_ATTEMPTS = 6
_BACKOFF_BASE = 0.5  # seconds before the first retry, doubled per retry, jittered
_BACKOFF_CAP = 4.0

# paramiko's transport thread logs a traceback for every failed handshake, and with no logging
# configured Python prints it on stderr. The failure reaches the user once, as the host's
# ConnectError — and a drop that a retry got past is no failure at all. (An application that
# configures logging still gets the records.)
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class FailedHop:
    """The hop a connection failed at, as a value: the target or a jump host, with the user,
    address and port it was dialled with (ssh config applied), and `via`, the jump host it
    was reached through (None: dialled directly)."""

    role: Literal["target", "jump host"]
    address: str
    port: int
    user: str
    via: FailedHop | None = None


class ConnectError(RuntimeError):
    """A host could not be reached or refused us; names the host and why. `hop`: the hop it
    failed at, where connect() knows it (None: before any hop was dialled, e.g. a missing
    known_hosts file)."""

    def __init__(self, message: str, hop: FailedHop | None = None) -> None:
        super().__init__(message)
        self.hop = hop


class BecomeError(ConnectError):
    """`ssh.become: sudo` and sudo would not run our step as root (it wants a password, the
    login user may not use it, sudo is not installed)."""


class HostConnection(Connection):  # type: ignore[misc]
    """A Fabric connection that knows how a host step runs on it: with `become` "sudo", every
    script goes through `sudo -n` (never a password prompt: a provisioning run has no one to
    type it, and a prompt would hang the host's step until its timeout)."""

    # A class attribute, so Fabric's DataProxy treats it as an attribute, not as config.
    become: str | None = None
    login_user: str = ""

    def open_gateway(self) -> object:
        """Fabric's, but the jump host's channel to us is opened within connect_timeout:
        paramiko waits up to an hour for it (Transport.open_channel's default), and a jump
        host whose sshd is still trying to reach a dropped address answers only when its
        own TCP connect gives up."""
        gateway = self.gateway
        if not isinstance(gateway, Connection):
            return super().open_gateway()
        gateway.open()
        return gateway.transport.open_channel(
            kind="direct-tcpip",
            dest_addr=(self.host, int(self.port)),
            src_addr=("", 0),
            timeout=self.connect_timeout or None,
        )


def _jump(spec: str, settings: SshSettings, config: Config) -> Connection:
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    gateway = HostConnection(
        host,
        user=user or settings.user,
        port=int(port) if port else 22,
        config=config,
        forward_agent=False,
        connect_timeout=settings.connect_timeout,
        connect_kwargs=_connect_kwargs(settings),
    )
    return gateway  # secured by connection_for, with every other hop


def _connect_kwargs(settings: SshSettings) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "banner_timeout": settings.connect_timeout,
        "auth_timeout": settings.connect_timeout,
    }
    if settings.key is not None:
        kwargs["key_filename"] = str(settings.key)
        # Only the key the inventory names: no surprise agent or ~/.ssh/id_* keys.
        kwargs["look_for_keys"] = False
        kwargs["allow_agent"] = False
    return kwargs


def _secure(connection: Connection, settings: SshSettings, label: str) -> None:
    """The inventory's known_hosts and the host-key policy on `connection`'s client (Fabric
    left AutoAddPolicy there); `label` names the host (or jump host) in errors and notes."""
    known_hosts = settings.known_hosts
    on_new = settings.accept_new_host_keys
    if on_new is None:
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    elif known_hosts is None:
        raise ConnectError(
            f"{label}: accepting new host keys needs a file to record them in: "
            "set ssh.known_hosts in the inventory"
        )
    else:
        connection.client.set_missing_host_key_policy(
            AcceptNewHostKeys(known_hosts, label=label, on_recorded=on_new)
        )
    if known_hosts is not None:
        try:
            connection.client.load_host_keys(str(known_hosts))
        except FileNotFoundError:
            if on_new is None:
                raise ConnectError(f"known_hosts file {known_hosts} does not exist") from None
            # accept-new: the first key recorded creates it.


class AcceptNewHostKeys(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """OpenSSH's accept-new: record the key of a host that known_hosts has no entry for.

    paramiko consults a policy only for a host with no entry at all (a changed key raised
    BadHostKeyException before), so this never replaces a key.
    """

    def __init__(
        self, known_hosts: Path, *, label: str, on_recorded: Callable[[NewHostKey], None]
    ) -> None:
        self.known_hosts = known_hosts
        self.label = label
        self.on_recorded = on_recorded

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        # `hostname` is paramiko's known_hosts name of the server: `addr`, or `[addr]:port`.
        if record_host_key(self.known_hosts, hostname, key, label=self.label):
            self.on_recorded(
                NewHostKey(
                    host=self.label,
                    server=hostname,
                    key_type=key.get_name(),
                    fingerprint=key.fingerprint,
                    known_hosts=self.known_hosts,
                )
            )


def record_host_key(known_hosts: Path, server: str, key: paramiko.PKey, *, label: str) -> bool:
    """Append `server`'s `key` to `known_hosts` (made if missing) as one OpenSSH line; True if
    it was appended, False if the file holds that key for `server` already (another host of
    the same run, or another process, recorded it meanwhile).

    A different key for `server` in the file raises BadHostKeyException: never overwritten.
    The check and the append happen under an exclusive flock of the file: it excludes the
    other threads of this process (each call opens the file anew, and flock locks belong to
    the open file) as well as another archfleet run; the line goes out in one O_APPEND write.
    """
    line = f"{server} {key.get_name()} {key.get_base64()}\n".encode()
    cannot = f"{label}: cannot record the host key of {server} in {known_hosts}"
    try:
        fd = os.open(known_hosts, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConnectError(f"{cannot} ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Read by paramiko itself, so what counts as "an entry for this host" (hashed names,
        # several names per line) is what its client goes by.
        entries = paramiko.HostKeys(str(known_hosts)).lookup(server)
        if entries is not None:
            recorded = entries.get(key.get_name())
            if recorded == key:
                return False
            raise paramiko.BadHostKeyException(
                server, key, recorded if recorded is not None else next(iter(entries.values()))
            )
        size = os.fstat(fd).st_size
        # A last line without its newline must not have ours glued on.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
    except OSError as exc:
        raise ConnectError(f"{cannot} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)  # and with it the lock
    if written != len(line):  # a full disk: a short write of a small line
        raise ConnectError(f"{cannot} (wrote {written} of {len(line)} bytes)")
    return True


def _config(host: Host) -> Config:
    settings = host.ssh
    overrides = {
        "load_ssh_configs": settings.use_ssh_config,
        "run": {"hide": True, "warn": True, "in_stream": False},
        "timeouts": {"connect": settings.connect_timeout},
    }
    if not (settings.use_ssh_config and settings.ssh_config_file is not None):
        return Config(overrides=overrides)
    try:
        # Like `ssh -F FILE`: this file instead of ~/.ssh/config and /etc/ssh/ssh_config.
        return Config(overrides=overrides, runtime_ssh_path=str(settings.ssh_config_file))
    except OSError as exc:
        raise ConnectError(
            f"{host.name}: cannot read ssh config file {settings.ssh_config_file} "
            f"({exc.strerror or exc})"
        ) from None


def connection_for(host: Host) -> Connection:
    """A connection to `host`, not yet open (Fabric opens it at the first command)."""
    settings = host.ssh
    config = _config(host)
    user, port = settings.user, settings.port
    if settings.use_ssh_config:
        # OpenSSH's order: what the inventory says wins over the ssh config (as `ssh -l/-p`
        # would), but the inventory's defaults (user root, port 22) give way to its User/Port.
        found = config.base_ssh_config.lookup(host.address)
        if "user" not in settings.given and "user" in found:
            user = found["user"]
        if "port" not in settings.given and "port" in found:
            port = int(found["port"])
    connection = HostConnection(
        host.address,
        user=user,
        port=port,
        config=config,
        connect_timeout=settings.connect_timeout,
        connect_kwargs=_connect_kwargs(settings),
        gateway=_jump(settings.jump_host, settings, config) if settings.jump_host else None,
        # Never the provisioning user's agent on a build host (its root could use it), even
        # where ~/.ssh/config says `ForwardAgent yes`.
        forward_agent=False,
    )
    connection.become = settings.become
    connection.login_user = user
    _secure(connection, settings, host.name)
    # The inventory's jump host, and a ProxyJump from the ssh config (Fabric builds those hops
    # itself, with its default AutoAddPolicy): every hop gets the same policy and known_hosts.
    hop = connection.gateway
    while isinstance(hop, Connection):
        _secure(hop, settings, f"{host.name} (jump host {hop.host}:{hop.port})")
        hop = hop.gateway
    return connection


def connect(host: Host, *, attempts: int = CONNECT_ATTEMPTS) -> Connection:
    """An OPEN connection to `host`. A connection that sshd dropped before or during the key
    exchange (MaxStartups) is tried again, at most `attempts` times in all and only while the
    host's connect_timeout has time left; any other failure is raised at once as ConnectError,
    naming the hop that failed: a jump host (its user, address and key) or the target."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    deadline = time.monotonic() + host.ssh.connect_timeout
    attempt = 0
    while True:
        attempt += 1
        connection = connection_for(host)
        try:
            _open_hops(connection)
        except _HopFailed as failed:
            exc, hop = failed.cause, failed.hop
            # Classified before the discard, which forgets how far the transport got.
            transient = _dropped_before_key_exchange(exc, hop.connection)
            _discard(connection)
            error = _connect_error(exc, host.name, hop=hop)
            if error is None:
                raise exc from None
            if error.hop is None:
                error.hop = hop.failed()
            if not transient:
                raise error from None
            delay = _backoff(attempt)
            if attempt >= attempts or time.monotonic() + delay >= deadline:
                raise ConnectError(
                    f"{error} — dropped {attempt} time(s) in a row before the key exchange; "
                    "sshd may be refusing new connections (MaxStartups): lower --workers "
                    "or raise ssh.connect_timeout",
                    error.hop,
                ) from None
            time.sleep(delay)
            continue
        return connection


@dataclass(frozen=True)
class Hop:
    """One SSH hop of a host's connection, as errors name it: a jump host or the target."""

    connection: Connection
    jump: bool
    # The jump host's name where it is not its address (an ssh config alias, "bastion").
    alias: str
    key: str
    # The hop this one is reached through (None: directly).
    via: Hop | None = None

    @property
    def login(self) -> str:
        return f"{self.connection.user}@{self.connection.host}:{self.connection.port}"

    def failed(self) -> FailedHop:
        """This hop as ConnectError.hop carries it."""
        link = self.connection
        return FailedHop(
            "jump host" if self.jump else "target",
            str(link.host),
            int(link.port),
            str(link.user),
            self.via.failed() if self.via is not None else None,
        )

    def __str__(self) -> str:
        if self.jump:
            if self.alias:
                return f"jump host {self.alias} ({self.login}, key {self.key})"
            return f"jump host {self.login} (key {self.key})"
        return f"{self.login} (key {self.key})"


class _HopFailed(Exception):
    def __init__(self, hop: Hop, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.hop, self.cause = hop, cause


def hops_of(connection: Connection) -> list[Hop]:
    """The connection's hops, the target first, then each jump host out to the first one
    dialled; a ProxyCommand (a string gateway) is no hop of ours and is not listed."""
    chain: list[Connection] = [connection]
    while isinstance(chain[-1].gateway, Connection):
        chain.append(chain[-1].gateway)
    hops: list[Hop] = []
    via: Hop | None = None
    for index, link in reversed(list(enumerate(chain))):
        alias = str(getattr(link, "original_host", "") or "")
        hop = Hop(
            link,
            jump=index > 0,
            alias=alias if alias and alias != link.host else "",
            key=_key_text(link),
            via=via,
        )
        hops.insert(0, hop)
        via = hop
    return hops


def _open_hops(connection: Connection) -> None:
    """Open the first jump host, then each hop through the one before, then the target, so a
    failure is known to belong to one hop (Fabric's own `open` opens them all in one call)."""
    for hop in reversed(hops_of(connection)):
        try:
            hop.connection.open()
        except Exception as exc:  # attributed, then classified by connect()
            raise _HopFailed(hop, exc) from exc


def _key_text(connection: Connection) -> str:
    """The key(s) this hop offers — the inventory's ssh.key, else the ssh config's
    IdentityFile (Fabric puts either into key_filename) — as a user would type them."""
    given = connection.connect_kwargs.get("key_filename")
    files = [given] if isinstance(given, str | Path) else list(given or [])
    if not files:
        return "from the ssh agent or ~/.ssh"
    home = str(Path.home())
    shown = ["~" + str(f)[len(home) :] if str(f).startswith(home + "/") else str(f) for f in files]
    return ", ".join(shown)


def _backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt`: doubling, half of it jittered, so
    hosts that were dropped together do not all come back together."""
    ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret


def _dropped_before_key_exchange(exc: BaseException, connection: Connection) -> bool:
    """What MaxStartups does, and nothing else: the server closed or reset the connection
    while the banner or the key exchange was going on — so before any host key was received,
    let alone checked, and before authentication."""
    if isinstance(exc, paramiko.BadHostKeyException | paramiko.AuthenticationException):
        return False
    transport = connection.client.get_transport()
    if transport is not None and getattr(transport, "host_key", None) is not None:
        return False  # the key exchange was done: what failed came after it
    if isinstance(exc, EOFError | ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return True
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        # "No existing session": paramiko's client found the transport dead right after
        # start_client — the same banner failure, raced (seen against a mute listener).
        return text.startswith("Error reading SSH protocol banner") or text in (
            "Negotiation failed.",
            "No existing session",
        )
    return False


def _discard(connection: Connection) -> None:
    """Close what a failed open left behind (its transport, a jump host's connection)."""
    connection.client.close()
    hop = connection.gateway
    while isinstance(hop, Connection):
        hop.close()
        hop = hop.gateway


def _connect_error(exc: BaseException, host: str, hop: Hop | None = None) -> ConnectError | None:
    """The SSH failure `exc` as a message a user can act on, naming `hop` (the target or a jump
    host: its user, address, port and key) where it is known; None if it is no SSH failure."""
    where = f" {hop}" if hop is not None else ""
    at = f" at{where}" if hop is not None else ""
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return ConnectError(
            f"{host}: host key mismatch{at} ({exc.key.get_name()}); the known_hosts entry "
            "differs — if the host was reinstalled, check its new key and replace the entry"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return ConnectError(
            f"{host}: authentication failed{at or ' (key from the inventory)'}: the server "
            f"accepted none of the keys offered ({exc})"
        )
    if isinstance(exc, paramiko.ChannelException) and hop is not None and hop.via is not None:
        # sshd on the jump host could not open its TCP connection to the target.
        return ConnectError(
            f"{host}: {hop.via} cannot reach {hop.login} ({exc.text or exc}); check the "
            "target's address and port as the jump host sees them"
        )
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "not found in known_hosts" in text:
            # paramiko: "Server '[10.0.0.5]:2222' not found in known_hosts" — with a jump
            # host, which of the two it is matters.
            server = text.split("'")[1] if text.count("'") >= 2 else "the server"
            return ConnectError(
                f"{host}: unknown host key of {server}{at}; add it to the inventory's "
                "known_hosts (ssh-keyscan, after checking its fingerprint), or let "
                "--accept-new-host-keys record it"
            )
        if hop is not None and (
            # The banner's read timed out (a close or reset has EOFError or an errno there);
            # "No existing session": paramiko's race on the same, seen with a mute listener.
            (
                text == "Error reading SSH protocol banner"
                and isinstance(exc.__context__, TimeoutError)
            )
            or text == "No existing session"
        ):
            return ConnectError(
                f"{host}: no SSH handshake with {hop} within "
                f"{hop.connection.connect_timeout:g} s (something accepts TCP there but no "
                "sshd answers, or sshd is overloaded)"
            )
        if text == "Timeout opening channel." and hop is not None and hop.via is not None:
            return ConnectError(
                f"{host}: {hop.via} did not reach {hop.login} within "
                f"{hop.connection.connect_timeout:g} s"
            )
        if text == "Error reading SSH protocol banner" and isinstance(exc.__context__, EOFError):
            text += ": the server closed the connection"
        return ConnectError(f"{host}: SSH failed{at} ({text})")
    if isinstance(exc, EOFError):
        return ConnectError(f"{host}: SSH failed{at} (the server closed the connection)")
    if isinstance(exc, OSError):
        if exc.filename is not None:  # the key file, read by paramiko after the TCP connect
            return ConnectError(
                f"{host}: cannot read key file {exc.filename}{at} ({exc.strerror or exc}); "
                "fix ssh.key in the inventory"
            )
        return ConnectError(
            f"{host}: cannot connect{' to' if where else ''}{where}: {_why(exc, hop)}"
        )
    return None


def _why(exc: OSError, hop: Hop | None) -> str:
    """What a failed TCP connect means, in words (paramiko's NoValidConnectionsError wraps
    the socket's errors per address: the first one says it)."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
        inner = next(iter(exc.errors.values()))
        if isinstance(inner, OSError) and inner.strerror:
            return str(inner.strerror)
    if isinstance(exc, TimeoutError):
        timeout = hop.connection.connect_timeout if hop is not None else None
        return f"no answer within {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the address ({exc.strerror or exc})"
    return str(exc.strerror or exc)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_script(connection: Connection, script: str, *, timeout: float, host: str) -> CommandResult:
    """Run a POSIX sh script in one round trip. The script travels as ONE quoted argument:
    whatever it contains, the remote login shell sees `sh -c '<script>'` and nothing else.
    Never retried: a script that may have started must not run twice."""
    command = f"sh -c {shlex.quote(script)}"
    become = getattr(connection, "become", None)
    if become == "sudo":
        # -n: fail at once instead of prompting; the script's stdin (a runner token) still
        # reaches it, sudo passes stdin through.
        command = f"sudo -n -- {command}"
    try:
        result = connection.run(command, timeout=timeout)
    except Exception as exc:
        error = _connect_error(exc, host)
        if error is not None:
            raise error from None
        if type(exc).__name__ == "CommandTimedOut":  # invoke's
            raise ConnectError(f"{host}: command timed out after {timeout:.0f} s") from None
        raise
    if become == "sudo" and result.exited != 0:
        _check_sudo(result.exited, result.stderr, host, getattr(connection, "login_user", ""))
    return CommandResult(result.exited, result.stdout, result.stderr)


# What sudo (1.9, plugins/sudoers) and a shell say when sudo itself refused: the step never ran.
_SUDO_REFUSALS = (
    ("a password is required", "sudo wants a password"),
    ("a terminal is required", "sudo wants a password"),
    ("is not in the sudoers file", "the user may not use sudo"),
    ("is not allowed to execute", "sudo does not allow this user to run sh as root"),
    ("may not run sudo", "the user may not use sudo"),
)


def _check_sudo(exit_code: int, stderr: str, host: str, user: str) -> None:
    """Raise BecomeError when sudo itself refused (or is missing); the step's own failures
    are left to the caller."""
    who = f" for {user}" if user else ""
    fix = (
        f"ssh.become: sudo needs passwordless sudo{who}, e.g. a line "
        f"'{user or 'USER'} ALL=(root) NOPASSWD: ALL' in /etc/sudoers.d/archfleet (mode 0440), "
        "or log in as root"
    )
    first = next((line for line in stderr.splitlines() if line.startswith("sudo:")), "")
    for text, meaning in _SUDO_REFUSALS:
        if text in first:
            raise BecomeError(f"{host}: {meaning}{who} ({first.strip()}); {fix}")
    if exit_code == 127 and "sudo" in stderr and "not found" in stderr:
        raise BecomeError(f"{host}: ssh.become is sudo but sudo is not installed; {fix}")
