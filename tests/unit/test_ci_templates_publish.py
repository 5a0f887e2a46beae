"""Publishing the templates, the pure part: commit actions, version rules, include snippets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from toolkit.publish.gitlab_templates import (
    FileAction,
    ProjectState,
    PublishError,
    VersionConflictError,
    git_blob_id,
    include_snippet,
    legacy_include_snippet,
    plan_actions,
    plan_publish,
    server_host,
    validate_version,
)

DESIRED = {
    "README.md": "# templates\n",
    "templates/multiarch.yml": "spec: {}\n---\njob: {script: [x]}\n",
    "include/multiarch.yml": "job: {script: [x]}\n",
}


def blobs(files: dict[str, str]) -> dict[str, str]:
    return {path: git_blob_id(text) for path, text in files.items()}


def state(
    branch_files: dict[str, str] | None = None,
    tag_files: dict[str, str] | None = None,
    release: bool = False,
) -> ProjectState:
    return ProjectState(
        branch="main",
        branch_files=blobs(branch_files or {}),
        tag_commit="c0ffee" * 6 + "c0ff" if tag_files is not None else None,
        tag_files=blobs(tag_files) if tag_files is not None else None,
        release_exists=release,
    )


def test_blob_id_is_gits(tmp_path: Path) -> None:
    text = "héllo\nworld\n"
    (tmp_path / "f").write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True
    )
    assert git_blob_id(text) == done.stdout.strip()


def test_actions_create_update_delete_only_managed_paths() -> None:
    remote = {
        "README.md": "# old\n",
        "templates/multiarch.yml": DESIRED["templates/multiarch.yml"],
        "templates/retired.yml": "old component\n",
        "LICENSE": "Apache-2.0\n",
        ".gitlab-ci.yml": "test: {script: [x]}\n",
    }
    actions = plan_actions(DESIRED, blobs(remote))
    assert [(a.action, a.path) for a in actions] == [
        ("update", "README.md"),
        ("create", "include/multiarch.yml"),
        ("delete", "templates/retired.yml"),
    ]
    assert actions[0].content == DESIRED["README.md"]
    assert FileAction("delete", "x", None, "abc").to_api() == {
        "action": "delete",
        "file_path": "x",
        "last_commit_id": "abc",
    }


def test_unmanaged_desired_path_is_refused() -> None:
    with pytest.raises(PublishError, match="LICENSE: not a path the publisher manages"):
        plan_actions({"LICENSE": "x"}, {})


def test_new_version_commits_tags_and_releases() -> None:
    plan = plan_publish("1.2.0", DESIRED, state(branch_files={"LICENSE": "x"}))
    assert [a.action for a in plan.actions] == ["create", "create", "create"]
    assert plan.create_tag and plan.create_release and plan.changes


def test_same_version_same_files_changes_nothing() -> None:
    plan = plan_publish("1.2.0", DESIRED, state(DESIRED, tag_files=DESIRED, release=True))
    assert not plan.changes and plan.actions == ()


def test_tag_without_release_gets_its_release_only() -> None:
    plan = plan_publish("1.2.0", DESIRED, state(DESIRED, tag_files=DESIRED, release=False))
    assert plan.actions == () and not plan.create_tag and plan.create_release


def test_same_version_other_files_is_refused() -> None:
    old = {**DESIRED, "README.md": "# older text\n"}
    with pytest.raises(VersionConflictError) as caught:
        plan_publish("1.2.0", DESIRED, state(DESIRED, tag_files=old, release=True))
    message = str(caught.value)
    assert "version 1.2.0 is already tagged" in message
    assert "README.md (update)" in message and "new version" in message


@pytest.mark.parametrize("version", ["1.2.0", "0.1.0", "2.0.0-rc.1", "10.20.30"])
def test_semver_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["v1.2.0", "1.2", "01.2.3", "1.2.3+build", "", "latest"])
def test_other_versions_are_refused(version: str) -> None:
    with pytest.raises(PublishError, match=r"expected a semantic version X\.Y\.Z"):
        validate_version(version)


def test_include_snippets() -> None:
    host = server_host("https://gitlab.example.com:8443/")
    assert host == "gitlab.example.com:8443"
    assert include_snippet(host, "platform/ci", "1.2.0") == (
        "include:\n  - component: gitlab.example.com:8443/platform/ci/multiarch@1.2.0\n"
    )
    assert legacy_include_snippet("platform/ci", "1.2.0") == (
        "include:\n  - project: platform/ci\n    ref: 1.2.0\n    file: /include/multiarch.yml\n"
    )
    with pytest.raises(PublishError, match="expected the GitLab base URL"):
        server_host("gitlab.example.com")
