"""publish-templates against a local FAKE of the GitLab REST API (tests/support/gitlab_fake.py:
projects, repository tree/files, commits with actions, branches, tags, releases), through
python-gitlab as in production. There is no GitLab server on these machines."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Run, archfleet
from tests.support.gitlab_fake import GitLabFake
from toolkit.ci_templates import default_root

pytestmark = pytest.mark.integration

TOKEN = "glpat-fake-token-4d2a9c"
PROJECT = "platform/archfleet-ci"
PUBLISHED = {"README.md", "templates/multiarch.yml", "include/multiarch.yml"}


@pytest.fixture
def fake() -> Iterator[GitLabFake]:
    with GitLabFake(token=TOKEN, project=PROJECT) as server:
        yield server


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of ci-templates/ a test may change."""
    copy = tmp_path / "ci-templates"
    shutil.copytree(default_root(), copy)
    return copy


def publish(fake: GitLabFake, source: Path, *args: str, token: str = TOKEN) -> Run:
    return archfleet(
        "publish-templates",
        "--project",
        PROJECT,
        "--url",
        fake.url,
        "--source",
        str(source),
        *args,
        env={"GITLAB_TOKEN": token},
        unset=("CI_SERVER_URL",),
    )


def test_first_publish_is_one_commit_a_tag_and_a_release(fake: GitLabFake, source: Path) -> None:
    fake.seed({"LICENSE": "Apache-2.0\n", "templates/retired.yml": "old: {}\n"})
    run = publish(fake, source, "--version", "1.0.0")
    assert run.code == 0, run.stderr
    host = fake.url.split("//", 1)[1]
    assert run.stdout == f"include:\n  - component: {host}/{PROJECT}/multiarch@1.0.0\n"
    writes = fake.writes()
    assert [(w.method, w.path.rsplit("/", 2)[-2:]) for w in writes] == [
        ("POST", ["repository", "commits"]),
        ("POST", ["repository", "tags"]),
        ("POST", ["42", "releases"]),
    ]
    actions = {(a["action"], a["file_path"]) for a in writes[0].body["actions"]}
    assert actions == {("create", p) for p in PUBLISHED} | {("delete", "templates/retired.yml")}
    delete = next(a for a in writes[0].body["actions"] if a["action"] == "delete")
    assert delete["last_commit_id"]  # GitLab refuses it if the file moved on meanwhile
    files = fake.files_at("1.0.0")
    assert set(files) == PUBLISHED | {"LICENSE"}  # files we do not manage stay
    for path in PUBLISHED:
        assert files[path] == (source / path).read_text(encoding="utf-8")
    assert writes[1].body["ref"] == fake.repo.branches["main"]
    release = fake.repo.releases["1.0.0"]
    assert (
        "multiarch@1.0.0" in release["description"]
        and "/include/multiarch.yml" in (release["description"])
    )
    assert TOKEN not in run.stdout + run.stderr


def test_publishing_the_same_version_again_changes_nothing(fake: GitLabFake, source: Path) -> None:
    assert publish(fake, source, "--version", "1.0.0").code == 0
    mark = fake.mark()
    again = publish(fake, source, "--version", "1.0.0", "--json")
    assert again.code == 0, again.stderr
    assert again.json()["changed"] is False and again.json()["actions"] == []
    assert [r for r in fake.since(mark) if r.method != "GET"] == []


def test_other_content_under_an_existing_version_is_refused(fake: GitLabFake, source: Path) -> None:
    assert publish(fake, source, "--version", "1.0.0").code == 0
    readme = source / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nOne more line.\n")
    mark = fake.mark()
    refused = publish(fake, source, "--version", "1.0.0")
    assert refused.code == 1
    assert "version 1.0.0 is already tagged" in refused.stderr
    assert "README.md (update)" in refused.stderr and "new version" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert [r for r in fake.since(mark) if r.method != "GET"] == []
    # As a new version it goes through: one commit with one update action.
    newer = publish(fake, source, "--version", "1.1.0", "--json")
    assert newer.code == 0, newer.stderr
    assert newer.json()["actions"] == [{"action": "update", "path": "README.md"}]
    assert fake.files_at("1.0.0")["README.md"] != fake.files_at("1.1.0")["README.md"]


def test_dry_run_reads_and_writes_nothing(fake: GitLabFake, source: Path) -> None:
    run = publish(fake, source, "--version", "2.0.0-rc.1", "--dry-run", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["dryRun"] is True and result["tagCreated"] and result["releaseCreated"]
    assert {a["path"] for a in result["actions"]} == PUBLISHED
    assert fake.writes() == [] and fake.repo.tags == {}


def test_a_missing_release_is_completed(fake: GitLabFake, source: Path) -> None:
    assert publish(fake, source, "--version", "1.0.0").code == 0
    del fake.repo.releases["1.0.0"]  # e.g. the release call failed last time
    mark = fake.mark()
    run = publish(fake, source, "--version", "1.0.0", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["releaseCreated"] is True and run.json()["actions"] == []
    assert [r.path.rsplit("/", 1)[-1] for r in fake.since(mark) if r.method == "POST"] == [
        "releases"
    ]


def test_errors_name_the_problem_never_the_token(fake: GitLabFake, source: Path) -> None:
    refused = publish(fake, source, "--version", "1.0.0", token="glpat-wrong-7781")
    assert refused.code == 1
    assert "the token was refused (401)" in refused.stderr
    assert "glpat-wrong-7781" not in refused.stdout + refused.stderr
    bad_version = publish(fake, source, "--version", "v1.0")
    assert bad_version.code == 1 and "expected a semantic version" in bad_version.stderr
    no_token = publish(fake, source, "--version", "1.0.0", token="")
    assert no_token.code == 1 and "$GITLAB_TOKEN is empty" in no_token.stderr
    (source / "templates" / "multiarch.yml").write_text("edited by hand\n")
    stale = publish(fake, source, "--version", "1.0.0")
    assert stale.code == 1 and "differ from the rendering" in stale.stderr
    assert fake.writes() == []
