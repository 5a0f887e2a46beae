"""The Jenkins agent's host side on a REAL amd64 lab host (sshd in a Debian 12 "bookworm"
root on loopback), and its Jenkins side against the FAKE Jenkins (tests/support/jenkins_fake.py,
a loopback HTTP server answering as Jenkins core and the ssh-agents plugin do; no Jenkins can
run here):

- the node is written with the host key archfleet verified on its own SSH connection, and the
  fake's launcher (modelled on ManuallyProvidedKeyVerificationStrategy) accepts the host;
- ensure_agent_user_script creates the agent user, its remote root (owned, 0750), docker
  membership and subuid/subgid ranges, for real, twice (idempotent);
- a bookworm host is refused at plan time for Java 21 (bookworm has no openjdk-21), and
  install_java_script really installs openjdk-17 when jenkins.java_version is 17.

The host is this module's own (127.0.0.131, a fresh root), not the shared `lab` fixture's:
other tests expect `java` absent and no `jenkins` user on a fresh lab host."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.jenkins_fake import FakeJenkins, stored_host_key
from toolkit.fleet.connect import connect, run_script
from toolkit.fleet.gather import gather_facts
from toolkit.fleet.java import install_java_script
from toolkit.fleet.jenkins_agent import JenkinsNodes, ensure_agent_user_script
from toolkit.fleet.jenkins_config import MANUAL_STRATEGY
from toolkit.fleet.plan import PlanError, plan_jenkins
from toolkit.inventory import Host, JenkinsSettings, SshSettings
from toolkit.lab.hosts import LabHost, lab_keypair, start_host, write_known_hosts

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.131"
USER, TOKEN = "provisioner", "31aa-agent-java-T0KEN"


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def java_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabHost, Host]]:
    workdir = tmp_path_factory.mktemp("java-host")
    key, public_key = lab_keypair(workdir)
    lab_host = start_host(
        "host-java-amd64",
        "amd64",
        ADDRESS,
        _free_port(ADDRESS),
        workdir,
        authorized_keys=[public_key],
        fresh=True,
    )
    try:
        known_hosts = write_known_hosts(workdir / "known_hosts", [lab_host])
        ssh = SshSettings(
            user="root",
            port=lab_host.port,
            key=key,
            known_hosts=known_hosts,
            connect_timeout=10,
            command_timeout=900,
            use_ssh_config=False,
        )
        host = Host(name=lab_host.name, address=ADDRESS, roles=("jenkins-agent",), ssh=ssh)
        yield lab_host, host
    finally:
        lab_host.remove()


def run(host: Host, script: str, timeout: float = 900) -> tuple[int, str, str]:
    connection = connect(host)
    try:
        result = run_script(connection, script, timeout=timeout, host=host.name)
    finally:
        connection.close()
    return result.exit_code, result.stdout, result.stderr


def _verified_key(host: Host) -> tuple[str, str]:
    """The host key of archfleet's own connection (checked against known_hosts), the way the
    apply step takes it: paramiko's transport, get_name() and get_base64()."""
    connection = connect(host)
    try:
        connection.open()
        key = connection.client.get_transport().get_remote_server_key()
        return key.get_name(), key.get_base64()
    finally:
        connection.close()


def test_the_node_is_written_with_the_verified_host_key(
    java_host: tuple[LabHost, Host], tmp_path: Path
) -> None:
    lab_host, host = java_host
    algorithm, encoded = _verified_key(host)
    # The host's own key file, read from its root: an independent source of the truth.
    on_disk = (lab_host.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert [algorithm, encoded] == on_disk

    with FakeJenkins(tmp_path / "jenkins", USER, TOKEN, console=False) as jenkins:
        jenkins.launch_on_create = True
        jenkins.host_keys[(ADDRESS, lab_host.port)] = " ".join(on_disk)
        settings = JenkinsSettings(
            url=jenkins.url, credentials_id="agent-ssh", user_env="J_U", token_env="J_T"
        )
        nodes = JenkinsNodes.from_settings(settings, {"J_U": USER, "J_T": TOKEN})
        outcome = nodes.ensure(
            host.name,
            address=ADDRESS,
            port=lab_host.port,
            labels=("amd64",),
            executors=1,
            remote_root=settings.remote_root,
            credentials_id=settings.credentials_id,
            host_key=(algorithm, encoded),
        )
        assert outcome.action == "created"
        assert outcome.state.host_key_strategy == MANUAL_STRATEGY
        assert outcome.state.host_key == " ".join(on_disk)
        assert stored_host_key(jenkins.nodes[host.name]) == " ".join(on_disk)
        assert jenkins.online[host.name] and jenkins.launch_log[host.name] == "Key is trusted"


def test_remote_root_belongs_to_the_agent_user(java_host: tuple[LabHost, Host]) -> None:
    lab_host, host = java_host
    script = ensure_agent_user_script("jenkins", "/var/lib/jenkins-agent", "docker")
    code, out, err = run(host, script, timeout=120)
    assert code == 0, err
    assert "created user jenkins" in out
    check = (
        "stat -c '%U %G %a' /var/lib/jenkins-agent\n"
        "id -nG jenkins\n"
        "grep -c '^jenkins:' /etc/subuid /etc/subgid\n"
        "getent shadow jenkins | cut -d: -f2\n"
        "test -d ~jenkins && echo home\n"
    )
    code, out, err = run(host, check, timeout=60)
    assert code == 0, err
    owner, groups, subuid, subgid, password, home = out.splitlines()
    assert owner == "jenkins jenkins 750"
    assert groups.split() == ["jenkins", "docker"]
    assert (subuid, subgid) == ("/etc/subuid:1", "/etc/subgid:1")
    assert password == "*"  # no password, but not locked: key logins work without PAM too
    assert home == "home"

    # A second run changes nothing and says so.
    code, out, err = run(host, script, timeout=120)
    assert code == 0, err
    assert "created user" not in out and "added" not in out
    assert (lab_host.root / "etc/subuid").read_text().count("jenkins:") == 1


def test_remote_root_is_created_with_a_hostile_path_quoted(
    java_host: tuple[LabHost, Host],
) -> None:
    lab_host, host = java_host
    hostile = "/var/lib/jenkins agent; touch /pwned $(touch /pwned2) 'q\"\nx"
    code, _, err = run(host, ensure_agent_user_script("jenkins", hostile, None), timeout=60)
    assert code == 0, err
    inside = lab_host.root / hostile.lstrip("/")
    assert inside.is_dir() and (inside.stat().st_mode & 0o777) == 0o750
    assert not (lab_host.root / "pwned").exists() and not (lab_host.root / "pwned2").exists()


def test_bookworm_is_refused_for_java_21_with_what_to_do(
    java_host: tuple[LabHost, Host],
) -> None:
    _, host = java_host
    facts = gather_facts(host)
    assert (facts.os_id, facts.os_version) == ("debian", "12")
    jenkins = JenkinsSettings(url="https://jenkins.example.com", credentials_id="agent-ssh")
    with pytest.raises(PlanError) as info:
        plan_jenkins(host, facts, jenkins, None)
    message = str(info.value)
    assert message.startswith(f"{host.name}: the Jenkins agent needs Java 21")
    assert "debian 12 ships Java 17 only" in message
    assert "Temurin 21" in message and "Debian 13" in message


# Measured on these machines: 11-12 s (apt-get update + openjdk-17-jre-headless and its
# dependencies, from the machine's mirror into the lab root), so it runs with the rest; the
# command timeout (900 s) bounds a slow mirror.
def test_java_17_is_installed_when_jenkins_java_version_is_17(
    java_host: tuple[LabHost, Host], capsys: pytest.CaptureFixture[str]
) -> None:
    _, host = java_host
    facts = gather_facts(host)
    assert facts.java is None  # a fresh root
    jenkins = replace(
        JenkinsSettings(url="https://jenkins.example.com", credentials_id="agent-ssh"),
        java_version=17,
    )
    install = plan_jenkins(host, facts, jenkins, None)[0][0]
    assert install.kind == "install-java"
    script = install_java_script(17, install.arg("package"), install.arg("manager"))

    started = time.monotonic()
    code, out, err = run(host, script)
    elapsed = time.monotonic() - started
    assert code == 0, f"exit {code}: {err[-2000:]}"
    with capsys.disabled():
        print(f"\n[jenkins-agent] install_java_script(17) on a fresh lab host: {elapsed:.1f} s")

    facts = gather_facts(host)
    assert facts.java is not None and facts.java.startswith("17"), facts.java
    assert [c.kind for c in plan_jenkins(host, facts, jenkins, None)[0]] == ["create-node"]

    # Idempotent: a second run finds java 17 and installs nothing.
    started = time.monotonic()
    code, out, err = run(host, script, timeout=60)
    assert code == 0, err
    assert "java 17 already installed" in out
    assert time.monotonic() - started < 15

    # Asked for 21 anyway, bookworm's apt has no such package: the run fails, which is why
    # the plan refuses first.
    code, _, err = run(host, install_java_script(21, "openjdk-21-jre-headless", "apt-get"))
    assert code != 0 and "openjdk-21-jre-headless" in err
