"""jenkins-casc (issue 17 item 8): the inventory's agents as Configuration-as-Code YAML, with
the values provisioning writes through the API (toolkit/fleet/jenkins_agent.py `agent_node`,
jenkins_config.py `node_config_xml`), the host key archfleet verifies (read from known_hosts
without connecting), and the library publish-jenkins-library registers.

No Jenkins runs here: the CasC names are checked against the plugins' sources cited in
toolkit/fleet/jenkins_casc.py, and each node against the config.xml our own API path builds
(tests/integration/test_jenkins_casc_api.py does it through a FAKE Jenkins's stored node)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from tests.support.cli import archfleet
from toolkit.fleet.jenkins_casc import (
    CascError,
    casc_document,
    host_keys,
    known_host_key,
    plan_casc,
    render,
    ssh_hops,
)
from toolkit.fleet.jenkins_config import (
    KNOWN_HOSTS_STRATEGY,
    MANUAL_STRATEGY,
    SSH_LAUNCHER,
    parse_node_config,
)
from toolkit.inventory import load
from toolkit.publish.jenkins_library import LibrarySpec

# Public host keys from the ssh-agents plugin's tests (ManuallyProvidedKeyVerificationStrategyTest).
ED25519 = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIMQPcXch45Uak9iiHt1puffR6LHZxZsHU0iyeyUnf5qW")
ECDSA = (
    "ecdsa-sha2-nistp256",
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMQMVHTpplIuqEcOR8j7wzydDUzXF0Fl82Wl"
    "uEJphpo2JKbJ4DNaL3Zu6bfeDQGuH3hWtG1H0r4ntoDtN940GGA=",
)
LIBRARY = LibrarySpec(name="archfleet", remote="https://git.example.com/platform/archfleet.git")


def fleet(tmp_path: Path, *, verification: str = "manual", arm_jenkins: str = "") -> Path:
    """amd64 reached directly; arm64 behind a bastion on port 2222, reached by the controller
    at `arm_jenkins` (a `jenkins:` mapping, or nothing)."""
    (tmp_path / "key").write_text("")
    known = tmp_path / "known_hosts"
    # The amd64 host has two keys; the first one listed is the one paramiko prefers.
    known.write_text(
        f"10.20.0.11 {' '.join(ECDSA)}\n10.20.0.11 {' '.join(ED25519)}\n"
        f"[10.20.0.21]:2222 {' '.join(ED25519)}\n"
    )
    path = tmp_path / "fleet.yml"
    path.write_text(
        textwrap.dedent(
            f"""
            ssh: {{user: ci, key: {tmp_path / "key"}, known_hosts: {known},
                   use_ssh_config: false}}
            jenkins:
              url: https://jenkins.example.com
              credentials_id: agent-ssh
              remote_root: /srv/agent
              labels: [native]
              host_key_verification: {verification}
            hosts:
              - {{name: build-amd64-1, address: 10.20.0.11, arch: amd64, roles: [jenkins-agent]}}
              - name: build-arm64-1
                address: 10.20.0.21
                arch: arm64
                roles: [jenkins-agent]
                labels: [graviton]
                executors: 4
                ssh: {{port: 2222, jump_host: ci@bastion.example.com}}
            """
        )
        + (f"    jenkins: {arm_jenkins}\n" if arm_jenkins else "")
    )
    return path


ARM = "{address: arm.agents.example.com}"


def casc(path: Path, library: LibrarySpec | None = LIBRARY) -> dict[str, Any]:
    inventory = load(path)
    plan = plan_casc(inventory, host_keys(inventory.hosts), library)
    parsed: dict[str, Any] = yaml.safe_load(render(plan, str(path)))
    return parsed


def test_the_yaml_holds_each_agent_as_a_permanent_ssh_node(tmp_path: Path) -> None:
    document = casc(fleet(tmp_path, arm_jenkins=ARM))
    amd, arm = (entry["permanent"] for entry in document["jenkins"]["nodes"])
    assert amd["name"] == "build-amd64-1" and amd["labelString"] == "amd64 native"
    assert arm["labelString"] == "arm64 native graviton" and arm["numExecutors"] == 4
    assert (amd["remoteFS"], amd["mode"], amd["retentionStrategy"]) == (
        "/srv/agent",
        "EXCLUSIVE",
        "always",
    )
    ssh = arm["launcher"]["ssh"]
    # The controller's address, not the one only the bastion reaches; the port is ssh.port.
    assert (ssh["host"], ssh["port"], ssh["credentialsId"]) == (
        "arm.agents.example.com",
        2222,
        "agent-ssh",
    )
    assert ssh["sshHostKeyVerificationStrategy"] == {
        "manuallyProvidedKeyVerificationStrategy": {"key": " ".join(ED25519)}
    }
    # The first known_hosts entry of the amd64 host: the key paramiko negotiates first.
    amd_strategy = amd["launcher"]["ssh"]["sshHostKeyVerificationStrategy"]
    assert amd_strategy["manuallyProvidedKeyVerificationStrategy"]["key"] == " ".join(ECDSA)


def test_each_node_matches_the_config_xml_provisioning_writes(tmp_path: Path) -> None:
    """The CasC node and node_config_xml of the same AgentNode (what JenkinsNodes.ensure_node
    uploads) say the same, field by field."""
    inventory = load(fleet(tmp_path, arm_jenkins=ARM))
    plan = plan_casc(inventory, host_keys(inventory.hosts))
    document = casc_document(plan)
    for node, entry in zip(plan.nodes, document["jenkins"]["nodes"], strict=True):
        xml = parse_node_config(node.config_xml(), node=node.name)
        permanent = entry["permanent"]
        ssh = permanent["launcher"]["ssh"]
        strategy = ssh["sshHostKeyVerificationStrategy"]
        assert xml.launcher == SSH_LAUNCHER and xml.host_key_strategy == MANUAL_STRATEGY
        assert (
            permanent["name"],
            permanent["labelString"].split(),
            permanent["numExecutors"],
            permanent["remoteFS"],
            permanent["mode"],
            permanent["nodeDescription"],
            ssh["host"],
            ssh["port"],
            ssh["credentialsId"],
            strategy["manuallyProvidedKeyVerificationStrategy"]["key"],
        ) == (
            xml.name,
            list(xml.labels),
            xml.executors,
            xml.remote_root,
            xml.mode,
            xml.description,
            xml.host,
            xml.port,
            xml.credentials_id,
            xml.host_key,
        )


def test_known_hosts_verification_is_the_bare_strategy_name(tmp_path: Path) -> None:
    document = casc(fleet(tmp_path, verification="known_hosts", arm_jenkins=ARM))
    for entry in document["jenkins"]["nodes"]:
        strategy = entry["permanent"]["launcher"]["ssh"]["sshHostKeyVerificationStrategy"]
        assert strategy == "knownHostsFileKeyVerificationStrategy"
        assert KNOWN_HOSTS_STRATEGY.endswith(".KnownHostsFileKeyVerificationStrategy")


def test_the_library_is_what_publish_jenkins_library_registers(tmp_path: Path) -> None:
    spec = LibrarySpec(
        name="archfleet",
        remote="git@git.example.com:platform/archfleet.git",
        default_version="v1.2.0",
        credentials_id="git-ssh",
    )
    document = casc(fleet(tmp_path, arm_jenkins=ARM), spec)
    [library] = document["unclassified"]["globalLibraries"]["libraries"]
    fields = spec.fields()
    modern = library["retriever"]["modernSCM"]
    assert (library["name"], library["defaultVersion"]) == ("archfleet", "v1.2.0")
    assert (library["implicit"], library["allowVersionOverride"]) == (
        fields["implicit"],
        fields["allowVersionOverride"],
    )
    assert modern["libraryPath"] == fields["libraryPath"] == "jenkins/"
    assert modern["scm"]["git"] == {
        "remote": "git@git.example.com:platform/archfleet.git",
        "credentialsId": "git-ssh",
        "traits": ["gitBranchDiscovery", "gitTagDiscovery"],
    }
    assert "unclassified" not in casc(fleet(tmp_path, arm_jenkins=ARM), None)


def test_a_hashed_known_hosts_entry_is_found(tmp_path: Path) -> None:
    inventory = load(fleet(tmp_path, arm_jenkins=ARM))
    known = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("[10.20.0.21]:2222")
    known.write_text(f"{hashed} {' '.join(ECDSA)}\n")
    assert known_host_key(inventory.hosts[1]) == ECDSA
    assert known_host_key(inventory.hosts[0]) is None


def test_hosts_without_a_key_or_an_arch_are_all_named(tmp_path: Path) -> None:
    path = fleet(tmp_path, arm_jenkins=ARM)
    (tmp_path / "known_hosts").write_text(f"10.20.0.11 {' '.join(ED25519)}\n")
    path.write_text(path.read_text().replace("arch: amd64, ", ""))
    inventory = load(path)
    with pytest.raises(CascError) as caught:
        plan_casc(inventory, host_keys(inventory.hosts))
    first, second = caught.value.problems
    assert "hosts[0] (build-amd64-1): no arch:" in first
    assert "hosts[1] (build-arm64-1): no host key for it in its known_hosts" in second
    assert "--accept-new-host-keys" in second


def test_the_task_prints_yaml_and_refuses_a_jump_host_agent_without_address(
    tmp_path: Path,
) -> None:
    good = archfleet(
        "jenkins-casc",
        "--inventory",
        str(fleet(tmp_path, arm_jenkins=ARM)),
        "--library-repo",
        LIBRARY.remote,
    )
    assert good.code == 0, good.stderr
    document = yaml.safe_load(good.stdout)
    assert [n["permanent"]["name"] for n in document["jenkins"]["nodes"]] == [
        "build-amd64-1",
        "build-arm64-1",
    ]
    assert document["unclassified"]["globalLibraries"]["libraries"][0]["name"] == "archfleet"
    bad = archfleet("jenkins-casc", "--inventory", str(fleet(tmp_path)))
    assert bad.code == 1 and bad.stdout == ""
    assert "hosts[1].ssh.jump_host" in bad.stderr
    assert "cannot use the jump host" in bad.stderr


def test_the_api_path_refuses_a_node_planned_with_another_host_key_check(tmp_path: Path) -> None:
    """ensure_node writes with its client's jenkins.host_key_verification: a node planned with
    another one is refused before any request (the stand-in Jenkins object has no methods)."""
    from toolkit.fleet.jenkins_agent import JenkinsAgentError, JenkinsNodes, agent_node

    inventory = load(fleet(tmp_path, arm_jenkins=ARM))
    assert inventory.jenkins is not None
    node = agent_node(inventory.hosts[0], inventory.jenkins, ("amd64",), host_key=ECDSA)
    nodes = JenkinsNodes(
        object(),
        url="https://jenkins.example.com",
        user="u",
        credentials_hint="J_USER / J_TOKEN",
        host_key_verification="known_hosts",
    )
    with pytest.raises(JenkinsAgentError, match="planned with host key verification 'manual'"):
        nodes.ensure_node(node)


def test_a_proxy_jump_from_the_ssh_config_needs_a_jenkins_address_too(tmp_path: Path) -> None:
    """The inventory check sees only ssh.jump_host; jenkins-casc also asks the ssh config
    (as connect.connection_for reads it: Fabric's gateway), without connecting."""
    config = tmp_path / "ssh_config"
    config.write_text("Host 10.20.0.21\n  ProxyJump ci@bastion.example.com:2200\n")
    path = fleet(tmp_path)
    text = path.read_text().replace("use_ssh_config: false", f"ssh_config_file: {config}")
    path.write_text(text.replace(", jump_host: ci@bastion.example.com", ""))
    inventory = load(path)
    with pytest.raises(CascError) as caught:
        plan_casc(inventory, host_keys(inventory.hosts), hops=ssh_hops(inventory.hosts))
    [problem] = caught.value.problems
    assert "hosts[1] (build-arm64-1): the ssh config reaches it through jump host " in problem
    assert "bastion.example.com:2200" in problem and "hosts[1].jenkins.address" in problem
    path.write_text(path.read_text() + f"    jenkins: {ARM}\n")
    inventory = load(path)
    plan = plan_casc(inventory, host_keys(inventory.hosts), hops=ssh_hops(inventory.hosts))
    assert [n.host for n in plan.nodes] == ["10.20.0.11", "arm.agents.example.com"]


def test_a_literal_dollar_brace_is_escaped_from_casc_substitution(tmp_path: Path) -> None:
    """CasC would replace ${HOME} by a variable of the controller; ^${ is its escape."""
    path = fleet(tmp_path, arm_jenkins=ARM)
    path.write_text(path.read_text().replace("/srv/agent", "/srv/${HOME}/agent"))
    remote = casc(path)["jenkins"]["nodes"][0]["permanent"]["remoteFS"]
    assert remote == "/srv/^${HOME}/agent"
