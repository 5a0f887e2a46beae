"""doctor: may the token's user create the inventory's runners? (doc/api/users.md "Create a
runner linked to a user": an administrator, or the group's Owner / the project's Maintainer —
app/policies/group_policy.rb, project_policy.rb — and instance runners for administrators
only.) Over real HTTP against the FAKE GitLab (tests/support/gitlab_fake.py: GET /user,
GET /groups|projects/:id/members/all/:user_id, and POST /user/runners refusing the same
users; not GitLab) — the doctor's verdict and what creating a runner meets agree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gitlab_fake import GitLabFake
from toolkit.doctor.checks import Check, exit_code
from toolkit.doctor.gitlab import evaluate_gitlab
from toolkit.doctor.probe import probe_gitlab
from toolkit.fleet.gitlab_runner import GitLabRunnerError, GitLabRunners
from toolkit.inventory import GitLabSettings

TOKEN = "glpat-rights-6d0b3a"
ENV = {"GITLAB_TOKEN": TOKEN}


@pytest.fixture
def gitlab() -> Iterator[GitLabFake]:
    with GitLabFake(token=TOKEN, project="platform/builds", admin=False) as fake:
        yield fake


def settings(fake: GitLabFake, runner_type: str = "group_type") -> GitLabSettings:
    return GitLabSettings(
        url=fake.url,
        allow_http=True,
        runner_type=runner_type,
        group=fake.group if runner_type == "group_type" else None,
        project=fake.project if runner_type == "project_type" else None,
    )


def rights(fake: GitLabFake, runner_type: str = "group_type") -> tuple[Check, list[str]]:
    chosen = settings(fake, runner_type)
    mark = fake.mark()
    probe, _ = probe_gitlab(chosen, ENV, timeout=5, provisions_runners=True)
    checks = evaluate_gitlab(chosen, probe, provisions_runners=True)
    [row] = [c for c in checks if c.check == "gitlab-runner-rights"]
    assert all(TOKEN not in c.detail + c.fix for c in checks)
    if row.status == "blocker":
        assert exit_code(checks) == 1
    return row, [r.path for r in fake.since(mark)]


def creating(fake: GitLabFake, runner_type: str = "group_type") -> str | None:
    """What provisioning meets: None when the runner was created, else the error."""
    gl = GitLabRunners.from_settings(settings(fake, runner_type), ENV, timeout=5)
    try:
        created = gl.create("probe-host", ["amd64"], locked=True)
    except GitLabRunnerError as exc:
        return str(exc)
    assert created.id
    return None


def test_an_administrator_may_create_any_runner_and_no_membership_is_asked(
    gitlab: GitLabFake,
) -> None:
    gitlab.admin = True
    gitlab.access_level = None
    row, paths = rights(gitlab, "instance_type")
    assert (row.status, row.detail) == ("ok", "root is an administrator: may create runners")
    assert paths[-1] == "/api/v4/user"  # no members/all after it
    assert creating(gitlab, "instance_type") is None


def test_a_group_owner_may_create_group_runners(gitlab: GitLabFake) -> None:
    row, paths = rights(gitlab)
    assert (row.status, row.detail) == (
        "ok",
        "root is Owner in group platform: may create runners",
    )
    assert paths[-2:] == ["/api/v4/user", "/api/v4/groups/platform/members/all/1"]
    assert creating(gitlab) is None


def test_a_group_maintainer_is_a_blocker_with_the_role_to_give(gitlab: GitLabFake) -> None:
    gitlab.access_level = 40
    row, _ = rights(gitlab)
    assert row.status == "blocker"
    assert row.detail == (
        "root is Maintainer in group platform; creating its runners (POST /user/runners) "
        "needs Owner"
    )
    assert row.fix == (
        "give root the Owner role in group platform (or use the token of one who has it)"
    )
    error = creating(gitlab)
    assert error is not None and "HTTP 403" in error  # what provisioning would have met


def test_no_member_of_the_group_is_a_blocker(gitlab: GitLabFake) -> None:
    gitlab.access_level = None
    row, _ = rights(gitlab)
    assert (row.status, row.detail) == (
        "blocker",
        "root is no member of group platform: creating its runners needs the Owner role",
    )


def test_a_project_maintainer_may_create_project_runners_a_developer_may_not(
    gitlab: GitLabFake,
) -> None:
    gitlab.access_level = 40
    row, paths = rights(gitlab, "project_type")
    assert (row.status, row.detail) == (
        "ok",
        "root is Maintainer in project platform/builds: may create runners",
    )
    assert paths[-1] == "/api/v4/projects/platform/builds/members/all/1"  # %2F, decoded
    assert creating(gitlab, "project_type") is None
    gitlab.access_level = 30
    row, _ = rights(gitlab, "project_type")
    assert row.status == "blocker" and row.detail.startswith(
        "root is Developer in project platform/builds"
    )
    assert creating(gitlab, "project_type") is not None


def test_instance_runners_without_an_administrator_are_a_blocker(gitlab: GitLabFake) -> None:
    row, _ = rights(gitlab, "instance_type")
    assert row.status == "blocker"
    assert row.detail.startswith("root is no administrator, and only an administrator")
    assert row.fix.startswith("use an administrator's token, or set gitlab.runner_type")


def test_a_token_that_cannot_read_the_user_leaves_the_rights_unchecked(
    gitlab: GitLabFake,
) -> None:
    """create_runner alone: GET /user answers 403 insufficient_scope; the token row blocks,
    this one says why it could not look."""
    gitlab.scopes = {"create_runner"}
    row, _ = rights(gitlab)
    assert row.status == "warn"
    assert row.detail == (
        "not checked (GET /api/v4/user answered HTTP 403: The request requires higher "
        "privileges than provided by the access token.)"
    )
