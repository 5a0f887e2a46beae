"""Runner lifecycle on the GitLab side, through python-gitlab as in production, against a
local FAKE of the GitLab REST v4 endpoints (tests/support/gitlab_fake.py: POST /user/runners,
GET /runners/all, group/project runner lists, GET/PUT/DELETE /runners/:id). There is no
GitLab server on these machines; the payloads follow GitLab's documented API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitlab_fake import GROUP_ID, PROJECT_ID, GitLabFake
from toolkit.fleet.gitlab_host import RunnerHostError
from toolkit.fleet.gitlab_runner import (
    CreatedRunner,
    GitLabRunnerError,
    GitLabRunners,
    create_and_register,
)
from toolkit.fleet.plan import RunnerState
from toolkit.inventory import GitLabSettings

pytestmark = pytest.mark.integration

API_TOKEN = "glpat-runner-api-7c1e55aa"
PROJECT = "platform/builds"


@pytest.fixture
def fake() -> Iterator[GitLabFake]:
    with GitLabFake(token=API_TOKEN, project=PROJECT) as server:
        yield server


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Everything a test shows or logs; at the end it must hold no token of the test."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    yield texts
    texts.append(caplog.text)
    for text in texts:
        assert API_TOKEN not in text
        assert "glrt-" not in text


def runners(fake: GitLabFake, **settings: Any) -> GitLabRunners:
    return GitLabRunners.from_settings(
        GitLabSettings(url=fake.url, **{"runner_type": "instance_type", **settings}),
        {"GITLAB_TOKEN": API_TOKEN},
    )


def test_create_find_update_delete_round_trip(fake: GitLabFake, captured: list[str]) -> None:
    gl = runners(fake)
    assert gl.find("host-amd64") is None
    created = gl.create("host-amd64", ["amd64", "docker"], locked=True)
    captured.append(repr(created))
    assert created.token.startswith("glrt-")
    post = next(r for r in fake.requests if r.method == "POST")
    assert post.path == "/api/v4/user/runners"
    assert {k: post.body[k] for k in ("runner_type", "description", "run_untagged", "locked")} == {
        "runner_type": "instance_type",
        "description": "host-amd64",
        "run_untagged": False,
        "locked": True,
    }
    assert fake.runners[created.id].tag_list == ["amd64", "docker"]
    assert fake.runners[created.id].token == created.token
    assert gl.find("host-amd64") == RunnerState(
        created.id, "host-amd64", ("amd64", "docker"), False, True, online=False
    )
    fake.set_online(created.id)
    gl.update(created.id, ["amd64", "fast"], locked=False)
    put = next(r for r in fake.requests if r.method == "PUT")
    assert put.path == f"/api/v4/runners/{created.id}"
    assert put.body["run_untagged"] is False and put.body["locked"] is False
    assert gl.find("host-amd64") == RunnerState(
        created.id, "host-amd64", ("amd64", "fast"), False, False, online=True
    )
    assert gl.delete(created.id) is True
    assert gl.find("host-amd64") is None and fake.runners == {}
    assert gl.delete(created.id) is False  # already gone: a re-run converges
    captured.append(repr(gl))


def test_the_scope_is_listed_once_for_many_hosts(fake: GitLabFake) -> None:
    for n in range(6):
        fake.add_runner("instance_type", f"host-{n}", ["amd64"])
    gl = runners(fake)
    mark = fake.mark()
    found: dict[str, RunnerState | None] = {}

    def look(name: str) -> None:
        found[name] = gl.find(name)

    threads = [threading.Thread(target=look, args=(f"host-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lists = [r for r in fake.since(mark) if r.path == "/api/v4/runners/all"]
    assert len(lists) == 1
    assert sorted(n for n, s in found.items() if s) == [f"host-{n}" for n in range(6)]
    assert found["host-6"] is None and found["host-7"] is None
    # A runner created afterwards is found without listing again.
    created = gl.create("host-6", ["arm64"], locked=True)
    state = gl.find("host-6")
    assert state is not None and state.id == created.id
    assert len([r for r in fake.since(mark) if r.path == "/api/v4/runners/all"]) == 1


@pytest.mark.parametrize(
    ("runner_type", "owner", "list_path", "owner_key", "owner_id"),
    [
        ("group_type", {"group": "platform"}, f"/api/v4/groups/{GROUP_ID}/runners", "group_id", 7),
        (
            "project_type",
            {"project": PROJECT},
            f"/api/v4/projects/{PROJECT}/runners",
            "project_id",
            PROJECT_ID,
        ),
    ],
)
def test_group_and_project_scopes(
    fake: GitLabFake,
    runner_type: str,
    owner: dict[str, str],
    list_path: str,
    owner_key: str,
    owner_id: int,
) -> None:
    # Same description in the wider scope: inherited, but not this scope's runner.
    fake.add_runner("instance_type", "host-arm64", ["arm64"])
    gl = runners(fake, runner_type=runner_type, **owner)
    assert gl.find("host-arm64") is None
    created = gl.create("host-arm64", ["arm64"], locked=True)
    post = next(r for r in fake.requests if r.path == "/api/v4/user/runners")
    assert post.body["runner_type"] == runner_type and post.body[owner_key] == owner_id
    gl.refresh()
    state = gl.find("host-arm64")
    assert state is not None and state.id == created.id and state.tags == ("arm64",)
    listed = [r.path for r in fake.requests if r.path.endswith("/runners") and "user" not in r.path]
    assert listed and set(listed) == {list_path.replace(str(GROUP_ID), "platform")}


def test_online_by_tag_counts_online_unpaused_runners(fake: GitLabFake) -> None:
    up = fake.add_runner("instance_type", "a", ["amd64", "docker"])
    fake.add_runner("instance_type", "b", ["arm64"])  # offline
    paused = fake.add_runner("instance_type", "c", ["arm-v7"], paused=True)
    fake.set_online(up)
    fake.set_online(paused)
    assert runners(fake).online_by_tag(["amd64", "arm64", "riscv64"]) == {
        "amd64": True,
        "docker": True,
        "arm64": False,
        "arm-v7": False,
        "riscv64": False,
    }


def test_token_from_a_python_gitlab_config_file(fake: GitLabFake, tmp_path: Path) -> None:
    config = tmp_path / "python-gitlab.cfg"
    config.write_text(
        f"[global]\ndefault = lab\n\n[lab]\nurl = {fake.url}\nprivate_token = {API_TOKEN}\n"
    )
    settings = GitLabSettings(
        url=fake.url, runner_type="instance_type", config_file=config, config_section="lab"
    )
    gl = GitLabRunners.from_settings(settings, {})
    assert gl.create("h", ["amd64"], locked=True).id in fake.runners
    assert API_TOKEN not in repr(gl) and str(config) in repr(gl)


def test_missing_token_names_the_variable_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.cfg"
    settings = GitLabSettings(url="http://127.0.0.1:9", token_env="LAB_GITLAB_TOKEN")
    with pytest.raises(GitLabRunnerError) as caught:
        GitLabRunners.from_settings(
            GitLabSettings(**{**settings.__dict__, "config_file": missing}), {}
        )
    message = str(caught.value)
    assert "environment variable LAB_GITLAB_TOKEN is not set" in message
    assert f"python-gitlab config file {missing}" in message
    no_token = tmp_path / "no-token.cfg"
    no_token.write_text("[global]\ndefault = lab\n\n[lab]\nurl = http://127.0.0.1:9\n")
    with pytest.raises(GitLabRunnerError, match="has no private_token"):
        GitLabRunners.from_settings(
            GitLabSettings(url="http://127.0.0.1:9", config_file=no_token, config_section="lab"),
            {"GITLAB_TOKEN": ""},
        )


def test_config_file_for_another_server_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "python-gitlab.cfg"
    config.write_text(f"[lab]\nurl = https://elsewhere.example\nprivate_token = {API_TOKEN}\n")
    settings = GitLabSettings(url="http://127.0.0.1:9", config_file=config, config_section="lab")
    with pytest.raises(GitLabRunnerError) as caught:
        GitLabRunners.from_settings(settings, {})
    assert "is for https://elsewhere.example" in str(caught.value)
    assert API_TOKEN not in str(caught.value)


def test_refused_token_and_errors_never_show_it(fake: GitLabFake, captured: list[str]) -> None:
    wrong = "glpat-wrong-0000"
    gl = GitLabRunners.from_settings(
        GitLabSettings(url=fake.url, runner_type="instance_type"), {"GITLAB_TOKEN": wrong}
    )
    with pytest.raises(GitLabRunnerError) as caught:
        gl.find("h")
    message = str(caught.value)
    captured.append(message)
    assert message == (
        f"GitLab {fake.url}: listing instance_type runners failed: the token from "
        "$GITLAB_TOKEN was refused (HTTP 401)"
    )
    assert wrong not in message + repr(gl)
    # Not an administrator: instance runners cannot be listed; say why.
    with GitLabFake(token=API_TOKEN, project=PROJECT, admin=False) as plain:
        with pytest.raises(GitLabRunnerError, match="needs an administrator's token") as denied:
            runners(plain).find("h")
        captured.append(str(denied.value))
    # A group that does not exist.
    with pytest.raises(GitLabRunnerError, match=r"looking up group nope failed: HTTP 404") as err:
        runners(fake, runner_type="group_type", group="nope").create("h", ["x"], locked=True)
    captured.append(str(err.value))
    with pytest.raises(GitLabRunnerError, match="has a comma"):
        runners(fake).create("h", ["amd64,arm64"], locked=True)


def test_unreachable_gitlab_is_one_clear_error() -> None:
    gl = GitLabRunners.from_settings(
        GitLabSettings(url="http://127.0.0.1:9", runner_type="instance_type"),
        {"GITLAB_TOKEN": API_TOKEN},
        timeout=3,
    )
    with pytest.raises(GitLabRunnerError) as caught:
        gl.delete(5)
    assert str(caught.value) == (
        "GitLab http://127.0.0.1:9: deleting runner #5 failed: cannot reach it (ConnectionError)"
    )


def test_a_failed_registration_deletes_the_runner_it_created(
    fake: GitLabFake, captured: list[str]
) -> None:
    seen: list[str] = []

    def failing_register(
        connection: object, host: str, settings: GitLabSettings, token: str, **_: object
    ) -> None:
        seen.append(token)
        raise RunnerHostError(f"{host}: gitlab-runner register failed (exit 1): bad {token}")

    gl = runners(fake)
    with pytest.raises(GitLabRunnerError) as caught:
        create_and_register(
            gl,
            None,
            "host-amd64",
            GitLabSettings(url=fake.url, runner_type="instance_type"),
            ["amd64"],
            register=failing_register,
        )
    message = str(caught.value)
    captured.append(message)
    assert seen and seen[0].startswith("glrt-")
    assert fake.runners == {}  # nothing half done on GitLab
    assert "runner #101 deleted on GitLab again" in message and "bad [hidden]" in message
    assert gl.find("host-amd64") is None
    # And when it works, the runner stays and the token went to register only.
    ok: list[str] = []
    created = create_and_register(
        gl,
        None,
        "host-amd64",
        GitLabSettings(url=fake.url),
        ["amd64"],
        register=lambda c, h, s, token, **_: ok.append(token),
    )
    assert isinstance(created, CreatedRunner) and ok == [created.token]
    assert list(fake.runners) == [created.id]


@pytest.mark.parametrize(
    ("scopes", "step", "needed"),
    [
        ({"read_api", "manage_runner"}, "create", "create_runner"),
        ({"create_runner", "manage_runner"}, "find", "read_api"),
    ],
)
def test_a_token_without_the_scope_is_told_which_one(
    scopes: set[str], step: str, needed: str
) -> None:
    """The GitLab fake answers 403 insufficient_scope as GitLab does for a token lacking the
    endpoint's scope (tests/support/gitlab_fake.py cites which); the error names the scope."""
    with GitLabFake(token=API_TOKEN, project=PROJECT) as fake:
        fake.scopes = scopes
        gl = runners(fake, runner_type="group_type", group=fake.group)
        with pytest.raises(GitLabRunnerError) as denied:
            if step == "create":
                gl.create("h", ["amd64"], locked=True)
            else:
                gl.find("h")
    message = str(denied.value)
    assert "HTTP 403" in message and f"the token needs the {needed} scope" in message
    assert API_TOKEN not in message


def test_each_kind_of_400_is_one_line_naming_what_was_wrong(
    fake: GitLabFake, captured: list[str]
) -> None:
    """The FAKE answers each 400 in the shape GitLab gives it (tests/support/gitlab_fake.py):
    bad_request!'s `{"message": "400 Bad request - …"}` and render_validation_error!'s
    `{"message": {"tags_list": [...]}}`; the client's message says what was wrong in words,
    with no status prefix twice, no Python dict, no token."""
    # A group id GitLab does not have (the inventory gave a number): bad_request!.
    with pytest.raises(GitLabRunnerError) as unknown:
        runners(fake, runner_type="group_type", group="999").create("h", ["amd64"], locked=True)
    message = str(unknown.value)
    captured.append(message)
    assert message == (
        f"GitLab {fake.url}: creating runner 'h' failed: HTTP 400: Missing/invalid group "
        "(gitlab.group is '999', id 999: GitLab has no group of that id)"
    )
    # No tags on a runner that may not take untagged jobs: the model's errors by field.
    gl = runners(fake)
    created = gl.create("h", ["amd64"], locked=True)
    with pytest.raises(GitLabRunnerError) as refused:
        gl.update(created.id, [], locked=True)
    message = str(refused.value)
    captured.append(message)
    assert message == (
        f"GitLab {fake.url}: updating runner #{created.id} failed: HTTP 400: tags_list can not "
        "be empty when runner is not allowed to pick untagged jobs"
    )
    assert "\n" not in message and "{" not in message
    assert fake.runners[created.id].tag_list == ["amd64"]
