"""Output into a closed pipe ends quietly (issue 17 item 2): `archfleet --list | head` and a
task's JSON into a reader that has gone exit 141 (what a shell reports for a program SIGPIPE
ended) or 0 (the reader took everything before it left), never with a traceback.

Real pipes, real processes; no server: runners-status runs against an inventory whose one host
is a loopback port where nothing listens, so it fails fast and still prints its JSON."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARCHFLEET = [sys.executable, "-m", "toolkit"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yml"
    (tmp_path / "known_hosts").write_text("")
    path.write_text(
        f"ssh: {{known_hosts: {tmp_path / 'known_hosts'}, connect_timeout: 2}}\n"
        "gitlab: {url: 'https://gitlab.invalid', group: platform}\n"
        "hosts:\n"
        f"  - {{name: nowhere, address: 127.0.0.1, arch: amd64, ssh: {{port: {free_port()}}}, "
        "roles: [gitlab-runner]}\n"
    )
    return path


def into_closed_pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run archfleet with stdout a pipe whose only reader is closed before it writes."""
    process = subprocess.Popen(
        [*ARCHFLEET, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader goes away before the program has imported Invoke
    stderr = process.stderr.read()
    code = process.wait(timeout=120)
    return subprocess.CompletedProcess(process.args, code, b"", stderr)


@pytest.mark.parametrize(
    "args",
    [("--list",), ("inventory-schema",), ("merge-manifest", "--help")],
    ids=["list", "schema", "help"],
)
def test_output_into_a_closed_pipe_exits_141_without_a_traceback(args: tuple[str, ...]) -> None:
    done = into_closed_pipe(*args)
    assert done.returncode == 141, done.stderr.decode()
    assert done.stderr == b""


def test_a_task_s_json_into_a_closed_pipe(unreachable_inventory: Path) -> None:
    done = into_closed_pipe(
        "runners-status", "--json", "--no-gitlab", "--inventory", str(unreachable_inventory)
    )
    assert done.returncode == 141, done.stderr.decode()
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
    # Without the pipe the same run prints its JSON and fails on the host (exit 1).
    whole = subprocess.run(
        [
            *ARCHFLEET,
            "runners-status",
            "--json",
            "--no-gitlab",
            "--inventory",
            str(unreachable_inventory),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert whole.returncode == 1, whole.stderr
    data = json.loads(whole.stdout)
    assert data["hosts"][0]["host"] == "nowhere" and data["hosts"][0]["error"]
    assert data["arches"] == {"amd64": {"gitlab": None, "jenkins": None}}  # declared arch, side off


@pytest.mark.parametrize(
    "pipeline",
    [
        "{archfleet} --list | head -1",
        "{archfleet} inventory-schema | head -c 10",
        "{archfleet} runners-status --json --no-gitlab --inventory {inventory} | head -1",
        "{archfleet} --list 2>&1 | true",
    ],
)
def test_shell_pipelines_end_quietly(unreachable_inventory: Path, pipeline: str) -> None:
    """As a user types it: the shell's pipe into head, which may or may not have closed by
    the time archfleet writes, so 141 (closed) or the task's own code (read in time)."""
    command = pipeline.format(archfleet=" ".join(ARCHFLEET), inventory=unreachable_inventory)
    done = subprocess.run(
        ["bash", "-c", f'{command} >/dev/null; echo "${{PIPESTATUS[0]}}" >&2'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    *noise, status = done.stderr.strip().splitlines() or [""]
    task_code = 1 if "runners-status" in pipeline else 0
    assert int(status) in (141, task_code), done.stderr
    assert not [line for line in noise if "Traceback" in line or "BrokenPipe" in line], noise
