"""publish-jenkins-library against a FAKE Jenkins (tests/support/jenkins_fake.py): the HTTP
endpoints jenkinsapi calls, with crumbs and basic auth, and a script console whose scripts really
run on Groovy 2.4 against fake plugin classes. No Jenkins server can run on these machines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Run, archfleet
from tests.support.jenkins_fake import FakeJenkins
from toolkit.publish.jenkins_library import MANAGED_MARK, job_fields

pytestmark = pytest.mark.integration

USER = "admin"
TOKEN = "11d2-jenkins-api-T0KEN"
REMOTE = "https://git.example.com/platform/archfleet.git"
JOB = "archfleet-multiarch-example"


def publish(jenkins: FakeJenkins, *args: str, token: str = TOKEN) -> Run:
    run = archfleet(
        "publish-jenkins-library",
        "--jenkins",
        jenkins.url,
        "--library-repo",
        REMOTE,
        *args,
        env={"JENKINS_USER": USER, "JENKINS_API_TOKEN": token},
        unset=("JENKINS_URL",),
    )
    assert TOKEN not in run.stdout + run.stderr
    return run


def actions(run: Run) -> dict[str, str]:
    result: dict[str, Any] = run.json()
    return {c["kind"]: c["action"] for c in result["changes"]}


@pytest.fixture
def jenkins(tmp_path: Path) -> Iterator[FakeJenkins]:
    with FakeJenkins(tmp_path / "jenkins-home", USER, TOKEN) as fake:
        yield fake


def test_publish_is_idempotent_and_dry_run_writes_nothing(jenkins: FakeJenkins) -> None:
    dry = publish(jenkins, "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert actions(dry) == {"library": "create", "job": "create"} and dry.json()["dryRun"]
    assert jenkins.libraries() == [] and jenkins.jobs == {}
    assert all("globals.libraries =" not in s for s in jenkins.scripts)
    assert [r.path for r in jenkins.writes()] == ["/scriptText"]

    first = publish(jenkins, "--json")
    assert first.code == 0, first.stderr
    assert actions(first) == {"library": "create", "job": "create"}
    (library,) = jenkins.libraries()
    assert library == {
        "name": "archfleet",
        "remote": REMOTE,
        "credentialsId": None,
        "traits": ["BranchDiscoveryTrait", "TagDiscoveryTrait"],
        "libraryPath": "jenkins/",
        "defaultVersion": "main",
        "implicit": False,
        # Off unless --allow-version-override: another version would run unsandboxed.
        "allowVersionOverride": False,
    }
    fields = job_fields(jenkins.jobs[JOB])
    assert fields["remote"] == REMOTE and fields["branches"] == ["*/main"]
    assert fields["scriptPath"] == "jenkins/Jenkinsfile.example"
    assert MANAGED_MARK in fields["description"]

    mark = len(jenkins.requests)
    again = publish(jenkins)
    assert again.code == 0, again.stderr
    assert "already up to date; nothing written" in again.stderr
    later = jenkins.requests[mark:]
    # One read-only console script; no job created or rewritten.
    assert [r.path for r in later if r.method == "POST"] == ["/scriptText"]
    assert "globals.libraries =" not in jenkins.scripts[-1]


def test_a_new_version_updates_library_and_job(jenkins: FakeJenkins) -> None:
    assert publish(jenkins).code == 0
    update = publish(
        jenkins, "--json", "--library-version", "v0.2.0", "--library-credentials-id", "git-read"
    )
    assert update.code == 0, update.stderr
    assert actions(update) == {"library": "update", "job": "update"}
    differences = update.json()["changes"][0]["differences"]
    assert "defaultVersion: 'main' -> 'v0.2.0'" in differences
    (library,) = jenkins.libraries()
    assert library["defaultVersion"] == "v0.2.0" and library["credentialsId"] == "git-read"
    fields = job_fields(jenkins.jobs[JOB])
    assert fields["branches"] == ["*/v0.2.0"] and fields["credentialsId"] == "git-read"
    assert any(r.method == "POST" and r.path == f"/job/{JOB}/config.xml" for r in jenkins.requests)


def test_someone_elses_job_is_refused_before_any_write(jenkins: FakeJenkins) -> None:
    jenkins.jobs[JOB] = (
        "<flow-definition><description>the team's own job</description></flow-definition>"
    )
    run = publish(jenkins)
    assert run.code == 1
    assert "was not created by archfleet" in run.stderr and "--job" in run.stderr
    assert jenkins.libraries() == []
    assert "team's own" in jenkins.jobs[JOB]


def test_version_override_only_on_request(jenkins: FakeJenkins) -> None:
    """With the fake Jenkins (tests/support/jenkins_fake.py)."""
    run = publish(jenkins, "--skip-job", "--allow-version-override")
    assert run.code == 0, run.stderr
    (library,) = jenkins.libraries()
    assert library["allowVersionOverride"] is True


def test_a_token_in_the_repository_url_is_refused_before_any_request(
    jenkins: FakeJenkins,
) -> None:
    done = archfleet(
        "publish-jenkins-library",
        "--jenkins",
        jenkins.url,
        "--library-repo",
        "https://glpat-s3cr3t@git.example.com/platform/archfleet.git",
        env={"JENKINS_USER": USER, "JENKINS_API_TOKEN": TOKEN},
        unset=("JENKINS_URL",),
    )
    assert done.code == 1
    assert "contains credentials" in done.stderr and "glpat-s3cr3t" not in done.stderr
    assert jenkins.requests == []


def test_skip_job_registers_only_the_library(jenkins: FakeJenkins) -> None:
    run = publish(jenkins, "--skip-job", "--json", "--library-name", "archfleet-next")
    assert run.code == 0, run.stderr
    assert actions(run) == {"library": "create"}
    assert [lib["name"] for lib in jenkins.libraries()] == ["archfleet-next"]
    assert jenkins.jobs == {}


def test_wrong_token_is_a_clear_error_without_the_token(jenkins: FakeJenkins) -> None:
    wrong = "not-the-T0KEN-value"
    run = publish(jenkins, token=wrong)
    assert run.code == 1
    assert "HTTP 401" in run.stderr and "JENKINS_API_TOKEN" in run.stderr
    assert wrong not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_missing_plugins_are_named(tmp_path: Path) -> None:
    with FakeJenkins(tmp_path / "bare", USER, TOKEN, plugins_missing=True) as bare:
        run = publish(bare)
    assert run.code == 1
    assert "pipeline-groovy-lib" in run.stderr and "unable to resolve class" in run.stderr


def test_credentials_must_come_from_the_environment(jenkins: FakeJenkins) -> None:
    done = archfleet(
        "publish-jenkins-library",
        "--jenkins",
        jenkins.url,
        "--library-repo",
        REMOTE,
        unset=tuple(k for k in os.environ if k.startswith("JENKINS_")),
    )
    assert done.code == 1
    assert "set JENKINS_USER and JENKINS_API_TOKEN" in done.stderr
    assert jenkins.requests == []


def test_help_documents_every_flag() -> None:
    done = archfleet("publish-jenkins-library", "--help")
    assert done.code == 0
    for flag in (
        "--jenkins",
        "--library-repo",
        "--library-version",
        "--library-path",
        "--library-credentials-id",
        "--job",
        "--skip-job",
        "--allow-version-override",
        "--dry-run",
        "--json",
    ):
        assert flag in done.stdout, flag
