"""Component inputs as GitLab passes them: arrays in GitLab's Ruby-inspect form (numbers,
escaped quotes, mangled backslashes) parsed by the job scripts, malformed lists refused, every
input typed, string inputs that become images, paths, stages, job names or tags checked by a
`regex:`, and word loops that never glob.

The array text comes from a STAND-IN of GitLab's hash-mode interpolation
(tests/support/gitlab_inputs.py `hash_mode_in_string`, written from gitlabhq
lib/gitlab/ci/config/interpolation/template.rb); regexes are checked with its stand-in of
`spec:inputs:regex` (`input_errors`). The scripts run in dash and busybox ash."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gitlab_inputs import hash_mode_in_string, input_errors, ruby_inspect
from tests.unit.test_ci_templates import SHELLS, component_documents, sh
from toolkit.ci_templates import (
    BUILDAH_IMAGE,
    DIND_IMAGE,
    DOCKER_CLI_IMAGE,
    INPUTS,
    UNPUBLISHED_TOOL_IMAGE,
    shell_library,
)
from toolkit.ci_templates import default_root as templates_root


@pytest.fixture(params=SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def shell(request: pytest.FixtureRequest) -> list[str]:
    chosen: list[str] = request.param
    return chosen


def gitlab_form(name: str, value: list[Any]) -> str:
    """The job variable's text when GitLab interpolates `inputs.NAME=$[[ inputs.NAME ]]`."""
    return hash_mode_in_string(f"inputs.{name}=$[[ inputs.{name} ]]", name, value)


def test_stand_in_writes_rubys_inspect() -> None:
    # What GitLab's own docs and issue 11 show for `[stable, 2, 1.0]` and a quoted item.
    assert gitlab_form("image_tags", ["stable", 2, 1.0]) == 'inputs.image_tags=["stable", 2, 1.0]'
    assert ruby_inspect(['say "hi"', "#{x}"]) == '["say \\"hi\\"", "\\#{x}"]'
    # gsub reads the replacement's `\\` as one backslash: C:\new arrives as "C:\new".
    assert gitlab_form("build_args", ["P=C:\\new"]) == 'inputs.build_args=["P=C:\\new"]'


@pytest.mark.parametrize(
    ("mode", "value", "items"),
    [
        ("words", ["stable", 2, 1.0], ["stable", "2", "1.0"]),
        ("words", [1, -3, 1e20, True], ["1", "-3", "1e+20", "true"]),
        ("words", ["v1.4", "ci-main"], ["v1.4", "ci-main"]),
        ("words", [], []),
        (
            "lines",
            ['MSG=say "hi"', "B=two words", "C=a,b]"],
            ['MSG=say "hi"', "B=two words", "C=a,b]"],
        ),
        ("lines", ["RUBY=#{x} #$y #@z"], ["RUBY=#{x} #$y #@z"]),
        ("lines", ["UNICODE=ünï"], ["UNICODE=ünï"]),
    ],
)
def test_gitlab_array_form_is_parsed(
    shell: list[str], mode: str, value: list[Any], items: list[str]
) -> None:
    for text in (
        gitlab_form("image_tags", value),
        f"inputs.image_tags={json.dumps(value, ensure_ascii=False)}",
    ):
        done = sh(shell, f'archfleet_list {mode} "$VALUE"', {"VALUE": text})
        assert done.returncode == 0, (text, done.stderr)
        assert done.stdout.splitlines() == items, text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["P=C:\\new"], "item 1 holds a backslash escape (\\n)"),
        (["ok", "a\\b"], "item 2 holds a backslash escape (\\b)"),
        (["two\nlines"], "item 1 holds a backslash escape (\\n)"),
        (["tab\there"], "item 1 holds a backslash escape (\\t)"),
        (["A", None], "item 2 is empty (nil)"),
    ],
)
def test_values_gitlab_mangles_are_refused(
    shell: list[str], value: list[Any], message: str
) -> None:
    done = sh(shell, 'archfleet_list lines "$VALUE"', {"VALUE": gitlab_form("build_args", value)})
    assert done.returncode == 1 and done.stdout == ""
    assert f"archfleet: error: inputs.build_args: {message}" in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('inputs.image_tags=["a", "b"', "the array has no closing ]"),
        ('inputs.image_tags=["a" "b"]', 'expected , or ] after item 1, found "'),
        ('inputs.image_tags=["a", ["b"]]', "item 2 is a nested array or hash"),
        ('inputs.image_tags=[{"k" => 1}]', "item 1 is a nested array or hash"),
        ('inputs.image_tags=["a"] x', "text after the closing ]: x"),
        ('inputs.image_tags=["a", latest]', "item 2 (latest) is neither a quoted string nor"),
        ('inputs.image_tags=["two words"]', "item 1 (two words) contains a blank"),
        ('inputs.image_tags=["open]', "item 1 has no closing quote"),
    ],
)
def test_malformed_lists_fail_the_job(shell: list[str], text: str, message: str) -> None:
    done = sh(shell, 'archfleet_list words "$VALUE"', {"VALUE": text})
    assert done.returncode == 1 and done.stdout == ""
    assert f"archfleet: error: inputs.image_tags: {message}" in done.stderr


def test_a_bad_list_stops_its_caller(shell: list[str]) -> None:
    # Not only the parser: each job function stops on it instead of going on with fewer items.
    platforms = sh(
        shell,
        "archfleet_requested_platforms; echo went-on",
        {"ARCHFLEET_PLATFORMS": gitlab_form("platforms", ["linux/amd64", None])},
    )
    assert platforms.returncode == 1 and "went-on" not in platforms.stdout
    assert "inputs.platforms: item 2 is empty (nil)" in platforms.stderr
    tags = sh(
        shell,
        "archfleet_merge_tags; echo went-on",
        {
            "ARCHFLEET_MERGE_MODE": "release",
            "CI_COMMIT_REF_PROTECTED": "true",
            "ARCHFLEET_IMAGE_TAGS": gitlab_form("image_tags", ["1.0", "C:\\x"]),
        },
    )
    assert tags.returncode == 1 and "went-on" not in tags.stdout, tags.stdout
    assert "inputs.image_tags: item 2 holds a backslash escape (\\x)" in tags.stderr


def test_build_stops_on_a_bad_build_args_list(shell: list[str], tmp_path: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "calls"
    for tool in ("buildah", "skopeo", "docker"):
        (shim / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (shim / tool).chmod(0o755)
    env = {
        "ARCHFLEET_PLATFORMS": "linux/amd64",
        "ARCHFLEET_BUILDER": "buildah",
        "ARCHFLEET_IMAGE": "registry.example.com/a/b",
        "ARCHFLEET_BUILD_ARGS": gitlab_form("build_args", ["OK=1", "WIN=C:\\new"]),
        "TMPDIR": str(tmp_path),
        "CI_JOB_ID": "7",
    }
    done = sh(shell, "archfleet_build", env, path_prefix=shim)
    assert done.returncode == 1
    assert "inputs.build_args: item 2 holds a backslash escape" in done.stderr
    assert not calls.exists(), "nothing may be built with a list cut short"


def test_word_loops_never_glob(shell: list[str], tmp_path: Path) -> None:
    # Files in the job's directory that a `v-*` or `*` item would expand to.
    for name in ("v-evil", "v-other", "release"):
        (tmp_path / name).write_text("")
    library = shell_library(
        templates_root(), ("archmap", "common", "lists", "auth", "guard", "build", "tool", "merge")
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "ARCHFLEET_MERGE_MODE": "release",
        "CI_COMMIT_REF_PROTECTED": "true",
        "ARCHFLEET_IMAGE_TAGS": "v-* *",
        "ARCHFLEET_PLATFORMS": "linux/amd64 *",
    }
    tags = subprocess.run(
        [*shell, "-c", f"{library}\narchfleet_merge_tags"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tags.stdout.split() == ["v-*", "*"], tags.stderr
    platforms = subprocess.run(
        [*shell, "-c", f"{library}\narchfleet_requested_platforms"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert platforms.returncode == 1
    assert "unknown platform '*' in platforms" in platforms.stderr


# --- spec: types and regexes -----------------------------------------------------------------

# Inputs whose value becomes an image reference, a path, a stage, a job name or a tag.
CHECKED = {
    "image",
    "context",
    "dockerfile",
    "runner_tag_pattern",
    "build_image",
    "docker_service",
    "cache_repository",
    "scratch_tag",
    "build_stage",
    "merge_stage",
    "archfleet_image",
    "archfleet_install",
    "job_prefix",
}


def spec_inputs() -> dict[str, dict[str, Any]]:
    header, _ = component_documents()
    inputs: dict[str, dict[str, Any]] = header["spec"]["inputs"]  # type: ignore[index]
    return inputs


def test_every_input_is_typed_and_the_named_ones_checked() -> None:
    inputs = spec_inputs()
    assert {name for name, entry in inputs.items() if "regex" in entry} == CHECKED
    for name, entry in inputs.items():
        assert entry["type"] in ("string", "boolean", "array"), name
    assert {i.name for i in INPUTS if i.type == "string"} - CHECKED == {
        "builder",  # options: [buildah, buildx]
        "smoke_command",  # a command, passed only in a variable, never into YAML or a path
    }


def test_defaults_pass_their_regex_except_the_unpublished_tool_image() -> None:
    for name, entry in spec_inputs().items():
        if "regex" not in entry:
            continue
        errors = input_errors(name, entry)
        if entry["default"] == UNPUBLISHED_TOOL_IMAGE:
            assert errors == [
                f"`{name}` input: default value does not match required RegEx pattern"
            ]
        else:
            assert errors == [], name


HOSTILE = {
    "image": ['registry.example.com/app"\nDOCKER_HOST: tcp://evil:2375', "Registry/App", "a b"],
    "context": ["../outside", "/etc", "dir\nx", "a/../../b"],
    "dockerfile": ["/etc/passwd", "../Dockerfile", "Docker file"],
    "runner_tag_pattern": ["amd64, arm64", "a'b", "x\ny"],
    "build_image": ["docker:27-cli\nservices: [evil]", "img' || true"],
    "docker_service": ["docker:dind\n", "docker:dind --tls=false"],
    "cache_repository": ["repo:tag", "a b"],
    "scratch_tag": ["a b", "tag\n", "x" * 129],
    "build_stage": ["build\nscript: evil", "'quoted'"],
    "merge_stage": ["deploy'"],
    "job_prefix": [".hidden", "a b", "x:y"],
}
FINE = {
    "image": ["$CI_REGISTRY_IMAGE/app", "registry.example.com:5000/team/app", "${REG}/a/b"],
    "context": [".", "app", ".docker/ctx", "a/b_c-d.e"],
    "dockerfile": ["Dockerfile", "app/Containerfile", ".ci/Dockerfile"],
    "runner_tag_pattern": ["${ARCHFLEET_ARCH}", "linux-${ARCHFLEET_ARCH}", "k8s/arm64"],
    "build_image": ["docker:27-cli", "quay.io/containers/aio:latest", "$BUILD_IMAGE"],
    "docker_service": ["docker:27.5.1-dind", "registry.example.com/mirror/docker:27-dind"],
    "cache_repository": ["", "$CI_REGISTRY_IMAGE/cache"],
    "scratch_tag": ["", "ci-$CI_COMMIT_REF_SLUG", "pr-${CI_MERGE_REQUEST_IID}"],
    "build_stage": ["build", "build images", ".pre"],
    "merge_stage": ["deploy"],
    "job_prefix": ["archfleet", "tool_image-2"],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_regexes_refuse_hostile_values(name: str) -> None:
    entry = spec_inputs()[name]
    for value in HOSTILE[name]:
        assert input_errors(name, entry, value) == [
            f"`{name}` input: provided value does not match required RegEx pattern"
        ], value
    for value in FINE[name]:
        assert input_errors(name, entry, value) == [], value


PINNED_IMAGE = re.compile(r"^[a-z0-9./-]+:[A-Za-z0-9_.-]+@sha256:[0-9a-f]{64}$")


def test_image_defaults_are_pinned_by_tag_and_digest() -> None:
    inputs = spec_inputs()
    for name in ("build_image", "docker_service"):
        assert PINNED_IMAGE.match(inputs[name]["default"]), name
    assert inputs["build_image"]["default"] == BUILDAH_IMAGE
    assert inputs["docker_service"]["default"] == DIND_IMAGE
    assert PINNED_IMAGE.match(DOCKER_CLI_IMAGE)
    # The templates project's own pipeline builds with the same pinned CLI image, beside the
    # pinned dind service (the dind and CLI versions go together).
    project = yaml.safe_load(
        (templates_root() / "project" / "gitlab-ci.yml").read_text(encoding="utf-8")
    )
    assert project["variables"]["TOOL_BUILD_IMAGE"] == DOCKER_CLI_IMAGE
    cli_version = DOCKER_CLI_IMAGE.split("@")[0].removesuffix("-cli")
    assert cli_version == DIND_IMAGE.split("@")[0].removesuffix("-dind") == "docker:27.5.1"
    # The check does refuse a floating tag.
    assert not PINNED_IMAGE.match("quay.io/containers/aio:latest")
