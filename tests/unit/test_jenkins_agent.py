"""Pure parts of the Jenkins agent lifecycle: the node's config.xml (built, read back,
reconciled) and the host-side scripts (syntax, quoting, a hostile path run for real)."""

from __future__ import annotations

import getpass
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from toolkit.fleet.jenkins_agent import (
    JenkinsAgentError,
    check_node_name,
    ensure_remote_root_script,
    install_java_script,
)
from toolkit.fleet.jenkins_config import (
    KNOWN_HOSTS_STRATEGY,
    RETENTION_ALWAYS,
    SSH_LAUNCHER,
    NodeConfigError,
    node_config_xml,
    node_differences,
    parse_node_config,
    reconcile_node_config,
)

HOSTILE = "</label><script>alert(1)</script> & \"quoted\" 'single' ]]> <!-- x"
BASE: dict[str, object] = {
    "address": "10.0.0.7",
    "port": 2222,
    "labels": ("amd64", "linux"),
    "executors": 3,
    "remote_root": "/var/lib/jenkins-agent",
    "credentials_id": "agent-ssh-key",
}


def build(name: str = "build-amd64", **overrides: object) -> str:
    return node_config_xml(name, **{**BASE, **overrides})  # type: ignore[arg-type]


def test_config_is_an_exclusive_ssh_agent_checked_against_known_hosts() -> None:
    root = ET.fromstring(build().encode())  # noqa: S314
    assert root.tag == "slave"  # XStream's alias of hudson.slaves.DumbSlave
    assert root.findtext("mode") == "EXCLUSIVE"
    assert root.find("retentionStrategy").get("class") == RETENTION_ALWAYS  # type: ignore[union-attr]
    launcher = root.find("launcher")
    assert launcher is not None and launcher.get("class") == SSH_LAUNCHER
    assert launcher.findtext("host") == "10.0.0.7" and launcher.findtext("port") == "2222"
    assert launcher.findtext("credentialsId") == "agent-ssh-key"
    strategy = launcher.find("sshHostKeyVerificationStrategy")
    assert strategy is not None and strategy.get("class") == KNOWN_HOSTS_STRATEGY
    assert root.findtext("label") == "amd64 linux"


def test_round_trip_through_the_parser_find_uses() -> None:
    config = parse_node_config(build(), node="build-amd64")
    assert config.name == "build-amd64"
    assert config.labels == ("amd64", "linux")
    assert config.executors == 3
    assert config.remote_root == "/var/lib/jenkins-agent"
    assert config.credentials_id == "agent-ssh-key"
    assert (config.host, config.port, config.launcher) == ("10.0.0.7", 2222, SSH_LAUNCHER)
    assert config.mode == "EXCLUSIVE"
    assert config.host_key_strategy == KNOWN_HOSTS_STRATEGY


@pytest.mark.parametrize(
    "value",
    [HOSTILE, "&amp;", "a\nb\n\n  c\t", "'", '"', "<![CDATA[x]]>", "ünïcødé ✓"],
    ids=["markup", "entity", "newlines", "single-quote", "double-quote", "cdata", "unicode"],
)
def test_hostile_values_give_valid_xml_and_come_back_unchanged(value: str) -> None:
    xml = build(
        f"node {value}",
        address=f"host{value}",
        remote_root=f"/srv/{value}",
        credentials_id=f"id{value}",
        description=value,
    )
    root = ET.fromstring(xml.encode())  # noqa: S314 -- valid XML, one element per field
    assert len(root.findall("label")) == 1 and root.find("script") is None
    config = parse_node_config(xml, node="x")
    assert config.name == f"node {value}"
    assert config.host == f"host{value}"
    assert config.remote_root == f"/srv/{value}"
    assert config.credentials_id == f"id{value}"
    assert config.description == value


def test_hostile_labels_without_whitespace_come_back_unchanged() -> None:
    labels = ("</label><script>", "a&b", "'q'", '"dq"', "x]]>y")
    config = parse_node_config(build(labels=labels), node="x")
    assert config.labels == labels


@pytest.mark.parametrize("label", ["two words", "line\nbreak", "", "tab\there"])
def test_a_label_jenkins_would_split_is_refused(label: str) -> None:
    with pytest.raises(NodeConfigError, match=r"label .* whitespace"):
        build(labels=("amd64", label))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"remote_root": "relative/dir"}, "expected an absolute path"),
        ({"executors": 0}, "expected an integer >= 1"),
        ({"port": 70000}, "expected 1..65535"),
        ({"credentials_id": " "}, "credentials id is empty"),
        ({"credentials_id": "a\rb"}, "cannot hold"),
        ({"address": "x\x00y"}, "cannot hold"),
    ],
)
def test_bad_values_are_refused_with_what_was_expected(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(NodeConfigError, match=message):
        build(**overrides)  # type: ignore[arg-type]


def test_duplicate_labels_are_written_once() -> None:
    config = parse_node_config(build(labels=("amd64", "linux", "amd64")), node="x")
    assert config.labels == ("amd64", "linux")


EXISTING = """<?xml version='1.1' encoding='UTF-8'?>
<slave>
  <name>build-arm64</name>
  <description>hand-made</description>
  <remoteFS>/home/jenkins</remoteFS>
  <numExecutors>1</numExecutors>
  <mode>NORMAL</mode>
  <retentionStrategy class="hudson.slaves.RetentionStrategy$Always"/>
  <launcher class="hudson.plugins.sshslaves.SSHLauncher" plugin="ssh-slaves@2.948">
    <host>10.0.0.8</host>
    <port>22</port>
    <credentialsId>old-key</credentialsId>
    <jvmOptions>-Xmx512m</jvmOptions>
    <sshHostKeyVerificationStrategy
      class="hudson.plugins.sshslaves.verifiers.NonVerifyingKeyVerificationStrategy"/>
  </launcher>
  <label>arm64 old</label>
  <nodeProperties>
    <hudson.slaves.EnvironmentVariablesNodeProperty>
      <envVars serialization="custom"><string>FOO</string></envVars>
    </hudson.slaves.EnvironmentVariablesNodeProperty>
  </nodeProperties>
</slave>
"""


def test_reconcile_sets_managed_settings_and_keeps_the_rest() -> None:
    wanted = {
        "labels": ("arm64", "big"),
        "executors": 4,
        "remote_root": "/var/lib/agent",
        "credentials_id": "new-key",
    }
    current = parse_node_config(EXISTING, node="build-arm64")
    differences = node_differences(current, **wanted)  # type: ignore[arg-type]
    assert "labels: 'arm64 old' -> 'arm64 big'" in differences
    assert "executors: 1 -> 4" in differences
    assert "credentials id: 'old-key' -> 'new-key'" in differences
    assert any(d.startswith("host key verification: NonVerifying") for d in differences)

    xml = reconcile_node_config(EXISTING, node="build-arm64", **wanted)  # type: ignore[arg-type]
    after = parse_node_config(xml, node="build-arm64")
    assert after.labels == ("arm64", "big") and after.executors == 4
    assert after.remote_root == "/var/lib/agent" and after.credentials_id == "new-key"
    assert after.host_key_strategy == KNOWN_HOSTS_STRATEGY
    assert node_differences(after, **wanted) == ()  # type: ignore[arg-type]
    # Kept: what archfleet does not manage.
    root = ET.fromstring(xml.encode())  # noqa: S314
    assert root.findtext("description") == "hand-made" and root.findtext("mode") == "NORMAL"
    assert root.findtext("launcher/jvmOptions") == "-Xmx512m"
    assert root.find("launcher").get("plugin") == "ssh-slaves@2.948"  # type: ignore[union-attr]
    assert root.find("nodeProperties/hudson.slaves.EnvironmentVariablesNodeProperty") is not None


def test_label_order_alone_is_no_difference() -> None:
    current = parse_node_config(build(labels=("amd64", "linux")), node="x")
    assert node_differences(current, **{**BASE, "labels": ("linux", "amd64")}) == ()  # type: ignore[arg-type]


def test_a_jnlp_node_is_converted_only_when_told_where_to_connect() -> None:
    jnlp = EXISTING.replace(SSH_LAUNCHER, "hudson.slaves.JNLPLauncher")
    wanted: dict[str, object] = {**BASE}
    del wanted["address"], wanted["port"]
    with pytest.raises(NodeConfigError, match=r"launcher hudson\.slaves\.JNLPLauncher, not"):
        reconcile_node_config(jnlp, node="n", **wanted)  # type: ignore[arg-type]
    xml = reconcile_node_config(jnlp, node="n", address="10.0.0.9", port=22, **wanted)  # type: ignore[arg-type]
    after = parse_node_config(xml, node="n")
    assert (after.launcher, after.host, after.port) == (SSH_LAUNCHER, "10.0.0.9", 22)


def test_a_config_that_is_not_a_permanent_agent_is_refused() -> None:
    with pytest.raises(NodeConfigError, match="not XML"):
        parse_node_config("<slave>", node="n")
    with pytest.raises(NodeConfigError, match="root <project>, expected <slave>"):
        parse_node_config("<project/>", node="n")


@pytest.mark.parametrize("name", ["a/b", "x;y", "", "Built-In Node", "..", "a\nb"])
def test_node_names_jenkins_refuses_are_refused_first(name: str) -> None:
    with pytest.raises(JenkinsAgentError, match="node name"):
        check_node_name(name)


# ---------------------------------------------------------------- host-side scripts


def sh_syntax_ok(script: str) -> None:
    done = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_install_java_script_is_valid_sh_for_every_package_manager() -> None:
    script = install_java_script()
    sh_syntax_ok(script)
    for expected in (
        "apt-get",
        "default-jre-headless",
        "openjdk-17-jre-headless",
        "dnf install -y -q java-17-openjdk-headless",
        "yum install -y -q java-17-openjdk-headless",
        "apk add --no-cache -q openjdk17-jre-headless",
        "DPkg::Lock::Timeout",
    ):
        assert expected in script


def test_install_java_script_without_package_manager_fails_clearly(tmp_path: Path) -> None:
    # A PATH with only the shell's basics: no java, no package manager.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "head", "echo"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    done = subprocess.run(
        [str(bin_dir / "sh"), "-c", install_java_script()],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3
    assert "no supported package manager (apt-get, dnf, yum, apk)" in done.stderr


def test_install_java_script_does_nothing_when_java_is_there(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"17.0.9\"' >&2\n")
    java.chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", install_java_script()],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "java already installed" in done.stdout


def test_remote_root_script_quotes_a_hostile_path(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    hostile = f"{tmp_path}/agent root; touch {canary} $(touch {canary}) `touch {canary}` 'q\"\n"
    script = ensure_remote_root_script(hostile, getpass.getuser())
    sh_syntax_ok(script)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert Path(hostile).is_dir()
    assert not canary.exists()


def test_remote_root_script_refuses_relative_paths_and_empty_users() -> None:
    with pytest.raises(ValueError, match="absolute path"):
        ensure_remote_root_script("srv/agent", "jenkins")
    with pytest.raises(ValueError, match="user name"):
        ensure_remote_root_script("/srv/agent", "")
