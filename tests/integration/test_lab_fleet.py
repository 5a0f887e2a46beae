"""`lab.up` / `lab.status` / `lab.down` for real: Debian's docker-registry and two sshd hosts
(an amd64 root, and an arm64 root whose every binary runs under qemu-user) on loopback.

Each test gets a lab directory and loopback addresses of its own (127.0.0.9x), so it never
meets the developer's own lab (127.0.0.51-52) or the shared test hosts.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.cli import Run, archfleet
from toolkit.inventory import load
from toolkit.lab.rootfs import mounts_under

pytestmark = pytest.mark.integration


def lab(task: str, directory: Path, *args: str, timeout: float = 900) -> Run:
    return archfleet(f"lab.{task}", "--dir", str(directory), *args, timeout=timeout)


def processes_under(directory: Path) -> list[int]:
    """Pids whose root directory or command line lives under `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            root = os.readlink(entry / "root")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if root.startswith(str(directory)) or str(directory) in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, that is: a zombie has stopped, whoever reaps it (here pid 1 may be slow to)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_up_twice_status_facts_down_twice(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    port = free_port("127.0.0.91")
    up = lab("up", directory, "--first-address", "127.0.0.91", "--port", str(port), "--json")
    assert up.code == 0, up.stderr
    started = up.json()
    hosts = {h["name"]: h for h in started["hosts"]}
    assert {(h["arch"], h["address"]) for h in hosts.values()} == {
        ("amd64", "127.0.0.91"),
        ("arm64", "127.0.0.92"),
    }
    pids = [h["pid"] for h in hosts.values()]
    assert all(alive(pid) for pid in pids)

    # The inventory it wrote is a valid archfleet inventory of exactly these hosts.
    inventory = load(started["inventory"])
    assert {(h.name, h.declared_arch, h.ssh.port) for h in inventory.hosts} == {
        (name, h["arch"], port) for name, h in hosts.items()
    }
    assert inventory.builder.tool == "umoci"
    assert len(Path(started["knownHosts"]).read_text().splitlines()) == 2

    # Up again: nothing is started twice.
    again = lab("up", directory, "--first-address", "127.0.0.91", "--port", str(port), "--json")
    assert again.code == 0, again.stderr
    assert sorted(h["pid"] for h in again.json()["hosts"]) == sorted(pids)
    assert again.stderr.count("already running") == 3  # the registry and both hosts

    status = lab("status", directory, "--json")
    assert status.code == 0, status.stderr
    assert status.json()["up"] is True and len(status.json()["parts"]) == 3

    # Over SSH with the written inventory and known_hosts: the arm64 host really is arm64.
    facts = archfleet("fleet-facts", "--inventory", started["inventory"], "--json")
    assert facts.code == 0, facts.stderr
    machines = {f["host"]: f["machine"] for f in facts.json()["hosts"]}
    assert machines == {"lab-amd64": "x86_64", "lab-arm64": "aarch64"}

    down = lab("down", directory)
    assert down.code == 0, down.stderr
    assert "registry on" in down.stderr and down.stderr.count("mounts undone") == 2
    assert not any(alive(pid) for pid in pids)
    assert processes_under(directory) == []
    assert mounts_under(directory) == []

    twice = lab("down", directory)
    assert twice.code == 0 and "nothing to stop" in twice.stderr
    stopped = lab("status", directory, "--json")
    assert stopped.code == 1 and stopped.json()["up"] is False


def test_failed_up_stops_what_it_started(tmp_path: Path) -> None:
    """The arm64 host's address is taken: lab.up fails naming it, and the registry and the
    amd64 host it had already started are stopped again — no half-started lab."""
    directory = tmp_path / "lab"
    port = free_port("127.0.0.94")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.95", port))
        squatter.listen()
        up = lab("up", directory, "--first-address", "127.0.0.94", "--port", str(port))
    assert up.code == 1
    assert f"127.0.0.95:{port}" in up.stderr and "Traceback" not in up.stderr
    assert processes_under(directory) == []
    assert mounts_under(directory) == []
    status = lab("status", directory, "--json")
    assert status.code == 1
    assert not any(part["running"] for part in status.json()["parts"])


def test_bad_first_address_is_refused(tmp_path: Path) -> None:
    up = lab("up", tmp_path / "lab", "--first-address", "10.1.2.3")
    assert up.code == 1
    assert "127.0.0.0/8" in up.stderr and "Traceback" not in up.stderr
    assert processes_under(tmp_path) == []
