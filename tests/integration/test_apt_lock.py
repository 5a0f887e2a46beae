"""A fresh host whose apt is busy (as unattended-upgrades keeps it after boot): provisioning
waits for the locks, bounded, then installs. On a REAL amd64 lab host (sshd in a Debian root)
with the REAL apt and dpkg; the locks are taken from outside the host with fcntl on the very
files inside its root — the same kind of lock apt takes, so apt inside sees them held.

And a login that is not root (no ssh.become): apt cannot even open its lock files, which is
NOT the lock being held — the step fails at once, says so in one line, and stops there."""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Lab, own_host
from tests.support.cli import archfleet
from toolkit.fleet.connect import connect, run_script
from toolkit.inventory import load
from toolkit.lab.hosts import LabHost, LabUser

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.73"
LOCKS = ("var/lib/apt/lists/lock", "var/lib/dpkg/lock-frontend", "var/lib/dpkg/lock")
HOLD_SECONDS = 12


@pytest.fixture
def fresh_amd64(lab: Lab, tmp_path: Path) -> Iterator[tuple[LabHost, Path]]:
    with own_host(lab, tmp_path, "apt-busy", "amd64", ADDRESS) as made:
        yield made


def test_provisioning_waits_for_apt_locks_then_installs(
    lab: Lab, fresh_amd64: tuple[LabHost, Path], tmp_path: Path
) -> None:
    host, known_hosts = fresh_amd64
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(f"""
ssh: {{user: root, key: {lab.key}, known_hosts: {known_hosts}, use_ssh_config: false}}
builder: {{tool: umoci, install: true}}
hosts:
  - {{name: {host.name}, address: {host.address}, arch: amd64, ssh: {{port: {host.port}}},
      roles: [gitlab-runner]}}
gitlab: {{url: 'https://gitlab.invalid', group: lab}}
""")
    dpkg_log = host.root / "var/log/dpkg.log"
    # The root's debootstrap left its own installs in the log: only what comes after counts.
    known = dpkg_log.stat().st_size if dpkg_log.exists() else 0
    handles = []
    for lock in LOCKS:
        path = host.root / lock
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        fcntl.lockf(handle, fcntl.LOCK_EX)
        handles.append(handle)
    released: list[float] = []

    def release() -> None:
        time.sleep(HOLD_SECONDS)
        released.append(time.time())
        for handle in handles:
            fcntl.lockf(handle, fcntl.LOCK_UN)
            handle.close()

    # The fault is real: a plain apt-get on this host fails at once while the locks are held.
    (target,) = load(inventory).hosts
    connection = connect(target)
    try:
        plain = run_script(connection, "apt-get update -qq", timeout=120, host=target.name)
    finally:
        connection.close()
    assert plain.exit_code == 100 and "Could not get lock" in plain.stderr
    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        run = archfleet(
            "provision-runners",
            "--inventory",
            str(inventory),
            "--no-gitlab",
            "--json",
            timeout=600,
        )
    finally:
        releaser.join()
    assert run.code == 0, run.stderr
    (report,) = run.json()["hosts"]
    assert report["applied"] == ["install-builder: install umoci with skopeo from the OS packages"]
    # dpkg wrote its first install only after the locks were let go.
    log = dpkg_log.read_bytes()[known:].decode().splitlines()
    installs = [line for line in log if " install " in line]
    assert installs, "dpkg installed nothing"
    first = datetime.strptime(installs[0][:19], "%Y-%m-%d %H:%M:%S").timestamp()
    assert first >= int(released[0]) - 1


def test_a_login_that_is_not_root_fails_at_once_naming_permission_not_the_lock(
    lab: Lab, tmp_path: Path
) -> None:
    with own_host(lab, tmp_path, "apt-user", "amd64", "127.0.0.112", users=[LabUser("ci")]) as (
        host,
        known_hosts,
    ):
        inventory = tmp_path / "fleet.yml"
        inventory.write_text(f"""
ssh: {{user: ci, key: {lab.key}, known_hosts: {known_hosts}, use_ssh_config: false}}
builder: {{tool: buildah, install: true}}
hosts:
  - {{name: {host.name}, address: {host.address}, arch: amd64, ssh: {{port: {host.port}}},
      roles: [gitlab-runner]}}
gitlab: {{url: 'https://gitlab.invalid', group: lab}}
""")
        run = archfleet(
            "provision-runners", "--inventory", str(inventory), "--no-gitlab", "--json", timeout=600
        )
    assert run.code == 1
    (report,) = run.json()["hosts"]
    assert report["error"] == (
        "installing buildah failed (exit 100): apt-get update: permission denied, ci is not "
        "root (E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission "
        "denied)); fix: log in as root, or set ssh.become: sudo (passwordless sudo for ci)"
    )
    # It stopped at apt: the check after the install never ran.
    assert "not found" not in run.stdout + run.stderr
