"""Host keys on REAL OpenSSH servers: unknown keys refused, `--accept-new-host-keys` recording
them in the inventory's known_hosts (OpenSSH's accept-new), changed keys refused and never
overwritten.

Real: two sshd (Debian bookworm's OpenSSH, each in a debootstrapped amd64 root, with its own
ed25519 host key made by ssh-keygen) on 127.0.0.83 and 127.0.0.84 — addresses no other test
uses; paramiko/Fabric as the client; the archfleet CLI as its own process, as a CI job runs it.
The keys a test expects are the ones the hosts really have (LabHost.host_public_key, read from
the host's own .pub file), and fingerprints are ssh-keygen's format (toolkit/lab/sshkeys.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from tests.conftest import free_port
from tests.support.cli import Run, archfleet
from toolkit.lab.hosts import LabHost, lab_keypair, start_host
from toolkit.lab.sshkeys import known_hosts_entry

pytestmark = pytest.mark.integration

ADDRESSES = ("127.0.0.83", "127.0.0.84")


@dataclass(frozen=True)
class Sshds:
    key: Path
    public_key: str
    first: LabHost
    second: LabHost


@pytest.fixture(scope="module")
def sshds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshds]:
    workdir = tmp_path_factory.mktemp("host-keys")
    key, public_key = lab_keypair(workdir)
    hosts: list[LabHost] = []
    try:
        for n, address in enumerate(ADDRESSES, 1):
            hosts.append(
                start_host(
                    f"hostkeys-{n}",
                    "amd64",
                    address,
                    free_port(address),
                    workdir,
                    authorized_keys=[public_key],
                )
            )
        yield Sshds(key, public_key, hosts[0], hosts[1])
    finally:
        for host in hosts:
            host.remove()


def write_inventory(
    sshds: Sshds,
    path: Path,
    known_hosts: Path | None,
    hosts: list[tuple[str, LabHost]],
    *,
    jump: LabHost | None = None,
) -> Path:
    """An inventory of `hosts` (inventory name, sshd); `known_hosts: None` names no file."""
    lines = ["ssh:", "  user: root", f"  key: {sshds.key}", "  use_ssh_config: false"]
    if known_hosts is not None:
        lines.append(f"  known_hosts: {known_hosts}")
    if jump is not None:
        lines.append(f"  jump_host: root@{jump.address}:{jump.port}")
    lines += [
        "builder: {tool: buildah, install: true}",
        "gitlab: {url: 'http://127.0.0.1:9', allow_http: true, group: lab}",
        "hosts:",
    ]
    for name, host in hosts:
        lines.append(
            f"  - {{name: {name}, address: {host.address}, arch: amd64, "
            f"ssh: {{port: {host.port}}}, roles: [gitlab-runner]}}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def facts(inventory: Path, *flags: str) -> Run:
    return archfleet("fleet-facts", "--inventory", str(inventory), "--json", *flags)


def recorded_notes(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if "recorded the new host key" in line]


def test_without_the_flag_an_unknown_host_is_refused_and_nothing_is_written(
    sshds: Sshds, tmp_path: Path
) -> None:
    host = sshds.first
    empty = tmp_path / "known_hosts"
    empty.write_bytes(b"")
    run = facts(write_inventory(sshds, tmp_path / "fleet.yml", empty, [("build-1", host)]))
    assert run.code == 1
    [report] = run.json()["hosts"]
    assert f"unknown host key of [{host.address}]:{host.port}" in report["error"]
    assert "--accept-new-host-keys" in report["error"]  # says how to get past it
    assert empty.read_bytes() == b""
    # A known_hosts file that does not exist yet is an error, and is not created.
    missing = tmp_path / "not-yet"
    run = facts(write_inventory(sshds, tmp_path / "fleet2.yml", missing, [("build-1", host)]))
    assert run.code == 1 and "does not exist" in run.json()["hosts"][0]["error"]
    assert not missing.exists()
    assert recorded_notes(run) == []


def test_the_flag_records_the_real_key_once_and_the_next_run_needs_no_flag(
    sshds: Sshds, tmp_path: Path
) -> None:
    host = sshds.first
    known_hosts = tmp_path / "ssh" / "known_hosts"  # named by the inventory, not there yet
    known_hosts.parent.mkdir()
    inventory = write_inventory(sshds, tmp_path / "fleet.yml", known_hosts, [("build-1", host)])
    run = facts(inventory, "--accept-new-host-keys")
    assert run.code == 0, run.stderr
    assert [(f["host"], f["arch"]) for f in run.json()["hosts"]] == [("build-1", "amd64")]
    # Exactly one line, in OpenSSH's format, holding the key the host really has.
    assert (
        known_hosts.read_text()
        == known_hosts_entry(host.address, host.port, host.host_public_key) + "\n"
    )
    key_type, key_data = host.host_public_key.split()[:2]
    assert known_hosts.read_text().split() == [f"[{host.address}]:{host.port}", key_type, key_data]
    # Which host, and its fingerprint as ssh-keygen shows it, so it can be checked.
    [note] = recorded_notes(run)
    assert note.startswith("note: build-1: ")
    assert f"[{host.address}]:{host.port}" in note and str(known_hosts) in note
    assert note.endswith(f"{key_type} {host.host_key_fingerprint}")
    recorded = known_hosts.read_bytes()

    again = facts(inventory)  # no flag: the recorded key is known now
    assert again.code == 0, again.stderr
    assert again.json()["hosts"][0]["error"] is None
    # With the flag again: nothing new to record.
    third = facts(inventory, "--accept-new-host-keys")
    assert third.code == 0, third.stderr
    assert recorded_notes(third) == []
    assert known_hosts.read_bytes() == recorded


@pytest.mark.parametrize("recorded", ["other key, same type", "other key, other type"])
def test_a_changed_key_is_refused_even_with_the_flag_and_never_overwritten(
    sshds: Sshds, tmp_path: Path, recorded: str
) -> None:
    host = sshds.first
    known_hosts = tmp_path / "known_hosts"
    # What a re-installed (or impostor) host looks like: the file holds another key for
    # exactly this [address]:port — the client's ed25519 key, or an ECDSA key (the host has
    # only ed25519), with a comment line around it.
    ecdsa = paramiko.ECDSAKey.generate()
    other = (
        sshds.public_key
        if recorded == "other key, same type"
        else f"{ecdsa.get_name()} {ecdsa.get_base64()}"
    )
    known_hosts.write_text(
        f"# fleet\n{known_hosts_entry(host.address, host.port, other)}\n# end, no newline"
    )
    before = known_hosts.read_bytes()
    inventory = write_inventory(sshds, tmp_path / "fleet.yml", known_hosts, [("build-1", host)])
    run = facts(inventory, "--accept-new-host-keys")
    assert run.code == 1
    [report] = run.json()["hosts"]
    assert report["error"].startswith("host key mismatch")
    assert known_hosts.read_bytes() == before
    assert recorded_notes(run) == []


def test_many_hosts_at_once_record_one_whole_line_per_server(sshds: Sshds, tmp_path: Path) -> None:
    """Six inventory hosts, six workers: three names for each of the two sshd. Each server's
    key is recorded once, as a whole line, however the six connections interleave; the names
    that lost the race connect with the key the winner recorded."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("# recorded by archfleet\n")
    names = [(f"a{n}", sshds.first) for n in range(3)] + [(f"b{n}", sshds.second) for n in range(3)]
    inventory = write_inventory(sshds, tmp_path / "fleet.yml", known_hosts, names)
    run = facts(inventory, "--accept-new-host-keys", "--workers", "6")
    assert run.code == 0, run.stderr
    assert sorted(f["host"] for f in run.json()["hosts"] if f["ok"]) == [n for n, _ in names]
    lines = known_hosts.read_text().splitlines()
    assert lines[0] == "# recorded by archfleet"
    assert sorted(lines[1:]) == sorted(
        known_hosts_entry(h.address, h.port, h.host_public_key) for h in (sshds.first, sshds.second)
    )
    notes = recorded_notes(run)
    assert len(notes) == 2
    assert {note.split()[1] for note in notes} <= {f"{name}:" for name, _ in names}
    for host in (sshds.first, sshds.second):
        assert sum(host.host_key_fingerprint in note for note in notes) == 1


def test_a_jump_host_key_is_refused_then_recorded_like_any_other(
    sshds: Sshds, tmp_path: Path
) -> None:
    """build-1 is reached through the second sshd (ssh.jump_host): both keys are unknown."""
    target, jump = sshds.first, sshds.second
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_bytes(b"")
    inventory = write_inventory(
        sshds, tmp_path / "fleet.yml", known_hosts, [("build-1", target)], jump=jump
    )
    refused = facts(inventory)
    assert refused.code == 1
    # The jump host is met first: its key is the one refused.
    assert (
        f"unknown host key of [{jump.address}]:{jump.port}" in refused.json()["hosts"][0]["error"]
    )
    assert known_hosts.read_bytes() == b""

    run = facts(inventory, "--accept-new-host-keys")
    assert run.code == 0, run.stderr
    assert sorted(known_hosts.read_text().splitlines()) == sorted(
        known_hosts_entry(h.address, h.port, h.host_public_key) for h in (target, jump)
    )
    notes = recorded_notes(run)
    assert len(notes) == 2
    [jump_note] = [n for n in notes if "(jump host" in n]
    assert jump_note.startswith(f"note: build-1 (jump host {jump.address}:{jump.port}): ")
    assert jump_note.endswith(jump.host_key_fingerprint)
    assert facts(inventory).code == 0  # both known now


@pytest.mark.parametrize(
    "command",
    [
        ("provision-runners", "--dry-run", "--no-gitlab", "--no-jenkins"),
        ("runners-status", "--no-gitlab", "--no-jenkins"),
        ("deprovision-runners", "--dry-run", "--no-gitlab", "--no-jenkins"),
    ],
    ids=["provision-runners", "runners-status", "deprovision-runners"],
)
def test_every_fleet_task_takes_the_flag(
    sshds: Sshds, tmp_path: Path, command: tuple[str, ...]
) -> None:
    host = sshds.second
    known_hosts = tmp_path / "known_hosts"
    inventory = write_inventory(sshds, tmp_path / "fleet.yml", known_hosts, [("build-2", host)])
    run = archfleet(*command, "--inventory", str(inventory), "--accept-new-host-keys")
    assert run.code == 0, run.stderr
    assert known_hosts.read_text() == (
        known_hosts_entry(host.address, host.port, host.host_public_key) + "\n"
    )
    assert len(recorded_notes(run)) == 1


def test_the_flag_needs_a_known_hosts_file_in_the_inventory(sshds: Sshds, tmp_path: Path) -> None:
    inventory = write_inventory(
        sshds, tmp_path / "fleet.yml", None, [("build-1", sshds.first), ("build-2", sshds.second)]
    )
    run = facts(inventory, "--accept-new-host-keys")
    assert run.code == 1
    assert run.stdout == ""  # refused before any host was contacted
    assert "ssh.known_hosts" in run.stderr and "build-1, build-2" in run.stderr
