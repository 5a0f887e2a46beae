"""Issue 17's "Done when", as one walk-through a new platform team would make, each step the
`archfleet` CLI in its own process (tests/support/cli.py), each asserting the precise message
and the exit code, each timed and printed (`pytest -s` shows the numbers; nothing is asserted
on time — speed goes in bench/).

The team's own inventory: a non-root login `ci` whose sudo needs no password, an amd64
bastion that is also a build host, and an arm64 build host reached only through the bastion
(its jump host), both GitLab runners, the arm64 one a Jenkins agent too.

1. inventory-check on the first draft, with three typical mistakes — the kernel's `x86_64`
   for an arch, a duplicate YAML key (`user:` twice: the last would win), a key file that does
   not exist: exit 1, each named with file, line, key path and what was expected, in file
   order; `--json` gives the same three.
2. Those fixed, the check that needs a loadable file finds the fourth: a Jenkins agent behind
   a jump host without `jenkins.address`: exit 1, the fix named.
3. The fixed inventory: inventory-check exit 0.
4. `provision-runners --dry-run` without tokens, against the real hosts (through the bastion,
   as `ci` with sudo): first the fact only the host can tell — bookworm has no Java 21 for
   the Jenkins agent — exit 1, named with its fixes; with `jenkins.java_version: 17` the
   hosts' part is planned, each server side "not checked (no token)", exit 0.
5. `doctor` with tokens. On the step-3 inventory it names the agent's Java in the dry run's
   words (exit 1); on the fixed one it checks the hops, sudo and arch of each host, the
   agent's Java, GitLab's version, the token's scopes and its user's right to create the
   group's runners (Owner), Jenkins' version, plugins and credentials: exit 0, warnings only.

Real: two lab hosts (toolkit/lab/hosts.py; Debian bookworm roots, cached) with their own
sshd on 127.0.0.21 (amd64, the bastion) and 127.0.0.22 (arm64: every binary runs under
qemu-user, `uname -m` says aarch64); archfleet's own SSH client, host-key checks and jump hop.

FAKES: GitLab and Jenkins (tests/support/gitlab_fake.py, tests/support/jenkins_fake.py —
loopback HTTP servers written from GitLab's doc/api and lib/api and Jenkins core's sources;
not GitLab, not Jenkins).
"""

from __future__ import annotations

import os
import shutil
import time
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

BASTION, BEHIND = "127.0.0.21", "127.0.0.22"  # ours alone
GL_TOKEN = "glpat-walkthrough-7e21c0"
J_TOKEN = "11walkthrough-jenkins-5Tq"
TOKENS = ("GITLAB_TOKEN", "JENKINS_USER", "JENKINS_API_TOKEN")
SHA = "5b1d3a5c7e9f1b3d5a7c9e1f3b5d7a9c1e3f5b7d9a1c3f0a1c5e9b7d2a4c6e8f"


@dataclass(frozen=True)
class Site:
    key: Path
    known_hosts: Path
    bastion: LabHost
    behind: LabHost


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("walkthrough")
    key, public = lab_keypair(workdir)
    started: list[LabHost] = []
    try:
        for name, arch, address in (
            ("wt-bastion", "amd64", BASTION),
            ("wt-arm64", "arm64", BEHIND),
        ):
            started.append(
                start_host(
                    name,
                    arch,
                    address,
                    free_port(address),
                    workdir,
                    authorized_keys=[public],
                    users=[LabUser("ci")],
                )
            )
        known_hosts = write_known_hosts(workdir / "known_hosts", started)
        yield Site(key, known_hosts, *started)
    finally:
        for host in started:
            host.remove()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[GitLabFake, FakeJenkins]]:
    with (
        # The team's token is an ordinary user's, Owner of its group (no administrator).
        GitLabFake(token=GL_TOKEN, project="platform/builds", admin=False) as gitlab,
        FakeJenkins(
            tmp_path / "jenkins",
            "admin",
            J_TOKEN,
            console=False,
            credentials={"lab-ssh": SSH_KEY_TYPE},
        ) as jenkins,
    ):
        yield gitlab, jenkins


def draft(site: Site, gitlab: GitLabFake, jenkins: FakeJenkins, key: Path) -> str:
    """The first draft, with the three mistakes marked by the lines the test fixes."""
    bastion, behind = site.bastion, site.behind
    return f"""\
# platform team fleet
ssh:
  user: root
  user: ci
  key: {key}
  known_hosts: {site.known_hosts}
  use_ssh_config: false
  become: sudo
  connect_timeout: 30
builder: {{tool: buildah, install: true}}
gitlab: {{url: '{gitlab.url}', allow_http: true, group: platform, tags: [native]}}
jenkins: {{url: '{jenkins.url}', allow_http: true, credentials_id: lab-ssh}}
archfleet:
  version: 0.1.0
  wheel: https://files.example.com/archfleet-0.1.0-py3-none-any.whl
  sha256: {SHA}
hosts:
  - name: wt-bastion
    address: {bastion.address}
    arch: x86_64
    ssh: {{port: {bastion.port}}}
    roles: [gitlab-runner, merge-tool]
  - name: wt-arm64
    address: {behind.address}
    arch: arm64
    ssh: {{port: {behind.port}, jump_host: 'ci@{bastion.address}:{bastion.port}'}}
    roles: [gitlab-runner, jenkins-agent]
"""


def step(name: str, *args: str, env: dict[str, str] | None = None, tokens: bool) -> Run:
    """One command as the user types it, timed; the time is printed, never asserted."""
    started = time.monotonic()
    run = archfleet(
        *args,
        env={**(env or {}), **(_tokens() if tokens else {})},
        unset=() if tokens else TOKENS,
        timeout=600,
    )
    print(f"walkthrough step {name}: {time.monotonic() - started:.2f} s (exit {run.code})")
    for token in (GL_TOKEN, J_TOKEN):
        assert token not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return run


def _tokens() -> dict[str, str]:
    return {"GITLAB_TOKEN": GL_TOKEN, "JENKINS_USER": "admin", "JENKINS_API_TOKEN": J_TOKEN}


def test_a_new_users_walkthrough(
    site: Site, servers: tuple[GitLabFake, FakeJenkins], tmp_path: Path
) -> None:
    gitlab, jenkins = servers
    inventory = tmp_path / "fleet.yml"
    missing = tmp_path / "keys" / "id_ed25519"  # the key the team meant to copy here
    text = draft(site, gitlab, jenkins, missing)
    inventory.write_text(text)
    lines = text.splitlines()
    line = {what: lines.index(what) + 1 for what in ("  user: ci", f"  key: {missing}")}
    arch_line = lines.index("    arch: x86_64") + 1
    name = str(inventory)  # as the user typed it

    # 1. Three mistakes, each named precisely, in file order.
    run = step(
        "1 inventory-check (three mistakes)",
        "inventory-check",
        "--inventory",
        str(inventory),
        tokens=False,
    )
    assert run.code == 1, run.stdout + run.stderr
    errors = [entry for entry in run.stderr.splitlines() if entry.startswith("error:")]
    assert errors == [
        f"error: {name}:{line['  user: ci']}: ssh.user: duplicate key 'user' (also on line "
        f"{line['  user: ci'] - 1}): YAML keeps only the last one; expected each key once",
        f"error: {name}:{line[f'  key: {missing}']}: ssh.key: {missing} does not exist: "
        "expected the private key SSH logs in with",
        f"error: {name}:{arch_line}: hosts[0].arch: expected one of 386, amd64, arm-v6, "
        "arm-v7, arm64, ppc64le, riscv64, s390x; got 'x86_64'; did you mean amd64? (x86_64 is "
        "the kernel's name, as `uname -m` prints it; arch takes the image platform's: amd64, "
        "arm64, …)",
    ], run.stderr
    as_json = step(
        "1b inventory-check --json",
        "inventory-check",
        "--inventory",
        str(inventory),
        "--json",
        tokens=False,
    )
    assert as_json.code == 1
    assert [(p["line"], p["key"], p["severity"]) for p in as_json.json()] == [
        (line["  user: ci"], "ssh.user", "error"),
        (line[f"  key: {missing}"], "ssh.key", "error"),
        (arch_line, "hosts[0].arch", "error"),
    ]

    # 2. The three fixed: the jump-host Jenkins agent without jenkins.address comes next.
    text = text.replace("  user: root\n", "").replace(str(missing), str(site.key))
    text = text.replace("arch: x86_64", "arch: amd64")
    inventory.write_text(text)
    run = step(
        "2 inventory-check (jump-host agent)",
        "inventory-check",
        "--inventory",
        str(inventory),
        tokens=False,
    )
    assert run.code == 1, run.stdout + run.stderr
    jump_line = text.splitlines().index(
        f"    ssh: {{port: {site.behind.port}, jump_host: "
        f"'ci@{site.bastion.address}:{site.bastion.port}'}}"
    )
    assert run.stderr.strip() == (
        f"error: {name}:{jump_line + 1}: hosts[1].ssh.jump_host: host 'wt-arm64' is a Jenkins "
        f"agent reached through jump host 'ci@{BASTION}:{site.bastion.port}', but the Jenkins "
        "controller connects to its agents directly and cannot use the jump host: set "
        "hosts[1].jenkins.address (and jenkins.port if not ssh.port) to the address the "
        "controller reaches the agent at"
    ), run.stderr

    # 3. The address the controller reaches the agent at (here: its own loopback address).
    text = text.replace(
        "    roles: [gitlab-runner, jenkins-agent]\n",
        "    roles: [gitlab-runner, jenkins-agent]\n"
        f"    jenkins: {{address: {BEHIND}, port: {site.behind.port}}}\n",
    )
    inventory.write_text(text)
    run = step(
        "3 inventory-check (fixed)", "inventory-check", "--inventory", str(inventory), tokens=False
    )
    assert run.code == 0, run.stdout + run.stderr
    assert "error:" not in run.stderr

    # 4. A dry run without tokens plans the hosts from their facts and marks each server
    # side. The first one finds what only the host can tell: bookworm has no Java 21.
    no_tokens = {"HOME": str(tmp_path), "PYTHON_GITLAB_CFG": str(tmp_path / "none.cfg")}
    run = step(
        "4 provision-runners --dry-run (no tokens, Java 17 host)",
        "provision-runners",
        "--inventory",
        str(inventory),
        "--dry-run",
        "--json",
        tokens=False,
        env=no_tokens,
    )
    assert run.code == 1, run.stdout + run.stderr
    [refused] = [host for host in run.json()["hosts"] if not host["ok"]]
    assert refused["host"] == "wt-arm64"
    assert refused["error"].startswith(
        "the Jenkins agent needs Java 21 (jenkins.java_version; current Jenkins, 2.545+ and "
        "LTS 2.555.1+, refuses older agents) but it has no Java and debian 12 ships Java 17 "
        "only."
    ), refused["error"]
    assert "or set jenkins.java_version to what your Jenkins needs" in refused["error"]
    # The team's controller is an older LTS that still takes Java 17 agents: they say so.
    before_java = text
    text = text.replace("credentials_id: lab-ssh}", "credentials_id: lab-ssh, java_version: 17}")
    inventory.write_text(text)
    run = step(
        "4b provision-runners --dry-run (no tokens)",
        "provision-runners",
        "--inventory",
        str(inventory),
        "--dry-run",
        "--json",
        tokens=False,
        env=no_tokens,
    )
    assert run.code == 0, run.stdout + run.stderr
    data = run.json()
    assert data["ok"] is True and data["servers"] == {
        "gitlab": "not-checked",
        "jenkins": "not-checked",
        "notChecked": {"gitlab": "no token", "jenkins": "no token"},
    }
    planned = {host["host"]: host for host in data["hosts"]}
    assert set(planned) == {"wt-bastion", "wt-arm64"}
    assert planned["wt-arm64"]["arch"] == "arm64"  # read through the bastion, as ci, via sudo
    for host in planned.values():
        kinds = [change.split(":")[0] for change in host["planned"]]
        assert kinds[0] == "install-builder" and "gitlab-not-checked" in kinds, kinds
        assert "create-runner" not in kinds and host["runner"] == "not-checked"
    assert "jenkins-not-checked" in [c.split(":")[0] for c in planned["wt-arm64"]["planned"]]
    notes = [entry for entry in run.stderr.splitlines() if entry.startswith("note:")]
    assert [note.split(":")[1].strip() for note in notes] == [
        "GitLab side not checked (no token)",
        "Jenkins side not checked (no token)",
    ], run.stderr
    assert not gitlab.writes() and not jenkins.writes()

    # 5. doctor against the hosts and the servers (the fakes), with tokens. On the inventory
    # of step 3 it finds what the dry run found, in the same words: the agent's Java.
    unfixed = tmp_path / "fleet-java21.yml"
    unfixed.write_text(before_java)
    run = step(
        "5a doctor (Java 17 host)", "doctor", "--inventory", str(unfixed), "--json", tokens=True
    )
    assert run.code == 1, run.stdout + run.stderr
    [java] = [row for row in run.json() if row["status"] == "blocker"]
    assert (java["check"], java["target"]) == ("java", "wt-arm64")
    assert java["detail"] == refused["error"].split(". ")[0]
    assert java["fix"].endswith("or set jenkins.java_version to what your Jenkins needs")
    # With java_version 17: a green light.
    run = step("5 doctor", "doctor", "--inventory", str(inventory), "--json", tokens=True)
    assert run.code == 0, run.stdout + run.stderr
    rows = {
        (row["check"], row["target"]): row
        for row in run.json()
        if row["check"] != ("jenkins-plugin")
    }
    assert not [row for row in run.json() if row["status"] == "blocker"]
    bastion, behind = site.bastion, site.behind
    assert rows[("ssh", "wt-bastion")]["detail"] == f"target {BASTION}:{bastion.port} as ci"
    assert rows[("ssh", "wt-arm64")]["detail"] == (
        f"target {BEHIND}:{behind.port} as ci via jump host {BASTION}:{bastion.port}"
    )
    for host in ("wt-bastion", "wt-arm64"):
        assert rows[("sudo", host)]["detail"].startswith("ci: sudo without a password works")
    assert rows[("arch", "wt-arm64")]["detail"] == "arm64 (uname -m: aarch64)"
    assert rows[("arch", "wt-bastion")]["detail"] == "amd64 (uname -m: x86_64)"
    assert rows[("java", "wt-arm64")]["detail"] == (
        "Java none; the agent needs 17+: provision-runners installs openjdk-17-jre-headless "
        "(apt-get)"
    )
    assert rows[("gitlab-version", gitlab.url)]["detail"].startswith("GitLab 17.11.2-ee")
    assert rows[("gitlab-token", gitlab.url)]["status"] == "ok"
    assert rows[("gitlab-runner-rights", gitlab.url)]["detail"] == (
        "root is Owner in group platform: may create runners"
    )
    assert rows[("jenkins-version", jenkins.url)]["detail"] == "Jenkins 2.516.3"
    assert rows[("jenkins-credentials", jenkins.url)]["status"] == "ok"
    assert not gitlab.writes() and not jenkins.writes()  # a preflight reads

    # The human table of the same run is on stdout, where `| less` sees it.
    human = step("5b doctor (table)", "doctor", "--inventory", str(inventory), tokens=True)
    assert human.code == 0
    assert "0 blocker(s)" in human.stdout and "wt-arm64" in human.stdout
