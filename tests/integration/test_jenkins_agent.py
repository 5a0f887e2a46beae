"""Jenkins agent nodes through jenkinsapi against a FAKE Jenkins (tests/support/jenkins_fake.py):
a loopback HTTP server answering the endpoints jenkinsapi really calls for nodes
(/api/python, /crumbIssuer/api/python, /computer/api/python, /computer/doCreateItem,
/computer/<name>/config.xml GET and POST, /computer/<name>/doDelete, /computer/<name>/api/python)
with basic auth and crumbs. No Jenkins server can run on these machines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.jenkins_fake import FakeJenkins
from toolkit.fleet.jenkins_agent import JenkinsAgentError, JenkinsNodes
from toolkit.fleet.jenkins_config import (
    KNOWN_HOSTS_STRATEGY,
    SSH_LAUNCHER,
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
}


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
    )
    stored = parse_node_config(jenkins.nodes[NODE], node=NODE)
    assert stored.launcher == SSH_LAUNCHER and stored.mode == "EXCLUSIVE"
    assert (stored.host, stored.port) == ("127.0.0.41", 2222)
    assert stored.host_key_strategy == KNOWN_HOSTS_STRATEGY
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
