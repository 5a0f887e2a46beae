"""The OpenSSH client config (`~/.ssh/config`, or `ssh.ssh_config_file`) is honoured, on REAL
OpenSSH servers.

Real: two sshd (Debian bookworm's, each in its own debootstrapped amd64 root on 127.0.0.81, each
with its own host key): a target, where the test's key logs in ONLY as the user `builder`
(root takes another key), and a jump host; paramiko's ssh config parser as Fabric uses it; the
archfleet CLI as its own process. So a run that succeeds went to the HostName and Port the
config gave, as the config's User, with the config's IdentityFile (the inventory names no key).
No name is ever looked up in DNS: the aliases are resolved by the config alone, and the runs
without the config use the numeric address.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.cli import Run, archfleet
from toolkit.fleet.connect import ConnectError, connect
from toolkit.fleet.gather import gather_facts
from toolkit.inventory import load
from toolkit.lab.hosts import LabHost, lab_keypair, start_host, write_known_hosts
from toolkit.lab.sshkeys import generate_ed25519

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.81"  # ours alone (test_ssh_limits.py uses it too, on other ports)
USER = "builder"


@dataclass(frozen=True)
class Hosts:
    target: LabHost
    jump: LabHost
    key: Path
    known_hosts: Path  # both hosts
    workdir: Path

    def ssh_config(self, *, target_pattern: str = "lab-alias") -> str:
        return f"""
Host {target_pattern}
    HostName {ADDRESS}
    Port {self.target.port}
    User {USER}
    IdentityFile {self.key}

Host lab-behind-jump
    HostName {ADDRESS}
    Port {self.target.port}
    User {USER}
    IdentityFile {self.key}
    ProxyJump lab-jump

Host lab-jump
    HostName {ADDRESS}
    Port {self.jump.port}
    User root
    IdentityFile {self.key}
"""


def add_login_user(host: LabHost, user: str, public_key: str) -> None:
    """A user in the host's root who logs in with `public_key` (useradd of the root itself).
    Password "*": none, but not a locked account ("!"), which sshd without PAM refuses."""
    subprocess.run(
        ["chroot", str(host.root), "useradd", "-m", "-s", "/bin/sh", "-p", "*", user],
        check=True,
        capture_output=True,
    )
    ssh = host.root / "home" / user / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text(public_key + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    subprocess.run(
        ["chroot", str(host.root), "chown", "-R", f"{user}:{user}", f"/home/{user}/.ssh"],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    workdir = tmp_path_factory.mktemp("ssh-config")
    key, public_key = lab_keypair(workdir)
    root_only = generate_ed25519(workdir / "root_only_ed25519", comment="root-only")
    started: list[LabHost] = []
    try:
        target = start_host(
            "sshcfg-target",
            "amd64",
            ADDRESS,
            free_port(ADDRESS),
            workdir,
            authorized_keys=[root_only],
        )
        started.append(target)
        add_login_user(target, USER, public_key)
        jump = start_host(
            "sshcfg-jump",
            "amd64",
            ADDRESS,
            free_port(ADDRESS),
            workdir,
            authorized_keys=[public_key],
        )
        started.append(jump)
        known_hosts = write_known_hosts(workdir / "known_hosts", [target, jump])
        yield Hosts(target, jump, key, known_hosts, workdir)
    finally:
        for host in started:
            host.remove()


def write_inventory(path: Path, known_hosts: Path, addresses: list[str], ssh: str = "") -> Path:
    """No user, port or key of its own: those must come from the ssh config."""
    lines = [
        "ssh:",
        f"  known_hosts: {known_hosts}",
        *(f"  {line}" for line in ssh.splitlines() if line),
        "gitlab: {url: 'http://127.0.0.1:9', allow_http: true, group: lab}",
        "hosts:",
        *(
            f"  - {{name: h{n}, address: '{address}', roles: [gitlab-runner]}}"
            for n, address in enumerate(addresses)
        ),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def facts(inventory: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    return archfleet("fleet-facts", "--inventory", str(inventory), "--json", *args, env=env)


def test_an_alias_from_the_ssh_config_file_reaches_its_host_as_its_user(
    hosts: Hosts, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(hosts.ssh_config())
    inventory = write_inventory(
        tmp_path / "fleet.yml", hosts.known_hosts, ["lab-alias"], f"ssh_config_file: {config}"
    )
    run = facts(inventory)
    assert run.code == 0, run.stderr
    (host,) = run.json()["hosts"]
    assert (host["host"], host["ok"], host["arch"]) == ("h0", True, "amd64")
    # Who we were on the other side (the CLI's JSON has no user): the config's User.
    (loaded,) = load(inventory).hosts
    assert gather_facts(loaded).user == USER


def test_the_default_ssh_config_is_home_ssh_config_and_can_be_switched_off(
    hosts: Hosts, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # Also a block for the bare address: the run without the config then fails on this
    # machine (nothing listens on port 22 there), not in a DNS lookup of an alias.
    (home / ".ssh" / "config").write_text(hosts.ssh_config(target_pattern=f"lab-alias {ADDRESS}"))
    inventory = write_inventory(tmp_path / "fleet.yml", hosts.known_hosts, ["lab-alias", ADDRESS])
    env = {"HOME": str(home)}
    run = facts(inventory, env=env)
    assert run.code == 0, run.stderr
    assert [(h["host"], h["arch"]) for h in run.json()["hosts"]] == [
        ("h0", "amd64"),
        ("h1", "amd64"),
    ]

    off = write_inventory(
        tmp_path / "off.yml", hosts.known_hosts, ["lab-alias", ADDRESS], "use_ssh_config: false"
    )
    refused = facts(off, "--limit", "h1", env=env)
    assert refused.code == 1
    (host,) = refused.json()["hosts"]
    assert host["error"].startswith(f"cannot connect to root@{ADDRESS}:22 ("), host


def test_a_user_or_port_in_the_inventory_wins_over_the_ssh_config(
    hosts: Hosts, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(hosts.ssh_config())
    closed = free_port(ADDRESS)
    inventory = write_inventory(
        tmp_path / "fleet.yml",
        hosts.known_hosts,
        ["lab-alias"],
        f"ssh_config_file: {config}\nport: {closed}",
    )
    run = facts(inventory)
    assert run.code == 1
    (host,) = run.json()["hosts"]
    # The config's HostName, the inventory's port.
    assert host["error"] == (
        f"cannot connect to {USER}@{ADDRESS}:{closed} (key {hosts.key}): Connection refused"
    )

    as_root = write_inventory(
        tmp_path / "root.yml",
        hosts.known_hosts,
        ["lab-alias"],
        f"ssh_config_file: {config}\nuser: root",
    )
    run = facts(as_root)
    assert run.code == 1
    (host,) = run.json()["hosts"]
    # The test's key is not root's on the target: the inventory's user (even when it is the
    # default's value) was the one tried, not the config's.
    assert host["error"].startswith(
        f"authentication failed at root@{ADDRESS}:{hosts.target.port} (key {hosts.key}): the "
        "server accepted none of the keys offered"
    ), host


def logins_on(host: LabHost) -> int:
    return host.log_path.read_text(errors="replace").count("Accepted publickey for root")


def test_a_proxy_jump_from_the_ssh_config_checks_the_jump_hosts_key_too(
    hosts: Hosts, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(hosts.ssh_config())
    logins = logins_on(hosts.jump)
    run = facts(
        write_inventory(
            tmp_path / "fleet.yml",
            hosts.known_hosts,
            ["lab-behind-jump"],
            f"ssh_config_file: {config}",
        )
    )
    assert run.code == 0, run.stderr
    assert run.json()["hosts"][0]["arch"] == "amd64"
    assert logins_on(hosts.jump) == logins + 1  # it did go through the jump host

    # known_hosts knows the target but not the jump host: Fabric would accept the jump
    # host's key (its default AutoAddPolicy); archfleet refuses it.
    target_only = write_known_hosts(tmp_path / "known_hosts", [hosts.target])
    refused = facts(
        write_inventory(
            tmp_path / "unknown-jump.yml",
            target_only,
            ["lab-behind-jump"],
            f"ssh_config_file: {config}",
        )
    )
    assert refused.code == 1
    (host,) = refused.json()["hosts"]
    assert f"unknown host key of [{ADDRESS}]:{hosts.jump.port}" in host["error"], host


def test_a_missing_ssh_config_file_is_one_clear_error(hosts: Hosts, tmp_path: Path) -> None:
    inventory = write_inventory(
        tmp_path / "fleet.yml",
        hosts.known_hosts,
        ["lab-alias"],
        f"ssh_config_file: {tmp_path / 'nope'}",
    )
    (host,) = load(inventory).hosts
    with pytest.raises(ConnectError, match=r"h0: cannot read ssh config file .*nope"):
        connect(host)
