"""The private Docker engine's parts that need no engine: its flags, its client's environment,
and stopping processes by pid (with real `sleep` processes, one of which ignores SIGTERM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.lab.docker_engine import (
    DEFAULT_STORAGE_DRIVER,
    DOCKER_CLIENT,
    ENGINE_FLAGS,
    DockerEngine,
    DockerEngineError,
    _alive,
    _children,
    _terminate,
    cached_docker_engine,
    start_engine,
)


def test_flags_follow_the_guide_recipe() -> None:
    assert DEFAULT_STORAGE_DRIVER == "vfs"
    flags = " ".join(ENGINE_FLAGS)
    for part in (
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--insecure-registry 127.0.0.0/8",
    ):
        assert part in flags
    # Debian's client with BuildKit, not whatever `docker` stands first on PATH.
    assert Path("/usr/bin/docker") == DOCKER_CLIENT


def test_client_environment_is_the_engines_own(tmp_path: Path) -> None:
    engine = DockerEngine(tmp_path, tmp_path / "data", pid=0)
    env = engine.env({"EXTRA": "1"})
    assert env["DOCKER_HOST"] == f"unix://{tmp_path}/docker.sock"
    assert env["DOCKER_CONFIG"] == str(tmp_path / "client-config")
    assert env["DOCKER_BUILDKIT"] == "1"
    assert env["EXTRA"] == "1"
    assert engine.exec_root == tmp_path / "exec"


def test_terminate_stops_a_process_and_its_stubborn_child() -> None:
    """A parent that exits on SIGTERM and a child that ignores it: `_children` finds the child
    by its parent pid, and `_terminate` gets it with SIGKILL after the grace time."""
    script = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        'print("ready", flush=True); time.sleep(600)\'])\n'
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        children: list[int] = []
        for _ in range(100):
            children = _children(parent.pid)
            if children:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert len(children) == 1
        (child,) = children
        assert _alive(parent.pid) and _alive(child)
        # Give the child time to install its SIG_IGN handler.
        subprocess.run(["sleep", "0.5"], check=True)
        _terminate(parent.pid, grace=2.0)
        assert not _alive(parent.pid)
        assert parent.poll() is not None  # reaped
        _terminate(child, grace=0.5)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()


def test_a_gone_pid_is_not_alive() -> None:
    assert not _alive(2**22 + 12345)  # above pid_max's default: no such process
    _terminate(2**22 + 12345)  # and stopping it is a no-op, not an error


def test_bad_storage_driver_and_cache_name_are_refused(tmp_path: Path) -> None:
    """Refused before anything starts: no dockerd runs for a typo."""
    with pytest.raises(DockerEngineError, match="storage driver 'aufs': expected one of vfs"):
        start_engine(tmp_path, storage_driver="aufs")
    assert not (tmp_path / "dockerd.pid").exists()
    with (
        pytest.raises(DockerEngineError, match=r"cached engine name '\.\./x'"),
        cached_docker_engine("../x"),
    ):
        pass
