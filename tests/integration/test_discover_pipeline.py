"""discover-images' child pipeline EXECUTED by gitlab-ci-local (shell executor), and both
pipelines of gitlab/monorepo/ checked against GitLab's CI schema.

A three-image repository (jobs/job-a/Dockerfile, jobs/job-b/Containerfile,
services/api/Dockerfile): `archfleet discover-images --gitlab-child-pipeline` writes the child
pipeline, which includes this repository's component (templates/multiarch.yml, copied into the
project, `--include local:…`) once per image. gitlab-ci-local runs it as a protected
default-branch pipeline, as GitLab would run the child of the parent in gitlab/monorepo/: per
image, a buildah build per platform (amd64, and arm64 under QEMU: one x86 machine, hence
allow_emulation) pushed by digest to a loopback registry (Debian's docker-registry), its own
release (merge) job and verify job. Then each image's tag must be an OCI index holding exactly
that image's two builds, resolved by skopeo as an amd64 and an arm64 client.

The builds are the smallest the component tests use (test_ci_templates_run.py): a busybox base
per arch merged into one index, a Dockerfile that only adds a file; buildah with a private vfs
storage per job (a shim, as there).

gitlab-ci-local does not run `trigger:` jobs (it has no downstream pipelines), so the parent
is checked by preview and schema; the child is run directly, as the pipeline it is.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import toolkit
from tests.support import gitlab_ci_local as gcl
from tests.support.cli import archfleet
from toolkit.ci_templates import COMPONENT_PATH, default_root
from toolkit.lab.images import build_image, ensure_binfmt
from toolkit.lab.registry import LocalRegistry
from toolkit.lab.skopeo import resolved_digest

pytestmark = pytest.mark.integration

ROOT = default_root()  # ci-templates/
REPO = Path(toolkit.__file__).resolve().parent.parent
MONOREPO = REPO / "gitlab" / "monorepo"
TOOL_IMAGE = f"registry.example.com/platform/archfleet-ci/archfleet:{toolkit.__version__}"
IMAGES = {
    "jobs-job-a": "jobs/job-a/Dockerfile",
    "jobs-job-b": "jobs/job-b/Containerfile",
    "services-api": "services/api/Dockerfile",
}
ARCHES = ("amd64", "arm64")
INDEX = "application/vnd.oci.image.index.v1+json"


def component_inputs() -> set[str]:
    """The component's input names as they are in this checkout (they are being renamed)."""
    text = (ROOT / COMPONENT_PATH).read_text(encoding="utf-8")
    spec = next(yaml.safe_load_all(text))
    return set(spec["spec"]["inputs"])


def plain_http_input() -> str:
    names = component_inputs()
    return "insecure" if "insecure" in names else "insecure_registry"


def python_env() -> dict[str, str]:
    """This checkout importable by every `archfleet`/`python -m toolkit` the jobs start."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def discover(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`archfleet discover-images ARGS` in `project`, as the parent's discover job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "toolkit", "discover-images", *args],
        cwd=project,
        env={**os.environ, **python_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def dotenv(project: Path, job: str) -> dict[str, str]:
    lines = (project / f"{job}.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line)


# --- schema and preview (no job runs) ------------------------------------------------------------


def test_monorepo_parent_and_child_against_gitlabs_schema(tmp_path: Path) -> None:
    parent = MONOREPO / ".gitlab-ci.yml"
    done = check_jsonschema(parent)
    assert done.returncode == 0, done.stdout + done.stderr
    pipeline = yaml.safe_load(parent.read_text(encoding="utf-8"))
    # The discover job runs the tool and hands on the file the trigger job includes.
    script = "\n".join(pipeline["discover"]["script"])
    assert "archfleet discover-images" in script and "--gitlab-child-pipeline" in script
    child_file = pipeline["discover"]["artifacts"]["paths"][0]
    assert f"--gitlab-child-pipeline {child_file}" in script
    trigger = pipeline["images"]["trigger"]
    assert trigger["strategy"] == "depend"
    assert trigger["include"] == [{"artifact": child_file, "job": "discover"}]
    assert pipeline["images"]["needs"] == ["discover"]

    # The child it writes, with the default include (the component reference).
    project = tmp_path / "project"
    write_tree(project, {path: "FROM scratch\n" for path in IMAGES.values()})
    run = discover(project, "--gitlab-child-pipeline", "child.yml")
    assert run.returncode == 0, run.stderr
    done = check_jsonschema(project / "child.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    child = yaml.safe_load((project / "child.yml").read_text(encoding="utf-8"))
    assert [entry["component"] for entry in child["include"]] == [
        f"$CI_SERVER_FQDN/platform/archfleet-ci/multiarch@{toolkit.__version__}"
    ] * 3


def test_child_pipeline_expands_to_one_job_set_per_image(tmp_path: Path) -> None:
    """gitlab-ci-local expands the child (three includes of one local component file, each
    with its own inputs) and validates it against its copy of GitLab's schema."""
    project = tmp_path / "project"
    write_tree(project, {path: "FROM scratch\n" for path in IMAGES.values()})
    shutil.copy(ROOT / COMPONENT_PATH, project / "archfleet-multiarch.yml")
    run = discover(
        project,
        *("--gitlab-child-pipeline", ".gitlab-ci.yml"),
        *("--include", "local:archfleet-multiarch.yml"),
        *("--repository", "registry.example.com/group/mono"),
        *("--input", f"archfleet_image={TOOL_IMAGE}"),
        # A JSON array passes through as an array input. (Also: the component's default,
        # `merge_tags: []`, renders `tags: []`, which GitLab's schema refuses: minItems 1.)
        *(("--input", 'merge_tags=["any-arch"]') if "merge_tags" in component_inputs() else ()),
    )
    assert run.returncode == 0, run.stderr
    gcl.make_project(project, {})
    jobs = gcl.list_jobs(
        project, {"CI_COMMIT_REF_PROTECTED": "true", "CI_COMMIT_BRANCH": "main"}, validate=True
    )
    preview = gcl.preview(project, {"CI_COMMIT_REF_PROTECTED": "true"})
    for name, dockerfile in IMAGES.items():
        active = {job for job in gcl.active(jobs) if job.startswith(f"{name}-")}
        assert active == {
            f"{name}-preflight",
            f"{name}-build-amd64",
            f"{name}-build-arm64",
            f"{name}-release",
            f"{name}-verify",
        }
        variables = preview[f"{name}-build-arm64"]["variables"]
        assert variables["ARCHFLEET_IMAGE"] == f"registry.example.com/group/mono/{name}"
        assert variables["ARCHFLEET_CONTEXT"] == dockerfile.rsplit("/", 1)[0]
        assert variables["ARCHFLEET_DOCKERFILE"] == dockerfile
        if "merge_tags" in component_inputs():
            assert preview[f"{name}-release"]["tags"] == ["any-arch"]
        # Each image's merge waits for its own builds only: merged separately.
        needs = {n["job"] for n in preview[f"{name}-release"]["needs"]}
        assert f"{name}-build-arm64" in needs
        assert not {n for n in needs if not n.startswith(f"{name}-")}


# --- the child pipeline, executed ----------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    registry: LocalRegistry
    base: str  # a multi-arch busybox base image, amd64 + arm64
    env: dict[str, str]


@pytest.fixture(scope="module")
def lab(lab_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ensure_binfmt("arm64")
    repository = f"{lab_registry.address}/discover/base"
    amd64 = build_image("linux/amd64", f"{repository}:amd64")
    arm64 = build_image("linux/arm64", f"{repository}:arm64")
    merged = archfleet(
        *("merge-manifest", "--insecure", "--no-child-tags", "--target", f"{repository}:1"),
        *("--source", f"linux/amd64=@{amd64.digest}", "--source", f"linux/arm64=@{arm64.digest}"),
    )
    assert merged.code == 0, merged.stderr
    work = tmp_path_factory.mktemp("discover-buildah")
    (work / "tmp").mkdir()
    # Every "runner" is this machine: each job gets a private vfs storage, as in
    # test_ci_templates_run.py (two jobs pulling one base for two arches into one storage race).
    shim = work / "bin"
    shim.mkdir()
    real = shutil.which("buildah")
    assert real, "buildah not installed (bash scripts/bootstrap)"
    (shim / "buildah").write_text(
        "#!/bin/sh\n"
        f'store="{work}/storage/${{CI_JOB_NAME:-default}}"\n'
        f'exec {real} --root "$store/graph" --runroot "$store/run" --storage-driver vfs "$@"\n'
    )
    (shim / "buildah").chmod(0o755)
    yield Lab(
        lab_registry,
        f"{repository}:1",
        {
            "PATH": f"{shim}:{os.environ['PATH']}",
            "BUILDAH_ISOLATION": "chroot",
            "TMPDIR": str(work / "tmp"),
            **python_env(),
        },
    )


def index_of(registry: LocalRegistry, repository: str, tag: str) -> tuple[str, dict[str, Any]]:
    response = requests.get(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": INDEX},
        timeout=10,
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"], response.json()


def test_three_images_build_and_merge_separately(lab: Lab, tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_tree(
        project,
        {
            # As test_ci_templates_run.py: a RUN step (arm64's under QEMU), and a file that
            # makes each image's layers its own.
            path: f"FROM {lab.base}\nCOPY name.txt /archfleet-image-name\n"
            'RUN ["/bin/sh", "-c", "uname -m > /etc/archfleet-built-on"]\n'
            for path in IMAGES.values()
        },
    )
    for name, path in IMAGES.items():
        (project / path).parent.joinpath("name.txt").write_text(name + "\n", encoding="utf-8")
    shutil.copy(ROOT / COMPONENT_PATH, project / "archfleet-multiarch.yml")
    repository = f"{lab.registry.address}/mono"
    run = discover(
        project,
        *("--gitlab-child-pipeline", ".gitlab-ci.yml"),
        *("--include", "local:archfleet-multiarch.yml"),
        *("--repository", repository),
        *("--platforms", "linux/amd64,linux/arm64"),
        *("--input", "builder=buildah"),
        *("--input", "allow_emulation=true"),  # one x86 machine: arm64 runs under QEMU
        *("--input", f"{plain_http_input()}=true"),
        # Shell executor: the image is not pulled; the archfleet on PATH (this checkout) runs.
        *("--input", f"archfleet_image={TOOL_IMAGE}"),
    )
    assert run.returncode == 0, run.stderr
    gcl.make_project(project, {})

    pipeline = gcl.run(
        project,
        *("--force-shell-executor", "--no-json-schema-validation", "--concurrency", "2"),
        variables={"CI_COMMIT_REF_PROTECTED": "true", "CI_COMMIT_BRANCH": "main"},
        env=lab.env,
        timeout=1500,
    )
    assert pipeline.code == 0, pipeline.output[-8000:]
    indexes: dict[str, str] = {}
    for name in IMAGES:
        for job in ("preflight", "build-amd64", "build-arm64", "release", "verify"):
            assert f"PASS  {name}-{job}" in pipeline.output, pipeline.output[-4000:]
        released = dotenv(project, f"{name}-release")
        built = {
            arch: dotenv(project, f"{name}-build-{arch}")[f"ARCHFLEET_DIGEST_{arch.upper()}"]
            for arch in ARCHES
        }
        # The tag is an OCI index with exactly this image's two builds, one per platform.
        digest, index = index_of(lab.registry, f"mono/{name}", "main")
        assert digest == released["ARCHFLEET_INDEX_DIGEST"]
        assert index["mediaType"] == INDEX
        children = {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in index["manifests"]
        }
        assert children == {f"linux/{arch}": built[arch] for arch in ARCHES}
        # A real client of each arch gets that arch's build of THIS image.
        for arch in ARCHES:
            assert resolved_digest(f"{repository}/{name}:main", f"linux/{arch}") == built[arch]
        indexes[name] = digest
    assert len(set(indexes.values())) == len(IMAGES)  # three images, three indexes
    # And archfleet's own verify agrees, for one of them, from outside the pipeline.
    verified = archfleet(
        *("verify-manifest", "--insecure", "--json"),
        *("--target", f"{repository}/services-api:main", "--platforms", "linux/amd64,linux/arm64"),
        env=python_env(),
    )
    assert verified.code == 0, verified.stderr
    assert json.loads(verified.stdout)


def test_monorepo_parent_pipeline_runs_the_child(lab: Lab, tmp_path: Path) -> None:
    """gitlab/monorepo/.gitlab-ci.yml itself: its discover job runs archfleet, and its trigger
    job starts the child from that job's artifact (gitlab-ci-local runs downstream pipelines,
    "experimental", as child pipelines with CI_PIPELINE_SOURCE=parent_pipeline). The child is
    not a protected pipeline there, so each image's merge job writes its scratch tag."""
    parent = yaml.safe_load((MONOREPO / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    # What this machine needs on top of the example: buildah builds, arm64 under QEMU, a
    # plain-HTTP registry, and the tool image name (the shell executor runs archfleet from PATH).
    extra = [
        *("--input", "builder=buildah"),
        *("--input", "allow_emulation=true"),
        *("--input", f"{plain_http_input()}=true"),
        *("--input", f"archfleet_image={TOOL_IMAGE}"),
    ]
    [command] = parent["discover"]["script"]
    parent["discover"]["script"] = [f"{command} {shlex.join(extra)}"]
    files = {
        path: f"FROM {lab.base}\nCOPY name.txt /archfleet-image-name\n" for path in IMAGES.values()
    }
    files.update(
        {str(Path(path).parent / "name.txt"): f"{name}\n" for name, path in IMAGES.items()}
    )
    files["archfleet-multiarch.yml"] = (ROOT / COMPONENT_PATH).read_text(encoding="utf-8")
    files[".gitlab-ci.yml"] = yaml.safe_dump(parent, sort_keys=False)
    project = gcl.make_project(tmp_path / "project", files)
    repository = f"{lab.registry.address}/parent"

    pipeline = gcl.run(
        project,
        *("--force-shell-executor", "--no-json-schema-validation", "--concurrency", "2"),
        variables={
            "ARCHFLEET_COMPONENT": "local:archfleet-multiarch.yml",
            "CI_REGISTRY_IMAGE": repository,
        },
        env=lab.env,
        timeout=1500,
    )
    (tmp_path / "gitlab-ci-local.log").write_text(pipeline.output, encoding="utf-8")
    assert pipeline.code == 0, pipeline.output[-8000:]
    assert "PASS  discover" in pipeline.output
    child = yaml.safe_load(
        (project / ".gitlab-ci-local/artifacts/discover/archfleet-images.yml").read_text()
    )
    assert [entry["inputs"]["image"] for entry in child["include"]] == [
        f"{repository}/{name}" for name in IMAGES
    ]
    assert "PASS  images" in pipeline.output  # the trigger job, strategy: depend
    children: dict[str, set[str]] = {}
    for name in IMAGES:
        for job in ("preflight", "build-amd64", "build-arm64", "merge", "verify"):
            # gitlab-ci-local names a child pipeline's jobs `[<trigger job>] -> <job>`.
            assert f"PASS  [images] -> {name}-{job} " in pipeline.output, pipeline.output[-4000:]
        _, index = index_of(lab.registry, f"parent/{name}", "ci-main")
        assert index["mediaType"] == INDEX
        assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == list(ARCHES)
        children[name] = {m["digest"] for m in index["manifests"]}
        for arch in ARCHES:
            resolved = resolved_digest(f"{repository}/{name}:ci-main", f"linux/{arch}")
            assert resolved in children[name]
    # Each index holds its own image's builds (the images differ in one file), none another's.
    assert len(set().union(*children.values())) == 2 * len(IMAGES)
