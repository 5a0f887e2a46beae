"""Pure parts of the Jenkins agent lifecycle: the node's config.xml (built, read back,
reconciled; the host key as the ssh-agents plugin stores it) and the host-side scripts
(syntax, quoting, a hostile path and a whole agent-user set-up run for real in a scratch
root with stand-in commands)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from toolkit.fleet.jenkins_agent import (
    JenkinsAgentError,
    check_node_name,
    ensure_agent_user_script,
)
from toolkit.fleet.jenkins_config import (
    KNOWN_HOSTS_STRATEGY,
    MANUAL_STRATEGY,
    RETENTION_ALWAYS,
    SSH_LAUNCHER,
    NodeConfigError,
    fingerprint,
    node_config_xml,
    node_differences,
    parse_node_config,
    reconcile_node_config,
)

# Public host keys from the ssh-agents plugin's own tests (src/test/java/hudson/plugins/
# sshslaves/verifiers/ManuallyProvidedKeyVerificationStrategyTest.java).
ED25519 = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIMQPcXch45Uak9iiHt1puffR6LHZxZsHU0iyeyUnf5qW")
ECDSA = (
    "ecdsa-sha2-nistp256",
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMQMVHTpplIuqEcOR8j7wzydDUzXF0Fl82Wl"
    "uEJphpo2JKbJ4DNaL3Zu6bfeDQGuH3hWtG1H0r4ntoDtN940GGA=",
)

HOSTILE = "</label><script>alert(1)</script> & \"quoted\" 'single' ]]> <!-- x"
BASE: dict[str, object] = {
    "address": "10.0.0.7",
    "port": 2222,
    "labels": ("amd64", "linux"),
    "executors": 3,
    "remote_root": "/var/lib/jenkins-agent",
    "credentials_id": "agent-ssh-key",
    "host_key": ED25519,
}


def build(name: str = "build-amd64", **overrides: object) -> str:
    return node_config_xml(name, **{**BASE, **overrides})  # type: ignore[arg-type]


def test_config_is_an_exclusive_ssh_agent_accepting_only_the_verified_key() -> None:
    root = ET.fromstring(build().encode())  # noqa: S314
    assert root.tag == "slave"  # XStream's alias of hudson.slaves.DumbSlave
    assert root.findtext("mode") == "EXCLUSIVE"
    assert root.find("retentionStrategy").get("class") == RETENTION_ALWAYS  # type: ignore[union-attr]
    launcher = root.find("launcher")
    assert launcher is not None and launcher.get("class") == SSH_LAUNCHER
    assert launcher.findtext("host") == "10.0.0.7" and launcher.findtext("port") == "2222"
    assert launcher.findtext("credentialsId") == "agent-ssh-key"
    strategy = launcher.find("sshHostKeyVerificationStrategy")
    assert strategy is not None and strategy.get("class") == MANUAL_STRATEGY
    # XStream's layout of ManuallyProvidedKeyVerificationStrategy.key (a HostKey: algorithm,
    # byte[] key as one base64 line): exactly these elements, nothing else.
    assert [child.tag for child in strategy] == ["key"]
    assert [child.tag for child in strategy[0]] == ["algorithm", "key"]
    assert strategy.findtext("key/algorithm") == "ssh-ed25519"
    assert strategy.findtext("key/key") == ED25519[1]
    assert root.findtext("label") == "amd64 linux"


def test_known_hosts_verification_stays_available_by_option() -> None:
    xml = build(host_key_verification="known_hosts", host_key=None)
    config = parse_node_config(xml, node="x")
    assert config.host_key_strategy == KNOWN_HOSTS_STRATEGY and config.host_key is None
    strategy = ET.fromstring(xml.encode()).find("launcher/sshHostKeyVerificationStrategy")  # noqa: S314
    assert strategy is not None and len(strategy) == 0  # the class has no fields


@pytest.mark.parametrize(
    ("host_key", "message"),
    [
        (None, "needs the host key archfleet verified"),
        (("ssh-foo", ED25519[1]), "not one the ssh-agents plugin reads"),
        (("ssh-ed25519", "not base64!"), "not base64"),
        (("ssh-rsa", ED25519[1]), "says 'ssh-rsa' but its key data is 'ssh-ed25519'"),
        (("ssh-ed25519", "AAAA"), "not an SSH public key"),
    ],
)
def test_a_manual_key_the_plugin_would_not_read_is_refused(
    host_key: tuple[str, str] | None, message: str
) -> None:
    with pytest.raises(NodeConfigError, match=message):
        build(host_key=host_key)


def test_the_key_comes_back_as_the_plugin_reads_it() -> None:
    """Round trip: written, read back (as find() does), the same "algorithm base64" that
    paramiko and known_hosts give; whitespace inside <key> is ignored as XStream's MIME decoder
    does, so a key Jenkins re-wrapped still compares equal."""
    config = parse_node_config(build(host_key=ECDSA), node="x")
    assert config.host_key == " ".join(ECDSA)
    wrapped = build(host_key=ECDSA).replace(ECDSA[1], ECDSA[1][:40] + "\n   " + ECDSA[1][40:])
    assert parse_node_config(wrapped, node="x").host_key == " ".join(ECDSA)


def test_round_trip_through_the_parser_find_uses() -> None:
    config = parse_node_config(build(), node="build-amd64")
    assert config.name == "build-amd64"
    assert config.labels == ("amd64", "linux")
    assert config.executors == 3
    assert config.remote_root == "/var/lib/jenkins-agent"
    assert config.credentials_id == "agent-ssh-key"
    assert (config.host, config.port, config.launcher) == ("10.0.0.7", 2222, SSH_LAUNCHER)
    assert config.mode == "EXCLUSIVE"
    assert config.host_key_strategy == MANUAL_STRATEGY
    assert config.host_key == " ".join(ED25519)


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
        "host_key": ED25519,
    }
    current = parse_node_config(EXISTING, node="build-arm64")
    differences = node_differences(current, **wanted)  # type: ignore[arg-type]
    assert "labels: 'arm64 old' -> 'arm64 big'" in differences
    assert "executors: 1 -> 4" in differences
    assert "credentials id: 'old-key' -> 'new-key'" in differences
    assert (
        f"host key verification: NonVerifyingKeyVerification -> ManuallyProvidedKeyVerification "
        f"(ssh-ed25519 {fingerprint(' '.join(ED25519))})"
    ) in differences

    xml = reconcile_node_config(EXISTING, node="build-arm64", **wanted)  # type: ignore[arg-type]
    after = parse_node_config(xml, node="build-arm64")
    assert after.labels == ("arm64", "big") and after.executors == 4
    assert after.remote_root == "/var/lib/agent" and after.credentials_id == "new-key"
    assert after.host_key_strategy == MANUAL_STRATEGY
    assert after.host_key == " ".join(ED25519)
    assert node_differences(after, **wanted) == ()  # type: ignore[arg-type]
    # Kept: what archfleet does not manage.
    root = ET.fromstring(xml.encode())  # noqa: S314
    assert root.findtext("description") == "hand-made" and root.findtext("mode") == "NORMAL"
    assert root.findtext("launcher/jvmOptions") == "-Xmx512m"
    assert root.find("launcher").get("plugin") == "ssh-slaves@2.948"  # type: ignore[union-attr]
    assert root.find("nodeProperties/hudson.slaves.EnvironmentVariablesNodeProperty") is not None


def test_a_changed_host_key_is_a_difference_and_is_replaced() -> None:
    """The host was reinstalled: its new key must replace the old one, or the node would
    never connect again (the plugin compares algorithm and bytes)."""
    current = parse_node_config(build(), node="x")
    wanted = {**BASE, "host_key": ECDSA}
    differences = node_differences(current, **wanted)  # type: ignore[arg-type]
    assert differences == (
        f"host key: ssh-ed25519 {fingerprint(' '.join(ED25519))} -> "
        f"ecdsa-sha2-nistp256 {fingerprint(' '.join(ECDSA))}",
    )
    del wanted["address"], wanted["port"]
    xml = reconcile_node_config(build(), node="x", **wanted)  # type: ignore[arg-type]
    assert parse_node_config(xml, node="x").host_key == " ".join(ECDSA)
    assert xml.count("<sshHostKeyVerificationStrategy") == 1


def test_without_a_verified_key_a_manual_node_keeps_its_key() -> None:
    current = parse_node_config(build(), node="x")
    assert node_differences(current, **{**BASE, "host_key": None}) == ()  # type: ignore[arg-type]


def test_switching_to_known_hosts_drops_the_manual_key() -> None:
    current = parse_node_config(build(), node="x")
    wanted = {**BASE, "host_key": None, "host_key_verification": "known_hosts"}
    assert node_differences(current, **wanted) == (  # type: ignore[arg-type]
        "host key verification: ManuallyProvidedKeyVerification -> KnownHostsFileKeyVerification",
    )
    del wanted["address"], wanted["port"]
    after = parse_node_config(reconcile_node_config(build(), node="x", **wanted), node="x")  # type: ignore[arg-type]
    assert (after.host_key_strategy, after.host_key) == (KNOWN_HOSTS_STRATEGY, None)


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


def test_agent_user_script_refuses_relative_paths_and_empty_users() -> None:
    with pytest.raises(ValueError, match="absolute path"):
        ensure_agent_user_script("jenkins", "srv/agent", None)
    with pytest.raises(ValueError, match="user/group name"):
        ensure_agent_user_script("", "/srv/agent", None)


# ---------------------------------------------------------------- the agent's user

_FAKE_TOOLS = {
    # Stand-ins for the shadow tools, working on $ROOT/etc so the real script runs unprivileged.
    "id": r"""#!/bin/sh
case $1 in
  -u) awk -F: -v u="$2" '$1 == u { print $3; f = 1 } END { exit !f }' "$ROOT/etc/passwd" ;;
  -gn) awk -F: -v u="$2" '$1 == u { print u; f = 1 } END { exit !f }' "$ROOT/etc/passwd" ;;
  -nG) awk -F: -v u="$2" '$1 == u { printf "%s", u } END {}' "$ROOT/etc/passwd"
       awk -F: -v u="$2" '$4 ~ "(^|,)" u "(,|$)" { printf " %s", $1 } END { print "" }' \
         "$ROOT/etc/group" ;;
  *) awk -F: -v u="$1" '$1 == u { f = 1 } END { exit !f }' "$ROOT/etc/passwd" ;;
esac
""",
    "useradd": r"""#!/bin/sh
for last; do :; done
echo "$last:x:1500:1500::/home/$last:/bin/sh" >> "$ROOT/etc/passwd"
echo "useradd $*" >> "$ROOT/log"
""",
    "usermod": r"""#!/bin/sh
echo "usermod $*" >> "$ROOT/log"
case $1 in -a) sed -i "s/^$3:\(.*\):\([^:]*\)$/$3:\1:\2,$4/; s/:,/:/" "$ROOT/etc/group" ;; esac
""",
    "getent": r"""#!/bin/sh
grep -q "^$2:" "$ROOT/etc/group"
""",
    "groupadd": r"""#!/bin/sh
for last; do :; done
echo "$last:x:999:" >> "$ROOT/etc/group"
""",
    "chown": r"""#!/bin/sh
echo "chown $*" >> "$ROOT/log"
""",
}


def _scratch_root(tmp_path: Path, passwd: str = "", subuid: str = "") -> tuple[Path, str]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text("")
    (root / "etc" / "subuid").write_text(subuid)
    (root / "etc" / "subgid").write_text(subuid)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in _FAKE_TOOLS.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return root, f"{bin_dir}:/usr/bin:/bin"


def _run_in(root: Path, path: str, script: str) -> subprocess.CompletedProcess[str]:
    # The script's absolute /etc paths are pointed into the scratch root.
    script = script.replace("/etc/", f"{root}/etc/")
    return subprocess.run(
        ["sh", "-c", script],
        env={"PATH": path, "ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_agent_user_script_creates_user_root_group_and_subids(tmp_path: Path) -> None:
    """Run for real with stand-in shadow tools (tests' own, above) in a scratch /etc: the
    user is created once, the root made 0750 and given to it, docker membership added, and
    a free subuid/subgid range after the highest one in use, as useradd would pick."""
    taken = "other:100000:65536\nbig:300000:65536\n"
    root, path = _scratch_root(tmp_path, subuid=taken)
    remote_root = tmp_path / "agent root; $(touch pwned)"
    script = ensure_agent_user_script("jenkins", str(remote_root), "docker")
    sh_syntax_ok(script)
    done = _run_in(root, path, script)
    assert done.returncode == 0, done.stderr
    assert "created user jenkins" in done.stdout
    assert remote_root.is_dir() and (remote_root.stat().st_mode & 0o777) == 0o750
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    log = (root / "log").read_text()
    assert "useradd --create-home --shell /bin/bash --comment Jenkins agent jenkins" in log
    assert f"chown -- jenkins:jenkins {remote_root}" in log
    assert "usermod -a -G docker jenkins" in log
    assert "docker:x:999:jenkins" in (root / "etc" / "group").read_text()
    for name in ("subuid", "subgid"):
        assert (root / "etc" / name).read_text() == taken + "jenkins:365536:65536\n"

    again = _run_in(root, path, script)
    assert again.returncode == 0, again.stderr
    assert "created user" not in again.stdout and "already has a range" in again.stdout
    assert (root / "etc" / "subuid").read_text().count("jenkins:") == 1
    assert (root / "log").read_text().count("useradd") == 1


def test_agent_user_script_starts_subids_at_useradds_minimum(tmp_path: Path) -> None:
    root, path = _scratch_root(tmp_path, passwd="jenkins:x:1500:1500::/home/jenkins:/bin/sh\n")
    done = _run_in(root, path, ensure_agent_user_script("jenkins", str(tmp_path / "r"), None))
    assert done.returncode == 0, done.stderr
    assert (root / "etc" / "subuid").read_text() == "jenkins:100000:65536\n"
    assert "usermod -a -G" not in (root / "log").read_text()  # no docker group asked


@pytest.mark.parametrize(
    ("user", "remote_root", "group", "message"),
    [
        ("Jenkins", "/srv", None, "user/group name"),
        ("a b", "/srv", None, "user/group name"),
        ("j;rm", "/srv", None, "user/group name"),
        ("jenkins", "srv", None, "absolute path"),
        ("jenkins", "/srv", "dock er", "builder.group"),
    ],
)
def test_agent_user_script_refuses_bad_names(
    user: str, remote_root: str, group: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ensure_agent_user_script(user, remote_root, group)
