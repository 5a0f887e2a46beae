"""Java for Jenkins agents (toolkit/fleet/java.py) and plan_jenkins' use of it: version
parsing, the package per OS release, the refusal, and install_java_script run for real with
stand-in `java`, package manager and `update-alternatives` commands (written below)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from toolkit.fleet.facts import HostFacts, parse_facts
from toolkit.fleet.java import (
    EXIT_NO_JAVA,
    EXIT_NO_MANAGER,
    EXIT_TOO_OLD,
    JavaPackage,
    install_java_script,
    java_package,
    parse_major,
)
from toolkit.fleet.jenkins_config import KNOWN_HOSTS_STRATEGY, MANUAL_STRATEGY
from toolkit.fleet.plan import NodeState, PlanError, plan_jenkins
from toolkit.inventory import Host, JenkinsSettings, SshSettings


@pytest.mark.parametrize(
    ("version", "major"),
    [
        ("17.0.12", 17),
        ("21", 21),
        ("21.0.4+7-LTS", 21),
        ("21-ea", 21),
        ("1.8.0_402", 8),
        ('"11.0.2"', 11),
        ("", None),
        (None, None),
        ("openjdk", None),
    ],
)
def test_parse_major(version: str | None, major: int | None) -> None:
    assert parse_major(version) == major


@pytest.mark.parametrize(
    ("os_id", "os_version", "major", "expected"),
    [
        ("debian", "13", 21, JavaPackage("openjdk-21-jre-headless", "apt-get", 21)),
        ("debian", "12", 21, None),  # bookworm ships openjdk-17 only
        ("debian", "12", 17, JavaPackage("openjdk-17-jre-headless", "apt-get", 17)),
        ("debian", "13", 17, JavaPackage("openjdk-21-jre-headless", "apt-get", 21)),  # newer ok
        ("ubuntu", "22.04", 21, JavaPackage("openjdk-21-jre-headless", "apt-get", 21)),
        ("ubuntu", "24.04", 21, JavaPackage("openjdk-21-jre-headless", "apt-get", 21)),
        ("ubuntu", "20.04", 21, None),
        ("rhel", "9.4", 21, JavaPackage("java-21-openjdk-headless", "dnf", 21)),
        ("rocky", "8.10", 21, JavaPackage("java-21-openjdk-headless", "dnf", 21)),
        ("almalinux", "9.5", 21, JavaPackage("java-21-openjdk-headless", "dnf", 21)),
        ("centos", "9", 21, JavaPackage("java-21-openjdk-headless", "dnf", 21)),
        ("fedora", "41", 21, JavaPackage("java-21-openjdk-headless", "dnf", 21)),
        ("alpine", "3.20.3", 21, JavaPackage("openjdk21-jre-headless", "apk", 21)),
        ("alpine", "3.17.1", 21, None),
        ("arch", "", 21, None),
        ("", "", 21, None),
    ],
)
def test_package_per_os(
    os_id: str, os_version: str, major: int, expected: JavaPackage | None
) -> None:
    assert java_package(os_id, os_version, major) == expected


# ---------------------------------------------------------------- plan_jenkins

HOST = Host("build-amd64-1", "10.0.0.5", ("jenkins-agent",), SshSettings())
JENKINS = JenkinsSettings(url="https://jenkins.example.com", credentials_id="agent-key")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMQPcXch45Uak9iiHt1puffR6LHZxZsHU0iyeyUnf5qW"


def facts(**extra: object) -> HostFacts:
    base = parse_facts("machine=x86_64\nfacts=done\n", host="h")
    return replace(base, **extra)  # type: ignore[arg-type]


def test_debian_12_is_refused_for_java_21_with_what_to_do() -> None:
    with pytest.raises(PlanError) as info:
        plan_jenkins(HOST, facts(os_id="debian", os_version="12", java="17.0.12"), JENKINS, None)
    message = str(info.value)
    assert message.startswith("build-amd64-1: the Jenkins agent needs Java 21")
    assert "it has Java 17.0.12" in message and "debian 12 ships Java 17 only" in message
    assert "Temurin 21" in message and "Debian 13" in message
    assert "jenkins.java_version" in message


def test_java_17_on_debian_13_plans_openjdk_21() -> None:
    changes, _ = plan_jenkins(
        HOST, facts(os_id="debian", os_version="13", java="17.0.12"), JENKINS, None
    )
    install = changes[0]
    assert install.kind == "install-java"
    assert dict(install.args) == {
        "package": "openjdk-21-jre-headless",
        "manager": "apt-get",
        "major": "21",
    }
    assert "host has 17.0.12" in install.detail


def test_java_8_on_ubuntu_plans_21_and_java_21_plans_nothing() -> None:
    old = facts(os_id="ubuntu", os_version="24.04", java="1.8.0_402")
    assert plan_jenkins(HOST, old, JENKINS, None)[0][0].kind == "install-java"
    current = facts(os_id="ubuntu", os_version="24.04", java="21.0.5")
    assert [c.kind for c in plan_jenkins(HOST, current, JENKINS, None)[0]] == ["create-node"]


def test_java_version_17_keeps_a_debian_12_agent() -> None:
    jenkins = replace(JENKINS, java_version=17)
    bookworm = facts(os_id="debian", os_version="12", java="17.0.12")
    assert [c.kind for c in plan_jenkins(HOST, bookworm, jenkins, None)[0]] == ["create-node"]
    fresh = facts(os_id="debian", os_version="12")
    install = plan_jenkins(HOST, fresh, jenkins, None)[0][0]
    assert install.arg("package") == "openjdk-17-jre-headless"


def _node(**extra: object) -> NodeState:
    base = NodeState(
        HOST.name,
        ("amd64",),
        2,
        JENKINS.remote_root,
        JENKINS.credentials_id,
        host_key=KEY,
        host_key_strategy=MANUAL_STRATEGY,
    )
    return replace(base, **extra)  # type: ignore[arg-type]


def test_a_changed_host_key_plans_an_update_node() -> None:
    current = facts(os_id="debian", os_version="13", java="21.0.5")
    assert plan_jenkins(HOST, current, JENKINS, _node(), host_key=KEY)[0] == []
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH8Z5oZP8yZ8r4n0c0Q6m1bX3Z7g3v6uKq8Xy2VQ9x1a"
    changes, _ = plan_jenkins(HOST, current, JENKINS, _node(), host_key=other)
    assert [c.kind for c in changes] == ["update-node"]
    assert "the host's key changed" in changes[0].detail
    # A node still on known_hosts (or trust-anything) is moved to the verified key.
    legacy = _node(host_key=None, host_key_strategy=KNOWN_HOSTS_STRATEGY)
    assert [c.kind for c in plan_jenkins(HOST, current, JENKINS, legacy, host_key=KEY)[0]] == [
        "update-node"
    ]
    # ...unless the inventory asks for known_hosts.
    by_file = replace(JENKINS, host_key_verification="known_hosts")
    assert plan_jenkins(HOST, current, by_file, legacy, host_key=KEY)[0] == []


# ---------------------------------------------------------------- install_java_script, run


def _java(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-07-16' >&2\n")
    path.chmod(0o755)
    return path


def _tool(bin_dir: Path, name: str, body: str) -> None:
    (bin_dir / name).write_text("#!/bin/sh\n" + body)
    (bin_dir / name).chmod(0o755)


def _host(tmp_path: Path, java_version: str | None) -> tuple[Path, dict[str, str]]:
    """A scratch 'host': bin/ first on PATH (java there is a symlink, as /usr/bin/java is an
    alternatives link), the basics of the real system after it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Only these basics: this machine's own java (or dnf) must not be found.
    for tool in ("sh", "sed", "head", "grep", "sort", "awk", "ln", "mkdir", "chmod", "printf"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    if java_version:
        old = _java(tmp_path / "jvm" / "old" / "bin" / "java", java_version)
        (bin_dir / "java").symlink_to(old)
    return bin_dir, {"PATH": str(bin_dir), "LOG": str(tmp_path / "log")}


def _apt_installs_21(bin_dir: Path, tmp_path: Path, *, link: bool) -> None:
    """apt-get stand-in: `install` puts a Java 21 under jvm/21 (and, like Debian's postinst in
    auto mode, points `java` at it only when `link`)."""
    new = tmp_path / "jvm" / "21" / "bin" / "java"
    relink = f"ln -sfn {new} {bin_dir}/java\n" if link else ""
    _tool(
        bin_dir,
        "apt-get",
        'echo "apt-get $*" >> "$LOG"\n'
        'case " $* " in *" install "*)\n'
        f"  mkdir -p {new.parent}\n"
        f"  printf '%s\\n' '#!/bin/sh' 'echo \"openjdk version \\\"21.0.4\\\"\" >&2' > {new}\n"
        f"  chmod 755 {new}\n  {relink}"
        ";; esac\n",
    )


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    shell = str(Path(env["PATH"]) / "sh")
    return subprocess.run(
        [shell, "-c", script], env=env, capture_output=True, text=True, check=False
    )


SCRIPT = install_java_script(21, "openjdk-21-jre-headless", "apt-get")


def test_script_is_valid_sh_for_every_manager() -> None:
    for manager, package in (
        ("apt-get", "openjdk-21-jre-headless"),
        ("dnf", "java-21-openjdk-headless"),
        ("yum", "java-21-openjdk-headless"),
        ("apk", "openjdk21-jre-headless"),
    ):
        script = install_java_script(21, package, manager)
        done = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert package in script
    assert "DPkg::Lock::Timeout" in SCRIPT  # apt through apt.py's lock-waiting apt_get


def test_java_21_present_installs_nothing(tmp_path: Path) -> None:
    bin_dir, env = _host(tmp_path, "21.0.4")
    _apt_installs_21(bin_dir, tmp_path, link=True)
    done = _run(SCRIPT, env)
    assert done.returncode == 0, done.stderr
    assert "java 21 already installed" in done.stdout
    assert not (tmp_path / "log").exists()  # apt-get never ran


def test_java_17_is_upgraded_and_checked(tmp_path: Path) -> None:
    bin_dir, env = _host(tmp_path, "17.0.12")
    _apt_installs_21(bin_dir, tmp_path, link=True)
    done = _run(SCRIPT, env)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log").read_text()
    assert "install -y -qq --no-install-recommends openjdk-21-jre-headless" in log
    assert '"21.0.4"' in done.stdout


def test_an_older_java_kept_first_by_alternatives_is_repointed(tmp_path: Path) -> None:
    """Debian's update-alternatives in manual mode keeps 17 as `java` after 21 is installed."""
    bin_dir, env = _host(tmp_path, "17.0.12")
    _apt_installs_21(bin_dir, tmp_path, link=False)
    old, new = tmp_path / "jvm" / "old" / "bin" / "java", tmp_path / "jvm" / "21" / "bin" / "java"
    _tool(
        bin_dir,
        "update-alternatives",
        "case $1 in\n"
        f"  --list) printf '%s\\n' {old} {new} ;;\n"
        f"  --display) echo 'java - manual mode'; echo '  link currently points to {old}' ;;\n"
        f'  --set) echo "set $2 $3" >> "$LOG"; ln -sfn "$3" {bin_dir}/java ;;\n'
        "esac\n",
    )
    done = _run(SCRIPT, env)
    assert done.returncode == 0, done.stderr
    assert f"set java {new}" in (tmp_path / "log").read_text()
    assert f"java on PATH now points at {new}" in done.stdout
    assert (bin_dir / "java").resolve() == new


def test_an_older_java_that_stays_first_fails_clearly(tmp_path: Path) -> None:
    bin_dir, env = _host(tmp_path, "17.0.12")
    _apt_installs_21(bin_dir, tmp_path, link=False)
    done = _run(SCRIPT, env)
    assert done.returncode == EXIT_TOO_OLD
    assert "java on PATH" in done.stderr and "is Java 17, not 21+" in done.stderr
    assert "update-alternatives --config java" in done.stderr


def test_no_package_manager_and_no_java_after_install(tmp_path: Path) -> None:
    bin_dir, env = _host(tmp_path, None)
    dnf = install_java_script(21, "java-21-openjdk-headless", "dnf")
    missing = _run(dnf, env)
    # No dnf on this PATH: the script says so instead of guessing another manager.
    assert missing.returncode == EXIT_NO_MANAGER, missing.stderr
    assert "no dnf on this host" in missing.stderr
    _tool(bin_dir, "apt-get", "exit 0\n")  # "installs" but no java appears
    done = _run(SCRIPT, env)
    assert done.returncode == EXIT_NO_JAVA
    assert "openjdk-21-jre-headless installed but there is no java on PATH" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((7, "openjdk-7-jre", "apt-get"), "expected an integer >= 8"),
        ((21, "openjdk; rm -rf /", "apt-get"), "expected a package name"),
        ((21, "openjdk-21-jre-headless", "pacman"), "expected one of"),
    ],
)
def test_script_refuses_bad_arguments(args: tuple[int, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        install_java_script(*args)
