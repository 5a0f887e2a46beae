"""A real OCI registry (Debian's `docker-registry`, distribution 2.8) on loopback.

The registry writes one combined-log-format line per HTTP request to stdout, e.g.
`127.0.0.1 - - [23/Nov/2026:11:21:11 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`;
we send stdout and stderr to one log file and parse those lines, so a test can count the
round trips an operation costs (`mark()` before, `requests_since()` after).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import bcrypt
import yaml

REGISTRY_BINARY = "docker-registry"
LOOPBACK = "127.0.0.1"
HTPASSWD_REALM = "archfleet-lab"
# Go's bcrypt accepts cost >= 4; the registry re-checks the hash on every request, so a
# low cost keeps authenticated tests fast. Lab credentials guard nothing.
_BCRYPT_COST = 5
_STOP_GRACE_SECONDS = 5.0
_LOG_TAIL_LINES = 25
_ACCESS_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) '
)


class RegistryStartError(RuntimeError):
    """The registry process did not come up; the message carries its log tail."""


@dataclass(frozen=True)
class RequestRecord:
    method: str
    # The request target as sent: path plus any query string.
    path: str
    status: int


@dataclass
class LocalRegistry:
    host: str
    port: int
    root: Path
    log_path: Path
    pid: int
    config_path: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    # Serving HTTPS (an `http: tls:` section in its config).
    tls: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._pid_runs_our_config()

    def request_log(self) -> list[RequestRecord]:
        """Every request logged so far, oldest first (readiness probes included)."""
        records = []
        for line in self._settled_log().splitlines():
            match = _ACCESS_LINE.match(line)
            if match:
                records.append(RequestRecord(match["method"], match["path"], int(match["status"])))
        return records

    def mark(self) -> int:
        return len(self.request_log())

    def requests_since(self, mark: int) -> list[RequestRecord]:
        return self.request_log()[mark:]

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Terminate exactly this registry's process and reap it; safe to call twice."""
        process = self._process
        if process is None:
            self._stop_by_pid()
            return
        if process.poll() is not None:
            return
        # We still hold the unreaped child, so its pid cannot have been reused.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _stop_by_pid(self) -> None:
        # Started by another process (e.g. a `lab.up` run): there is no child to reap, so
        # signal the pid only while it still runs this registry's config.
        for sig, grace in ((signal.SIGTERM, _STOP_GRACE_SECONDS), (signal.SIGKILL, 2.0)):
            if not self._pid_runs_our_config():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._pid_runs_our_config():
                time.sleep(0.05)

    def _pid_runs_our_config(self) -> bool:
        try:
            argv = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # A zombie has an empty command line: it has stopped, whoever reaps it.
        return str(self.config_path).encode() in argv and argv[0].endswith(REGISTRY_BINARY.encode())

    def to_state(self) -> dict[str, Any]:
        """What another process needs to find and stop this registry (see `from_state`)."""
        return {
            "host": self.host,
            "port": self.port,
            "root": str(self.root),
            "log_path": str(self.log_path),
            "pid": self.pid,
            "config_path": str(self.config_path),
            "tls": self.tls,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LocalRegistry:
        """The registry `to_state` described; stopping it goes by pid (and its config)."""
        try:
            return cls(
                host=str(state["host"]),
                port=int(state["port"]),
                root=Path(state["root"]),
                log_path=Path(state["log_path"]),
                pid=int(state["pid"]),
                config_path=Path(state["config_path"]),
                tls=bool(state.get("tls", False)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RegistryStartError(f"unreadable registry state: {error!r}") from None

    def __enter__(self) -> LocalRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _settled_log(self) -> str:
        # The access-log line is written as the handler returns, which for streamed bodies
        # can be just after the client has read the response: wait for the file to go quiet.
        if self.running:
            deadline = time.monotonic() + 1.0
            size = -1
            while time.monotonic() < deadline:
                current = self.log_path.stat().st_size
                if current == size:
                    break
                size = current
                time.sleep(0.02)
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_registry(
    workdir: Path,
    *,
    port: int | None = None,
    htpasswd: Path | None = None,
    extra_config: Mapping[str, Any] | None = None,
    start_timeout: float = 15.0,
    detach: bool = False,
) -> LocalRegistry:
    """Start a registry on loopback with its storage, config and log under `workdir`.

    One registry per `workdir`. `extra_config` is deep-merged into the config last (e.g. an
    `auth: token:` section); with `htpasswd`, basic auth against that file is switched on.
    `detach` puts it in a session of its own, to outlive this process (`lab.up`); it is then
    stopped by pid.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if htpasswd is not None and not htpasswd.is_file():
        raise RegistryStartError(f"htpasswd file {htpasswd} does not exist")
    # A free port picked by us can be taken before the registry binds it; then try another.
    tried: list[int] = []
    for _ in range(1 if port is not None else 3):
        candidate = port if port is not None else _free_loopback_port()
        tried.append(candidate)
        try:
            return _start_once(
                workdir, candidate, htpasswd, extra_config, start_timeout, detach=detach
            )
        except _PortInUseError:
            continue
    ports = ", ".join(map(str, tried))
    raise RegistryStartError(
        f"{LOOPBACK} port(s) {ports} already in use; registry log: {workdir / 'registry.log'}"
    )


def registry_config(
    root: Path,
    port: int,
    *,
    htpasswd: Path | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            # No background deletions while a test is looking at the storage.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        # A fixed secret silences the "generated random secret" warning.
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": secrets.token_hex(16)},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": HTPASSWD_REALM, "path": str(htpasswd.resolve())}}
    if extra_config:
        config = deep_merge(config, extra_config)
    return config


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `extra` wins; nested mappings are merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """Write bcrypt htpasswd entries (the only scheme the registry accepts), mode 0600."""
    lines = []
    for user, password in users.items():
        if not user or any(ch in user for ch in ":\n\r"):
            raise ValueError(f"htpasswd user name {user!r} is empty or contains ':' or a newline")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=_BCRYPT_COST))
        lines.append(f"{user}:{hashed.decode()}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return path


class _PortInUseError(Exception):
    pass


def _start_once(
    workdir: Path,
    port: int,
    htpasswd: Path | None,
    extra_config: Mapping[str, Any] | None,
    start_timeout: float,
    *,
    detach: bool = False,
) -> LocalRegistry:
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    config_path = workdir / "registry.yml"
    log_path = workdir / "registry.log"
    config = registry_config(root, port, htpasswd=htpasswd, extra_config=extra_config)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    config_path.chmod(0o600)
    log_path.write_bytes(b"")
    with log_path.open("ab") as log:
        try:
            process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Detached: a Ctrl-C or hang-up of the starting command does not reach it.
                start_new_session=detach,
            )
        except FileNotFoundError:
            raise RegistryStartError(
                f"{REGISTRY_BINARY} not found on PATH (apt-get install docker-registry)"
            ) from None
    registry = LocalRegistry(
        host=LOOPBACK,
        port=port,
        root=root,
        log_path=log_path,
        pid=process.pid,
        config_path=config_path,
        _process=process,
        tls=bool(config.get("http", {}).get("tls")),
    )
    try:
        _wait_until_ready(registry, process, start_timeout)
    except BaseException:
        registry.stop()
        raise
    return registry


def _wait_until_ready(
    registry: LocalRegistry, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    answers = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = registry.log_tail()
            if "address already in use" in tail:
                raise _PortInUseError
            raise RegistryStartError(
                f"registry exited with status {process.returncode} before answering on "
                f"{registry.url}/v2/; config {registry.config_path}; log tail:\n{tail}"
            )
        status = _probe(registry.host, registry.port, tls=registry.tls)
        if status in (200, 401) and process.poll() is None:
            answers += 1
            # Another server on the port could answer for a registry that failed to bind:
            # believe it when our access log shows the probe (or, with access logging
            # switched off, when our process survives a few probes).
            if '"GET /v2/ HTTP/' in _tail(registry.log_path, 200) or answers >= 3:
                return
        last_error = f"GET /v2/ answered {status}" if isinstance(status, int) else status
        time.sleep(0.05)
    raise RegistryStartError(
        f"registry on {registry.url} did not answer GET /v2/ within {timeout:.0f}s "
        f"({last_error}); log tail:\n{registry.log_tail()}"
    )


def _probe(host: str, port: int, *, tls: bool = False) -> int | str:
    connection: http.client.HTTPConnection
    if tls:
        # Readiness only: the certificate is the caller's business (often self-signed here).
        insecure = ssl._create_unverified_context()  # noqa: S323
        connection = http.client.HTTPSConnection(host, port, timeout=1.0, context=insecure)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        connection.request("GET", "/v2/")
        return connection.getresponse().status
    except OSError as error:
        return str(error)
    finally:
        connection.close()


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return f"(no log at {path})"
