"""The templates as GitLab expands them: gitlab-ci-local's --preview (includes, inputs, extends
expanded; it validates against GitLab's CI JSON schema on the way) and --list-json (rules
evaluated), for several input sets; plus `check-jsonschema --builtin-schema vendor.gitlab-ci`.

gitlab-ci-local ignores `tags:`; GitLab expands CI/CD variables in them from the job's
variables, so the tests expand them the same way (string.Template, unknown names left as is).
"""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import gitlab_ci_local as gcl
from toolkit import archmap
from toolkit.ci_templates import COMPONENT_PATH, INCLUDE_PATH, arch_jobs, default_root

pytestmark = pytest.mark.integration

ROOT = default_root()
EXAMPLE = ROOT.parent / "gitlab" / ".gitlab-ci.yml"
ALL_ARCHES = [job.arch for job in arch_jobs()]
PUSH_MAIN = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "false"}
MR = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_REF_PROTECTED": "false"}
PROTECTED = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true"}


def component_project(tmp_path: Path, inputs: dict[str, Any] | None = None) -> Path:
    include: dict[str, Any] = {"local": COMPONENT_PATH}
    if inputs:
        include["inputs"] = inputs
    return gcl.make_project(
        tmp_path / "project",
        {
            COMPONENT_PATH: (ROOT / COMPONENT_PATH).read_text(encoding="utf-8"),
            ".gitlab-ci.yml": yaml.safe_dump({"include": [include]}, sort_keys=False),
        },
    )


def expanded_tags(job: dict[str, Any]) -> list[str]:
    variables = {k: str(v) for k, v in (job.get("variables") or {}).items()}
    return [string.Template(tag).safe_substitute(variables) for tag in job.get("tags", [])]


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
        assert needed(preview[merge]) == builds
        assert preview[merge]["resource_group"]
        assert preview[merge]["interruptible"] is False
    assert preview["archfleet-release"]["resource_group"] == "archfleet-release"
    assert needed(preview["archfleet-verify"]) == ["archfleet-merge", "archfleet-release"]
    # The job that may run in merge-request pipelines writes the scratch tag only.
    assert preview["archfleet-merge"]["variables"]["ARCHFLEET_MERGE_MODE"] == "scratch"
    assert preview["archfleet-release"]["variables"]["ARCHFLEET_MERGE_MODE"] == "release"

    jobs = gcl.list_jobs(project, PUSH_MAIN)
    assert gcl.active(jobs) == {
        "archfleet-build-amd64",
        "archfleet-build-arm64",
        "archfleet-merge",
        "archfleet-verify",
    }


@pytest.mark.parametrize(
    ("variables", "mover", "idle"),
    [
        (MR, "archfleet-merge", "archfleet-release"),
        ({**MR, "CI_COMMIT_REF_PROTECTED": "true"}, "archfleet-merge", "archfleet-release"),
        (PUSH_MAIN, "archfleet-merge", "archfleet-release"),
        (PROTECTED, "archfleet-release", "archfleet-merge"),
        ({**PROTECTED, "CI_COMMIT_TAG": "v1.2.3"}, "archfleet-release", "archfleet-merge"),
    ],
    ids=["mr", "mr-from-protected-branch", "unprotected-branch", "protected-branch", "git-tag"],
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
        "archfleet-build-amd64",
        "archfleet-build-arm-v7",
        "archfleet-smoke-amd64",
        "archfleet-smoke-arm-v7",
        "archfleet-merge",
        "archfleet-verify",
    }
    preview = gcl.preview(project, MR)
    assert expanded_tags(preview["archfleet-build-arm-v7"]) == ["arm-v7"]


def test_the_example_project(tmp_path: Path) -> None:
    schema = check_jsonschema(EXAMPLE)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    component = example["include"][0]
    assert component["component"].endswith("/multiarch@0.1.0")
    # gitlab-ci-local cannot fetch from a GitLab server here: same inputs, local file.
    example["include"][0] = {"local": COMPONENT_PATH, "inputs": component["inputs"]}
    project = gcl.make_project(
        tmp_path / "project",
        {
            COMPONENT_PATH: (ROOT / COMPONENT_PATH).read_text(encoding="utf-8"),
            ".gitlab-ci.yml": yaml.safe_dump(example, sort_keys=False),
        },
    )
    jobs = gcl.list_jobs(project, MR, validate=True)
    assert gcl.active(jobs) == {
        "unit-tests",
        "archfleet-build-amd64",
        "archfleet-build-arm64",
        "archfleet-merge",
        "archfleet-verify",
        "archfleet-smoke-amd64",
        "archfleet-smoke-arm64",
    }


def test_schema_of_the_files_as_published(tmp_path: Path) -> None:
    jobs_document = (ROOT / COMPONENT_PATH).read_text(encoding="utf-8").split("\n---\n", 1)[1]
    (tmp_path / "component-jobs.yml").write_text(jobs_document, encoding="utf-8")
    for path in (tmp_path / "component-jobs.yml", ROOT / INCLUDE_PATH):
        schema = check_jsonschema(path)
        assert schema.returncode == 0, f"{path}: {schema.stdout}{schema.stderr}"
    # The check does catch a broken job (here: tags must be a list of strings).
    broken = yaml.safe_load(jobs_document)
    broken["$[[ inputs.job_prefix ]]-build-arm64"]["tags"] = {"arm64": True}
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check_jsonschema(tmp_path / "broken.yml").returncode != 0
