"""A token without the scope an endpoint needs, as GitLab answers it and as provision-runners
reports it. GitLab's answer is a 403 with a TOP-LEVEL OAuth error object —
`{"error": "insufficient_scope", "error_description": …, "scope": "api create_runner"}`, no
"message" (lib/api/api_guard.rb `oauth2_bearer_token_error_handler` → Rack::OAuth2
Bearer::Forbidden, nov/rack-oauth2 lib/rack/oauth2/server/resource/error.rb). Against the
FAKE GitLab (tests/support/gitlab_fake.py, which follows those files; not GitLab), through
python-gitlab as in production."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.gitlab_fake import GitLabFake
from toolkit.fleet.gitlab_runner import GitLabRunnerError, GitLabRunners
from toolkit.inventory import GitLabSettings

pytestmark = pytest.mark.integration

TOKEN = "glpat-scopes-91c2e0"


@pytest.fixture
def fake() -> Iterator[GitLabFake]:
    with GitLabFake(token=TOKEN, project="platform/builds") as server:
        yield server


def runners(fake: GitLabFake) -> GitLabRunners:
    settings = GitLabSettings(url=fake.url, allow_http=True, group=fake.group)
    return GitLabRunners.from_settings(settings, {"GITLAB_TOKEN": TOKEN}, timeout=5)


def test_the_fake_answers_as_gitlabs_api_guard(fake: GitLabFake) -> None:
    fake.scopes = {"read_api"}
    answer = requests.post(
        f"{fake.url}/api/v4/user/runners",
        headers={"PRIVATE-TOKEN": TOKEN},
        json={"runner_type": "group_type", "group_id": 7},
        timeout=5,
    )
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the "
        "access token.",
        "scope": "api create_runner",
    }
    fake.scopes = {"create_runner"}
    listing = requests.get(
        f"{fake.url}/api/v4/groups/7/runners", headers={"PRIVATE-TOKEN": TOKEN}, timeout=5
    )
    assert listing.status_code == 403 and listing.json()["scope"] == "api read_api"


@pytest.mark.parametrize(
    ("scopes", "step", "what", "accepted", "needed"),
    [
        (
            {"read_api", "manage_runner"},
            "create",
            "creating runner",
            "api, create_runner",
            "create_runner",
        ),
        ({"create_runner", "manage_runner"}, "find", "listing", "api, read_api", "read_api"),
    ],
)
def test_the_error_names_the_scopes_gitlab_accepts_and_where_the_token_came_from(
    fake: GitLabFake, scopes: set[str], step: str, what: str, accepted: str, needed: str
) -> None:
    fake.scopes = scopes
    gl = runners(fake)
    with pytest.raises(GitLabRunnerError) as denied:
        if step == "create":
            gl.create("h", ["amd64"], locked=True)
        else:
            gl.find("h")
    message = str(denied.value)
    assert message.startswith(f"GitLab {fake.url}: {what}"), message
    assert (
        f"failed: HTTP 403 insufficient_scope: the token from $GITLAB_TOKEN has none of the "
        f"scopes GitLab accepts here ({accepted}) (the token needs the {needed} scope)"
    ) in message, message
    assert TOKEN not in message
