"""provision-runners on a REAL arm64 host (Debian 13), both roles, logged in as a non-root
user with sudo: every binary of the host is arm64 run under qemu-user, so its `uname -m`, its
sudo, its apt-get, its Java 21 and the gitlab-runner service it runs are arm64 code. That is
the slow half of the fleet (apt under QEMU: a few minutes), so it has a test of its own.

Not real here: GitLab and Jenkins (local HTTP fakes of their documented REST APIs,
tests/support/gitlab_fake.py and jenkins_fake.py) and the gitlab-runner binary (a stand-in
script served over loopback, tests/support/runner_standin.py) — served ONLY under the arm64
download name, so a host that asked for another arch's binary would fail to install it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Lab, own_host
from tests.support.e2e import FleetCommands, runner_downloads, runner_processes, server_sections
from tests.support.gitlab_fake import GitLabFake
from tests.support.jenkins_fake import FakeJenkins
from tests.support.runner_standin import STANDIN_SCRIPT
from toolkit.lab.hosts import LabHost, LabUser

pytestmark = pytest.mark.integration

API_TOKEN = "glpat-arm64-e2e-5c2d"
JENKINS_TOKEN = "77cd-jenkins-arm64-T0K"
ADDRESS = "127.0.0.72"


@pytest.fixture
def fresh_arm64(lab: Lab, tmp_path: Path) -> Iterator[tuple[LabHost, Path]]:
    """An arm64 Debian 13 host of its own, with a `ci` login whose sudo needs no password:
    provisioning installs a builder, Java 21 and the gitlab-runner service."""
    with own_host(
        lab, tmp_path, "prov-arm64", "arm64", ADDRESS, suite="trixie", users=[LabUser("ci")]
    ) as made:
        yield made


def test_arm64_host_provisioned_for_real_then_no_change(
    lab: Lab, fresh_arm64: tuple[LabHost, Path], tmp_path: Path
) -> None:
    host, known_hosts = fresh_arm64
    standin = STANDIN_SCRIPT.encode()
    with (
        GitLabFake(token=API_TOKEN, project="platform/builds") as gitlab,
        FakeJenkins(tmp_path / "jenkins", "admin", JENKINS_TOKEN, console=False) as jenkins,
        runner_downloads(standin, "arm64", tmp_path, [host.root]) as downloads,
    ):
        inventory = tmp_path / "fleet.yml"
        inventory.write_text(f"""
ssh: {{user: ci, become: sudo, key: {lab.key}, known_hosts: {known_hosts},
       use_ssh_config: false, connect_timeout: 30}}
builder: {{tool: umoci, install: true}}
{server_sections(gitlab, jenkins, downloads)}
hosts:
  - {{name: {host.name}, address: {host.address}, arch: arm64,
      ssh: {{port: {host.port}}}, roles: [gitlab-runner, jenkins-agent]}}
""")
        fleet = FleetCommands(inventory, gitlab, jenkins, API_TOKEN, JENKINS_TOKEN, timeout=1500)
        run, writes = fleet.run, fleet.writes

        applied = run("provision-runners")
        assert applied.code == 0, applied.stderr
        (report,) = applied.json()["hosts"]
        assert (report["arch"], report["machine"]) == ("arm64", "aarch64")
        assert [change.split(":")[0] for change in report["applied"]] == [
            "install-builder",
            "install-runner",
            "ensure-runner-user",
            "install-runner-service",
            "create-runner",
            "register-runner",
            "set-runner-concurrent",
            "start-runner-service",
            "install-java",
            "create-node",
        ]
        (runner,) = gitlab.runners.values()
        assert runner.tag_list == ["arm64", "native"] and runner.run_untagged is False
        config = jenkins.nodes[host.name]
        assert "<label>arm64</label>" in config
        assert host.host_public_key.split()[1] in config  # the key verified over SSH
        # The service runs (arm64 code under QEMU) and polls GitLab with its own token.
        deadline = time.monotonic() + 120
        while not gitlab.polls_of(runner.id) and time.monotonic() < deadline:
            time.sleep(1)
        assert runner_processes(host), "no `gitlab-runner run` process in the host"
        assert gitlab.polls_of(runner.id), "the arm64 runner never polled GitLab"

        # What the host now has, read by the facts script running as arm64 code.
        facts = run("fleet-facts")
        (found,) = facts.json()["hosts"]
        assert found["machine"] == "aarch64"
        assert found["umoci"] and found["skopeo"] and found["gitlabRunner"]
        assert int(found["java"].split(".")[0]) >= 21, found["java"]
        assert [r["name"] for r in found["runners"]] == [host.name]

        before = writes()
        again = run("provision-runners")
        assert again.code == 0, again.stderr
        assert again.json()["hosts"][0]["noChange"] is True
        assert writes() == before, "a second run changed something"
    fleet.assert_no_token_leaked()
