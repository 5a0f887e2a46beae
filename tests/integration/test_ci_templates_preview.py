"""The templates as GitLab expands them: gitlab-ci-local's --preview (includes, inputs, extends
expanded; it validates against GitLab's CI JSON schema on the way) and --list-json (rules
evaluated), for several input sets; plus `check-jsonschema --builtin-schema vendor.gitlab-ci`.

gitlab-ci-local ignores `tags:`; GitLab expands CI/CD variables in them from the job's
variables, so the tests expand them the same way (string.Template, unknown names left as is).
It also ignores `spec:inputs:regex` (tests/unit/test_ci_templates_tool.py checks those), so the
committed templates' placeholder image gets through here; the `image:` of every job is asserted
on the preview, for the committed files and for the files as publish-templates renders them.
"""

from __future__ import annotations

import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import gitlab_ci_local as gcl
from toolkit import __version__, archmap
from toolkit.ci_templates import (
    BUILDAH_IMAGE,
    COMPONENT_PATH,
    DIND_IMAGE,
    INCLUDE_PATH,
    RETRY,
    UNPUBLISHED_TOOL_IMAGE,
    arch_jobs,
    default_root,
    load_rendered,
    published_files,
    render_tool_image_default,
)

pytestmark = pytest.mark.integration

ROOT = default_root()
EXAMPLE = ROOT.parent / "gitlab" / ".gitlab-ci.yml"
ALL_ARCHES = [job.arch for job in arch_jobs()]
PUSH_MAIN = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "false"}
MR = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_REF_PROTECTED": "false"}
PROTECTED = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true"}
TOOL_IMAGE = render_tool_image_default(
    "registry.example.com/platform/archfleet-ci", __version__, "sha256:" + "ab" * 32
)
TOOL_JOBS = ("archfleet-preflight", "archfleet-merge", "archfleet-release", "archfleet-verify")


def component_project(
    tmp_path: Path, inputs: dict[str, Any] | None = None, *, component: str | None = None
) -> Path:
    include: dict[str, Any] = {"local": COMPONENT_PATH}
    if inputs:
        include["inputs"] = inputs
    return gcl.make_project(
        tmp_path / "project",
        {
            COMPONENT_PATH: component or (ROOT / COMPONENT_PATH).read_text(encoding="utf-8"),
            ".gitlab-ci.yml": yaml.safe_dump({"include": [include]}, sort_keys=False),
        },
    )


def published_component() -> str:
    """The component as publish-templates pushes it: the tool image is archfleet_image's
    default."""
    return published_files(ROOT, tool_image=TOOL_IMAGE)[COMPONENT_PATH]


def install_commands(job: dict[str, Any]) -> list[str]:
    """Script lines (comments aside) that name pip, outside the archfleet_install hatch's
    function (which runs only when archfleet_install is set)."""
    script = "\n".join(job.get("script", []))
    script = re.sub(r"\narchfleet_install_tool\(\) \{\n.*?\n\}\n", "\n", script, flags=re.S)
    return [
        line
        for line in script.splitlines()
        if re.search(r"\bpip\b", line) and not line.lstrip().startswith("#")
    ]


def expanded_tags(job: dict[str, Any]) -> list[str]:
    variables = {k: str(v) for k, v in (job.get("variables") or {}).items()}
    return [string.Template(tag).safe_substitute(variables) for tag in job.get("tags", [])]


def image_of(job: dict[str, Any]) -> str:
    """The job's image name (gitlab-ci-local's preview writes `image: {name: ...}`)."""
    image = job["image"]
    name: str = image["name"] if isinstance(image, dict) else image
    return name


def needed(job: dict[str, Any]) -> list[str]:
    return [n["job"] if isinstance(n, dict) else n for n in job.get("needs", [])]


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            # GitLab's `!reference` tags (the jobs name the shell library's hidden jobs).
            "--data-transform",
            "gitlab-ci",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_default_inputs(tmp_path: Path) -> None:
    project = component_project(tmp_path)
    run = gcl.run(project, "--preview")
    assert run.code == 0, run.output
    assert "json schema validated" in run.output
    preview = yaml.safe_load(run.stdout)
    (tmp_path / "preview.yml").write_text(run.stdout, encoding="utf-8")
    schema = check_jsonschema(tmp_path / "preview.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr

    builds = [f"archfleet-build-{arch}" for arch in ALL_ARCHES]
    for job in arch_jobs():
        for kind in ("build", "smoke"):
            definition = preview[f"archfleet-{kind}-{job.arch}"]
            # Pinned to its arch's runners, and to no other tag.
            assert expanded_tags(definition) == [archmap.runner_tag(job.platform)]
            assert definition["variables"]["ARCHFLEET_PLATFORM"] == job.name
    assert preview["archfleet-build-arm64"]["artifacts"]["reports"]["dotenv"] == (
        "archfleet-build-arm64.env"
    )
    for merge in ("archfleet-merge", "archfleet-release"):
        assert needed(preview[merge]) == [*builds, "archfleet-preflight"]
        assert preview[merge]["resource_group"]
        assert preview[merge]["interruptible"] is False
    assert preview["archfleet-release"]["resource_group"] == "archfleet-release"
    assert needed(preview["archfleet-verify"]) == [
        "archfleet-merge",
        "archfleet-release",
        "archfleet-preflight",
    ]
    # The tool jobs run the tool image, unpublished here: the placeholder (which GitLab refuses
    # at pipeline creation); the build and smoke jobs the build image. Nothing installs.
    assert preview["archfleet-preflight"]["stage"] == ".pre"
    for name in TOOL_JOBS:
        assert image_of(preview[name]) == UNPUBLISHED_TOOL_IMAGE, name
        assert preview[name]["variables"]["ARCHFLEET_INSTALL"] == "", name
        assert install_commands(preview[name]) == [], name
    for arch in ALL_ARCHES:
        assert image_of(preview[f"archfleet-build-{arch}"]) == BUILDAH_IMAGE
        assert image_of(preview[f"archfleet-smoke-{arch}"]) == BUILDAH_IMAGE
        assert "needs" not in preview[f"archfleet-build-{arch}"]
        # buildah (the default) needs no docker service.
        assert "services" not in preview[f"archfleet-build-{arch}"]
        assert preview[f"archfleet-build-{arch}"]["retry"] == RETRY
    for name in TOOL_JOBS:
        assert preview[name].get("tags", []) == [], name  # merge_tags: [] (untagged runners)
    # The job that may run in merge-request pipelines writes the scratch tag only.
    assert preview["archfleet-merge"]["variables"]["ARCHFLEET_MERGE_MODE"] == "scratch"
    assert preview["archfleet-release"]["variables"]["ARCHFLEET_MERGE_MODE"] == "release"

    jobs = gcl.list_jobs(project, PUSH_MAIN)
    assert gcl.active(jobs) == {
        "archfleet-preflight",
        "archfleet-build-amd64",
        "archfleet-build-arm64",
        "archfleet-merge",
        "archfleet-verify",
    }


@pytest.mark.parametrize("variables", [MR, PROTECTED], ids=["mr", "protected"])
def test_published_component_runs_its_own_tool_image(
    tmp_path: Path, variables: dict[str, str]
) -> None:
    project = component_project(tmp_path, component=published_component())
    run = gcl.run(project, "--preview", variables=variables)
    assert run.code == 0, run.output
    assert "json schema validated" in run.output
    preview = yaml.safe_load(run.stdout)
    for name in TOOL_JOBS:
        assert image_of(preview[name]) == TOOL_IMAGE, name
        assert install_commands(preview[name]) == [], name
    assert TOOL_IMAGE.startswith(
        f"registry.example.com/platform/archfleet-ci/archfleet:{__version__}@sha256:"
    )
    # The preflight runs in every pipeline the component's jobs are in.
    assert "archfleet-preflight" in gcl.active(gcl.list_jobs(project, variables))


def test_archfleet_image_input_sets_every_tool_job(tmp_path: Path) -> None:
    image = f"$CI_REGISTRY/mirror/archfleet:{__version__}"
    project = component_project(tmp_path, {"archfleet_image": image, "build_image": "b:1"})
    preview = gcl.preview(project, MR)
    for name in TOOL_JOBS:
        assert image_of(preview[name]) == image, name
    assert image_of(preview["archfleet-build-amd64"]) == "b:1"


@pytest.mark.parametrize(
    ("variables", "mover", "idle"),
    [
        (MR, "archfleet-merge", "archfleet-release"),
        ({**MR, "CI_COMMIT_REF_PROTECTED": "true"}, "archfleet-merge", "archfleet-release"),
        (PUSH_MAIN, "archfleet-merge", "archfleet-release"),
        (PROTECTED, "archfleet-release", "archfleet-merge"),
        ({**PROTECTED, "CI_COMMIT_TAG": "v1.2.3"}, "archfleet-release", "archfleet-merge"),
        # The child pipeline of a merge-request pipeline on a protected source branch: source
        # parent_pipeline, the merge request's variables kept (gitlab-org/gitlab!23884).
        (
            {**PROTECTED, "CI_PIPELINE_SOURCE": "parent_pipeline", "CI_MERGE_REQUEST_IID": "7"},
            "archfleet-merge",
            "archfleet-release",
        ),
        (
            {**PROTECTED, "CI_PIPELINE_SOURCE": "parent_pipeline"},
            "archfleet-release",
            "archfleet-merge",
        ),
    ],
    ids=[
        "mr",
        "mr-from-protected-branch",
        "unprotected-branch",
        "protected-branch",
        "git-tag",
        "child-of-mr-pipeline",
        "child-of-protected-pipeline",
    ],
)
def test_release_tags_move_only_on_protected_refs_outside_mrs(
    tmp_path: Path, variables: dict[str, str], mover: str, idle: str
) -> None:
    project = component_project(tmp_path)
    jobs = gcl.list_jobs(project, variables)
    assert jobs[mover] == "on_success" and jobs[idle] == "never"


def test_a_third_arch_end_to_end(tmp_path: Path) -> None:
    inputs = {
        "platforms": ["linux/amd64", "arm64", "linux/riscv64"],
        "runner_tag_pattern": "native-${ARCHFLEET_ARCH}",
        "job_prefix": "app",
        "builder": "buildah",
        "smoke": True,
        "verify": False,
    }
    project = component_project(tmp_path, inputs)
    jobs = gcl.list_jobs(project, PROTECTED)
    assert gcl.active(jobs) == {
        *(
            f"app-{kind}-{arch}"
            for kind in ("build", "smoke")
            for arch in ("amd64", "arm64", "riscv64")
        ),
        "app-preflight",
        "app-release",
    }
    assert jobs["app-verify"] == "never"
    preview = gcl.preview(project, PROTECTED)
    assert expanded_tags(preview["app-build-riscv64"]) == ["native-riscv64"]
    assert expanded_tags(preview["app-smoke-riscv64"]) == ["native-riscv64"]
    assert "app-build-riscv64" in needed(preview["app-release"])
    assert "app-release" in needed(preview["app-smoke-riscv64"])
    release_vars = preview["app-release"]["variables"]
    assert "linux/riscv64" in release_vars["ARCHFLEET_PLATFORMS"]
    assert release_vars["ARCHFLEET_BUILDER"] == "buildah"
    assert "allow_emulation=false" in release_vars["ARCHFLEET_OPTIONS"]
    assert preview["app-release"]["resource_group"] == "app-release"


def test_include_variant_takes_variables(tmp_path: Path) -> None:
    ci = {
        "include": [{"local": INCLUDE_PATH}],
        "variables": {"ARCHFLEET_PLATFORMS": "linux/amd64 linux/arm/v7", "ARCHFLEET_SMOKE": "true"},
    }
    project = gcl.make_project(
        tmp_path / "project",
        {
            INCLUDE_PATH: (ROOT / INCLUDE_PATH).read_text(encoding="utf-8"),
            ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False),
        },
    )
    jobs = gcl.list_jobs(project, MR, validate=True)
    assert gcl.active(jobs) == {
        "archfleet-preflight",
        "archfleet-build-amd64",
        "archfleet-build-arm-v7",
        "archfleet-smoke-amd64",
        "archfleet-smoke-arm-v7",
        "archfleet-merge",
        "archfleet-verify",
    }
    preview = gcl.preview(project, MR)
    assert expanded_tags(preview["archfleet-build-arm-v7"]) == ["arm-v7"]
    # The include variant's image is its variable: the placeholder until published.
    for name in TOOL_JOBS:
        assert image_of(preview[name]) == "$ARCHFLEET_MERGE_IMAGE", name
    assert preview["variables"]["ARCHFLEET_MERGE_IMAGE"] == UNPUBLISHED_TOOL_IMAGE
    [published] = load_rendered(published_files(ROOT, tool_image=TOOL_IMAGE)[INCLUDE_PATH])
    assert published["variables"]["ARCHFLEET_MERGE_IMAGE"] == TOOL_IMAGE


def test_the_example_project(tmp_path: Path) -> None:
    schema = check_jsonschema(EXAMPLE)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    component = example["include"][0]
    assert component["component"].endswith("/multiarch@0.1.0")
    # gitlab-ci-local cannot fetch from a GitLab server here: same inputs, local file, as
    # publish-templates publishes it (archfleet_image defaults to the tool image).
    assert "archfleet_image" not in component["inputs"]
    example["include"][0] = {"local": COMPONENT_PATH, "inputs": component["inputs"]}
    project = gcl.make_project(
        tmp_path / "project",
        {
            COMPONENT_PATH: published_component(),
            ".gitlab-ci.yml": yaml.safe_dump(example, sort_keys=False),
        },
    )
    jobs = gcl.list_jobs(project, MR, validate=True)
    assert gcl.active(jobs) == {
        "archfleet-preflight",
        "unit-tests",
        "archfleet-build-amd64",
        "archfleet-build-arm64",
        "archfleet-merge",
        "archfleet-verify",
        "archfleet-smoke-amd64",
        "archfleet-smoke-arm64",
    }


def test_schema_of_the_files_as_published(tmp_path: Path) -> None:
    # The component's jobs document carries whole-node array inputs (`tags:` and `rules:` from
    # merge_tags and rules), valid only once interpolated: it is checked as expanded
    # (test_expanded_pipeline_validates). The include variant has no interpolation.
    published = tmp_path / "published-include.yml"
    published.write_text(
        published_files(ROOT, tool_image=TOOL_IMAGE)[INCLUDE_PATH], encoding="utf-8"
    )
    for path in (ROOT / INCLUDE_PATH, published):
        schema = check_jsonschema(path)
        assert schema.returncode == 0, f"{path}: {schema.stdout}{schema.stderr}"
    # The check does catch a broken job (here: tags must be a list of strings).
    [broken] = load_rendered(published.read_text(encoding="utf-8"))
    broken["archfleet-build-arm64"]["tags"] = {"arm64": True}
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check_jsonschema(tmp_path / "broken.yml").returncode != 0


def test_rules_input_gates_every_job(tmp_path: Path) -> None:
    # A monorepo gating one image: the rules input applies to every job of the component, so
    # the merge, release, verify and smoke jobs never run without the builds they need.
    inputs = {"rules": [{"if": '$BUILD_APP == "yes"'}], "smoke": True}
    project = component_project(tmp_path, inputs)
    for variables in (MR, PROTECTED):
        gated = gcl.list_jobs(project, variables)
        assert gcl.active(gated) == set(), gated
        chosen = gcl.active(gcl.list_jobs(project, {**variables, "BUILD_APP": "yes"}))
        mover = "archfleet-release" if variables is PROTECTED else "archfleet-merge"
        assert chosen == {
            "archfleet-preflight",
            "archfleet-build-amd64",
            "archfleet-build-arm64",
            mover,
            "archfleet-verify",
            "archfleet-smoke-amd64",
            "archfleet-smoke-arm64",
        }
    # The component's own exclusions come first: a user rule cannot bring back an unselected
    # platform or the release job in a merge request.
    preview = gcl.preview(project, MR)
    assert preview["archfleet-build-riscv64"]["rules"][-1] == {"if": '$BUILD_APP == "yes"'}
    assert preview["archfleet-build-riscv64"]["rules"][0]["when"] == "never"
    assert preview["archfleet-release"]["rules"][0]["when"] == "never"


def test_merge_tags_and_the_docker_service_for_buildx(tmp_path: Path) -> None:
    inputs = {"merge_tags": ["amd64", "archfleet"], "builder": "buildx", "smoke": True}
    project = component_project(tmp_path, inputs)
    preview = gcl.preview(project, PROTECTED, validate=True)
    for name in TOOL_JOBS:
        assert preview[name]["tags"] == ["amd64", "archfleet"], name
    # GitLab's Docker-in-Docker with TLS (doc/ci/docker/using_docker_build.md).
    for name in ("archfleet-build-arm64", "archfleet-smoke-amd64"):
        services = [s if isinstance(s, dict) else {"name": s} for s in preview[name]["services"]]
        assert services == [{"name": DIND_IMAGE, "alias": "docker"}], name
        assert preview[name]["variables"]["DOCKER_TLS_CERTDIR"] == "/certs"
        # Runner tags stay the arch's own.
        assert expanded_tags(preview[name]) == [name.rsplit("-", 1)[1]]


HOSTILE_INPUTS: dict[str, Any] = {
    "smoke_command": 'echo "$(id)" \'; exit 0\nDOCKER_HOST: tcp://evil:2375',
    "build_args": ['Q=say "hi"', "R=#{x} $(rm -rf /) `id`", "S=a: b", "T=- [x]"],
    "image_tags": ["v-*", "*", "1.0"],
    "scratch_tag": "",
    "rules": [{"if": '$X != "a b"', "changes": ["app/**/*"], "when": "manual"}],
}
REALISTIC_INPUTS: dict[str, Any] = {
    "image": "$CI_REGISTRY_IMAGE/api",
    "context": "services/api",
    "dockerfile": "services/api/Containerfile",
    "platforms": ["linux/amd64", "linux/arm64", "linux/arm/v7"],
    "job_prefix": "api",
    "builder": "buildx",
    "build_image": "docker:27-cli",
    "merge_tags": ["amd64"],
    "rules": [
        {"if": "$CI_COMMIT_BRANCH", "changes": ["services/api/**/*"]},
        {"if": "$CI_COMMIT_TAG"},
    ],
    "smoke": True,
}


@pytest.mark.parametrize(
    "inputs",
    [{}, REALISTIC_INPUTS, HOSTILE_INPUTS],
    ids=["default", "realistic", "hostile"],
)
def test_expanded_pipeline_validates(tmp_path: Path, inputs: dict[str, Any]) -> None:
    project = component_project(tmp_path, inputs)
    # gitlab-ci-local evaluates `changes:` against origin/<default branch>: give it one.
    subprocess.run(
        ["git", "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=project, check=True
    )
    run = gcl.run(project, "--preview", variables=PROTECTED)
    assert run.code == 0, run.output
    assert "json schema validated" in run.output
    (tmp_path / "expanded.yml").write_text(run.stdout, encoding="utf-8")
    schema = check_jsonschema(tmp_path / "expanded.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr
    preview = yaml.safe_load(run.stdout)
    if inputs is HOSTILE_INPUTS:
        # Values stay data: in variables, never in the YAML keys or the script lines.
        build = preview["archfleet-build-amd64"]
        assert "DOCKER_HOST" not in build["variables"]
        assert build["variables"]["ARCHFLEET_SMOKE_COMMAND"] == HOSTILE_INPUTS["smoke_command"]
        assert all("rm -rf /" not in line for line in build["script"])


def test_two_inclusions_share_the_library_and_validate(tmp_path: Path) -> None:
    # The library's hidden jobs are named by content, not by job_prefix (GitLab does not
    # interpolate inside `!reference`): both inclusions define the same keys with the same text,
    # and each job gets the functions it calls once the references are resolved.
    ci = {
        "include": [
            {"local": COMPONENT_PATH, "inputs": {"job_prefix": "app"}},
            {"local": COMPONENT_PATH, "inputs": {"job_prefix": "api", "smoke": True}},
        ]
    }
    project = gcl.make_project(
        tmp_path / "project",
        {
            COMPONENT_PATH: (ROOT / COMPONENT_PATH).read_text(encoding="utf-8"),
            ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False),
        },
    )
    run = gcl.run(project, "--preview", variables=PROTECTED)
    assert run.code == 0, run.output
    assert "json schema validated" in run.output
    (tmp_path / "expanded.yml").write_text(run.stdout, encoding="utf-8")
    schema = check_jsonschema(tmp_path / "expanded.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr
    preview = yaml.safe_load(run.stdout)
    assert preview["app-build-arm64"]["script"] == preview["api-build-arm64"]["script"]
    script = "\n".join(preview["api-smoke-arm64"]["script"])
    assert "\narchfleet_smoke() {\n" in script and script.rstrip().endswith("archfleet_smoke")
    assert preview["app-release"]["resource_group"] == "app-release"
    assert needed(preview["api-release"])[0] == "api-build-386"
    assert gcl.active(gcl.list_jobs(project, PROTECTED)) >= {"app-release", "api-release"}
