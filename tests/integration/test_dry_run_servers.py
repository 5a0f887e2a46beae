"""`provision-runners --dry-run` without GitLab or Jenkins tokens, and with both servers
unreachable, on the REAL lab hosts (amd64 and arm64 sshd in Debian roots): the hosts' part is
planned from their real facts, each server side is ONE note and "not checked (why)" per host,
exit 0, no traceback. No GitLab or Jenkins runs here: the inventory points both at
127.0.0.1:9, where nothing listens (a server that is down)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Lab, write_inventory
from tests.support.cli import Run, archfleet

pytestmark = pytest.mark.integration

TOKENS = ("GITLAB_TOKEN", "JENKINS_USER", "JENKINS_API_TOKEN")


def dry_run(lab: Lab, tmp_path: Path, env: dict[str, str], *args: str) -> Run:
    inventory = write_inventory(lab, tmp_path / "lab.yml")
    # bookworm's Java is 17 (no 21 package): what these lab hosts can have.
    text = inventory.read_text().replace("install: false", "install: true")
    text = text.replace("credentials_id: lab-ssh}", "credentials_id: lab-ssh, java_version: 17}")
    assert "java_version: 17" in text
    inventory.write_text(text)
    return archfleet(
        "provision-runners",
        "--inventory",
        str(inventory),
        "--dry-run",
        *args,
        env={**env, "HOME": str(tmp_path), "PYTHON_GITLAB_CFG": str(tmp_path / "none.cfg")},
        unset=tuple(name for name in TOKENS if name not in env),
        timeout=600,
    )


def test_a_dry_run_without_tokens_plans_the_hosts_and_marks_the_servers(
    lab: Lab, tmp_path: Path
) -> None:
    run = dry_run(lab, tmp_path, {}, "--json")
    assert run.code == 0, run.stderr
    data = run.json()
    assert data["command"] == "provision-runners" and data["ok"] is True
    assert data["servers"] == {
        "gitlab": "not-checked",
        "jenkins": "not-checked",
        "notChecked": {"gitlab": "no token", "jenkins": "no token"},
    }
    for host in data["hosts"]:
        kinds = [change.split(":")[0] for change in host["planned"]]
        # The hosts' own part, from their facts; each server's part one line.
        assert kinds[:4] == [
            "install-builder",
            "install-runner",
            "ensure-runner-user",
            "install-runner-service",
        ], kinds
        assert "gitlab-not-checked" in kinds and "jenkins-not-checked" in kinds
        assert "create-runner" not in kinds and "create-node" not in kinds
        assert (host["runner"], host["agent"]) == ("not-checked", "not-checked")
        assert host["runnerTags"][0] == host["arch"]  # the real arch, as always
    notes = [line for line in run.stderr.splitlines() if line.startswith(("note:", "error:"))]
    assert len(notes) == 2, notes
    assert notes[0].startswith("note: GitLab side not checked (no token): no GitLab token")
    assert notes[1].startswith("note: Jenkins side not checked (no token): Jenkins at ")


def test_unreachable_servers_are_one_line_each_not_one_per_host(lab: Lab, tmp_path: Path) -> None:
    tokens = {
        "GITLAB_TOKEN": "glpat-unused-0d1e",
        "JENKINS_USER": "admin",
        "JENKINS_API_TOKEN": "unused-token-0d1e",
    }
    run = dry_run(lab, tmp_path, tokens)  # the human output this time
    assert run.code == 0, run.stderr
    err: str = run.stderr
    assert err.count("GitLab side not checked (unreachable)") == 1
    assert err.count("Jenkins side not checked (unreachable)") == 1
    assert "Traceback" not in err and "glpat-unused-0d1e" not in err + run.stdout
    # Live progress per host on stderr, the table on stdout.
    for host in lab.hosts.values():
        assert f"{host.name}: reading facts…" in err
    out: str = run.stdout
    assert "not checked (unreachable)" in out and "plan (dry run): 2 hosts" in out

    # Without --dry-run an unreachable server is one error, exit 1, and no host goes on.
    inventory = tmp_path / "lab.yml"
    real = archfleet(
        "provision-runners",
        "--inventory",
        str(inventory),
        "--no-jenkins",
        env={**tokens, "HOME": str(tmp_path)},
        timeout=600,
    )
    assert real.code == 1
    errors = [line for line in real.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "GitLab http://127.0.0.1:9" in errors[0], real.stderr
    assert "cannot reach it" in errors[0] and "Traceback" not in real.stderr
