"""sshd's MaxStartups against archfleet's connection retry, on a REAL OpenSSH server.

Real: OpenSSH's sshd (Debian bookworm's, in a debootstrapped amd64 root, on 127.0.0.81) started
with `MaxStartups 1` — at most one connection may be unauthenticated at a time; every other
one is accepted and closed at once ("Exceeded MaxStartups"), which a client sees as "Error
reading SSH protocol banner" — and `LogLevel VERBOSE`, so its log names every accepted and
every dropped connection; paramiko/Fabric as the client; the archfleet CLI as its own process.

To make the drop certain rather than a matter of thread timing, a test holds sshd's one
startup slot with a plain TCP connection that reads sshd's banner and then says nothing: to
sshd that is what a slow or stalled client is, an unauthenticated connection counted against
MaxStartups until it closes. A helper closes it once sshd has logged a drop, so a connection
gets in only if it was tried again.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.cli import archfleet
from toolkit.fleet.connect import CONNECT_ATTEMPTS, ConnectError, connect, run_script
from toolkit.fleet.parallel import for_each_host
from toolkit.inventory import Host, SshSettings
from toolkit.lab.hosts import LabHost, lab_keypair, start_host, write_known_hosts
from toolkit.lab.sshkeys import generate_ed25519, known_hosts_entry

pytestmark = pytest.mark.integration

# Ours alone: other tests and other work on this machine use other 127.0.0.x addresses.
ADDRESS = "127.0.0.81"
DROPPED = "past MaxStartups"  # sshd: "drop connection #1 from [...] past MaxStartups"
ACCEPTED = "Connection from "  # sshd (VERBOSE): one line per connection it lets in
HOSTS = 6  # inventory hosts, all pointing at the one sshd


@dataclass(frozen=True)
class LimitedSshd:
    host: LabHost
    key: Path
    public_key: str
    known_hosts: Path
    workdir: Path

    def count(self, text: str) -> int:
        return self.host.log_path.read_text(encoding="utf-8", errors="replace").count(text)

    def inventory_host(
        self, name: str = "limited", *, key: Path | None = None, known_hosts: Path | None = None
    ) -> Host:
        return Host(
            name=name,
            address=self.host.address,
            roles=("gitlab-runner",),
            ssh=SshSettings(
                port=self.host.port,
                key=key or self.key,
                known_hosts=known_hosts or self.known_hosts,
                connect_timeout=30,
                use_ssh_config=False,
            ),
        )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedSshd]:
    workdir = tmp_path_factory.mktemp("ssh-limits")
    key, public_key = lab_keypair(workdir)
    host = start_host(
        "maxstartups-amd64",
        "amd64",
        ADDRESS,
        free_port(ADDRESS),
        workdir,
        authorized_keys=[public_key],
        sshd_options={"MaxStartups": "1", "LogLevel": "VERBOSE"},
    )
    try:
        known_hosts = write_known_hosts(workdir / "known_hosts", [host])
        yield LimitedSshd(host, key, public_key, known_hosts, workdir)
    finally:
        host.remove()


class StartupSlot:
    """A connection holding sshd's one unauthenticated-connection slot."""

    def __init__(self, sshd: LimitedSshd) -> None:
        self._sshd = sshd
        self._sock = self._take()
        self._released = threading.Event()
        self._watcher: threading.Thread | None = None

    def _take(self) -> socket.socket:
        host = self._sshd.host
        deadline = time.monotonic() + 60
        while True:
            sock = socket.create_connection((host.address, host.port), timeout=10)
            line = sock.makefile("rb").readline()
            if line.startswith(b"SSH-2.0-"):
                return sock
            # Dropped ourselves: an earlier client (start_host's banner probe, a test before)
            # is still being let go by sshd.
            sock.close()
            assert time.monotonic() < deadline, f"sshd never let us in: {line!r}"
            time.sleep(0.05)

    def release_after_next_drop(self) -> None:
        """Close the slot as soon as sshd has dropped one more connection than now."""
        before = self._sshd.count(DROPPED)

        def watch() -> None:
            while not self._released.is_set() and self._sshd.count(DROPPED) <= before:
                time.sleep(0.02)
            self.release()

        self._watcher = threading.Thread(target=watch, daemon=True)
        self._watcher.start()

    def release(self) -> None:
        self._released.set()
        self._sock.close()

    def close(self) -> None:
        self.release()
        if self._watcher is not None:
            self._watcher.join(timeout=10)


@contextmanager
def held_slot(sshd: LimitedSshd) -> Iterator[StartupSlot]:
    slot = StartupSlot(sshd)
    try:
        yield slot
    finally:
        slot.close()


def whoami(host: Host, attempts: int) -> str:
    connection = connect(host, attempts=attempts)
    try:
        result = run_script(connection, "id -un; hostname", timeout=30, host=host.name)
    finally:
        connection.close()
    return result.stdout


def test_without_a_retry_every_connection_past_max_startups_fails(sshd: LimitedSshd) -> None:
    """The fault is real: one attempt per host, six hosts at once, while another client is
    unauthenticated — sshd drops every one, and each fails with the banner error."""
    hosts = [sshd.inventory_host(f"once-{n}") for n in range(HOSTS)]
    with held_slot(sshd):
        dropped = sshd.count(DROPPED)
        outcomes = for_each_host(
            hosts, lambda h: whoami(h, attempts=1), workers=HOSTS, expected=(ConnectError,)
        )
    for outcome in outcomes:
        assert outcome.error is not None
        assert "Error reading SSH protocol banner" in outcome.error
        assert "MaxStartups" in outcome.error  # the hint says what to do about it
    # One attempt each, no more.
    assert sshd.count(DROPPED) - dropped == HOSTS


def test_a_dropped_connection_is_retried_and_gets_in(sshd: LimitedSshd) -> None:
    with held_slot(sshd) as slot:
        dropped = sshd.count(DROPPED)
        slot.release_after_next_drop()
        output = whoami(sshd.inventory_host(), attempts=CONNECT_ATTEMPTS)
    assert output.split() == ["root", sshd.host.name]
    # The first attempt really was dropped: only a retry got in.
    assert sshd.count(DROPPED) > dropped


def test_retries_are_bounded_by_the_attempts(sshd: LimitedSshd) -> None:
    with held_slot(sshd), pytest.raises(ConnectError) as caught:
        dropped = sshd.count(DROPPED)
        connect(sshd.inventory_host(), attempts=3)
    assert sshd.count(DROPPED) - dropped == 3
    assert "dropped 3 time(s) in a row" in str(caught.value)


def test_retries_stop_when_the_connect_timeout_is_spent(sshd: LimitedSshd) -> None:
    # connect_timeout 1 s: the backoffs before the last of the default attempts add up to
    # several seconds, so fewer attempts fit.
    host = sshd.inventory_host()
    short = replace(host, ssh=replace(host.ssh, connect_timeout=1))
    with held_slot(sshd), pytest.raises(ConnectError, match="protocol banner"):
        dropped = sshd.count(DROPPED)
        connect(short, attempts=CONNECT_ATTEMPTS)
    assert 1 <= sshd.count(DROPPED) - dropped < CONNECT_ATTEMPTS


# A retry would show as a second connection sshd let in (drops of connections that came
# while an earlier test's client was still being let go are no retry of ours: not counted).


def test_refused_authentication_is_not_retried(sshd: LimitedSshd) -> None:
    stranger = sshd.workdir / "stranger_ed25519"
    generate_ed25519(stranger, comment="stranger")
    accepted = sshd.count(ACCEPTED)
    with pytest.raises(ConnectError, match="authentication failed"):
        connect(sshd.inventory_host(key=stranger))
    assert sshd.count(ACCEPTED) - accepted == 1


def test_unknown_and_changed_host_keys_are_not_retried(sshd: LimitedSshd) -> None:
    empty = sshd.workdir / "known_hosts.empty"
    empty.write_text("")
    # Another key for the same [address]:port: what a re-installed (or impostor) host shows.
    changed = sshd.workdir / "known_hosts.changed"
    changed.write_text(known_hosts_entry(ADDRESS, sshd.host.port, sshd.public_key) + "\n")
    accepted = sshd.count(ACCEPTED)
    with pytest.raises(ConnectError, match="unknown host key"):
        connect(sshd.inventory_host(known_hosts=empty))
    with pytest.raises(ConnectError, match="host key mismatch"):
        connect(sshd.inventory_host(known_hosts=changed))
    assert sshd.count(ACCEPTED) - accepted == 2


def write_fleet(sshd: LimitedSshd, path: Path) -> Path:
    """HOSTS inventory hosts with different names, all the one MaxStartups-1 sshd."""
    lines = [
        "ssh:",
        "  user: root",
        f"  key: {sshd.key}",
        f"  known_hosts: {sshd.known_hosts}",
        "  use_ssh_config: false",
        "  connect_timeout: 30",
        "builder: {tool: buildah, install: true}",
        "gitlab: {url: 'http://127.0.0.1:9', allow_http: true, group: lab}",
        "jenkins: {url: 'http://127.0.0.1:9', allow_http: true, credentials_id: lab-ssh}",
        "hosts:",
    ]
    for n in range(HOSTS):
        lines.append(
            f"  - {{name: crowd-{n}, address: {ADDRESS}, arch: amd64, "
            f"ssh: {{port: {sshd.host.port}}}, roles: [gitlab-runner, jenkins-agent]}}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ("fleet-facts",),
        ("provision-runners", "--dry-run", "--no-gitlab", "--no-jenkins"),
    ],
    ids=["fleet-facts", "provision-dry-run"],
)
def test_the_cli_gets_every_host_through_max_startups(
    sshd: LimitedSshd, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Six hosts, six workers, one sshd that lets one unauthenticated connection in at a time
    and starts out full: every host succeeds, and sshd's log shows it dropped connections."""
    inventory = write_fleet(sshd, tmp_path / "crowd.yml")
    dropped = sshd.count(DROPPED)
    with held_slot(sshd) as slot:
        slot.release_after_next_drop()
        run = archfleet(*command, "--inventory", str(inventory), "--workers", str(HOSTS), "--json")
    assert run.code == 0, run.stderr
    assert sshd.count(DROPPED) > dropped
    data = run.json()
    reports = data["hosts"]  # one shape for every fleet task
    assert sorted(r["host"] for r in reports) == [f"crowd-{n}" for n in range(HOSTS)]
    for report in reports:
        assert report["ok"] and report["error"] is None and report["arch"] == "amd64", report
    # Retried drops are no failure: nothing about them (no paramiko traceback) on stderr.
    assert "Traceback" not in run.stderr and "protocol banner" not in run.stderr
