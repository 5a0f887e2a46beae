"""The whole CLI chooses its progress by what stderr is: on a pseudo-terminal the live
per-host display (redrawn in place, the last frame kept), into a pipe the plain lines a CI
log keeps. `provision-runners --dry-run` over two hosts where nothing listens (127.0.0.23 and
.24, port 22: refused at once) — each host gets one step and its end; no server is needed
(no GitLab token: "not checked")."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import archfleet
from toolkit.lab.sshkeys import generate_ed25519

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HOSTS = {"tty-a": "127.0.0.23", "tty-b": "127.0.0.24"}  # ours alone; nothing listens there


def inventory(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    generate_ed25519(key, comment="progress")
    path = tmp_path / "fleet.yml"
    hosts = "".join(
        f"  - {{name: {name}, address: {address}, arch: amd64, roles: [gitlab-runner]}}\n"
        for name, address in HOSTS.items()
    )
    path.write_text(
        f"ssh: {{user: root, key: {key}, use_ssh_config: false, connect_timeout: 5}}\n"
        "gitlab: {url: 'http://127.0.0.1:9', allow_http: true, group: lab}\n"
        f"hosts:\n{hosts}"
    )
    return path


def env(tmp_path: Path) -> dict[str, str]:
    merged = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "PYTHON_GITLAB_CFG": str(tmp_path / "none"),
    }
    merged.pop("GITLAB_TOKEN", None)
    return {**merged, "TERM": "xterm", "COLUMNS": "400"}


def refused(name: str, key: Path) -> str:
    return f"FAILED: cannot connect to root@{HOSTS[name]}:22 (key {key}): Connection refused"


def test_on_a_terminal_the_hosts_are_drawn_live(tmp_path: Path) -> None:
    fleet = inventory(tmp_path)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "provision-runners", "--inventory", str(fleet), "-n"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env(tmp_path),
    )
    os.close(follower)
    drawn = b""
    while True:  # read the terminal until the process closes it
        ready, _, _ = select.select([leader], [], [], 120)
        assert ready, "no output within 120 s"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    out = process.stdout.read().decode() if process.stdout else ""
    assert process.wait(timeout=60) == 1
    text = drawn.decode()
    assert "\x1b[1A" in text and "\x1b[2K" in text  # rows redrawn in place (cursor up, erase)
    lines = [line.strip() for line in ANSI.sub("", text).replace("\r", "\n").split("\n")]
    key = tmp_path / "id_ed25519"
    # The last frame: both hosts' ends, one row each, after the note that went above it.
    assert lines.index(f"✗ tty-b [1] {refused('tty-b', key)}") > 0
    assert f"✗ tty-a [1] {refused('tty-a', key)}" in lines
    assert any(line.startswith("note: GitLab side not checked (no token)") for line in lines)
    assert "tty-a: connecting…" not in lines  # no plain lines on a terminal
    assert "plan (dry run): 2 hosts" in out  # the table stays on stdout


def test_into_a_pipe_each_step_is_one_plain_line(tmp_path: Path) -> None:
    fleet = inventory(tmp_path)
    run = archfleet(
        "provision-runners",
        "--inventory",
        str(fleet),
        "-n",
        env={"HOME": str(tmp_path / "home"), "PYTHON_GITLAB_CFG": str(tmp_path / "none")},
        unset=("GITLAB_TOKEN",),
    )
    assert run.code == 1
    key = tmp_path / "id_ed25519"
    lines = run.stderr.splitlines()
    assert "\x1b" not in run.stderr
    for name in HOSTS:
        assert f"{name}: connecting…" in lines
        assert f"{name}: {refused(name, key)}" in lines
