"""The node jenkins-casc prints is the node provisioning creates through the API: the same
inventory, once through `JenkinsNodes.ensure_node` against a FAKE Jenkins (tests/support/
jenkins_fake.py: a loopback HTTP server answering the endpoints jenkinsapi calls, storing
each node's config.xml as Jenkins would), once through toolkit/fleet/jenkins_casc.py; the
stored config.xml and the CasC entry must agree on every managed field, the launcher's host
being the controller's jenkins.address for the agent behind a bastion."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.jenkins_fake import FakeJenkins
from tests.unit.test_jenkins_casc import ARM, fleet
from toolkit.fleet.jenkins_agent import JenkinsNodes, agent_node
from toolkit.fleet.jenkins_casc import casc_document, declared_labels, host_keys, plan_casc
from toolkit.fleet.jenkins_config import parse_node_config
from toolkit.inventory import load

pytestmark = pytest.mark.integration

USER = "provisioner"
TOKEN = "casc-T0KEN-not-printed"


@pytest.fixture
def jenkins(tmp_path: Path) -> Iterator[FakeJenkins]:
    with FakeJenkins(tmp_path / "jenkins-home", USER, TOKEN, console=False) as fake:
        yield fake


def test_the_casc_nodes_equal_the_nodes_the_api_path_stores(
    tmp_path: Path, jenkins: FakeJenkins
) -> None:
    inventory = load(fleet(tmp_path, arm_jenkins=ARM))
    assert inventory.jenkins is not None
    settings = replace(inventory.jenkins, url=jenkins.url, allow_http=True)
    nodes = JenkinsNodes.from_settings(
        settings, {settings.user_env: USER, settings.token_env: TOKEN}
    )
    keys = host_keys(inventory.hosts)
    for host in inventory.hosts:
        # What provisioning does per host: labels as planned, the key it verified.
        outcome = nodes.ensure_node(
            agent_node(host, settings, declared_labels(host, inventory), host_key=keys[host.name])
        )
        assert outcome.action == "created"
    document = casc_document(plan_casc(inventory, keys))
    for entry in document["jenkins"]["nodes"]:
        permanent = entry["permanent"]
        ssh = permanent["launcher"]["ssh"]
        stored = parse_node_config(jenkins.nodes[permanent["name"]], node=permanent["name"])
        key = ssh["sshHostKeyVerificationStrategy"]["manuallyProvidedKeyVerificationStrategy"]
        assert (
            stored.labels,
            stored.executors,
            stored.remote_root,
            stored.mode,
            stored.description,
            stored.host,
            stored.port,
            stored.credentials_id,
            stored.host_key,
        ) == (
            tuple(permanent["labelString"].split()),
            permanent["numExecutors"],
            permanent["remoteFS"],
            permanent["mode"],
            permanent["nodeDescription"],
            ssh["host"],
            ssh["port"],
            ssh["credentialsId"],
            key["key"],
        )
    arm = parse_node_config(jenkins.nodes["build-arm64-1"], node="build-arm64-1")
    assert (arm.host, arm.port) == ("arm.agents.example.com", 2222)
    amd = parse_node_config(jenkins.nodes["build-amd64-1"], node="build-amd64-1")
    assert (amd.host, amd.port) == ("10.20.0.11", 22)
