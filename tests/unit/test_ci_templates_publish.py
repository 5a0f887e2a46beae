"""Publishing the templates, the pure part: commit actions (text and binary), version rules,
the wheel check, the project pipeline's rendering, what is published, and what is reported."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from toolkit import __version__
from toolkit.ci_templates import (
    COMPONENT_PATH,
    INCLUDE_PATH,
    UNPUBLISHED_TOOL_IMAGE,
    default_root,
    render_tool_image_default,
)
from toolkit.publish.component_project import (
    IMAGE_FILES,
    PROJECT_PIPELINE,
    PROJECT_PIPELINE_SOURCE,
    ProjectFilesError,
    ToolWheel,
    project_files,
    read_wheel,
    render_project_pipeline,
)
from toolkit.publish.gitlab_templates import (
    FileAction,
    ProjectState,
    PublishError,
    PublishPlan,
    PublishResult,
    VersionConflictError,
    check_version,
    git_blob_id,
    include_snippet,
    legacy_include_snippet,
    pipelines_url,
    plan_actions,
    plan_publish,
    server_host,
    validate_version,
)

WHEEL_BYTES = b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe binary wheel bytes \x00\x80"
WHEEL_PATH = f"image/archfleet-{__version__}-py3-none-any.whl"
DESIRED = {
    "README.md": b"# templates\n",
    "templates/multiarch.yml": b"spec: {}\n---\njob: {script: [x]}\n",
    "include/multiarch.yml": b"job: {script: [x]}\n",
    ".gitlab-ci.yml": b"release-job: {script: [x]}\n",
    "image/Containerfile": b"FROM scratch\n",
    WHEEL_PATH: WHEEL_BYTES,
}
REGISTRY_PATH = "registry.example.com/platform/archfleet-ci"
TOOL_IMAGE = f"{REGISTRY_PATH}/archfleet:{__version__}"


def blobs(files: dict[str, bytes]) -> dict[str, str]:
    return {path: git_blob_id(content) for path, content in files.items()}


def state(
    branch_files: dict[str, bytes] | None = None,
    tag_files: dict[str, bytes] | None = None,
    release: bool = False,
) -> ProjectState:
    return ProjectState(
        branch="main",
        branch_files=blobs(branch_files or {}),
        tag_commit="c0ffee" * 6 + "c0ff" if tag_files is not None else None,
        tag_files=blobs(tag_files) if tag_files is not None else None,
        release_exists=release,
    )


def tiny_wheel(directory: Path, version: str = __version__, *, name: str = "") -> Path:
    """A minimal wheel: a zip with the one file publishing reads, *.dist-info/METADATA."""
    path = directory / (name or f"archfleet-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            f"archfleet-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: archfleet\nVersion: {version}\n\nA tool.\n",
        )
        archive.writestr("toolkit/__init__.py", f'__version__ = "{version}"\n')
    return path


@pytest.mark.parametrize("content", ["héllo\nworld\n", WHEEL_BYTES])
def test_blob_id_is_gits(tmp_path: Path, content: str | bytes) -> None:
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / "f").write_bytes(data)
    done = subprocess.run(
        ["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True
    )
    assert git_blob_id(content) == done.stdout.strip()


def test_actions_create_update_delete_only_managed_paths() -> None:
    remote = {
        "README.md": b"# old\n",
        "templates/multiarch.yml": DESIRED["templates/multiarch.yml"],
        "templates/retired.yml": b"old component\n",
        "image/archfleet-0.0.9-py3-none-any.whl": b"an older wheel",
        ".gitlab-ci.yml": b"test: {script: [x]}\n",
        "NOTICE": b"ours\n",
        "docs/notes.md": b"ours\n",
    }
    actions = plan_actions(DESIRED, blobs(remote))
    assert [(a.action, a.path) for a in actions] == [
        ("update", ".gitlab-ci.yml"),
        ("update", "README.md"),
        ("create", "image/Containerfile"),
        ("create", WHEEL_PATH),
        ("create", "include/multiarch.yml"),
        ("delete", "image/archfleet-0.0.9-py3-none-any.whl"),
        ("delete", "templates/retired.yml"),
    ]
    assert actions[1].content == DESIRED["README.md"]
    assert FileAction("delete", "x", None, "abc").to_api() == {
        "action": "delete",
        "file_path": "x",
        "last_commit_id": "abc",
    }


def test_text_goes_as_text_and_binary_as_base64() -> None:
    """doc/api/commits.md: `content`, and `encoding` `text` (default) or `base64`."""
    text = FileAction("create", "README.md", "é\n".encode()).to_api()
    assert text == {"action": "create", "file_path": "README.md", "content": "é\n"}
    binary = FileAction("update", WHEEL_PATH, WHEEL_BYTES, "abc").to_api()
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["content"]) == WHEEL_BYTES
    assert binary["last_commit_id"] == "abc"
    # Valid UTF-8 with a NUL is not text either.
    assert FileAction("create", "x", b"a\x00b").to_api()["encoding"] == "base64"


def test_unmanaged_desired_path_is_refused() -> None:
    with pytest.raises(PublishError, match="NOTICE: not a path the publisher manages"):
        plan_actions({"NOTICE": b"x"}, {})


def test_new_version_commits_and_tags_and_never_releases() -> None:
    plan = plan_publish(__version__, DESIRED, state(branch_files={"NOTICE": b"x"}))
    assert [a.action for a in plan.actions] == ["create"] * len(DESIRED)
    assert plan.create_tag and plan.changes
    assert not hasattr(plan, "create_release")  # the tag pipeline releases, never the API


def test_same_version_same_files_changes_nothing() -> None:
    plan = plan_publish("1.2.0", DESIRED, state(DESIRED, tag_files=DESIRED, release=True))
    assert not plan.changes and plan.actions == () and not plan.create_tag


def test_tag_without_release_plans_nothing() -> None:
    """The tag's pipeline makes the release; publishing again must not make one by the API."""
    plan = plan_publish("1.2.0", DESIRED, state(DESIRED, tag_files=DESIRED, release=False))
    assert plan == PublishPlan("1.2.0", "main", (), False)
    assert not plan.changes


def test_same_version_other_files_is_refused() -> None:
    old = {**DESIRED, "README.md": b"# older text\n"}
    with pytest.raises(VersionConflictError) as caught:
        plan_publish("1.2.0", DESIRED, state(DESIRED, tag_files=old, release=True))
    message = str(caught.value)
    assert "version 1.2.0 is already tagged" in message
    assert "README.md (update)" in message and "new version" in message


def test_another_wheel_under_a_tagged_version_is_refused() -> None:
    rebuilt = {**DESIRED, WHEEL_PATH: WHEEL_BYTES + b"rebuilt"}
    with pytest.raises(VersionConflictError, match=rf"{WHEEL_PATH} \(update\)"):
        plan_publish("1.2.0", rebuilt, state(DESIRED, tag_files=DESIRED))


@pytest.mark.parametrize("version", ["1.2.0", "0.1.0", "2.0.0-rc.1", "10.20.30"])
def test_semver_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["v1.2.0", "1.2", "01.2.3", "1.2.3+build", "", "latest"])
def test_other_versions_are_refused(version: str) -> None:
    with pytest.raises(PublishError, match=r"expected a semantic version X\.Y\.Z"):
        validate_version(version)


def test_only_this_archfleets_version_is_published() -> None:
    assert check_version(__version__) == __version__
    with pytest.raises(PublishError) as caught:
        check_version("9.8.7")
    assert str(caught.value) == (
        f"--version 9.8.7: this is archfleet {__version__}, whose templates require the "
        f"archfleet {__version__} tool. Publish them as --version {__version__}, or publish "
        "9.8.7 with archfleet 9.8.7"
    )


def test_include_snippets_and_urls() -> None:
    host = server_host("https://gitlab.example.com:8443/")
    assert host == "gitlab.example.com:8443"
    assert include_snippet(host, "platform/ci", "1.2.0") == (
        "include:\n  - component: gitlab.example.com:8443/platform/ci/multiarch@1.2.0\n"
    )
    assert legacy_include_snippet("platform/ci", "1.2.0") == (
        "include:\n  - project: platform/ci\n    ref: 1.2.0\n    file: /include/multiarch.yml\n"
    )
    assert pipelines_url("https://gl.example/platform/ci", "2.0.0-rc.1") == (
        "https://gl.example/platform/ci/-/pipelines?ref=2.0.0-rc.1"
    )
    with pytest.raises(PublishError, match="expected the GitLab base URL"):
        server_host("gitlab.example.com")


# --- the wheel --------------------------------------------------------------------------------


def test_the_wheel_is_read_and_hashed(tmp_path: Path) -> None:
    path = tiny_wheel(tmp_path)
    wheel = read_wheel(path)
    assert wheel.version == __version__ and wheel.filename == path.name
    assert wheel.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert wheel.path == f"image/{path.name}" and wheel.data == path.read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: tiny_wheel(d, "9.9.9"), "is archfleet 9.9.9, but these templates are archfleet"),
        (
            lambda d: tiny_wheel(d, "9.9.9", name=f"archfleet-{__version__}-py3-none-any.whl"),
            f"its metadata says archfleet 9.9.9, its file name archfleet {__version__}",
        ),
        (
            lambda d: tiny_wheel(
                d, name=f"archfleet-{__version__}-cp311-cp311-manylinux_2_17_x86_64.whl"
            ),
            "expected a pure-Python wheel",
        ),
        (lambda d: d / "requests-2.0.0-py3-none-any.whl", "expected an archfleet wheel file"),
        (lambda d: d / f"archfleet-{__version__}.tar.gz", "expected an archfleet wheel file"),
        (lambda d: d / f"archfleet-{__version__}-py3-none-any.whl", "cannot read it"),
    ],
)
def test_a_wrong_wheel_is_refused_with_how_to_build_one(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(ProjectFilesError) as caught:
        read_wheel(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / f"archfleet-{__version__}-py3-none-any.whl"
    path.write_bytes(b"not a zip")
    with pytest.raises(ProjectFilesError, match="not a wheel \\(zip\\) file"):
        read_wheel(path)


# --- the project pipeline and what is published ------------------------------------------------

WHEEL = ToolWheel(f"archfleet-{__version__}-py3-none-any.whl", __version__, "ab" * 32, b"whl")


def rendered() -> dict[str, object]:
    source = (default_root() / PROJECT_PIPELINE_SOURCE).read_text(encoding="utf-8")
    data = yaml.safe_load(render_project_pipeline(source, WHEEL, where="src"))
    assert isinstance(data, dict)
    return data


def test_project_pipeline_is_rendered_with_the_wheel_and_version() -> None:
    source = (default_root() / PROJECT_PIPELINE_SOURCE).read_text(encoding="utf-8")
    text = render_project_pipeline(source, WHEEL, where="src")
    assert "@ARCHFLEET" not in text
    data = yaml.safe_load(text)
    assert data["variables"]["ARCHFLEET_VERSION"] == __version__
    assert data["variables"]["ARCHFLEET_WHEEL"] == f"image/{WHEEL.filename}"
    assert data["variables"]["ARCHFLEET_SHA256"] == WHEEL.sha256
    (include,) = data["include"]
    assert include["component"] == "$CI_SERVER_FQDN/$CI_PROJECT_PATH/multiarch@$CI_COMMIT_SHA"
    inputs = include["inputs"]
    assert inputs["archfleet_install"] == f"image/{WHEEL.filename} --hash=sha256:{WHEEL.sha256}"
    assert inputs["archfleet_image"] == "$BASE_IMAGE"
    assert inputs["image"] == "$CI_REGISTRY_IMAGE/archfleet"
    assert f"'archfleet {__version__}'" in inputs["smoke_command"]
    # The base is never given a default here: the project must set it.
    assert "BASE_IMAGE" not in data["variables"]


def test_release_comes_from_the_release_keyword_on_the_tag() -> None:
    job = rendered()["catalog-release"]
    assert isinstance(job, dict)
    assert job["release"]["tag_name"] == "$CI_COMMIT_TAG"
    assert "$ARCHFLEET_INDEX_DIGEST" in job["release"]["description"]
    assert job["image"] == "$RELEASE_JOB_IMAGE"
    assert {"job": "tool-image-release", "artifacts": True, "optional": True} in job["needs"]


@pytest.mark.parametrize(
    ("tag", "runs"),
    [
        ("0.1.0", True),
        ("12.0.3", True),
        ("2.0.0-rc.1", True),
        ("v0.1.0", False),
        ("0.1", False),
        ("01.2.3", False),
        ("", False),
    ],
)
def test_the_pipeline_runs_on_semantic_version_tags_only(tag: str, runs: bool) -> None:
    """workflow:rules (gitlab-ci-local does not evaluate them): `$CI_COMMIT_TAG =~ /RE/`, RE2
    and Python's re agree on this pattern (no lookaround, no \\d). No tag: no pipeline."""
    (rule,) = rendered()["workflow"]["rules"]  # type: ignore[index]
    variable, operator, pattern = rule["if"].split(" ", 2)
    assert (variable, operator) == ("$CI_COMMIT_TAG", "=~")
    assert pattern.startswith("/") and pattern.endswith("/")
    assert bool(re.search(pattern[1:-1], tag)) is runs


def test_unknown_placeholders_and_a_bad_install_line_are_refused() -> None:
    with pytest.raises(ProjectFilesError, match="unknown placeholder\\(s\\) @WHEEL_URL@"):
        render_project_pipeline("a: '@WHEEL_URL@'\n", WHEEL, where="src")
    source = "include:\n  - inputs:\n      archfleet_install: 'archfleet==@ARCHFLEET_VERSION@'\n"
    with pytest.raises(ProjectFilesError, match="does not match the input's regex"):
        render_project_pipeline(source, WHEEL, where="src")


def test_published_files() -> None:
    root = default_root()
    files = project_files(root, WHEEL, render_tool_image_default(REGISTRY_PATH, __version__))
    assert set(files) == {
        COMPONENT_PATH,
        INCLUDE_PATH,
        "README.md",
        "LICENSE",  # the catalog shows it with the component
        PROJECT_PIPELINE,
        *IMAGE_FILES,
        WHEEL.path,
    }
    assert files[WHEEL.path] == WHEEL.data
    for relative in IMAGE_FILES:
        assert files[relative] == (root / relative).read_bytes()
    component = files[COMPONENT_PATH].decode()
    assert f"default: {TOOL_IMAGE}\n" in component
    assert UNPUBLISHED_TOOL_IMAGE not in component.split("\n---\n", 1)[0]


def test_the_report_says_where_the_release_comes_from() -> None:
    plan = PublishPlan(__version__, "main", (), True)
    result = PublishResult(
        project="platform/ci",
        plan=plan,
        dry_run=False,
        include="",
        legacy_include="",
        web_url="https://gl.example/platform/ci",
        tool_image=TOOL_IMAGE,
        release_exists=False,
    )
    (line,) = result.next_steps()
    assert line == (
        f"tag {__version__} starts its pipeline, which builds, merges and verifies the tool image "
        f"{TOOL_IMAGE}, then creates release {__version__} for the CI/CD Catalog: watch "
        f"https://gl.example/platform/ci/-/pipelines?ref={__version__}"
    )
    assert "would start" in replace(result, dry_run=True).next_steps()[0]
    untagged = replace(result, plan=PublishPlan(__version__, "main", (), False))
    assert "does not exist yet" in untagged.next_steps()[0]
    assert "never creates releases" in untagged.next_steps()[0]
    released = replace(untagged, release_exists=True)
    assert released.next_steps() == [
        f"release {__version__} exists: https://gl.example/platform/ci/-/releases/{__version__}"
    ]
    data = result.to_json()
    assert "releaseCreated" not in data
    assert data["toolImage"] == TOOL_IMAGE and data["releaseExists"] is False
