"""The Jenkins agent's host side on a REAL amd64 lab host (sshd in a Debian root on loopback):
install_java_script really installs a headless JRE with apt-get from the machine's mirror,
and gather_facts then reports Java.

The host is this module's own (127.0.0.61, a fresh root), not the shared `lab` fixture's:
other tests expect `java` absent on a fresh lab host, and this one installs it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from toolkit.fleet.connect import connect, run_script
from toolkit.fleet.gather import gather_facts
from toolkit.fleet.jenkins_agent import ensure_remote_root_script, install_java_script
from toolkit.inventory import Host, SshSettings
from toolkit.lab.hosts import LabHost, lab_keypair, start_host, write_known_hosts

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.61"


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


def test_remote_root_is_created_with_a_hostile_path_quoted(
    java_host: tuple[LabHost, Host],
) -> None:
    lab_host, host = java_host
    hostile = "/var/lib/jenkins agent; touch /pwned $(touch /pwned2) 'q\"\nx"
    code, _, err = run(host, ensure_remote_root_script(hostile, "root"), timeout=60)
    assert code == 0, err
    inside = lab_host.root / hostile.lstrip("/")
    assert inside.is_dir()
    assert not (lab_host.root / "pwned").exists() and not (lab_host.root / "pwned2").exists()


# Measured on these machines: 11-12 s (apt-get update + default-jre-headless, i.e.
# openjdk-17-jre-headless and its dependencies, from the machine's mirror into the lab root),
# so it runs with the rest; the command timeout (900 s) bounds a slow mirror.
def test_install_java_script_installs_a_jre_and_facts_see_it(
    java_host: tuple[LabHost, Host], capsys: pytest.CaptureFixture[str]
) -> None:
    _, host = java_host
    assert gather_facts(host).java is None  # a fresh root

    started = time.monotonic()
    code, out, err = run(host, install_java_script())
    elapsed = time.monotonic() - started
    assert code == 0, f"exit {code}: {err[-2000:]}"
    with capsys.disabled():
        print(f"\n[jenkins-agent] install_java_script on a fresh lab host: {elapsed:.1f} s")

    facts = gather_facts(host)
    assert facts.java is not None and facts.java.startswith("17"), facts.java
    assert "openjdk" in out.lower() or "17." in out

    # Idempotent: a second run finds java and installs nothing.
    started = time.monotonic()
    code, out, err = run(host, install_java_script(), timeout=60)
    assert code == 0, err
    assert "java already installed" in out
    assert time.monotonic() - started < 15
