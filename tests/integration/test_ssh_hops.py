"""SSH errors name the hop that failed — the jump host or the target — with its user, address,
port and key, on REAL OpenSSH servers (Debian bookworm's sshd, each in its own debootstrapped
amd64 root on 127.0.0.111): a jump host that takes the test's key as root, and a target that
takes it only as `builder` (root there wants another key). Connections are made in-process
with toolkit.fleet.connect.connect, as every fleet task makes them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.test_ssh_config import add_login_user
from toolkit.fleet.connect import ConnectError, connect
from toolkit.inventory import Host, load
from toolkit.lab.hosts import LabHost, lab_keypair, start_host, write_known_hosts
from toolkit.lab.sshkeys import generate_ed25519

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.111"  # ours alone


@dataclass(frozen=True)
class Hosts:
    target: LabHost
    jump: LabHost
    key: Path
    other_key: Path  # accepted nowhere as `builder`, nor on the jump host
    known_hosts: Path


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    workdir = tmp_path_factory.mktemp("ssh-hops")
    key, public_key = lab_keypair(workdir)
    other = workdir / "other_ed25519"
    other_public = generate_ed25519(other, comment="other")
    started: list[LabHost] = []
    try:
        target = start_host(
            "hops-target",
            "amd64",
            ADDRESS,
            free_port(ADDRESS),
            workdir,
            authorized_keys=[other_public],
        )
        started.append(target)
        add_login_user(target, "builder", public_key)
        jump = start_host(
            "hops-jump",
            "amd64",
            ADDRESS,
            free_port(ADDRESS),
            workdir,
            authorized_keys=[public_key],
        )
        started.append(jump)
        known_hosts = write_known_hosts(workdir / "known_hosts", [target, jump])
        yield Hosts(target, jump, key, other, known_hosts)
    finally:
        for host in started:
            host.remove()


def host_of(tmp_path: Path, hosts: Hosts, ssh: str, host_ssh: str = "") -> Host:
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(f"""
ssh: {{known_hosts: {hosts.known_hosts}, use_ssh_config: false, connect_timeout: 5, {ssh}}}
gitlab: {{url: 'http://127.0.0.1:9', allow_http: true, group: lab}}
hosts:
  - {{name: build-1, address: '{ADDRESS}', roles: [gitlab-runner], ssh: {{{host_ssh}}}}}
""")
    (host,) = load(inventory).hosts
    return host


def refused(host: Host) -> str:
    with pytest.raises(ConnectError) as caught:
        connect(host)
    return str(caught.value)


def test_a_jump_host_that_refuses_is_named_as_the_jump_host(hosts: Hosts, tmp_path: Path) -> None:
    closed = free_port(ADDRESS)
    host = host_of(
        tmp_path,
        hosts,
        f"key: {hosts.key}, user: builder, jump_host: 'root@{ADDRESS}:{closed}'",
        f"port: {hosts.target.port}",
    )
    assert refused(host) == (
        f"build-1: cannot connect to jump host root@{ADDRESS}:{closed} (key {hosts.key}): "
        "Connection refused"
    )


def test_a_target_the_jump_host_cannot_reach_is_told_apart(hosts: Hosts, tmp_path: Path) -> None:
    closed = free_port(ADDRESS)
    host = host_of(
        tmp_path,
        hosts,
        f"key: {hosts.key}, user: builder, jump_host: 'root@{ADDRESS}:{hosts.jump.port}'",
        f"port: {closed}",
    )
    message = refused(host)
    assert message.startswith(
        f"build-1: jump host root@{ADDRESS}:{hosts.jump.port} (key {hosts.key}) cannot reach "
        f"builder@{ADDRESS}:{closed} ("
    ), message
    assert message.count("build-1") == 1


def test_authentication_at_the_target_names_its_user_and_key(hosts: Hosts, tmp_path: Path) -> None:
    """Through the jump host (which takes the key), as root on the target (which does not)."""
    host = host_of(
        tmp_path,
        hosts,
        f"key: {hosts.key}, user: root, jump_host: 'root@{ADDRESS}:{hosts.jump.port}'",
        f"port: {hosts.target.port}",
    )
    message = refused(host)
    assert message.startswith(
        f"build-1: authentication failed at root@{ADDRESS}:{hosts.target.port} "
        f"(key {hosts.key}): the server accepted none of the keys offered"
    ), message
    assert "jump host" not in message


def test_authentication_at_the_jump_host_names_the_jump_host(hosts: Hosts, tmp_path: Path) -> None:
    host = host_of(
        tmp_path,
        hosts,
        f"key: {hosts.other_key}, user: builder, jump_host: 'ci@{ADDRESS}:{hosts.jump.port}'",
        f"port: {hosts.target.port}",
    )
    assert refused(host).startswith(
        f"build-1: authentication failed at jump host ci@{ADDRESS}:{hosts.jump.port} "
        f"(key {hosts.other_key}): "
    )


def test_a_direct_target_that_refuses_names_user_address_and_key(
    hosts: Hosts, tmp_path: Path
) -> None:
    closed = free_port(ADDRESS)
    host = host_of(tmp_path, hosts, f"key: {hosts.key}, user: builder", f"port: {closed}")
    assert refused(host) == (
        f"build-1: cannot connect to builder@{ADDRESS}:{closed} (key {hosts.key}): "
        "Connection refused"
    )


def test_an_alias_from_the_ssh_config_names_the_jump_host_by_it(
    hosts: Hosts, tmp_path: Path
) -> None:
    """ProxyJump bastion, with bastion's HostName and Port from the config: the message says
    "jump host bastion (root@address:port, key …)" — the alias once, the address once."""
    closed = free_port(ADDRESS)
    config = tmp_path / "ssh_config"
    config.write_text(f"""
Host behind
    HostName {ADDRESS}
    Port {hosts.target.port}
    User builder
    IdentityFile {hosts.key}
    ProxyJump bastion

Host bastion
    HostName {ADDRESS}
    Port {closed}
    User root
    IdentityFile {hosts.key}
""")
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(f"""
ssh: {{known_hosts: {hosts.known_hosts}, ssh_config_file: {config}, connect_timeout: 5}}
gitlab: {{url: 'http://127.0.0.1:9', allow_http: true, group: lab}}
hosts:
  - {{name: build-1, address: behind, roles: [gitlab-runner]}}
""")
    (host,) = load(inventory).hosts
    assert refused(host) == (
        f"build-1: cannot connect to jump host bastion (root@{ADDRESS}:{closed}, key "
        f"{hosts.key}): Connection refused"
    )


def test_a_server_that_never_says_a_word_ends_within_connect_timeout(tmp_path: Path) -> None:
    """A TCP listener that accepts and never sends an SSH banner (a hung sshd): connect ends
    with an error naming the target, bounded by ssh.connect_timeout (1 s here; the test's own
    timeout would catch a hang — no timing is asserted)."""
    key = tmp_path / "k"
    generate_ed25519(key, comment="k")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        inventory = tmp_path / "fleet.yml"
        inventory.write_text(f"""
ssh: {{key: {key}, use_ssh_config: false, connect_timeout: 1}}
gitlab: {{url: 'http://127.0.0.1:9', allow_http: true, group: lab}}
hosts:
  - {{name: mute, address: '127.0.0.1', roles: [gitlab-runner], ssh: {{port: {port}}}}}
""")
        (host,) = load(inventory).hosts
        message = refused(host)
    assert message.startswith(
        f"mute: no SSH handshake with root@127.0.0.1:{port} (key {key}) within 1 s (something "
        "accepts TCP there but no sshd answers, or sshd is overloaded)"
    ), message
