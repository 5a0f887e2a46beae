"""Jenkins agent nodes through jenkinsapi against a FAKE Jenkins (tests/support/jenkins_fake.py):
a loopback HTTP server answering the endpoints jenkinsapi really calls for nodes
(/api/python, /crumbIssuer/api/python, /computer/api/python, /computer/doCreateItem,
/computer/<name>/config.xml GET and POST, /computer/<name>/doDelete, /computer/<name>/api/python)
with basic auth and crumbs, and the failure answers of Jenkins core (400 "Node types do not
match", 403 per Computer permission). No Jenkins server can run on these machines.

One test reads the written config.xml with the real XStream (Debian's xstream 1.4.20, the
library Jenkins serialises nodes with) into classes laid out field for field like the
ssh-agents plugin's (SSHLauncher, ManuallyProvidedKeyVerificationStrategy, HostKey)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from jenkinsapi.custom_exceptions import JenkinsAPIException

from tests.support.jenkins_fake import FakeJenkins, stored_host_key
from toolkit.fleet.jenkins_agent import JenkinsAgentError, JenkinsNodes
from toolkit.fleet.jenkins_config import (
    KNOWN_HOSTS_STRATEGY,
    MANUAL_STRATEGY,
    SSH_LAUNCHER,
    node_config_xml,
    parse_node_config,
)
from toolkit.fleet.plan import NodeState
from toolkit.inventory import JenkinsSettings

pytestmark = pytest.mark.integration

USER = "provisioner"
TOKEN = "11f0-agent-api-T0KEN-5ecret"
NODE = "build-amd64"
SPEC: dict[str, object] = {
    "address": "127.0.0.41",
    "port": 2222,
    "labels": ("amd64", "linux"),
    "executors": 2,
    "remote_root": "/var/lib/jenkins-agent",
    "credentials_id": "agent-ssh",
    # A public key from the ssh-agents plugin's tests (ManuallyProvidedKeyVerificationStrategyTest).
    "host_key": (
        "ssh-ed25519",
        "AAAAC3NzaC1lZDI1NTE5AAAAIMQPcXch45Uak9iiHt1puffR6LHZxZsHU0iyeyUnf5qW",
    ),
}
KEY = " ".join(SPEC["host_key"])  # type: ignore[arg-type]
NEW_KEY = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMQMVHTpplIuqEcOR8j7"
    "wzydDUzXF0Fl82WluEJphpo2JKbJ4DNaL3Zu6bfeDQGuH3hWtG1H0r4ntoDtN940GGA="
)


@pytest.fixture
def jenkins(tmp_path: Path) -> Iterator[FakeJenkins]:
    with FakeJenkins(tmp_path / "jenkins-home", USER, TOKEN, console=False) as fake:
        yield fake


@pytest.fixture
def settings(jenkins: FakeJenkins) -> JenkinsSettings:
    return JenkinsSettings(
        url=jenkins.url, credentials_id="agent-ssh", user_env="J_USER", token_env="J_TOKEN"
    )


@pytest.fixture
def nodes(settings: JenkinsSettings, caplog: pytest.LogCaptureFixture) -> JenkinsNodes:
    # Everything jenkinsapi, requests and urllib3 log is captured, and scanned for the token.
    caplog.set_level(logging.DEBUG)
    return JenkinsNodes.from_settings(settings, {"J_USER": USER, "J_TOKEN": TOKEN})


@pytest.fixture(autouse=True)
def no_token_in_output(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    yield
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert TOKEN not in caplog.text


def create(nodes: JenkinsNodes, name: str = NODE, **overrides: object) -> NodeState:
    return nodes.create(name, **{**SPEC, **overrides})  # type: ignore[arg-type]


def test_create_then_find_round_trip(jenkins: FakeJenkins, nodes: JenkinsNodes) -> None:
    assert nodes.find(NODE) is None
    state = create(nodes)
    assert state == NodeState(
        name=NODE,
        labels=("amd64", "linux"),
        executors=2,
        remote_root="/var/lib/jenkins-agent",
        credentials_id="agent-ssh",
        online=False,
        host_key=KEY,
        host_key_strategy=MANUAL_STRATEGY,
        launcher_host="127.0.0.41",  # read back, so a moved jenkins.address plans update-node
        launcher_port=2222,
    )
    stored = parse_node_config(jenkins.nodes[NODE], node=NODE)
    assert stored.launcher == SSH_LAUNCHER and stored.mode == "EXCLUSIVE"
    assert (stored.host, stored.port) == ("127.0.0.41", 2222)
    assert stored.host_key_strategy == MANUAL_STRATEGY
    assert stored_host_key(jenkins.nodes[NODE]) == KEY
    # Created through jenkinsapi (doCreateItem), then given its whole config.xml.
    writes = [r.path for r in jenkins.writes()]
    assert writes == ["/computer/doCreateItem", f"/computer/{NODE}/config.xml"]


def test_online_state_and_labels_for_runners_status(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    create(nodes)
    create(nodes, "build-arm64", labels=("arm64", "linux"))
    assert nodes.is_online(NODE) is False
    jenkins.online[NODE] = True
    assert nodes.is_online(NODE) is True
    found = nodes.find(NODE)
    assert found is not None and found.online
    by_label = nodes.online_by_label()
    assert by_label["amd64"] is True and by_label["linux"] is True
    assert by_label["arm64"] is False
    assert NODE not in by_label  # a node's self-label is not an arch label


def test_creating_an_existing_node_is_refused(jenkins: FakeJenkins, nodes: JenkinsNodes) -> None:
    create(nodes)
    before = jenkins.nodes[NODE]
    with pytest.raises(JenkinsAgentError, match=f"node '{NODE}' already exists"):
        create(nodes, labels=("other",))
    assert jenkins.nodes[NODE] == before


def test_an_existing_node_is_reconciled_and_a_second_run_changes_nothing(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    # Made by hand: the way jenkinsapi's create_node makes one (JNLP launcher), old labels.
    jenkins_api = nodes._jenkins
    jenkins_api.create_node(NODE, num_executors=1, remote_fs="/home/jenkins", labels="old amd64")
    outcome = nodes.ensure(NODE, **SPEC)  # type: ignore[arg-type]
    assert outcome.action == "updated"
    assert "labels: 'old amd64' -> 'amd64 linux'" in outcome.differences
    assert "executors: 1 -> 2" in outcome.differences
    assert f"launcher: hudson.slaves.JNLPLauncher -> {SSH_LAUNCHER}" in outcome.differences
    assert outcome.state.labels == ("amd64", "linux") and outcome.state.executors == 2
    stored = parse_node_config(jenkins.nodes[NODE], node=NODE)
    assert stored.launcher == SSH_LAUNCHER and stored.credentials_id == "agent-ssh"

    mark = len(jenkins.requests)
    again = nodes.ensure(NODE, **SPEC)  # type: ignore[arg-type]
    assert (again.action, again.differences) == ("unchanged", ())
    assert [r for r in jenkins.requests[mark:] if r.method == "POST"] == []


def test_changed_labels_are_updated_keeping_the_rest(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    create(nodes)
    # Something an admin added by hand must survive our update.
    jenkins.nodes[NODE] = jenkins.nodes[NODE].replace(
        "<nodeProperties />",
        "<nodeProperties><custom.Property>kept</custom.Property></nodeProperties>",
    )
    changed = nodes.update(
        NODE,
        labels=("amd64", "gpu"),
        executors=4,
        remote_root="/srv/agent",
        credentials_id="agent-ssh-2",
    )
    assert "labels: 'amd64 linux' -> 'amd64 gpu'" in changed
    found = nodes.find(NODE)
    assert found is not None
    assert (found.labels, found.executors) == (("amd64", "gpu"), 4)
    assert (found.remote_root, found.credentials_id) == ("/srv/agent", "agent-ssh-2")
    assert "<custom.Property>kept</custom.Property>" in jenkins.nodes[NODE]
    assert nodes.online_by_label().get("linux") is None


def test_delete(jenkins: FakeJenkins, nodes: JenkinsNodes) -> None:
    create(nodes)
    assert nodes.delete(NODE) is True
    assert NODE not in jenkins.nodes and nodes.find(NODE) is None
    assert nodes.delete(NODE) is False
    # jenkinsapi tries GET first; current Jenkins answers 405 and it POSTs.
    assert [(r.method, r.status) for r in jenkins.requests if r.path.endswith("/doDelete")] == [
        ("GET", 405),
        ("POST", 302),
    ]


def test_a_failed_config_upload_after_create_rolls_back(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    jenkins.fail_once("POST", f"/computer/{NODE}/config.xml", 500)
    with pytest.raises(JenkinsAgentError) as error:
        create(nodes)
    message = str(error.value)
    assert f"writing node '{NODE}' config.xml" in message and "HTTP 500" in message
    assert "was deleted again" in message
    assert NODE not in jenkins.nodes
    # A re-run then converges.
    assert create(nodes).labels == ("amd64", "linux")


def test_wrong_credentials_are_a_clear_error_without_the_token(settings: JenkinsSettings) -> None:
    wrong = "wrong-" + TOKEN
    with pytest.raises(JenkinsAgentError) as error:
        JenkinsNodes.from_settings(settings, {"J_USER": USER, "J_TOKEN": wrong})
    message = str(error.value)
    assert "HTTP 401" in message and "J_USER / J_TOKEN" in message
    assert TOKEN not in message and wrong not in message and TOKEN not in repr(error.value)


def test_missing_variables_are_named(settings: JenkinsSettings) -> None:
    with pytest.raises(JenkinsAgentError, match="set J_TOKEN in the environment"):
        JenkinsNodes.from_settings(settings, {"J_USER": USER})
    with pytest.raises(JenkinsAgentError, match="set J_USER and J_TOKEN"):
        JenkinsNodes.from_settings(settings, {})


def test_the_token_is_in_no_repr_or_error(
    jenkins: FakeJenkins, nodes: JenkinsNodes, caplog: pytest.LogCaptureFixture
) -> None:
    assert TOKEN not in repr(nodes) and TOKEN not in str(nodes)
    jenkins.fail_once("GET", "/computer/api/python", 403)
    with pytest.raises(JenkinsAgentError) as error:
        nodes.find(NODE)
    assert "HTTP 403" in str(error.value) and TOKEN not in str(error.value)
    with pytest.raises(JenkinsAgentError, match="HTTP 404"):
        nodes.is_online("no-such-node")
    # The scan of the captured logs means something: jenkinsapi's debug lines are in there.
    assert "HTTP GET" in caplog.text


def test_hostile_values_reach_jenkins_intact(jenkins: FakeJenkins, nodes: JenkinsNodes) -> None:
    labels = ("</label><script>", "a&b", "'q'")
    state = create(nodes, labels=labels, remote_root='/srv/a "b"\n<c>', credentials_id="id&<>")
    assert state.labels == labels
    assert state.remote_root == '/srv/a "b"\n<c>' and state.credentials_id == "id&<>"
    with pytest.raises(JenkinsAgentError, match="node name 'x/y'"):
        create(nodes, "x/y")


def test_when_the_rollback_fails_too_the_error_says_to_delete_by_hand(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    jenkins.fail_once("POST", f"/computer/{NODE}/config.xml", 500)
    jenkins.fail_once("POST", f"/computer/{NODE}/doDelete", 503)
    with pytest.raises(JenkinsAgentError) as error:
        create(nodes)
    message = str(error.value)
    assert "deleting the half-created node" in message and "HTTP 503" in message
    assert "delete it by hand" in message


def test_a_refused_create_leaves_nothing(jenkins: FakeJenkins, nodes: JenkinsNodes) -> None:
    jenkins.fail_once("POST", "/computer/doCreateItem", 403)
    with pytest.raises(JenkinsAgentError, match=f"creating node '{NODE}'.*HTTP 403"):
        create(nodes)
    assert jenkins.nodes == {}


def test_one_node_listing_serves_a_whole_fleet_command(
    jenkins: FakeJenkins, nodes: JenkinsNodes, settings: JenkinsSettings
) -> None:
    """A fleet command connects (one listing of the nodes, also the credentials check) and
    plans every host against that listing: one config.xml per existing node, nothing else."""
    create(nodes, "build-a")
    create(nodes, "build-b")
    jenkins.online["build-b"] = True
    mark = len(jenkins.requests)
    fresh = JenkinsNodes.from_settings(settings, {"J_USER": USER, "J_TOKEN": TOKEN})
    listing = fresh.snapshot()
    found = {name: fresh.find(name, listing=listing) for name in ("build-a", "build-b", "new")}
    assert [r.path for r in jenkins.requests[mark:]] == [
        "/computer/api/python",
        "/computer/build-a/config.xml",
        "/computer/build-b/config.xml",
    ]
    a, b = found["build-a"], found["build-b"]
    assert a is not None and not a.online and a.labels == ("amd64", "linux")
    assert b is not None and b.online and found["new"] is None


# ---------------------------------------------------------------- host keys and launching


def test_a_node_with_the_verified_key_connects_and_a_known_hosts_one_does_not(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    """The fake launches as the plugin's verifiers decide: the verified key is accepted at
    once; the controller's (empty) known_hosts refuses the same host — the bug this fixes."""
    jenkins.launch_on_create = True
    jenkins.host_keys[("127.0.0.41", 2222)] = KEY
    create(nodes)
    assert jenkins.online[NODE] is True and jenkins.launch_log[NODE] == "Key is trusted"

    nodes.host_key_verification = "known_hosts"
    create(nodes, "by-known-hosts", host_key=None)
    stored = parse_node_config(jenkins.nodes["by-known-hosts"], node="by-known-hosts")
    assert stored.host_key_strategy == KNOWN_HOSTS_STRATEGY
    assert jenkins.online["by-known-hosts"] is False
    assert (
        "No entry currently exists in the Known Hosts file" in jenkins.launch_log["by-known-hosts"]
    )


def test_a_reinstalled_host_gets_its_new_key_and_connects_again(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    jenkins.launch_on_create = True
    jenkins.host_keys[("127.0.0.41", 2222)] = KEY
    create(nodes)
    jenkins.host_keys[("127.0.0.41", 2222)] = NEW_KEY  # reinstalled: a new host key
    assert jenkins.launch(NODE) is False and "not trusted" in jenkins.launch_log[NODE]
    algorithm, _, encoded = NEW_KEY.partition(" ")
    outcome = nodes.ensure(NODE, **{**SPEC, "host_key": (algorithm, encoded)})  # type: ignore[arg-type]
    assert outcome.action == "updated"
    assert [d.split(":")[0] for d in outcome.differences] == ["host key"]
    assert outcome.state.host_key == NEW_KEY
    assert jenkins.online[NODE] is True  # the node connects with the new key
    again = nodes.ensure(NODE, **{**SPEC, "host_key": (algorithm, encoded)})  # type: ignore[arg-type]
    assert again.action == "unchanged"


def test_manual_verification_without_a_key_is_refused_before_any_write(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    with pytest.raises(JenkinsAgentError, match="needs the host key archfleet verified"):
        create(nodes, host_key=None)
    assert jenkins.writes() == []


# ---------------------------------------------------------------- Jenkins' failure answers


def test_posting_another_node_type_is_a_400_not_a_500(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    """Computer.updateByXml: "Node types do not match" is errorWithoutStack(SC_BAD_REQUEST)."""
    create(nodes)
    before = jenkins.nodes[NODE]
    cloud = before.replace("<slave>", "<hudson.slaves.EphemeralNode>").replace(
        "</slave>", "</hudson.slaves.EphemeralNode>"
    )
    with pytest.raises(JenkinsAPIException) as error:
        nodes._node(NODE).upload_config(cloud)
    assert "status=400" in str(error.value) and "Node types do not match" in str(error.value)
    assert jenkins.requests[-1].status == 400 and jenkins.nodes[NODE] == before


def test_without_configure_permission_an_update_is_a_clear_403(
    jenkins: FakeJenkins, nodes: JenkinsNodes
) -> None:
    create(nodes)
    before = jenkins.nodes[NODE]
    jenkins.denied = {"Configure"}
    with pytest.raises(JenkinsAgentError) as error:
        nodes.update(NODE, **{**SPEC, "labels": ("amd64", "other")})  # type: ignore[arg-type]
    message = str(error.value)
    assert f"writing node '{NODE}' config.xml" in message and "HTTP 403" in message
    assert "lacks Agent/Create, Configure or Delete" in message
    assert jenkins.nodes[NODE] == before
    # Reading still works: ExtendedRead is its own permission (implied by Configure).
    assert nodes.find(NODE) is not None
    jenkins.denied = {"Configure", "ExtendedRead"}
    with pytest.raises(JenkinsAgentError, match="HTTP 403"):
        nodes.find(NODE)


def test_an_unknown_node_config_is_404(jenkins: FakeJenkins, nodes: JenkinsNodes) -> None:
    with pytest.raises(JenkinsAPIException) as error:
        nodes._node("no-such-node").upload_config(node_config_xml("no-such-node", **SPEC))  # type: ignore[arg-type]
    assert "status=404" in str(error.value)
    assert jenkins.requests[-1].status == 404


# ---------------------------------------------------------------- read by the real XStream

# Field for field as in ssh-agents-plugin: SSHLauncher.java (host, port, credentialsId, the
# public Integer launchTimeoutSeconds/maxNumRetries/retryWaitTime,
# sshHostKeyVerificationStrategy, tcpNoDelay), verifiers/ManuallyProvidedKeyVerificationStrategy
# .java (HostKey key) and verifiers/HostKey.java (String algorithm, byte[] key). Stand-ins, so
# that only the XML layout is under test; unknown elements would make XStream fail.
_JAVA_STUBS = {
    "hudson/plugins/sshslaves/SSHLauncher.java": """package hudson.plugins.sshslaves;
public class SSHLauncher {
  private String host; private int port; private String credentialsId;
  public Integer launchTimeoutSeconds; public Integer maxNumRetries; public Integer retryWaitTime;
  private hudson.plugins.sshslaves.verifiers.SshHostKeyVerificationStrategy
      sshHostKeyVerificationStrategy;
  private Boolean tcpNoDelay;
  public hudson.plugins.sshslaves.verifiers.SshHostKeyVerificationStrategy strategy() {
    return sshHostKeyVerificationStrategy; }
  public String where() { return host + ":" + port + " " + credentialsId + " " + tcpNoDelay
    + " " + launchTimeoutSeconds + "/" + maxNumRetries + "/" + retryWaitTime; }
}""",
    "hudson/plugins/sshslaves/verifiers/SshHostKeyVerificationStrategy.java": (
        "package hudson.plugins.sshslaves.verifiers;\n"
        "public abstract class SshHostKeyVerificationStrategy {}"
    ),
    "hudson/plugins/sshslaves/verifiers/KnownHostsFileKeyVerificationStrategy.java": (
        "package hudson.plugins.sshslaves.verifiers;\n"
        "public class KnownHostsFileKeyVerificationStrategy\n"
        "    extends SshHostKeyVerificationStrategy {}"
    ),
    "hudson/plugins/sshslaves/verifiers/ManuallyProvidedKeyVerificationStrategy.java": """
package hudson.plugins.sshslaves.verifiers;
public class ManuallyProvidedKeyVerificationStrategy extends SshHostKeyVerificationStrategy {
  private final HostKey key = null;
  public String getKey() {  // as the plugin's getKey()
    return key.getAlgorithm() + " " + java.util.Base64.getEncoder().encodeToString(key.getKey());
  }
}""",
    "hudson/plugins/sshslaves/verifiers/HostKey.java": """
package hudson.plugins.sshslaves.verifiers;
public final class HostKey implements java.io.Serializable {
  private final String algorithm; private final byte[] key;
  public HostKey(String algorithm, byte[] key) { this.algorithm = algorithm; this.key = key; }
  public String getAlgorithm() { return algorithm; }
  public byte[] getKey() { return key.clone(); }
}""",
    "ReadLauncher.java": """
import com.thoughtworks.xstream.XStream;
import com.thoughtworks.xstream.io.xml.DomDriver;
import hudson.plugins.sshslaves.SSHLauncher;
import hudson.plugins.sshslaves.verifiers.*;
public class ReadLauncher {
  public static void main(String[] args) throws Exception {
    XStream xs = new XStream(new DomDriver());
    xs.allowTypesByWildcard(new String[] {"hudson.**"});
    String xml = new String(System.in.readAllBytes(), "UTF-8");
    SSHLauncher launcher = (SSHLauncher) xs.fromXML(xml);
    SshHostKeyVerificationStrategy s = launcher.strategy();
    System.out.println(launcher.where());
    System.out.println(s.getClass().getName());
    if (s instanceof ManuallyProvidedKeyVerificationStrategy) {
      System.out.println(((ManuallyProvidedKeyVerificationStrategy) s).getKey());
    }
  }
}""",
}
XSTREAM_JAR = Path("/usr/share/java/xstream.jar")


@pytest.fixture(scope="module")
def xstream_reader(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    if not XSTREAM_JAR.exists() or shutil.which("javac") is None:
        pytest.fail("needs javac and Debian's libxstream-java (/usr/share/java/xstream.jar)")
    src = tmp_path_factory.mktemp("xstream-src")
    out = tmp_path_factory.mktemp("xstream-classes")
    files = []
    for relative, text in _JAVA_STUBS.items():
        path = src / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files.append(str(path))
    subprocess.run(
        ["javac", "-cp", str(XSTREAM_JAR), "-d", str(out), *files],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return ["java", "-cp", f"{out}:{XSTREAM_JAR}", "ReadLauncher"]


def _read_launcher(reader: list[str], config_xml: str) -> list[str]:
    """The <launcher> element of a config.xml, unmarshalled by XStream as Jenkins does
    (the class attribute names the class; fields by element name)."""
    import xml.etree.ElementTree as ET

    launcher = ET.fromstring(config_xml.encode()).find("launcher")  # noqa: S314
    assert launcher is not None
    done = subprocess.run(
        reader,
        input=ET.tostring(launcher, encoding="unicode")
        .replace("<launcher ", "<root ", 1)
        .rsplit("</launcher>", 1)[0]
        + "</root>",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_the_plugins_xstream_layout_reads_the_written_key(xstream_reader: list[str]) -> None:
    xml = node_config_xml(NODE, **SPEC)  # type: ignore[arg-type]
    where, strategy, key = _read_launcher(xstream_reader, xml)
    assert where == "127.0.0.41:2222 agent-ssh true 60/10/15"
    assert strategy == MANUAL_STRATEGY
    assert key == KEY  # HostKey's algorithm and bytes, exactly the verified key

    by_file = node_config_xml(
        NODE, **{**SPEC, "host_key": None, "host_key_verification": "known_hosts"}
    )  # type: ignore[arg-type]
    assert _read_launcher(xstream_reader, by_file)[1:] == [KNOWN_HOSTS_STRATEGY]
