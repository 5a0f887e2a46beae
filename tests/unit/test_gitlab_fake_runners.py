"""The GitLab FAKE's runner endpoints (tests/support/gitlab_fake.py) answer as GitLab does
(lib/api/ci/runner.rb, api/runners.md): these tests use the fake itself, over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gitlab_fake import GROUP_ID, PARENT_GROUP_ID, PROJECT_ID, GitLabFake

API_TOKEN = "glpat-unit-fake"


@pytest.fixture
def fake() -> Iterator[GitLabFake]:
    with GitLabFake(token=API_TOKEN, project="platform/builds") as server:
        yield server


def call(
    fake: GitLabFake, method: str, path: str, body: Any = None, pat: bool = True
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    url = f"{fake.url}/api/v4/{path}"  # always http://127.0.0.1
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if pat:
        request.add_header("PRIVATE-TOKEN", API_TOKEN)
    try:
        with urllib.request.urlopen(request) as answer:  # noqa: S310
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def test_verify_creates_a_manager_and_a_deleted_runner_is_forbidden(fake: GitLabFake) -> None:
    runner_id = fake.add_runner("project_type", "a", ["amd64"], project_id=PROJECT_ID)
    token = fake.runners[runner_id].token
    status, body = call(
        fake, "POST", "runners/verify", {"token": token, "system_id": "r_x"}, pat=False
    )
    assert (status, body) == (200, {"id": runner_id, "token": token, "token_expires_at": None})
    assert list(fake.runners[runner_id].managers) == ["r_x"]
    assert fake.runners[runner_id].status == "online"
    # Unknown system_id: 404; known: 204 and the manager is gone.
    assert (
        call(fake, "DELETE", "runners/managers", {"token": token, "system_id": "r_y"}, pat=False)[0]
        == 404
    )
    assert (
        call(fake, "DELETE", "runners/managers", {"token": token, "system_id": "r_x"}, pat=False)[0]
        == 204
    )
    fake.delete_runner(runner_id)
    for method, path in (
        ("POST", "runners/verify"),
        ("DELETE", "runners/managers"),
        ("POST", "jobs/request"),
    ):
        assert call(fake, method, path, {"token": token, "system_id": "r_x"}, pat=False)[0] == 403


def test_job_requests_are_recorded_per_runner(fake: GitLabFake) -> None:
    one = fake.add_runner("project_type", "one", ["amd64"], project_id=PROJECT_ID)
    two = fake.add_runner("project_type", "two", ["arm64"], project_id=PROJECT_ID)
    assert (
        call(
            fake,
            "POST",
            "jobs/request",
            {"token": fake.runners[one].token, "system_id": "s1"},
            pat=False,
        )[0]
        == 204
    )
    assert call(fake, "POST", "jobs/request", {"token": "glrt-nope"}, pat=False)[0] == 403
    assert [(p.runner_id, p.system_id, p.status) for p in fake.polls] == [
        (one, "s1", 204),
        (None, None, 403),
    ]
    assert fake.polls_of(two) == [] and len(fake.polls_of(one)) == 1
    assert fake.runners[one].status == "online" and fake.runners[two].status == "never_contacted"
    assert all(fake.runners[one].token not in repr(p) for p in fake.polls)


def test_lists_include_inherited_runners_and_details_name_the_owner(fake: GitLabFake) -> None:
    own = fake.add_runner("group_type", "own", ["amd64"], group_id=GROUP_ID)
    inherited = fake.add_inherited_group_runner("parent's", ["amd64"])
    foreign = fake.add_foreign_project_runner("foreign", ["amd64"])
    instance = fake.add_runner("instance_type", "shared", ["amd64"])
    group_list = {r["id"] for r in call(fake, "GET", f"groups/{GROUP_ID}/runners")[1]}
    assert group_list == {own, inherited, instance}
    project_list = {r["id"] for r in call(fake, "GET", f"projects/{PROJECT_ID}/runners")[1]}
    assert project_list == {own, inherited, foreign, instance}
    parent_list = {r["id"] for r in call(fake, "GET", f"groups/{PARENT_GROUP_ID}/runners")[1]}
    assert parent_list == {inherited, instance}
    assert [g["id"] for g in call(fake, "GET", f"runners/{inherited}")[1]["groups"]] == [
        PARENT_GROUP_ID
    ]
    assert [g["id"] for g in call(fake, "GET", f"runners/{own}")[1]["groups"]] == [GROUP_ID]
    assert [p["id"] for p in call(fake, "GET", f"runners/{foreign}")[1]["projects"]] == [
        43,
        PROJECT_ID,
    ]


def test_scopes(fake: GitLabFake) -> None:
    runner_id = fake.add_runner("project_type", "a", ["amd64"], project_id=PROJECT_ID)
    fake.scopes = {"read_api"}
    status, body = call(fake, "GET", f"runners/{runner_id}")
    # GitLab's top-level OAuth error (lib/api/api_guard.rb), the scopes that would do.
    assert status == 403 and body["error"] == "insufficient_scope"
    assert body["scope"] == "api manage_runner" and "message" not in body
    assert (
        call(
            fake, "POST", "user/runners", {"runner_type": "project_type", "project_id": PROJECT_ID}
        )[0]
        == 403
    )
    assert call(fake, "GET", f"projects/{PROJECT_ID}/runners")[0] == 200
    fake.scopes = {"create_runner", "manage_runner"}
    assert call(fake, "GET", f"projects/{PROJECT_ID}/runners")[0] == 403
    fake.scopes = {"api"}
    assert call(fake, "GET", f"runners/{runner_id}")[0] == 200


# --- 400s in the shape GitLab gives each case (lib/api/api.rb, lib/api/helpers.rb,
# lib/api/user_runners.rb, lib/api/ci/runners.rb, lib/api/ci/runner.rb) ----------------------


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # Grape's `requires ... values:`: both failures, one message, top level.
        ({}, "runner_type is missing, runner_type does not have a valid value"),
        ({"runner_type": "shared"}, "runner_type does not have a valid value"),
        # `given runner_type: group_type { requires :group_id, type: Integer }`.
        ({"runner_type": "group_type"}, "group_id is missing"),
        ({"runner_type": "group_type", "group_id": "platform"}, "group_id is invalid"),
        ({"runner_type": "project_type"}, "project_id is missing"),
        ({"runner_type": "group_type", "group_id": GROUP_ID, "tag_list": 5}, "tag_list is invalid"),
    ],
)
def test_create_runner_parameter_errors_are_grape_top_level_errors(
    fake: GitLabFake, body: dict[str, Any], said: str
) -> None:
    assert call(fake, "POST", "user/runners", body) == (400, {"error": said})
    assert not fake.runners


def test_create_runner_for_a_group_gitlab_does_not_have_is_a_bad_request(
    fake: GitLabFake,
) -> None:
    """GroupRunnerStrategy#validate_params → bad_request!: a message, with its status prefix."""
    answer = call(fake, "POST", "user/runners", {"runner_type": "group_type", "group_id": 999})
    assert answer == (400, {"message": "400 Bad request - Missing/invalid group"})
    answer = call(fake, "POST", "user/runners", {"runner_type": "project_type", "project_id": 9})
    assert answer == (400, {"message": "400 Bad request - Missing/invalid project"})


def test_create_runner_the_model_refuses_is_a_bad_request_of_its_full_messages(
    fake: GitLabFake,
) -> None:
    """Ci::Runner#tag_constraints on save → RecordInvalid → bad_request!(full_messages)."""
    body = {"runner_type": "group_type", "group_id": GROUP_ID, "run_untagged": False}
    assert call(fake, "POST", "user/runners", body) == (
        400,
        {
            "message": "400 Bad request - Tags list can not be empty when runner is not "
            "allowed to pick untagged jobs"
        },
    )
    assert not fake.runners


def test_create_runner_without_the_right_is_forbidden_with_the_reason(fake: GitLabFake) -> None:
    fake.admin = False
    fake.access_level = 40  # Maintainer: a group runner needs Owner
    answer = call(fake, "POST", "user/runners", {"runner_type": "group_type", "group_id": GROUP_ID})
    assert answer == (403, {"message": "403 Forbidden - Insufficient permissions"})


def test_update_runner_errors_are_grape_or_the_models_errors_by_field(fake: GitLabFake) -> None:
    runner_id = fake.add_runner("group_type", "a", ["amd64"], group_id=GROUP_ID)
    status, body = call(fake, "PUT", f"runners/{runner_id}", {})
    assert status == 400
    assert body["error"].endswith("are missing, at least one parameter must be provided")
    # render_validation_error!(runner): the model's errors by attribute; nothing saved.
    answer = call(fake, "PUT", f"runners/{runner_id}", {"tag_list": [], "run_untagged": False})
    assert answer == (
        400,
        {
            "message": {
                "tags_list": ["can not be empty when runner is not allowed to pick untagged jobs"]
            }
        },
    )
    assert fake.runners[runner_id].tag_list == ["amd64"]


def test_delete_manager_without_system_id_is_grapes_400_before_the_token_is_checked(
    fake: GitLabFake,
) -> None:
    answer = call(fake, "DELETE", "runners/managers", {"token": "glrt-unknown"}, pat=False)
    assert answer == (400, {"error": "system_id is missing"})
