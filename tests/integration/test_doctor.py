"""`archfleet doctor` as a user runs it: real SSH to lab hosts, HTTP to the server fakes.

Real: two lab hosts (toolkit/lab/hosts.py) — an amd64 root with a non-root login `ci` whose
sudo needs no password, and an arm64 root whose every binary runs under qemu-user (`uname -m`
says aarch64) — each with its own sshd on 127.0.0.241 / .242; the jump host that is "down" is
127.0.0.249, where nothing listens. The SSH client, host-key checks and jump hops are
archfleet's own (toolkit/fleet/connect.py).

FAKES: GitLab and Jenkins (tests/support/gitlab_fake.py, tests/support/jenkins_fake.py —
loopback HTTP servers written from GitLab's doc/api and lib/api, Jenkins core's Api /
PluginManager / HudsonAuthenticationEntryPoint and the credentials plugin's
CredentialsStoreAction; not GitLab, not Jenkins).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.cli import Run, archfleet
from tests.support.gitlab_fake import GitLabFake
from tests.support.jenkins_fake import SSH_KEY_TYPE, FakeJenkins
from toolkit.lab.hosts import LabHost, LabUser, lab_keypair, start_host, write_known_hosts

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root (chroot, mount)"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("debootstrap", "qemu-aarch64-static")),
        reason="needs debootstrap and qemu-user-static (see GUIDE section 3)",
    ),
]

AMD64, ARM64, NOBODY = "127.0.0.241", "127.0.0.242", "127.0.0.249"
GL_TOKEN = "glpat-doctor-e2e-4a7c19"
J_TOKEN = "11doctor-e2e-jenkins-9Q2"
SHA = "3f0a1c5e9b7d2a4c6e8f0b1d3a5c7e9f1b3d5a7c9e1f3b5d7a9c1e3f5b7d9a1c"


@dataclass(frozen=True)
class DoctorLab:
    key: Path
    known_hosts: Path
    amd64: LabHost
    arm64: LabHost


@pytest.fixture(scope="module")
def doctor_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoctorLab]:
    workdir = tmp_path_factory.mktemp("doctor-lab")
    key, public = lab_keypair(workdir)
    started: list[LabHost] = []
    try:
        amd64 = start_host(
            "dr-amd64",
            "amd64",
            AMD64,
            free_port(AMD64),
            workdir,
            authorized_keys=[public],
            users=[LabUser("ci")],
        )
        started.append(amd64)
        arm64 = start_host(
            "dr-arm64", "arm64", ARM64, free_port(ARM64), workdir, authorized_keys=[public]
        )
        started.append(arm64)
        known_hosts = write_known_hosts(workdir / "known_hosts", started)
        yield DoctorLab(key, known_hosts, amd64, arm64)
    finally:
        for host in started:
            host.remove()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[GitLabFake, FakeJenkins]]:
    with (
        GitLabFake(token=GL_TOKEN, project="platform/builds") as gitlab,
        FakeJenkins(
            tmp_path / "jenkins",
            "admin",
            J_TOKEN,
            console=False,
            credentials={"lab-ssh": SSH_KEY_TYPE},
        ) as jenkins,
    ):
        yield gitlab, jenkins


def write_fleet(
    lab: DoctorLab,
    path: Path,
    gitlab: GitLabFake,
    jenkins: FakeJenkins,
    *,
    arm64_declared: str = "arm64",
    arm64_via_amd64: bool = True,
    extra_hosts: str = "",
) -> Path:
    amd, arm = lab.amd64, lab.arm64
    jump = f", jump_host: 'root@{amd.address}:{amd.port}'" if arm64_via_amd64 else ""
    path.write_text(f"""
ssh: {{user: root, key: {lab.key}, known_hosts: {lab.known_hosts}, use_ssh_config: false,
       connect_timeout: 30}}
builder: {{tool: buildah, install: true}}
gitlab: {{url: '{gitlab.url}', allow_http: true, group: platform, tags: [native]}}
jenkins: {{url: '{jenkins.url}', allow_http: true, credentials_id: lab-ssh, java_version: 17}}
archfleet:
  version: 0.1.0
  wheel: https://files.example.com/archfleet-0.1.0-py3-none-any.whl
  sha256: {SHA}
hosts:
  - {{name: dr-amd64, address: {amd.address}, arch: amd64,
      ssh: {{port: {amd.port}, user: ci, become: sudo}},
      roles: [gitlab-runner, jenkins-agent, merge-tool]}}
  - {{name: dr-arm64, address: {arm.address}, arch: {arm64_declared},
      ssh: {{port: {arm.port}{jump}}}, roles: [gitlab-runner]}}
{extra_hosts}""")
    return path


def doctor(inventory: Path, *args: str, tokens: bool = True) -> Run:
    env = {"GITLAB_TOKEN": GL_TOKEN, "JENKINS_USER": "admin", "JENKINS_API_TOKEN": J_TOKEN}
    return archfleet(
        "doctor",
        "--inventory",
        str(inventory),
        *args,
        env=env if tokens else None,
        unset=() if tokens else ("GITLAB_TOKEN", "JENKINS_USER", "JENKINS_API_TOKEN"),
        timeout=600,
    )


def by_key(run: Run) -> dict[tuple[str, str], dict[str, str]]:
    """(check, target) -> row; plugin rows are keyed by their detail's first word instead."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in run.json():
        key = row["target"] if row["check"] != "jenkins-plugin" else row["detail"]
        rows[(row["check"], key)] = row
    return rows


def assert_no_token(run: Run) -> None:
    for token in (GL_TOKEN, J_TOKEN):
        assert token not in run.stdout and token not in run.stderr


def test_a_healthy_fleet_passes_with_warnings_only(
    doctor_lab: DoctorLab, servers: tuple[GitLabFake, FakeJenkins], tmp_path: Path
) -> None:
    """ci's sudo works, arm64 really is arm64 (reached through the amd64 host as a jump
    host), the token has every scope, Jenkins has the plugins and the credentials: exit 0.
    The builder and the merge tool are not installed yet: warnings, which provisioning fixes."""
    gitlab, jenkins = servers
    inventory = write_fleet(doctor_lab, tmp_path / "fleet.yml", gitlab, jenkins)
    run = doctor(inventory, "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert_no_token(run)
    rows = by_key(run)
    assert not [r for r in rows.values() if r["status"] == "blocker"]
    amd, arm = doctor_lab.amd64, doctor_lab.arm64
    assert rows[("ssh", "dr-amd64")]["detail"] == f"target {amd.address}:{amd.port} as ci"
    assert rows[("ssh", "dr-arm64")]["detail"] == (
        f"target {arm.address}:{arm.port} as root via jump host {amd.address}:{amd.port}"
    )
    assert rows[("sudo", "dr-amd64")]["detail"].startswith("ci: sudo without a password works")
    assert rows[("arch", "dr-arm64")]["detail"] == "arm64 (uname -m: aarch64)"
    assert rows[("builder", "dr-arm64")]["status"] == "warn"  # buildah: installed by provision
    # bookworm ships Java 17 (the inventory's jenkins.java_version): provisioning installs it.
    assert rows[("java", "dr-amd64")]["detail"] == (
        "Java none; the agent needs 17+: provision-runners installs openjdk-17-jre-headless "
        "(apt-get)"
    )
    assert rows[("gitlab-runner-rights", gitlab.url)]["detail"] == (
        "root is an administrator: may create runners"
    )
    assert rows[("gitlab-version", gitlab.url)]["detail"].startswith("GitLab 17.11.2-ee")
    assert rows[("gitlab-token", gitlab.url)]["status"] == "ok"
    assert rows[("jenkins-version", jenkins.url)]["detail"] == "Jenkins 2.516.3"
    assert rows[("jenkins-credentials", jenkins.url)]["status"] == "ok"
    # Nothing was written anywhere: a preflight reads.
    assert not gitlab.writes() and not jenkins.writes()


def test_four_mistakes_are_four_blockers_each_with_its_fix(
    doctor_lab: DoctorLab, servers: tuple[GitLabFake, FakeJenkins], tmp_path: Path
) -> None:
    """arm64 declared amd64; a host behind a jump host that is down; a GitLab token with
    create_runner only; a Jenkins without SSH Build Agents: exit 1, each named, each fixed."""
    gitlab, jenkins = servers
    gitlab.scopes = {"create_runner"}
    del jenkins.plugins["ssh-slaves"]
    amd = doctor_lab.amd64
    behind = (
        f"  - {{name: dr-behind, address: {amd.address}, arch: amd64, roles: [gitlab-runner],\n"
        f"      ssh: {{port: {amd.port}, jump_host: 'root@{NOBODY}:2222'}}}}\n"
    )
    inventory = write_fleet(
        doctor_lab,
        tmp_path / "fleet.yml",
        gitlab,
        jenkins,
        arm64_declared="amd64",
        arm64_via_amd64=False,
        extra_hosts=behind,
    )
    run = doctor(inventory, "--json")
    assert run.code == 1, run.stdout + run.stderr
    assert_no_token(run)
    blockers = {
        (row["check"], row["target"]): row for row in run.json() if row["status"] == "blocker"
    }
    assert set(blockers) == {
        ("arch", "dr-arm64"),
        ("ssh", "dr-behind"),
        ("gitlab-token", gitlab.url),
        ("jenkins-plugin", jenkins.url),
    }
    arch = blockers[("arch", "dr-arm64")]
    assert "declares amd64, the host is arm64 (uname -m: aarch64)" in arch["detail"]
    assert arch["fix"].startswith(f"set arch: arm64 for dr-arm64 in {inventory}")
    ssh = blockers[("ssh", "dr-behind")]
    # The hop, the user and the key are named (once: connect.py's message may name some).
    assert ssh["detail"].startswith(f"jump host {NOBODY}:2222 (the jump host of this host)")
    assert "root" in ssh["detail"] and str(doctor_lab.key) in ssh["detail"]
    assert "Connection refused" in ssh["detail"]
    assert ssh["fix"].startswith(f"check that the jump host {NOBODY}:2222 is up")
    token = blockers[("gitlab-token", gitlab.url)]
    assert (
        "scopes create_runner; provisioning runners needs manage_runner, read_api"
        in (token["detail"])
    )
    assert "create_runner, manage_runner, read_api (or api)" in token["fix"]
    plugin = blockers[("jenkins-plugin", jenkins.url)]
    assert plugin["detail"].startswith("SSH Build Agents (ssh-slaves) is not installed")
    assert "jenkins-plugin-cli --plugins ssh-slaves" in plugin["fix"]


def test_without_tokens_the_servers_are_not_checked_and_nothing_crashes(
    doctor_lab: DoctorLab, servers: tuple[GitLabFake, FakeJenkins], tmp_path: Path
) -> None:
    """The human table, on stdout (so `| less` sees it); progress on stderr."""
    gitlab, jenkins = servers
    inventory = write_fleet(doctor_lab, tmp_path / "fleet.yml", gitlab, jenkins)
    run = doctor(inventory, "--limit", "dr-amd64", tokens=False)
    assert run.code == 0, run.stdout + run.stderr
    assert run.stdout.count("not checked (no token)") >= 3
    assert "dr-amd64: probed" in run.stderr
    assert "0 blocker(s)" in run.stdout
    assert "Traceback" not in run.stderr
    # Reachability was still asked: GitLab's anonymous 401, Jenkins' anonymous 403.
    assert [r.path for r in gitlab.requests] == ["/api/v4/version"]
    assert [(r.method, r.path, r.status) for r in jenkins.requests] == [("GET", "/api/json", 403)]


def test_a_target_behind_a_working_jump_host_is_the_hop_named(
    doctor_lab: DoctorLab, servers: tuple[GitLabFake, FakeJenkins], tmp_path: Path
) -> None:
    """The jump host (the amd64 lab host) answers, but nothing listens at the target
    (127.0.0.248:22, seen from the jump host): the target is the hop to fix."""
    gitlab, jenkins = servers
    amd = doctor_lab.amd64
    lost = (
        "  - {name: dr-lost, address: 127.0.0.248, arch: amd64, roles: [gitlab-runner],\n"
        f"      ssh: {{port: 22, jump_host: 'root@{amd.address}:{amd.port}'}}}}\n"
    )
    inventory = write_fleet(doctor_lab, tmp_path / "fleet.yml", gitlab, jenkins, extra_hosts=lost)
    run = doctor(inventory, "--json", "--limit", "dr-lost", "--no-gitlab", "--no-jenkins")
    assert run.code == 1, run.stdout + run.stderr
    [row] = run.json()
    assert (row["check"], row["status"]) == ("ssh", "blocker")
    assert row["detail"].startswith(
        f"target 127.0.0.248:22 (through jump host {amd.address}:{amd.port})"
    )
    assert row["fix"].startswith("check that the target 127.0.0.248:22 is up")
    assert not gitlab.requests and not jenkins.requests  # --no-gitlab, --no-jenkins
