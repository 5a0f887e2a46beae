"""discover-images: finding, naming, excludes, collisions (toolkit/discover.py), the child
pipeline's YAML, and the task's exit codes and files (toolkit/tasks/discover.py).

Trees are real directories under tmp_path; the YAML is read back with PyYAML (the module
writes it without PyYAML, which the lean tool image lacks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from invoke.context import Context
from invoke.exceptions import Exit

from toolkit import __version__
from toolkit.discover import (
    DEFAULT_INCLUDE,
    MAX_JOB_PREFIX,
    PATH_COMPONENT_RE,
    DiscoverError,
    Image,
    Include,
    child_pipeline,
    find_images,
    globs,
    image_name,
    include_limit_note,
    job_prefix,
    parse_include,
    parse_inputs,
    parse_platforms,
    slug,
)
from toolkit.registry.reference import parse_reference
from toolkit.tasks.discover import discover_images

THREE = {
    "jobs/job-a/Dockerfile": "FROM scratch\n",
    "jobs/job-b/Containerfile": "FROM scratch\n",
    "services/api/Dockerfile": "FROM scratch\n",
}


def tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def names(images: list[Image]) -> list[str]:
    return [image.name for image in images]


# --- discovery -----------------------------------------------------------------------------------


def test_three_images_named_by_path_in_order(tmp_path: Path) -> None:
    root = tree(tmp_path / "repo", {**THREE, "README.md": "", "jobs/job-a/app.py": ""})
    images = find_images(root)
    base = root.as_posix()
    assert [image.as_json() for image in images] == [
        {
            "name": "jobs-job-a",
            "context": f"{base}/jobs/job-a",
            "dockerfile": f"{base}/jobs/job-a/Dockerfile",
        },
        {
            "name": "jobs-job-b",
            "context": f"{base}/jobs/job-b",
            "dockerfile": f"{base}/jobs/job-b/Containerfile",
        },
        {
            "name": "services-api",
            "context": f"{base}/services/api",
            "dockerfile": f"{base}/services/api/Dockerfile",
        },
    ]


def test_paths_start_with_the_root_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path, {f"images/{k}": v for k, v in THREE.items()})
    monkeypatch.chdir(tmp_path)
    assert find_images(Path("."))[0] == Image(
        "images-jobs-job-a", "images/jobs/job-a", "images/jobs/job-a/Dockerfile"
    )
    # The name is relative to the root; the paths are what a job in the project dir uses.
    assert find_images(Path("images"))[0] == Image(
        "jobs-job-a", "images/jobs/job-a", "images/jobs/job-a/Dockerfile"
    )


def test_order_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    first = tree(tmp_path / "a", dict(reversed(list(THREE.items()))))
    second = tree(tmp_path / "b", THREE)
    assert (
        names(find_images(first)) == names(find_images(second)) == sorted(names(find_images(first)))
    )


def test_containerfile_wins_over_dockerfile_in_one_directory(tmp_path: Path) -> None:
    root = tree(tmp_path, {"app/Dockerfile": "", "app/Containerfile": ""})
    [image] = find_images(root)
    assert image.dockerfile.endswith("app/Containerfile")  # buildah's order


def test_default_excludes(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            **THREE,
            "node_modules/pkg/Dockerfile": "",
            "web/node_modules/dep/Dockerfile": "",
            ".git/hooks/Dockerfile": "",
            ".devcontainer/Dockerfile": "",
            "vendor/github.com/x/Dockerfile": "",
            ".gitlab-ci-local/builds/.docker/jobs/job-a/Dockerfile": "",
        },
    )
    assert names(find_images(root)) == ["jobs-job-a", "jobs-job-b", "services-api"]
    everything = names(find_images(root, excludes=()))
    assert "web-node-modules-dep" in everything and "git-hooks" in everything
    assert len(everything) == 9


def test_excludes_by_name_and_by_path(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "repo", {**THREE, "legacy/old/Dockerfile": "", "jobs/legacy/Dockerfile": ""}
    )
    # No `/`: a name at any depth.
    assert names(find_images(root, excludes=globs(["legacy"]))) == [
        "jobs-job-a",
        "jobs-job-b",
        "services-api",
    ]
    # With a `/` (or a leading `/`): the path from the root only.
    assert "jobs-legacy" in names(find_images(root, excludes=globs(["/legacy"])))
    assert "legacy-old" not in names(find_images(root, excludes=globs(["/legacy"])))
    assert names(find_images(root, excludes=globs(["jobs/*", "legacy/**"]))) == ["services-api"]
    # A Dockerfile itself can be excluded.
    assert "jobs-job-b" not in names(
        find_images(root, excludes=globs(["jobs/job-b/Containerfile"]))
    )


def test_patterns_choose_the_files(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            **THREE,
            "services/api/Dockerfile.prod": "",
            "images/worker.Dockerfile": "",
            "images/cron.Dockerfile": "",
        },
    )
    assert names(find_images(root, patterns=globs(["**/Dockerfile.prod"]))) == ["services-api-prod"]
    assert names(find_images(root, patterns=globs(["*.Dockerfile"]))) == [
        "images-cron",
        "images-worker",
    ]
    assert names(find_images(root, patterns=globs(["jobs/*/Dockerfile"]))) == ["jobs-job-a"]
    assert find_images(root, patterns=globs(["nothing/*"])) == []


def test_collision_is_an_error_naming_both_paths(tmp_path: Path) -> None:
    root = tree(tmp_path, {**THREE, "jobs/job_a/Dockerfile": "", "Jobs/Job.A/Dockerfile": ""})
    with pytest.raises(DiscoverError) as caught:
        find_images(root)
    message = str(caught.value)
    assert "'jobs-job-a'" in message
    for path in ("jobs/job-a/Dockerfile", "jobs/job_a/Dockerfile", "Jobs/Job.A/Dockerfile"):
        assert f"{root.as_posix()}/{path}" in message
    # A pattern that picks two files of one directory collides too, unless their names differ.
    twice = tree(tmp_path / "twice", {"app/Dockerfile": "", "app/Containerfile": ""})
    with pytest.raises(DiscoverError, match=r"app/Containerfile and .*app/Dockerfile"):
        find_images(twice, patterns=globs(["Dockerfile", "Containerfile"]))


def test_root_image_and_unusable_names(tmp_path: Path) -> None:
    root = tree(tmp_path / "My Project", {"Dockerfile": "", "tools/Dockerfile": ""})
    assert names(find_images(root)) == ["my-project", "tools"]
    assert names(find_images(root, root_name="platform")) == ["platform", "tools"]
    # A root Dockerfile with its own suffix is named by the suffix alone.
    assert image_name(PurePosixPath("."), "Dockerfile.web", "ignored") == "web"
    assert image_name(PurePosixPath("api"), "api.Containerfile", "ignored") == "api-api"
    bad = tree(tmp_path / "bad", {"___/Dockerfile": ""})
    with pytest.raises(DiscoverError, match=r"___/Dockerfile: no image name"):
        find_images(bad)
    with pytest.raises(DiscoverError, match="not a directory"):
        find_images(tmp_path / "missing")


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    root = tree(tmp_path / "repo", THREE)
    outside = tree(tmp_path / "outside", {"Dockerfile": ""})
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert names(find_images(root)) == ["jobs-job-a", "jobs-job-b", "services-api"]


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("jobs/job-a", "jobs-job-a"),
        ("Services/API_v2", "services-api-v2"),
        ("a//b..c__d--e", "a-b-c-d-e"),
        ("café/naïve", "cafe-naive"),
        ("-lead/trail-", "lead-trail"),
        ("2024/x", "2024-x"),
    ],
)
def test_slug(path: str, expected: str) -> None:
    assert slug(path) == expected
    # One path component of distribution/reference's grammar, and a repository a client parses.
    assert PATH_COMPONENT_RE.match(expected)
    assert parse_reference(f"registry.example.com/group/project/{expected}:1").repository == (
        f"group/project/{expected}"
    )


def test_job_prefix_long_names_stay_unique_and_short() -> None:
    assert job_prefix("jobs-job-a") == "jobs-job-a"
    long_a = "x" * 120 + "-a"
    long_b = "x" * 120 + "-b"
    assert len(job_prefix(long_a)) == MAX_JOB_PREFIX
    assert job_prefix(long_a) != job_prefix(long_b)
    assert job_prefix(long_a) == job_prefix(long_a)  # stable across runs


# --- flags ---------------------------------------------------------------------------------------


def test_parse_include() -> None:
    assert parse_include(DEFAULT_INCLUDE) == Include("component", DEFAULT_INCLUDE)
    assert parse_include("component:gitlab.example.com/p/ci/multiarch@1.2.0") == Include(
        "component", "gitlab.example.com/p/ci/multiarch@1.2.0"
    )
    assert parse_include("local:templates/multiarch.yml") == Include(
        "local", "templates/multiarch.yml"
    )
    assert parse_include("ci/multiarch.yaml") == Include("local", "ci/multiarch.yaml")
    with pytest.raises(DiscoverError, match="fixed job names"):
        parse_include("project:platform/archfleet-ci")
    with pytest.raises(DiscoverError, match="<fqdn>/<project path>/<component>@<version>"):
        parse_include("component:multiarch@1.0")
    with pytest.raises(DiscoverError, match="expected component:"):
        parse_include("multiarch")


def test_parse_platforms() -> None:
    assert parse_platforms("linux/amd64, arm64") == ("linux/amd64", "linux/arm64")
    assert parse_platforms("linux/arm/v7,linux/aarch64") == ("linux/arm/v7", "linux/arm64")
    with pytest.raises(DiscoverError, match="listed twice"):
        parse_platforms("linux/arm64,linux/arm64/v8")
    with pytest.raises(DiscoverError, match="not a platform the component builds"):
        parse_platforms("linux/mips64le")
    with pytest.raises(DiscoverError, match="no platform"):
        parse_platforms(" , ")


def test_parse_inputs() -> None:
    assert parse_inputs(
        ["smoke=true", 'build_args=["A=1", "B=two words"]', "builder=buildah", 'tag="1"', "e="]
    ) == {
        "smoke": True,
        "build_args": ["A=1", "B=two words"],
        "builder": "buildah",
        "tag": "1",
        "e": "",
    }
    with pytest.raises(DiscoverError, match="set per image"):
        parse_inputs(["image=x"])
    with pytest.raises(DiscoverError, match="given twice"):
        parse_inputs(["smoke=true", "smoke=false"])
    with pytest.raises(DiscoverError, match="NAME=VALUE"):
        parse_inputs(["smoke"])


# --- the child pipeline --------------------------------------------------------------------------


def child(images: list[Image], **kwargs: Any) -> dict[str, Any]:
    text = child_pipeline(images, include=parse_include(DEFAULT_INCLUDE), **kwargs)
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_child_pipeline_includes_the_component_once_per_image(tmp_path: Path) -> None:
    images = find_images(tree(tmp_path, THREE))
    data = child(images, inputs={"builder": "buildah", "smoke": True})
    assert data["stages"] == ["build", "deploy"]
    assert data["include"][1] == {
        "component": f"$CI_SERVER_FQDN/platform/archfleet-ci/multiarch@{__version__}",
        "inputs": {
            "job_prefix": "jobs-job-b",
            "image": "$CI_REGISTRY_IMAGE/jobs-job-b",
            "context": images[1].context,
            "dockerfile": images[1].dockerfile,
            "platforms": ["linux/amd64", "linux/arm64"],
            "builder": "buildah",
            "smoke": True,
        },
    }
    assert [entry["inputs"]["job_prefix"] for entry in data["include"]] == names(images)


def test_include_limit_note() -> None:
    assert include_limit_note(149) is None
    note = include_limit_note(150)
    assert note and "150 includes" in note and "ci_max_includes" in note


def test_child_pipeline_stages_follow_stage_inputs() -> None:
    data = child(
        [Image("a", "a", "a/Dockerfile")], inputs={"build_stage": "images", "merge_stage": "images"}
    )
    assert data["stages"] == ["images"]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "with: colon # and hash",
        'quote " and \\ backslash',
        "two\nlines\ttab",
        "ünïcödé and line\u2028separator and \x85 and emoji \U0001f680",
        "yes",
        "null",
        "0123",
        "",
        "- dash",
        "*alias &anchor !tag",
        ["a", "b c", True, 3],
        {"if": "$CI_COMMIT_BRANCH", "changes": ["app/**/*"]},
        [{"if": "$CI", "when": "never"}],
    ],
)
def test_child_pipeline_yaml_round_trips(value: Any) -> None:
    data = child(
        [Image("a", "ctx dir/with: colon", "ctx dir/Dockerfile")],
        inputs={"value": value, "on": "key that YAML 1.1 reads as true"},
    )
    inputs = data["include"][0]["inputs"]
    assert inputs["value"] == value
    assert inputs["on"] == "key that YAML 1.1 reads as true"
    assert inputs["context"] == "ctx dir/with: colon"


def test_child_pipeline_checks_the_repository() -> None:
    image = [Image("api", "api", "api/Dockerfile")]
    assert (
        child(image, repository="registry.example.com:5000/g/p")["include"][0]["inputs"]["image"]
        == "registry.example.com:5000/g/p/api"
    )
    assert (
        child(image, repository="$CI_REGISTRY/$CI_PROJECT_PATH")["include"][0]["inputs"]["image"]
        == "$CI_REGISTRY/$CI_PROJECT_PATH/api"
    )
    with pytest.raises(DiscoverError, match=re.escape("--repository 'registry.example.com/G/P'")):
        child(image, repository="registry.example.com/G/P")
    with pytest.raises(DiscoverError, match="--repository"):
        child(image, repository="registry.example.com/g/p:1")
    with pytest.raises(DiscoverError, match="no images"):
        child([])


# --- the task ------------------------------------------------------------------------------------


def run_task(**kwargs: Any) -> None:
    discover_images(Context(), **kwargs)


def test_task_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, THREE)
    run_task(root=str(root), json=True)
    listed = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in listed] == ["jobs-job-a", "jobs-job-b", "services-api"]
    assert set(listed[0]) == {"name", "context", "dockerfile"}
    run_task(root=str(root))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "CONTEXT", "DOCKERFILE"]
    assert lines[3].split()[0] == "services-api"


def test_task_writes_the_child_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path / "repo", THREE)
    out = tmp_path / "out" / "child.yml"
    out.parent.mkdir()
    run_task(
        root=str(root),
        gitlab_child_pipeline=str(out),
        include="local:templates/multiarch.yml",
        repository="registry.example.com/g/p",
        platforms="linux/amd64,linux/arm64,linux/arm/v7",
        input=["builder=buildah"],
    )
    data = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert [entry["local"] for entry in data["include"]] == ["templates/multiarch.yml"] * 3
    assert data["include"][2]["inputs"]["platforms"] == [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    ]
    assert data["include"][2]["inputs"]["image"] == "registry.example.com/g/p/services-api"
    assert sorted(os.listdir(out.parent)) == ["child.yml"]  # no temporary file left
    assert "wrote" in capsys.readouterr().err


def test_task_refuses_to_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tree(tmp_path / "repo", {"README.md": "", "node_modules/x/Dockerfile": ""})
    out = tmp_path / "child.yml"
    out.write_text("earlier\n", encoding="utf-8")
    with pytest.raises(Exit) as caught:
        run_task(root=str(empty), gitlab_child_pipeline=str(out))
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert f"error: no images under {empty}" in err and "nothing written" in err
    assert out.read_text(encoding="utf-8") == "earlier\n"  # the old file is left as it was
    assert sorted(os.listdir(tmp_path)) == ["child.yml", "repo"]


def test_task_errors_exit_1_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tree(tmp_path / "repo", {**THREE, "jobs/job_a/Dockerfile": ""})
    out = tmp_path / "child.yml"
    with pytest.raises(Exit):
        run_task(root=str(root), gitlab_child_pipeline=str(out))
    assert "two images would get one name" in capsys.readouterr().err
    with pytest.raises(Exit):
        run_task(
            root=str(tree(tmp_path / "ok", THREE)),
            gitlab_child_pipeline=str(out),
            platforms="linux/sparc",
        )
    assert "--platforms" in capsys.readouterr().err
    assert not out.exists()


def test_runs_on_the_lean_install_without_pyyaml(tmp_path: Path) -> None:
    """The tool image has the base install only: no PyYAML (the fleet extra's). With `yaml`
    made unimportable, the CLI still runs discover-images and writes the child pipeline."""
    root = tree(tmp_path / "repo", THREE)
    code = (
        "import sys; sys.modules['yaml'] = None\n"
        "sys.argv = ['archfleet', 'discover-images', '--root', sys.argv[1], "
        "'--gitlab-child-pipeline', sys.argv[2]]\n"
        "from toolkit.cli import main; main()\n"
    )
    out = tmp_path / "child.yml"
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(yaml.safe_load(out.read_text(encoding="utf-8"))["include"]) == 3
