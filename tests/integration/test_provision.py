"""provision-runners / runners-status / deprovision-runners on REAL lab hosts (sshd in amd64
and arm64 roots). GitLab and Jenkins cannot run here: their sides use the local HTTP fakes
(tests/support/gitlab_fake.py, tests/support/jenkins_fake.py — fakes of the documented REST
APIs), or are switched off (--no-gitlab/--no-jenkins), as in the lab demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Lab
from tests.support.cli import Run, archfleet

pytestmark = pytest.mark.integration


def write_inventory(
    lab: Lab, path: Path, *, declared: dict[str, str] | None = None, extra: str = ""
) -> Path:
    lines = [
        "ssh:",
        "  user: root",
        f"  key: {lab.key}",
        f"  known_hosts: {lab.known_hosts}",
        "  use_ssh_config: false",
        "builder: {tool: buildah, install: false}",
        "gitlab: {url: 'http://127.0.0.1:9', tags: [native]}",
        "jenkins: {url: 'http://127.0.0.1:9', credentials_id: lab-ssh}",
        "hosts:",
    ]
    for arch, host in lab.hosts.items():
        lines += [
            f"  - name: {host.name}",
            f"    address: {host.address}",
            f"    arch: {(declared or {}).get(arch, arch)}",
            f"    ssh: {{port: {host.port}}}",
            "    roles: [gitlab-runner, jenkins-agent]",
        ]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


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
        assert "buildah is missing and builder.install is false" in hosts[host.name]["error"]
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
    assert amd["planned"] == ["install-builder: install buildah from the OS packages"]
