"""provision-runners / runners-status / deprovision-runners on REAL lab hosts (sshd in amd64
and arm64 roots). GitLab and Jenkins cannot run here: their sides use the local HTTP fakes
(tests/support/gitlab_fake.py, tests/support/jenkins_fake.py — fakes of the documented REST
APIs), or are switched off (--no-gitlab/--no-jenkins), as in the lab demo."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Lab, own_host, write_inventory
from tests.support.cli import Run, archfleet
from tests.support.e2e import FleetCommands, runner_downloads, runner_processes, server_sections
from tests.support.gitlab_fake import GitLabFake
from tests.support.jenkins_fake import FakeJenkins
from tests.support.runner_standin import STANDIN_SCRIPT, STANDIN_VERSION
from toolkit.lab.hosts import LabHost, LabUser, start_host

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
    """A Debian 13 host of its own (it has Java 21 for current Jenkins), with a non-root login
    `ci` whose sudo needs no password — as provisioning logins on real servers are."""
    with own_host(
        lab, tmp_path, "prov-amd64", "amd64", "127.0.0.71", suite="trixie", users=[LabUser("ci")]
    ) as made:
        yield made


def _assert_service_polls(host: LabHost, gitlab: GitLabFake, runner_id: int) -> None:
    """The runner service runs in the host and polls GitLab with THIS runner's token."""
    deadline = time.monotonic() + 60
    while not gitlab.polls_of(runner_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    processes = runner_processes(host)
    assert processes, "no `gitlab-runner run` process in the host"
    assert any("--user gitlab-runner" in p for p in processes), processes
    polls = gitlab.polls_of(runner_id)
    assert polls, f"runner #{runner_id} never polled POST /api/v4/jobs/request"
    assert {p.status for p in polls} == {204}


def test_provision_converges_then_no_change_then_deprovision(
    lab: Lab, fresh_amd64: tuple[LabHost, Path], tmp_path: Path
) -> None:
    """Logged in as `ci` with `become: sudo`, provisioning leaves a runner SERVICE that polls
    the GitLab fake with its own token, a Jenkins node that expects the host key we verified,
    Java >= 21; a re-run changes nothing; a runner deleted on GitLab's side is dropped from the
    host by the next run, which converges to exactly one runner that polls again.

    Not real here: GitLab and Jenkins (tests/support/gitlab_fake.py, jenkins_fake.py: fakes
    of their REST APIs) and gitlab-runner (tests/support/runner_standin.py, a stand-in written
    from gitlab-runner's source: install writes the System V init script, start runs it, run
    polls), downloaded over https from a loopback server whose CA the host trusts."""
    host, known_hosts = fresh_amd64
    standin = STANDIN_SCRIPT.encode()
    with (
        GitLabFake(token=API_TOKEN, project="platform/builds") as gitlab,
        FakeJenkins(tmp_path / "jenkins", "admin", JENKINS_TOKEN, console=False) as jenkins,
        runner_downloads(standin, "amd64", tmp_path, [host.root]) as downloads,
    ):
        inventory = tmp_path / "fleet.yml"

        def write(extra_tags: str) -> None:
            sections = server_sections(
                gitlab, jenkins, downloads, tags=extra_tags, agent_key=lab.public_key
            )
            inventory.write_text(f"""
ssh: {{user: ci, become: sudo, key: {lab.key}, known_hosts: {known_hosts},
       use_ssh_config: false}}
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
            "ensure-runner-user",
            "install-runner-service",
            "create-runner",
            "register-runner",
            "set-runner-concurrent",
            "start-runner-service",
            "install-java",
            "create-node",
        ]
        assert writes() == 0 and not gitlab.runners and not jenkins.nodes

        applied = run("provision-runners")
        assert applied.code == 0, applied.stderr
        report = applied.json()["hosts"][0]
        assert len(report["applied"]) == 10 and report["runnerTags"] == ["amd64", "native"]
        (runner,) = gitlab.runners.values()
        assert (runner.description, runner.tag_list) == (host.name, ["amd64", "native"])
        assert runner.run_untagged is False and runner.locked is True
        assert runner.runner_type == "group_type"
        _assert_service_polls(host, gitlab, runner.id)
        config = jenkins.nodes[host.name]
        assert "<label>amd64</label>" in config and "lab-ssh" in config
        algorithm, key = host.host_public_key.split()[:2]
        assert "ManuallyProvidedKeyVerificationStrategy" in config
        assert algorithm in config and key in config
        facts = run("fleet-facts").json()["hosts"][0]
        assert int(facts["java"].split(".")[0]) >= 21, facts["java"]
        # The controller's key lets it log in as the agent user, with sshd's StrictModes.
        ssh_dir = host.root / "home" / "jenkins" / ".ssh"
        assert (ssh_dir / "authorized_keys").read_text().splitlines() == [lab.public_key.strip()]
        assert stat.S_IMODE((ssh_dir / "authorized_keys").stat().st_mode) == 0o600
        assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700

        before = writes()
        again = run("provision-runners")
        assert again.code == 0, again.stderr
        assert again.json()["hosts"][0]["noChange"] is True, again.json()
        assert writes() == before, "a second run changed something"

        write("native, fast")
        retagged = run("provision-runners")
        assert retagged.code == 0, retagged.stderr
        kinds = [c.split(":")[0] for c in retagged.json()["hosts"][0]["applied"]]
        assert kinds == ["update-runner"]
        assert gitlab.runners[runner.id].tag_list == ["amd64", "native", "fast"]

        # Deleted on GitLab's side (the UI, another tool): the host's `unregister` would get
        # 403 and exit fatally; the next run drops the entry and converges to ONE new runner.
        gitlab.delete_runner(runner.id)
        healed = run("provision-runners")
        assert healed.code == 0, healed.stderr
        kinds = [c.split(":")[0] for c in healed.json()["hosts"][0]["applied"]]
        assert kinds == ["verify-delete-runner", "create-runner", "register-runner"]
        (renewed,) = gitlab.runners.values()
        assert renewed.id != runner.id
        registered = run("fleet-facts").json()["hosts"][0]["runners"]
        assert [r["id"] for r in registered] == [str(renewed.id)]
        _assert_service_polls(host, gitlab, renewed.id)
        settled = run("provision-runners")
        assert settled.json()["hosts"][0]["noChange"] is True, settled.json()

        jenkins.online[host.name] = True
        status = run("runners-status")
        assert status.code == 0, status.stderr
        assert status.json()["arches"] == {"amd64": {"gitlab": True, "jenkins": True}}
        assert status.json()["hosts"][0]["runnerService"] == "running"

        # Deleted on GitLab once more, then deprovisioned: `unregister` would end in 403 and
        # leave config.toml forever; deprovision drops the entry with verify --delete.
        gitlab.delete_runner(renewed.id)
        gone = run("deprovision-runners", "--yes")
        assert gone.code == 0, gone.stderr
        kinds = [c.split(":")[0] for c in gone.json()["hosts"][0]["applied"]]
        assert kinds == ["verify-delete-runner", "delete-node"]
        assert not gitlab.runners and host.name not in jenkins.nodes
        facts = run("fleet-facts")
        assert facts.json()["hosts"][0]["runners"] == []
    fleet.assert_no_token_leaked()


def test_a_sudo_that_wants_a_password_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    """`become: sudo` for a login whose sudo asks for a password: `sudo -n` refuses at once
    and the host's error says what to do — no prompt, no hang, no change."""
    with own_host(
        lab, tmp_path, "prov-pw", "amd64", "127.0.0.73", users=[LabUser("ci", sudo="password")]
    ) as (host, known_hosts):
        inventory = tmp_path / "fleet.yml"
        inventory.write_text(f"""
ssh: {{user: ci, become: sudo, key: {lab.key}, known_hosts: {known_hosts},
       use_ssh_config: false}}
builder: {{tool: buildah, install: false}}
hosts:
  - {{name: {host.name}, address: {host.address}, ssh: {{port: {host.port}}},
      roles: [gitlab-runner]}}
gitlab: {{url: 'https://gitlab.invalid', group: g}}
""")
        run = provision(inventory, "--dry-run", "--no-gitlab", "--json")
        assert run.code == 1
        (failed,) = run.json()["hosts"]
        assert failed["error"].startswith("sudo wants a password for ci (sudo: ")
        assert "NOPASSWD" in failed["error"]


def test_host_lost_mid_registration_rolls_back_and_a_rerun_converges(
    lab: Lab, fresh_amd64: tuple[LabHost, Path], tmp_path: Path
) -> None:
    """sshd (and everything in the host) is killed while `gitlab-runner register` runs: the
    runner just created on GitLab is deleted again, no half registration is left, and a re-run
    after the host is back converges to exactly one runner, then to "no change"."""
    host, known_hosts = fresh_amd64
    # The stand-in takes its time to register, so the kill lands inside that step for sure.
    slow = STANDIN_SCRIPT.replace(
        'register) cmd_register "$@" ;;', 'register) sleep 8; cmd_register "$@" ;;', 1
    )
    assert slow != STANDIN_SCRIPT
    with (
        GitLabFake(token=API_TOKEN, project="platform/builds") as gitlab,
        runner_downloads(slow.encode(), "amd64", tmp_path, [host.root]) as downloads,
    ):
        inventory = tmp_path / "fleet.yml"
        inventory.write_text(f"""
ssh: {{user: root, key: {lab.key}, known_hosts: {known_hosts}, use_ssh_config: false}}
builder: {{tool: buildah, install: true}}
gitlab:
  url: {gitlab.url}
  allow_http: true
  group: {gitlab.group}
  token_env: E2E_GITLAB_TOKEN
  runner_version: "{STANDIN_VERSION}"
  runner_url: "{downloads.base}/v{{version}}/binaries/gitlab-runner-linux-{{arch}}"
  runner_checksums_url: "{downloads.base}/v{{version}}/release.sha256"
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
            host.name,
            "amd64",
            host.address,
            host.port,
            tmp_path,
            authorized_keys=[lab.public_key],
            suite="trixie",
        )
        # The host comes back with what it had (buildah, the slow stand-in); GitLab has nothing.
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert len(gitlab.runners) == 1
        third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert third.returncode == 0, third.stderr
        assert json.loads(third.stdout)["hosts"][0]["noChange"] is True
