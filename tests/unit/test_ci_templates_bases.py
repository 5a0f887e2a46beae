"""Issue 16 in the GitLab component: the preflight job's base-image check (input check_bases) and
the OCI annotations the merge and release jobs put on the index (source, revision, created).

`archfleet` here is a RECORDING SHIM on PATH: it writes its arguments (one a line) and the
registry variables it was given, and answers as the real commands do (toolkit/registry/
tool_commands.py check-bases: exit 1 when a base lacks a platform; inspect-manifest of a tag
not there yet: `manifest not found`, exit 1; merge-manifest: the index digest on stdout). The
job scripts run in dash and, where present, busybox ash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.test_ci_templates import SHELLS, sh
from toolkit.ci_templates import (
    COMPONENT_PATH,
    INCLUDE_PATH,
    Flavour,
    default_root,
    input_named,
    jobs,
    load_rendered,
    resolve_references,
)

ROOT = default_root()
PREFLIGHT_PARTS = ("archmap", "common", "lists", "tool", "bases")
SECRET = "glpat-not-a-real-token-b7"
IMAGE = "registry.example.com/team/app"
SHIM = """#!/bin/sh
printf '%s\\n' "$@" > "$RECORD.$1"
printf '%s\\n' "REGISTRY_USER=${REGISTRY_USER:-}" "REGISTRY_PASSWORD=${REGISTRY_PASSWORD:-}" \
  > "$RECORD.$1.env"
[ "$1" = check-bases ] && exit "${CHECK_BASES_EXIT:-0}"
[ "$1" = inspect-manifest ] && { echo "error: $4: manifest not found" >&2; exit 1; }
[ "$1" = merge-manifest ] && echo "sha256:$DIGEST_HEX"
exit 0
"""


@pytest.fixture(params=SHELLS, ids=lambda s: os.path.basename(s[0]))
def job_shell(request: pytest.FixtureRequest) -> list[str]:
    chosen: list[str] = request.param
    return chosen


@pytest.fixture
def shim(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "archfleet").write_text(SHIM)
    (bin_dir / "archfleet").chmod(0o755)
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Containerfile").write_text("FROM busybox:1.36\n")
    env = {
        "RECORD": str(tmp_path / "call"),
        "TMPDIR": str(tmp_path),
        "CI_JOB_ID": "78",
        "DIGEST_HEX": "1" * 64,
        "ARCHFLEET_IMAGE": IMAGE,
        "ARCHFLEET_DOCKERFILE": "app/Containerfile",
        "ARCHFLEET_PLATFORMS": 'inputs.platforms=["amd64", "linux/arm64/v8"]',
        "ARCHFLEET_BUILD_ARGS": f'inputs.build_args=["BASE_TAG=1.36", "TOKEN={SECRET}", "PLAIN"]',
        # Meant for the image's registry: must not reach check-bases (it reads every base's).
        "ARCHFLEET_REGISTRY_USER": "pusher",
        "ARCHFLEET_REGISTRY_PASSWORD": SECRET,
        "REGISTRY_USER": "someone",
        "REGISTRY_PASSWORD": SECRET,
    }
    return bin_dir, env


def run_check(
    job_shell: list[str], shim: tuple[Path, dict[str, str]], options: str, **extra: str
) -> tuple[int, str, Path]:
    bin_dir, env = shim
    project = bin_dir.parent / "project"
    done = sh(
        job_shell,
        f"cd {project} && archfleet_check_bases; echo after",
        {**env, "ARCHFLEET_OPTIONS": options, **extra},
        PREFLIGHT_PARTS,
        path_prefix=bin_dir,
    )
    # archfleet_fail exits the job's shell: `after` is printed only when the check let it go on.
    assert ("after" in done.stdout) == (done.returncode == 0), done.stderr
    return done.returncode, done.stderr, Path(env["RECORD"])


def test_check_bases_runs_with_the_pipelines_platforms_and_build_args(
    job_shell: list[str], shim: tuple[Path, dict[str, str]]
) -> None:
    code, log, record = run_check(job_shell, shim, "check_bases=true insecure=true")
    assert code == 0, log
    assert Path(f"{record}.check-bases").read_text().splitlines() == [
        "check-bases",
        "--platforms",
        "linux/amd64,linux/arm64",
        "--build-platform",
        "native",
        "--file",
        "app/Containerfile",
        "--build-arg",
        "BASE_TAG=1.36",
        "--build-arg",
        f"TOKEN={SECRET}",
        "--build-arg",
        "PLAIN",
        "--insecure",
    ]
    # The log names the build args, never their values.
    assert (
        "archfleet check-bases --platforms linux/amd64,linux/arm64 --build-platform native "
        "--file app/Containerfile --build-arg BASE_TAG=... --build-arg TOKEN=... "
        "--build-arg PLAIN=... --insecure"
    ) in log
    assert SECRET not in log
    # Credentials meant for one registry are not handed to a command that reads several.
    assert Path(f"{record}.check-bases.env").read_text().splitlines() == [
        "REGISTRY_USER=",
        "REGISTRY_PASSWORD=",
    ]
    assert "every base image of app/Containerfile offers linux/amd64,linux/arm64" in log


def test_check_bases_without_insecure_and_switched_off(
    job_shell: list[str], shim: tuple[Path, dict[str, str]]
) -> None:
    code, log, record = run_check(job_shell, shim, "check_bases=true insecure=false")
    assert code == 0, log
    assert "--insecure" not in Path(f"{record}.check-bases").read_text().splitlines()
    Path(f"{record}.check-bases").unlink()
    code, log, record = run_check(job_shell, shim, "check_bases=false insecure=false")
    assert code == 0, log
    assert not Path(f"{record}.check-bases").exists()
    assert "check_bases is off" in log


def test_a_missing_platform_fails_the_preflight(
    job_shell: list[str], shim: tuple[Path, dict[str, str]]
) -> None:
    code, log, _ = run_check(job_shell, shim, "check_bases=true", CHECK_BASES_EXIT="1")
    assert code == 1
    assert (
        "archfleet: error: check_bases: a base image of app/Containerfile does not offer every "
        "platform of this pipeline, or could not be read (see above). Nothing was built."
    ) in log


def test_a_dockerfile_not_in_the_checkout_fails_naming_the_input(
    job_shell: list[str], shim: tuple[Path, dict[str, str]]
) -> None:
    code, log, record = run_check(
        job_shell, shim, "check_bases=true", ARCHFLEET_DOCKERFILE="Dockerfile"
    )
    assert code == 1
    assert "check_bases: the dockerfile input 'Dockerfile' is not a file in the checkout" in log
    assert not Path(f"{record}.check-bases").exists()


def test_preflight_job_runs_check_bases_on_the_checkout() -> None:
    assert input_named("check_bases").type == "boolean"
    assert input_named("check_bases").default is True
    for flavour in (Flavour(component=True), Flavour(component=False)):
        p = flavour.prefix
        rendered = resolve_references(jobs(ROOT, flavour))
        preflight = rendered[f"{p}-preflight"]
        assert preflight["script"][-2:] == ["archfleet_preflight", "archfleet_check_bases"]
        assert "check-bases --platforms" in "\n".join(preflight["script"][:-2])
        # The job reads the Dockerfile: the runner must fetch the repository for it.
        common = rendered[f".{p}-common"]["variables"]
        for variables in (preflight.get("variables", {}), common):
            assert "GIT_STRATEGY" not in variables
        option = "$[[ inputs.check_bases ]]" if flavour.component else "${ARCHFLEET_CHECK_BASES}"
        assert f" check_bases={option} " in f" {common['ARCHFLEET_OPTIONS']} "
    # The committed renderings carry it: the component's input, the include variant's variable.
    spec, _ = load_rendered((ROOT / COMPONENT_PATH).read_text(encoding="utf-8"))
    assert spec["spec"]["inputs"]["check_bases"]["default"] is True
    [include] = load_rendered((ROOT / INCLUDE_PATH).read_text(encoding="utf-8"))
    assert include["variables"]["ARCHFLEET_CHECK_BASES"] == "true"


# --- annotations on the index --------------------------------------------------------------------

PIPELINE = {
    "CI_PROJECT_URL": "https://gitlab.example.com/team/app",
    "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
    # gitlabhq doc/ci/variables/predefined_variables.md: "in ISO 8601 format" (linked to RFC
    # 3339 appendix A), "For example, `2022-01-31T16:47:55Z`".
    "CI_PIPELINE_CREATED_AT": "2022-01-31T16:47:55Z",
}


def merge_args(
    job_shell: list[str], shim: tuple[Path, dict[str, str]], mode: str, **extra: str
) -> list[str]:
    bin_dir, env = shim
    done = sh(
        job_shell,
        "archfleet_merge",
        {
            **env,
            "ARCHFLEET_PLATFORMS": "linux/amd64",
            "ARCHFLEET_DIGEST_AMD64": "sha256:" + "a" * 64,
            "ARCHFLEET_MERGE_MODE": mode,
            "ARCHFLEET_IMAGE_TAGS": "v-tag",
            "ARCHFLEET_SCRATCH_TAG": "ci-x",
            "ARCHFLEET_OPTIONS": "tag_semver=true tag_latest=false insecure=false",
            "CI_COMMIT_REF_PROTECTED": "true" if mode == "release" else "false",
            "ARCHFLEET_DOTENV": str(bin_dir.parent / "merge.env"),
            **extra,
        },
        path_prefix=bin_dir,
    )
    assert done.returncode == 0, done.stderr
    return Path(f"{env['RECORD']}.merge-manifest").read_text().splitlines()


def annotations(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--annotation"]


@pytest.mark.parametrize("mode", ["scratch", "release"])
def test_merge_annotates_the_index_from_the_pipeline(
    job_shell: list[str], shim: tuple[Path, dict[str, str]], mode: str
) -> None:
    args = merge_args(job_shell, shim, mode, **PIPELINE)
    assert annotations(args) == [
        "org.opencontainers.image.source=https://gitlab.example.com/team/app",
        "org.opencontainers.image.revision=0123456789abcdef0123456789abcdef01234567",
        "org.opencontainers.image.created=2022-01-31T16:47:55Z",
    ]


def test_release_annotations_sit_beside_the_version(
    job_shell: list[str], shim: tuple[Path, dict[str, str]]
) -> None:
    args = merge_args(job_shell, shim, "release", CI_COMMIT_TAG="v1.4.2", **PIPELINE)
    # The version the floating tags compare is still there, first, with the pipeline's three.
    assert annotations(args) == [
        "org.opencontainers.image.version=1.4.2",
        "org.opencontainers.image.source=https://gitlab.example.com/team/app",
        "org.opencontainers.image.revision=0123456789abcdef0123456789abcdef01234567",
        "org.opencontainers.image.created=2022-01-31T16:47:55Z",
    ]


def test_an_empty_pipeline_variable_adds_no_annotation(
    job_shell: list[str], shim: tuple[Path, dict[str, str]]
) -> None:
    args = merge_args(job_shell, shim, "scratch", **{**PIPELINE, "CI_PROJECT_URL": ""})
    assert annotations(args) == [
        "org.opencontainers.image.revision=0123456789abcdef0123456789abcdef01234567",
        "org.opencontainers.image.created=2022-01-31T16:47:55Z",
    ]
    assert annotations(merge_args(job_shell, shim, "scratch")) == []
