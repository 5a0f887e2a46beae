"""provision-runners / runners-status / deprovision-runners on REAL lab hosts (sshd in amd64
and arm64 roots). GitLab and Jenkins cannot run here: their sides use the local HTTP fakes
(tests/support/gitlab_fake.py, tests/support/jenkins_fake.py — fakes of the documented REST
APIs), or are switched off (--no-gitlab/--no-jenkins), as in the lab demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Lab, own_host, write_inventory
from tests.support.cli import Run, archfleet
from tests.support.e2e import FleetCommands, server_sections
from tests.support.gitlab_fake import GitLabFake
from tests.support.jenkins_fake import FakeJenkins
from tests.support.runner_standin import STANDIN_SCRIPT, serve_file
from toolkit.lab.hosts import LabHost, start_host

pytestmark = pytest.mark.integration


def provision(inventory: Path, *args: str) -> Run:
    return archfleet("provision-runners", "--inventory", str(inventory), *args, timeout=600)


def test_dry_run_with_servers_off_plans_per_host_and_changes_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    inventory = write_inventory(lab, tmp_path / "lab.yml")
    run = provision(inventory, "--dry-run", "--no-gitlab", "--no-jenkins", "--json")
    # buildah is missing in a fresh lab root and install is false: a clear per-host refusal.
    assert run.code == 1
    hosts = {h["host"]: h for h in run.json()["hosts"]}
    for host in lab.hosts.values():
        error = hosts[host.name]["error"]
        assert "buildah with skopeo is missing and builder.install is false" in error
    assert "GitLab side off" in run.stderr and "Jenkins side off" in run.stderr


def test_declared_arch_mismatch_is_refused_and_others_go_on(lab: Lab, tmp_path: Path) -> None:
    inventory = write_inventory(lab, tmp_path / "lab.yml", declared={"arm64": "amd64"})
    inventory.write_text(inventory.read_text().replace("install: false", "install: true"))
    run = provision(inventory, "--dry-run", "--no-gitlab", "--no-jenkins", "--json")
    assert run.code == 1
    hosts = {h["host"]: h for h in run.json()["hosts"]}
    arm = hosts[lab.hosts["arm64"].name]
    assert "declared arch amd64 but the host is arm64" in arm["error"]
    assert "native or nothing" in arm["error"]
    amd = hosts[lab.hosts["amd64"].name]
    assert amd["arch"] == "amd64" and amd["applied"] == []
    assert amd["planned"] == ["install-builder: install buildah with skopeo from the OS packages"]


def test_a_server_side_that_cannot_be_set_up_is_one_error_and_no_host_goes_on(
    lab: Lab, tmp_path: Path
) -> None:
    """The hosts connect and read facts while the servers are set up; when Jenkins cannot be
    reached (nothing listens on 127.0.0.1:9), that is ONE error, exit 1, and no host goes past
    its facts: none is reported, nothing is printed as JSON."""
    inventory = write_inventory(lab, tmp_path / "lab.yml")
    run = archfleet(
        "provision-runners",
        "--inventory",
        str(inventory),
        "--no-gitlab",
        "--json",
        env={"JENKINS_USER": "admin", "JENKINS_API_TOKEN": "unused-token-0d1e"},
        timeout=600,
    )
    assert run.code == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "connecting to Jenkins at http://127.0.0.1:9" in errors[0]
    assert run.stdout == ""
    for host in lab.hosts.values():
        assert f"{host.name}:" not in run.stderr
    assert "unused-token-0d1e" not in run.stderr


API_TOKEN = "glpat-provision-e2e-7f31"
JENKINS_TOKEN = "11ab-jenkins-provision-T0K"


@pytest.fixture
def fresh_amd64(lab: Lab, tmp_path: Path) -> Iterator[tuple[LabHost, Path]]:
    """A host of its own: provisioning installs buildah and Java, which the shared lab
    hosts must not get."""
    with own_host(lab, tmp_path, "prov-amd64", "amd64", "127.0.0.71") as made:
        yield made


def test_provision_converges_then_no_change_then_deprovision(
    lab: Lab, fresh_amd64: tuple[LabHost, Path], tmp_path: Path
) -> None:
    host, known_hosts = fresh_amd64
    standin = STANDIN_SCRIPT.encode()
    with (
        GitLabFake(token=API_TOKEN, project="platform/builds") as gitlab,
        FakeJenkins(tmp_path / "jenkins", "admin", JENKINS_TOKEN, console=False) as jenkins,
        serve_file(standin, "/gitlab-runner-linux-amd64") as runner_url,
    ):
        inventory = tmp_path / "fleet.yml"

        def write(extra_tags: str) -> None:
            sections = server_sections(
                gitlab, jenkins, runner_url, arch="amd64", standin=standin, tags=extra_tags
            )
            inventory.write_text(f"""
ssh: {{user: root, key: {lab.key}, known_hosts: {known_hosts}, use_ssh_config: false}}
builder: {{tool: buildah, install: true}}
{sections}
hosts:
  - {{name: {host.name}, address: {host.address}, arch: amd64,
      ssh: {{port: {host.port}}}, roles: [gitlab-runner, jenkins-agent]}}
""")

        fleet = FleetCommands(inventory, gitlab, jenkins, API_TOKEN, JENKINS_TOKEN)
        run, writes = fleet.run, fleet.writes

        write("native")
        planned = run("provision-runners", "--dry-run")
        assert planned.code == 0, planned.stderr
        kinds = [c.split(":")[0] for c in planned.json()["hosts"][0]["planned"]]
        assert kinds == [
            "install-builder",
            "install-runner",
            "create-runner",
            "register-runner",
            "install-java",
            "create-node",
        ]
        assert writes() == 0 and not gitlab.runners and not jenkins.nodes

        # As if the SSH launcher connected the agent at once: the report must say so, read
        # after the node was created (before this run there was no node: "offline").
        jenkins.launch_on_create = True
        applied = run("provision-runners")
        assert applied.code == 0, applied.stderr
        report = applied.json()["hosts"][0]
        assert report["agentOnline"] is True
        assert len(report["applied"]) == 6 and report["runnerTags"] == ["amd64", "native"]
        (runner,) = gitlab.runners.values()
        assert (runner.description, runner.tag_list) == (host.name, ["amd64", "native"])
        assert runner.run_untagged is False and runner.locked is True
        assert "<label>amd64</label>" in jenkins.nodes[host.name]
        assert "lab-ssh" in jenkins.nodes[host.name]

        before = writes()
        again = run("provision-runners")
        assert again.code == 0, again.stderr
        assert again.json()["hosts"][0]["noChange"] is True
        assert writes() == before, "a second run changed something"

        write("native, fast")
        retagged = run("provision-runners")
        assert retagged.code == 0, retagged.stderr
        kinds = [c.split(":")[0] for c in retagged.json()["hosts"][0]["applied"]]
        assert kinds == ["update-runner"]
        assert gitlab.runners[runner.id].tag_list == ["amd64", "native", "fast"]

        gitlab.set_online(runner.id)
        jenkins.online[host.name] = True
        status = run("runners-status")
        assert status.code == 0, status.stderr
        assert status.json()["arches"] == {"amd64": {"gitlab": True, "jenkins": True}}

        gone = run("deprovision-runners")
        assert gone.code == 0, gone.stderr
        assert not gitlab.runners and host.name not in jenkins.nodes
        facts = run("fleet-facts")
        assert facts.json()[0]["runners"] == []

        # A node whose agent has not connected yet (the usual case right after creation) is
        # a success, shown as such in the human summary.
        jenkins.launch_on_create = False
        table = run("provision-runners", as_json=False, columns=400)
        assert table.code == 0, table.stderr
        assert host.name in jenkins.nodes and not jenkins.online.get(host.name)
        assert "jenkins agent" in table.stderr and "not yet online" in table.stderr
    fleet.assert_no_token_leaked()


def test_host_lost_mid_registration_rolls_back_and_a_rerun_converges(
    lab: Lab, fresh_amd64: tuple[LabHost, Path], tmp_path: Path
) -> None:
    """sshd (and everything in the host) is killed while `gitlab-runner register` runs: the
    runner just created on GitLab is deleted again, no half registration is left, and a re-run
    after the host is back converges to exactly one runner, then to "no change"."""
    host, known_hosts = fresh_amd64
    # The stand-in takes its time to register, so the kill lands inside that step for sure.
    slow = STANDIN_SCRIPT.replace("register)\n", "register)\n  sleep 8\n", 1).encode()
    with (
        GitLabFake(token=API_TOKEN, project="platform/builds") as gitlab,
        serve_file(slow, "/gitlab-runner-linux-amd64") as runner_url,
    ):
        inventory = tmp_path / "fleet.yml"
        inventory.write_text(f"""
ssh: {{user: root, key: {lab.key}, known_hosts: {known_hosts}, use_ssh_config: false}}
builder: {{tool: buildah, install: true}}
gitlab:
  url: {gitlab.url}
  token_env: E2E_GITLAB_TOKEN
  runner_url: "{runner_url.rsplit("/", 1)[0]}/gitlab-runner-linux-{{arch}}"
hosts:
  - {{name: {host.name}, address: {host.address}, arch: amd64,
      ssh: {{port: {host.port}}}, roles: [gitlab-runner]}}
""")
        env = {**os.environ, "E2E_GITLAB_TOKEN": API_TOKEN}
        command = [
            sys.executable,
            "-m",
            "toolkit",
            "provision-runners",
            "--inventory",
            str(inventory),
            "--json",
        ]
        first = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 300
        while not gitlab.runners and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gitlab.runners, "the runner was never created"
        time.sleep(1)  # now inside the 8 s register
        host.stop()
        out, err = first.communicate(timeout=120)
        assert first.returncode == 1, err
        (failed,) = json.loads(out)["hosts"]
        assert "deleted on GitLab again" in failed["error"]
        assert not gitlab.runners, "a runner without a host registration was left on GitLab"
        assert API_TOKEN not in out + err and "glrt-" not in out + err

        start_host(
            host.name, "amd64", host.address, host.port, tmp_path, authorized_keys=[lab.public_key]
        )
        # The host comes back with what it had (buildah, the slow stand-in); GitLab has nothing.
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert len(gitlab.runners) == 1
        third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert third.returncode == 0, third.stderr
        assert json.loads(third.stdout)["hosts"][0]["noChange"] is True
