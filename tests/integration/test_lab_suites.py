"""Lab hosts like real servers: Debian 12 (bookworm) and 13 (trixie) roots, amd64 and arm64
(arm64 under qemu-user), with non-root SSH logins whose sudo needs no password or does, and
the System V service tools a host without systemd has.

Everything here is real: debootstrapped roots, their own sshd, sudo, start-stop-daemon. On an
empty cache the first use of a suite/arch builds its root (measured here, 2 busy cores:
trixie amd64 1 min 45 s, trixie arm64 10 min beside another arm64 build, bookworm arm64
5-6 min); later starts extract the cached tarball in 4-10 s. sudo on arm64 needs binfmt_misc's
C flag for qemu-aarch64 (hosts.check_setuid_works says so when it is missing).
Addresses 127.0.0.141-149 are this module's own.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import fabric
import invoke
import paramiko
import pytest

from tests.conftest import free_port
from toolkit.lab.hosts import (
    SUDOERS_FILE,
    HostStartError,
    LabHost,
    LabUser,
    check_setuid_works,
    lab_keypair,
    start_host,
    write_known_hosts,
)
from toolkit.lab.rootfs import (
    RECIPE_MARKER,
    RECIPE_REVISION,
    build_rootfs,
    debootstrap_script,
    rootfs_name,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root (chroot, mount)"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("debootstrap", "qemu-aarch64-static")),
        reason="needs debootstrap and qemu-user-static (see GUIDE section 3)",
    ),
]

UNAME = {"amd64": "x86_64", "arm64": "aarch64"}
DEBIAN_MAJOR = {"bookworm": "12", "trixie": "13"}
ADDRESSES = {
    ("trixie", "amd64"): "127.0.0.141",
    ("trixie", "arm64"): "127.0.0.142",
    ("bookworm", "amd64"): "127.0.0.143",
    ("bookworm", "arm64"): "127.0.0.144",
}
SPARE_ADDRESS = "127.0.0.145"
CASES = [pytest.param(suite, arch, id=f"{suite}-{arch}") for suite, arch in ADDRESSES]
# The password-wanting user's password: a lab value, not a secret of anyone's.
SUDO_PASSWORD = "lab-sudo-pw"
USERS = (LabUser("ci"), LabUser("ci-pw", sudo="password", password=SUDO_PASSWORD))


class Hosts:
    """One host per (suite, arch) for the whole module, started on first use."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key, self.public_key = lab_keypair(workdir)
        self.started: dict[tuple[str, str], LabHost] = {}

    def get(self, suite: str, arch: str) -> LabHost:
        if (suite, arch) not in self.started:
            address = ADDRESSES[(suite, arch)]
            self.started[(suite, arch)] = start_host(
                f"{suite}-{arch}",
                arch,
                address,
                free_port(address),
                self.workdir,
                authorized_keys=[self.public_key],
                suite=suite,
                users=USERS,
            )
        return self.started[(suite, arch)]

    def connect(self, host: LabHost, user: str, **config: object) -> fabric.Connection:
        """Fabric, checking the host key strictly, as `user` with the lab key only."""
        known_hosts = write_known_hosts(self.workdir / f"known_hosts-{host.name}", [host])
        connection = fabric.Connection(
            host.address,
            user=user,
            port=host.port,
            connect_timeout=30,
            connect_kwargs={
                "key_filename": str(self.key),
                "look_for_keys": False,
                "allow_agent": False,
            },
            config=fabric.Config(overrides=config) if config else None,
        )
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        connection.client.load_host_keys(str(known_hosts))
        # pytest owns our stdin; remote commands here read none.
        connection.config.run.in_stream = False
        return connection

    def run(self, host: LabHost, user: str, command: str) -> invoke.Result:
        with self.connect(host, user) as connection:
            result: invoke.Result = connection.run(command, hide=True, warn=True)
            return result


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    started = Hosts(tmp_path_factory.mktemp("lab-suites"))
    try:
        yield started
    finally:
        for host in started.started.values():
            host.remove()


@pytest.mark.parametrize(("suite", "arch"), CASES)
def test_host_runs_its_suite_and_arch(hosts: Hosts, suite: str, arch: str) -> None:
    host = hosts.get(suite, arch)
    result = hosts.run(host, "root", "cat /etc/debian_version; uname -m; hostname")
    assert result.ok, result.stderr
    version, machine, name = result.stdout.split()
    assert version.split(".")[0] == DEBIAN_MAJOR[suite]
    assert machine == UNAME[arch]
    assert name == host.name
    marker = json.loads((host.root / RECIPE_MARKER).read_text())
    assert (marker["suite"], marker["arch"], marker["revision"]) == (suite, arch, RECIPE_REVISION)
    assert marker["debian_version"] == version
    assert host.suite == suite
    assert LabHost.load(host.state_path).users == ("ci", "ci-pw")


@pytest.mark.parametrize(("suite", "arch"), CASES)
def test_sudo_user_becomes_root_without_a_password(hosts: Hosts, suite: str, arch: str) -> None:
    host = hosts.get(suite, arch)
    result = hosts.run(host, "ci", "id -un; sudo -n id -u")
    assert result.ok, result.stderr
    assert result.stdout.split() == ["ci", "0"]
    # Nothing on stderr: in particular no "unable to resolve host" (the name is in /etc/hosts).
    assert result.stderr == ""


@pytest.mark.parametrize(("suite", "arch"), CASES)
def test_password_wanting_sudo_fails_clearly(hosts: Hosts, suite: str, arch: str) -> None:
    host = hosts.get(suite, arch)
    result = hosts.run(host, "ci-pw", "id -un; sudo -n true")
    assert result.stdout.split() == ["ci-pw"]
    assert result.exited == 1
    assert "sudo: a password is required" in result.stderr


@pytest.mark.parametrize(("suite", "arch"), [("trixie", "amd64"), ("trixie", "arm64")])
def test_password_wanting_sudo_works_with_its_password(hosts: Hosts, suite: str, arch: str) -> None:
    """Fabric's own `sudo()` (sudo -S -p PROMPT, answering the prompt) with the password."""
    host = hosts.get(suite, arch)
    with hosts.connect(host, "ci-pw", sudo={"password": SUDO_PASSWORD}) as connection:
        result = connection.sudo("id -u", hide=True)
        assert result.stdout.strip() == "0"
        with pytest.raises(invoke.exceptions.AuthFailure):
            connection.sudo("id -u", hide=True, password="not-the-password")


# gitlab-runner's Debian System V script, as helpers/service/scripts.go (sysvDebianScript)
# renders it — here for /bin/sleep — after isDebianSysv() found /lib/lsb/init-functions and
# /sbin/start-stop-daemon. kardianos/service (service_sysv_linux.go) then runs
# `service <name> start|stop|status`, and picks System V because there is no
# /run/systemd/system nor systemctl (service_systemd_linux.go isSystemd).
SYSV_SCRIPT = """#! /bin/bash
### BEGIN INIT INFO
# Provides:          /bin/sleep
# Required-Start:    $local_fs $remote_fs $network $syslog
# Required-Stop:     $local_fs $remote_fs $network $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: archfleet-demo
# Description:       archfleet demo service
### END INIT INFO

DESC="archfleet demo service"
USER=""
NAME="archfleet-demo"
PIDFILE="/var/run/$NAME.pid"
[ -r /etc/default/$NAME ] && . /etc/default/$NAME
. /lib/lsb/init-functions
if [ "$(id -u)" != "0" ]; then
    echo "This script must be run as root"
    exit 1
fi
do_start() {
  start-stop-daemon --start --pidfile "$PIDFILE" --background --make-pidfile \\
    --exec /bin/sleep -- 600
}
do_stop() {
  start-stop-daemon --stop --pidfile "$PIDFILE" --quiet
}
case "$1" in
  start) log_daemon_msg "Starting $DESC"; do_start; log_end_msg $? ;;
  stop) log_daemon_msg "Stopping $DESC"; do_stop; log_end_msg $? ;;
  status) status_of_proc -p "$PIDFILE" "$DAEMON" "$DESC" ;;
  *) echo "Usage: sudo service $0 {start|stop|restart|status}" >&2; exit 1 ;;
esac
exit 0
"""


@pytest.mark.parametrize(("suite", "arch"), CASES)
def test_a_sysv_service_starts_and_stops_like_gitlab_runners(
    hosts: Hosts, suite: str, arch: str
) -> None:
    host = hosts.get(suite, arch)
    probe = hosts.run(
        host,
        "ci",
        # As root, as kardianos/service runs it (sudo's secure_path has the sbin dirs).
        "sudo -n sh -c 'test -r /lib/lsb/init-functions && test -x /sbin/start-stop-daemon "
        "&& command -v service && ! test -e /run/systemd/system && ! command -v systemctl' "
        "&& wget --version | head -n 1",
    )
    assert probe.ok, probe.stdout + probe.stderr
    assert probe.stdout.splitlines()[0].endswith("/service")
    assert probe.stdout.splitlines()[1].startswith("GNU Wget")
    install = (
        f"printf %s {shlex.quote(SYSV_SCRIPT)} | sudo -n tee /etc/init.d/archfleet-demo "
        ">/dev/null && sudo -n chmod 755 /etc/init.d/archfleet-demo"
    )
    assert hosts.run(host, "ci", install).ok
    started = hosts.run(host, "ci", "sudo -n service archfleet-demo start")
    assert started.ok, started.stdout + started.stderr
    pid_file = "/var/run/archfleet-demo.pid"
    running = hosts.run(host, "ci", f"sudo -n start-stop-daemon --status --pidfile {pid_file}")
    assert running.exited == 0, running.stderr
    # /var/run is an absolute link to /run: read it through the root's own /run.
    pid = int((host.root / "run/archfleet-demo.pid").read_text())
    assert pid in host.processes()  # a daemon inside this host, outliving the SSH session
    # The template's `status` hands status_of_proc an empty $DAEMON, which LSB's pidofproc
    # refuses ("invalid arguments"): it reports no PID file and exits 0 even while running —
    # on any Debian, so a stand-in for `gitlab-runner status` must not expect more of it.
    status = hosts.run(host, "ci", "sudo -n service archfleet-demo status")
    assert status.exited == 0 and "could not access PID file" in status.stdout
    stopped = hosts.run(host, "ci", "sudo -n service archfleet-demo stop")
    assert stopped.ok, stopped.stdout + stopped.stderr
    # The stopped daemon was an orphan: a lab host has no init of its own, so the machine's
    # pid 1 reaps it, within about 2 s here; until then it is a zombie, which `--status`
    # (kill(pid, 0)) still counts as running. A real server's init reaps it at once.
    deadline = time.monotonic() + 15
    while pid in host.processes() or Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"pid {pid} still there after stop"
        time.sleep(0.2)
    after = hosts.run(host, "ci", f"sudo -n start-stop-daemon --status --pidfile {pid_file}")
    assert after.exited == 1  # start-stop-daemon(8): not running, but the pid file exists


@pytest.mark.parametrize(("suite", "arch"), [("trixie", "amd64"), ("bookworm", "arm64")])
def test_users_files_are_as_sudo_and_sshd_demand(hosts: Hosts, suite: str, arch: str) -> None:
    host = hosts.get(suite, arch)
    sudoers = (host.root / SUDOERS_FILE).stat()
    assert (stat.S_IMODE(sudoers.st_mode), sudoers.st_uid) == (0o440, 0)
    text = (host.root / SUDOERS_FILE).read_text()
    assert "ci ALL=(ALL:ALL) NOPASSWD: ALL" in text
    assert "ci-pw ALL=(ALL:ALL) ALL" in text
    passwd = {line.split(":")[0]: line.split(":") for line in (host.root / "etc/passwd").open()}
    keys = host.root / "home/ci/.ssh/authorized_keys"
    assert keys.stat().st_uid == int(passwd["ci"][2])
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert keys.read_text().strip() == hosts.public_key
    shadow = {line.split(":")[0]: line.split(":")[1] for line in (host.root / "etc/shadow").open()}
    assert shadow["ci"] == "*"  # no password, not locked: sshd accepts keys
    assert shadow["ci-pw"].startswith("$") and SUDO_PASSWORD not in shadow["ci-pw"]


def test_roots_are_cached_per_suite(hosts: Hosts) -> None:
    trixie = hosts.get("trixie", "amd64")
    tarball = build_rootfs("amd64", suite="trixie")
    assert tarball.name.startswith(f"amd64-trixie-r{RECIPE_REVISION}.")
    assert (trixie.root.parent / "rootfs-origin").read_text().strip() == tarball.name
    assert build_rootfs("amd64") != tarball  # the default stays bookworm
    assert rootfs_name("arm64", suite="trixie") == f"arm64-trixie-r{RECIPE_REVISION}"
    assert rootfs_name("arm64") == f"arm64-bookworm-r{RECIPE_REVISION}"
    with pytest.raises(ValueError, match="unsupported Debian suite"):
        rootfs_name("amd64", suite="sid; rm -rf /")


def test_debootstrap_script_falls_back_to_sid(tmp_path: Path) -> None:
    # This machine's debootstrap knows trixie by name; an older one would not.
    assert debootstrap_script("trixie") is None
    (tmp_path / "sid").write_text("# debootstrap's script for current suites\n")
    assert debootstrap_script("trixie", tmp_path) == str(tmp_path / "sid")


def test_a_tarball_of_another_suite_is_refused(hosts: Hosts, tmp_path: Path) -> None:
    bookworm = build_rootfs("amd64")
    with pytest.raises(HostStartError, match="holds a bookworm root, not trixie"):
        start_host(
            "wrong-suite",
            "amd64",
            SPARE_ADDRESS,
            free_port(SPARE_ADDRESS),
            tmp_path,
            authorized_keys=[hosts.public_key],
            rootfs=bookworm,
            suite="trixie",
        )


def test_setuid_needs_the_credentials_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uses a fake binfmt_misc directory: an entry as the kernel prints it
    (fs/binfmt_misc.c entry_status), with Debian qemu-user-static's flags PF."""
    import toolkit.lab.hosts as hosts_module

    (tmp_path / "qemu-aarch64").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n"
    )
    monkeypatch.setattr(hosts_module, "BINFMT_MOUNT", tmp_path)
    with pytest.raises(HostStartError, match=r"flags 'PF' without C.*flags 'POCF'"):
        check_setuid_works("arm64")
    check_setuid_works("amd64")  # native: no interpreter involved
    (tmp_path / "qemu-aarch64").write_text("enabled\nflags: POCF\n")
    check_setuid_works("arm64")
