"""A private Docker engine for the lab: Debian's `docker.io` (dockerd 20.10) on its own socket.

The recipe is ../shared/GUIDE.md's "A real Docker engine", checked on these machines:
vfs storage (no overlay mounts inside whatever this runs in), no bridge, no iptables and no
masquerading (containers run with `--network none` or `--network host`, never with a
private-range address), `--insecure-registry 127.0.0.0/8` so the engine and its BuildKit
talk plain HTTP to loopback registries, and a data root, exec root, pid file and socket of
its own, so it never meets the machine's (or another helper's) engine. dockerd starts its
own containerd under the exec root; stopping dockerd by its pid stops that containerd too,
and what is left mounted under the exec root (the `netns/default` bind mount) is unmounted.

The client is `/usr/bin/docker`, Debian's 20.10 with BuildKit built in: a newer client that
may stand first on PATH (/usr/local/bin/docker here) falls back to the legacy builder
without the buildx plugin, which Debian 12 does not package.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from toolkit.lab.cache import cache_dir, file_lock
from toolkit.lab.rootfs import unmount_all_under

DOCKERD = Path("/usr/sbin/dockerd")
DOCKER_CLIENT = Path("/usr/bin/docker")
# The recipe's storage driver: plain directory copies, which work wherever this runs. Each new
# container copies its image's whole filesystem, which costs seconds for a 130 MB image;
# overlay2 (what a real runner host uses) can be asked for where overlay mounts work, e.g. to
# time container start-up the way a runner sees it (bench/merge_overhead.py).
DEFAULT_STORAGE_DRIVER = "vfs"
STORAGE_DRIVERS = ("vfs", "overlay2")
# The other flags of the GUIDE's recipe that make the engine fit this machine (see the docstring).
ENGINE_FLAGS = (
    "--iptables=false",
    "--ip-masq=false",
    "--bridge=none",
    "--insecure-registry",
    "127.0.0.0/8",
)
_START_TIMEOUT = 60.0
_STOP_GRACE = 20.0
_COMMAND_TIMEOUT = 1800.0
_LOG_TAIL_LINES = 25
# What a cached engine's BuildKit may keep between runs, as it counts (diffs); vfs stores every
# layer as a full copy, so the data root takes about three times that on disk.
CACHE_KEEP_BYTES = 1 << 30


class DockerEngineError(RuntimeError):
    """The engine did not start or stop, or a docker command failed: says which and why."""


@dataclass(frozen=True)
class DockerEngine:
    """A running dockerd: where its socket, pid file and log are, and how to call its client."""

    directory: Path
    data_root: Path
    pid: int

    @property
    def exec_root(self) -> Path:
        return self.directory / "exec"

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def pid_file(self) -> Path:
        return self.directory / "dockerd.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / "dockerd.log"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The client's environment: this engine, BuildKit, and a client config of its own
        (no credential helper or auth of the machine's ~/.docker is read or written)."""
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.directory / "client-config"),
            "DOCKER_BUILDKIT": "1",
            **(extra or {}),
        }

    def docker(
        self,
        *args: str,
        input_file: Path | None = None,
        timeout: float = _COMMAND_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `/usr/bin/docker ARGS` against this engine; raises with its output on failure."""
        command = [str(DOCKER_CLIENT), *args]
        with contextlib.ExitStack() as stack:
            stdin = stack.enter_context(input_file.open("rb")) if input_file else None
            done = subprocess.run(
                command,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                env=self.env(),
                timeout=timeout,
                check=False,
            )
        result = subprocess.CompletedProcess(
            command,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise DockerEngineError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{_tail(result.stdout + result.stderr)}"
            )
        return result

    def running(self) -> bool:
        return _alive(self.pid)

    def stop(self) -> None:
        """Stop dockerd by its pid (its containerd goes with it), then unmount what it left."""
        children = _children(self.pid)
        _terminate(self.pid)
        # dockerd stops its containerd on the way out; one that outlived it goes by its pid.
        for child in children:
            _terminate(child)
        unmount_all_under(self.exec_root)
        unmount_all_under(self.data_root)


def start_engine(
    directory: Path | None = None,
    *,
    data_root: Path | None = None,
    storage_driver: str = DEFAULT_STORAGE_DRIVER,
    start_timeout: float = _START_TIMEOUT,
) -> DockerEngine:
    """Start a private dockerd; its files go under `directory` (a new short temporary one by
    default: unix socket paths, containerd's included, must stay under 108 bytes).

    `data_root` (images, build cache) defaults to `directory/data`; pass a persistent one to
    keep images and BuildKit's cache between runs — one engine per data root at a time.
    `storage_driver` is one of STORAGE_DRIVERS (see DEFAULT_STORAGE_DRIVER).
    """
    if storage_driver not in STORAGE_DRIVERS:
        raise DockerEngineError(
            f"storage driver {storage_driver!r}: expected one of {', '.join(STORAGE_DRIVERS)}"
        )
    _check_prerequisites()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="afdock-", dir="/tmp"))
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    data = (data_root or directory / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    engine_probe = DockerEngine(directory, data, pid=0)
    exec_root = engine_probe.exec_root
    # An empty daemon.json of its own: the machine's /etc/docker/daemon.json is not read.
    config = directory / "daemon.json"
    config.write_text("{}\n", encoding="utf-8")
    (directory / "client-config").mkdir(exist_ok=True)
    command = [
        str(DOCKERD),
        "--config-file",
        str(config),
        "--data-root",
        str(data),
        "--exec-root",
        str(exec_root),
        "--pidfile",
        str(engine_probe.pid_file),
        "--host",
        engine_probe.host,
        "--storage-driver",
        storage_driver,
        *ENGINE_FLAGS,
    ]
    with engine_probe.log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A session of its own: a Ctrl-C of the caller reaches it only through stop().
            start_new_session=True,
        )
    engine = DockerEngine(directory, data, process.pid)
    try:
        _wait_until_ready(engine, process, start_timeout)
    except BaseException:
        engine.stop()
        raise
    return engine


@contextlib.contextmanager
def docker_engine(
    directory: Path | None = None,
    *,
    data_root: Path | None = None,
    storage_driver: str = DEFAULT_STORAGE_DRIVER,
) -> Iterator[DockerEngine]:
    """`start_engine` as a context manager: the engine is stopped (by pid) on the way out, and a
    temporary directory it made is removed."""
    owned = directory is None
    engine = start_engine(directory, data_root=data_root, storage_driver=storage_driver)
    try:
        yield engine
    finally:
        engine.stop()
        if owned:
            # A data root passed in lives elsewhere and is kept; the default one goes too.
            shutil.rmtree(engine.directory, ignore_errors=True)


@contextlib.contextmanager
def cached_docker_engine(
    name: str, *, storage_driver: str = DEFAULT_STORAGE_DRIVER
) -> Iterator[DockerEngine]:
    """A private engine whose data root — images and BuildKit's cache — lives under the cache
    dir and outlives it, so a build nothing has changed for is a cache hit the next time.

    One engine per data root at a time: a second user of `name` waits for the first (file_lock).
    On the way out the engine forgets every tag of a loopback registry (each run has its own
    registry, so those tags only pin stale images), drops dangling images, and trims BuildKit's
    cache to CACHE_KEEP_BYTES.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise DockerEngineError(f"cached engine name {name!r}: expected [a-z0-9-]")
    directory = cache_dir() / "docker"
    directory.mkdir(parents=True, exist_ok=True)
    with (
        file_lock(directory / f".{name}.lock"),
        docker_engine(
            data_root=directory / f"{name}-{storage_driver}", storage_driver=storage_driver
        ) as engine,
    ):
        try:
            yield engine
        finally:
            _tidy(engine)


def _tidy(engine: DockerEngine) -> None:
    listed = engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    stale = [ref for ref in listed.stdout.split() if ref.startswith(("127.", "localhost:"))]
    if stale:
        engine.docker("image", "rm", *stale, check=False)
    engine.docker("image", "prune", "--force", check=False)
    engine.docker(
        "builder", "prune", "--force", "--keep-storage", str(CACHE_KEEP_BYTES), check=False
    )


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise DockerEngineError("a private dockerd needs root (namespaces, mounts, cgroups)")
    missing = [str(path) for path in (DOCKERD, DOCKER_CLIENT) if not path.is_file()]
    if missing:
        raise DockerEngineError(
            f"missing {', '.join(missing)}: apt-get install --no-install-recommends docker.io"
        )


def _wait_until_ready(
    engine: DockerEngine, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DockerEngineError(
                f"dockerd exited with status {process.returncode} while starting; log "
                f"{engine.log_path}:\n{_tail(_read(engine.log_path))}"
            )
        if engine.socket.exists():
            done = subprocess.run(
                [str(DOCKER_CLIENT), "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                env=engine.env(),
                timeout=30,
                check=False,
            )
            if done.returncode == 0:
                return
            last = done.stderr.strip()
        time.sleep(0.2)
    raise DockerEngineError(
        f"dockerd did not answer on {engine.socket} within {timeout:.0f}s ({last or 'no socket'});"
        f" log {engine.log_path}:\n{_tail(_read(engine.log_path))}"
    )


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state is the first field after the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (dockerd's containerd), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _terminate(pid: int, grace: float = _STOP_GRACE) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; reaps it if it is our child."""
    if pid <= 0 or not _alive(pid):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not _alive(pid):
            return
        time.sleep(0.1)
    raise DockerEngineError(f"process {pid} did not exit after SIGKILL")


def _reap(pid: int) -> None:
    if pid > 0:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace")
    return f"(no log at {path})"


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
