"""The templates project's own pipeline, as publish-templates publishes it, EXECUTED by
gitlab-ci-local 4.70.1 with the shell executor, up to and including its release job.

What runs is what was published: publish-templates commits to a FAKE GitLab
(tests/support/gitlab_fake.py, no GitLab server here) whose Projects API names the loopback
registry as the project's registry, and the test checks the tagged files out into a git
repository whose remote is that project. gitlab-ci-local resolves the pipeline's
`include: component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/multiarch@$CI_COMMIT_SHA` from that work
tree itself (a component of its own project at its own HEAD is local to it), so the include is
not substituted.

The only edits to the published .gitlab-ci.yml are four component inputs this machine needs:
`builder: buildah` (no Docker engine with buildx for the jobs here), `insecure: true`
(plain-HTTP loopback registry), `allow_emulation: true` (one x86_64 machine: the arm64 build and
smoke jobs run under QEMU through binfmt_misc, so nothing here says how fast a real arm64 runner
is), and `cache: false`, cut for time: buildah's `--cache-to` pushes every build step to a
registry that is new each run, minutes on this 2-core machine for nothing reused.

Real parts: buildah (vfs, chroot isolation, one storage per job), skopeo, Debian's
docker-registry, archfleet's merge and verify run from the committed wheel, installed by pip in
hash-checking mode (the pipeline's `archfleet_install`), and the python base debootstrapped from
Debian packages by toolkit/lab/tool_image.py and made an image with its Docker engine
(cached; it stands for BASE_IMAGE, pinned by digest). The dependency wheels come from a local
package index (tests/support/pyindex.py), the stand-in for PIP_INDEX_URL.

The release itself cannot happen here (gitlab-ci-local has no Releases API and no glab runs):
the release job's script runs, and its `release:` keyword is checked against GitLab's schema
(check-jsonschema's bundled vendor.gitlab-ci schema, and gitlab-ci-local's own) on the expanded
pipeline. gitlab-ci-local does not evaluate `workflow:rules` either: the tag-only rule is
checked in tests/unit/test_ci_templates_publish.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support import gitlab_ci_local as gcl
from tests.support.cli import archfleet
from tests.support.gitlab_fake import GitLabFake
from tests.support.pyindex import PackageIndex, lock_wheelhouse, serve_index
from tests.support.registry_http import head_digest
from tests.support.wheel import build_wheel
from toolkit import __version__
from toolkit.lab import rootfs
from toolkit.lab.docker_engine import cached_docker_engine
from toolkit.lab.images import ensure_binfmt
from toolkit.lab.registry import LocalRegistry, start_registry
from toolkit.lab.skopeo import resolved_digest
from toolkit.lab.tool_image import (
    BASE_REPOSITORY,
    import_base,
    merge_base,
    python_base_rootfs,
    requirements_path,
)

pytestmark = pytest.mark.integration

TOKEN = "glpat-fake-token-91c2"
PROJECT = "platform/archfleet-ci"
VERSION = __version__
# What a runner of each arch is tagged with, and what `uname -m` says there.
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
TEST_INPUTS = {
    "builder": "buildah",
    "insecure": True,
    "allow_emulation": True,
    "cache": False,
}


@dataclass(frozen=True)
class Published:
    registry: LocalRegistry
    project: Path  # the tag's files, committed, with the templates project as its remote
    files: dict[str, bytes]
    wheel: Path

    @property
    def registry_path(self) -> str:
        """The project's CI_REGISTRY_IMAGE: the fake's container_registry_image_prefix."""
        return f"{self.registry.address}/{PROJECT}"

    @property
    def tool_image(self) -> str:
        return f"{self.registry_path}/archfleet"


def tag_variables(published: Published, **extra: str) -> dict[str, str]:
    """What GitLab sets in a pipeline of the protected version tag."""
    return {
        "CI_COMMIT_TAG": VERSION,
        "CI_COMMIT_REF_NAME": VERSION,
        "CI_COMMIT_REF_SLUG": VERSION.replace(".", "-"),
        "CI_COMMIT_REF_PROTECTED": "true",
        "CI_REGISTRY": published.registry.address,
        "CI_REGISTRY_IMAGE": published.registry_path,
        **extra,
    }


def write_project(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", f"archfleet CI templates {VERSION}"],
        ["remote", "add", "origin", f"https://gitlab.example.com/{PROJECT}.git"],
    ):
        git(root, *args)
    return root


def git(root: Path, *args: str) -> None:
    identity = ["-c", "user.name=archfleet tests", "-c", "user.email=tests@archfleet.invalid"]
    subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """publish-templates, as a user runs it, into the fake project; then its tag checked out."""
    work = tmp_path_factory.mktemp("component-project")
    wheel = build_wheel(work / "wheel")
    registry = start_registry(work / "registry")
    try:
        with GitLabFake(token=TOKEN, project=PROJECT) as fake:
            fake.registry_host = registry.address
            run = archfleet(
                *("publish-templates", "--project", PROJECT, "--url", fake.url, "--allow-http"),
                *("--version", VERSION, "--wheel", str(wheel)),
                env={"GITLAB_TOKEN": TOKEN},
                unset=("CI_SERVER_URL",),
            )
            assert run.code == 0, run.stderr
            files = fake.raw_files_at(VERSION)
        yield Published(registry, write_project(work / "project", files), files, wheel)
    finally:
        registry.stop()


# --- the expanded pipeline against GitLab's schema (no job runs) -------------------------------


def test_release_job_and_pipeline_against_gitlabs_schema(
    published: Published, tmp_path: Path
) -> None:
    variables = tag_variables(
        published, BASE_IMAGE=f"{published.registry.address}/base@sha256:{'a' * 64}"
    )
    # gitlab-ci-local validates the expanded pipeline against its copy of GitLab's schema...
    expanded = gcl.preview(published.project, variables, validate=True)
    # ...and check-jsonschema against the one it bundles (vendor.gitlab-ci).
    expanded_file = tmp_path / "expanded.yml"
    expanded_file.write_text(yaml.safe_dump(expanded, sort_keys=False), encoding="utf-8")
    published_file = published.project / ".gitlab-ci.yml"
    for checked in (expanded_file, published_file):
        done = subprocess.run(
            ["check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", str(checked)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    release_job = expanded["catalog-release"]
    release = release_job["release"]
    assert release["tag_name"] == "$CI_COMMIT_TAG"
    assert release["name"] == "archfleet CI templates $CI_COMMIT_TAG"
    description = release["description"]
    assert "component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/multiarch@$CI_COMMIT_TAG" in description
    assert "`$ARCHFLEET_INDEX_DIGEST`" in description
    assert release_job["image"] == {"name": "$RELEASE_JOB_IMAGE"}
    pinned = expanded["variables"]["RELEASE_JOB_IMAGE"]
    assert pinned.startswith("registry.gitlab.com/gitlab-org/cli:v") and "@sha256:" in pinned
    needs = {need["job"]: need for need in release_job["needs"]}
    assert needs["tool-image-release"]["artifacts"] is True
    assert set(needs) == {
        "tool-image-release",
        "tool-image-verify",
        "tool-image-smoke-amd64",
        "tool-image-smoke-arm64",
    }
    assert expanded["stages"] == [".pre", "prepare", "build", "deploy", "release", ".post"]
    assert release_job["stage"] == "release"
    # The component came in at this very commit: its jobs, each arch's on that arch's runner
    # (GitLab expands the tag from the job's own ARCHFLEET_ARCH).
    for arch in ARCHES:
        for kind in ("build", "smoke"):
            job = expanded[f"tool-image-{kind}-{arch}"]
            assert job["tags"] == ["${ARCHFLEET_ARCH}"]
            assert job["variables"]["ARCHFLEET_ARCH"] == arch
    assert expanded["tool-image-preflight"]["image"] == {"name": "$BASE_IMAGE"}
    jobs = gcl.active(gcl.list_jobs(published.project, variables))
    assert jobs == {
        "tool-image-check",
        "tool-image-preflight",
        "tool-image-context",
        "tool-image-build-amd64",
        "tool-image-build-arm64",
        "tool-image-release",
        "tool-image-verify",
        "tool-image-smoke-amd64",
        "tool-image-smoke-arm64",
        "catalog-release",
    }


# --- the check job: a clear stop before anything is built ------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"BASE_IMAGE": ""},
            "error: BASE_IMAGE is not set. Set it in Settings > CI/CD > Variables",
        ),
        (
            {"BASE_IMAGE": "docker.io/library/python:3.12-slim"},
            "error: BASE_IMAGE=docker.io/library/python:3.12-slim is not pinned by digest",
        ),
        (
            {"CI_COMMIT_TAG": "9.9.9"},
            f"error: this pipeline builds archfleet {VERSION} (the wheel in image/archfleet-"
            f"{VERSION}-py3-none-any.whl), but runs for tag '9.9.9'",
        ),
        (
            {"CI_COMMIT_REF_PROTECTED": "false"},
            f"error: tag {VERSION} is not protected: the component moves the tool image's version "
            "tags only in protected pipelines",
        ),
    ],
)
def test_check_job_stops_a_missing_base_another_tag_or_an_unprotected_one(
    published: Published, change: dict[str, str], message: str
) -> None:
    base = f"{published.registry.address}/base@sha256:{'b' * 64}"
    variables = tag_variables(published, BASE_IMAGE=base) | change
    run = gcl.run(
        published.project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        "tool-image-check",
        variables=variables,
    )
    assert run.code != 0
    assert "FAIL  tool-image-check" in run.output
    assert message in run.output, run.output[-3000:]


def test_check_job_passes_a_pinned_base_on_the_protected_version_tag(published: Published) -> None:
    base = f"{published.registry.address}/base@sha256:{'c' * 64}"
    run = gcl.run(
        published.project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        "tool-image-check",
        variables=tag_variables(published, BASE_IMAGE=base),
    )
    assert run.code == 0, run.output[-3000:]
    assert f"archfleet {VERSION}: base {base}, wheel image/archfleet-{VERSION}" in run.output


# --- the whole tag pipeline, executed ---------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    base: str  # BASE_IMAGE: the python base index, pinned by digest
    index: PackageIndex
    env: dict[str, str]


@pytest.fixture(scope="module")
def lab(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ensure_binfmt("arm64")
    registry = published.registry.address
    digests = {}
    # H1's lab: a debootstrapped python base per arch (cached tarballs), each made an image by
    # the cached Docker engine and pushed here, then merged into one index by archfleet.
    with cached_docker_engine("component-project") as engine:
        for platform in ("linux/amd64", "linux/arm64"):
            arch = platform.split("/")[1]
            tag = f"{registry}/{BASE_REPOSITORY}:{rootfs.DEFAULT_SUITE}-{arch}"
            digests[platform] = import_base(engine, python_base_rootfs(arch), platform, tag)
    base_index = merge_base(registry, rootfs.DEFAULT_SUITE, digests)
    work = tmp_path_factory.mktemp("jobs")
    (work / "tmp").mkdir()
    # Every "runner" here is this machine: a private buildah storage per job (as
    # test_ci_templates_run.py does), or two jobs pulling one base for two arches race.
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
    with serve_index({"simple": lock_wheelhouse(requirements_path())}, work) as index:
        yield Lab(
            f"{registry}/{BASE_REPOSITORY}@{base_index}",
            index,
            {
                "PATH": f"{shim}:{os.environ['PATH']}",
                "BUILDAH_ISOLATION": "chroot",
                "TMPDIR": str(work / "tmp"),
                # pip sees only PIP_INDEX_URL (a job variable) and trusts its CA: not this
                # machine's pip configuration, find-links or CA bundle.
                "PIP_CONFIG_FILE": os.devnull,
                "PIP_FIND_LINKS": "",
                "PIP_CERT": str(index.ca_file),
                "REQUESTS_CA_BUNDLE": str(index.ca_file),
                "CURL_CA_BUNDLE": str(index.ca_file),
            },
        )


def with_test_inputs(published: Published, root: Path) -> Path:
    """A copy of the published project with TEST_INPUTS (see the module docstring) merged
    into the component's inputs, committed: the component is still included by component."""
    shutil.copytree(published.project, root)
    pipeline = root / ".gitlab-ci.yml"
    data = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
    (include,) = data["include"]
    assert set(include) == {"component", "inputs"}
    include["inputs"].update(TEST_INPUTS)
    pipeline.write_text(yaml.safe_dump(data, sort_keys=False, width=1000), encoding="utf-8")
    git(root, "commit", "-q", "-am", "test inputs")
    return root


def dotenv(project: Path, job: str) -> dict[str, str]:
    lines = (project / f"{job}.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def tags_of(registry: LocalRegistry, repository: str) -> set[str]:
    answer = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=10)
    return set(answer.json().get("tags") or []) if answer.ok else set()


def image_config(registry: LocalRegistry, repository: str, digest: str) -> dict[str, Any]:
    accept = "application/vnd.oci.image.manifest.v1+json"
    manifest = requests.get(
        f"{registry.url}/v2/{repository}/manifests/{digest}",
        headers={"Accept": accept},
        timeout=10,
    ).json()
    blob = requests.get(
        f"{registry.url}/v2/{repository}/blobs/{manifest['config']['digest']}", timeout=30
    )
    config: dict[str, Any] = json.loads(blob.content)
    return config


def test_tag_pipeline_builds_merges_verifies_and_reaches_the_release_job(
    published: Published, lab: Lab, tmp_path: Path
) -> None:
    project = with_test_inputs(published, tmp_path / "project")
    # No CI_REGISTRY_USER: the loopback registry has no auth. (With one, the component's buildah
    # login fails here: it points REGISTRY_AUTH_FILE at an empty mktemp file, which buildah 1.28
    # refuses as JSON.)
    variables = tag_variables(published, BASE_IMAGE=lab.base, PIP_INDEX_URL=lab.index.index_url())
    run = gcl.run(
        project,
        *("--force-shell-executor", "--no-json-schema-validation", "--concurrency", "2"),
        variables=variables,
        env=lab.env,
        timeout=1800,
    )
    assert run.code == 0, run.output[-8000:]
    for job in (
        "tool-image-check",
        "tool-image-preflight",
        "tool-image-context",
        "tool-image-build-amd64",
        "tool-image-build-arm64",
        "tool-image-release",
        "tool-image-verify",
        "tool-image-smoke-amd64",
        "tool-image-smoke-arm64",
        "catalog-release",
    ):
        assert f"PASS  {job}" in run.output, (job, run.output[-4000:])
    # Unprotected-ref scratch merge: not in a protected tag pipeline.
    assert "tool-image-merge " not in run.output

    # The tool archfleet ran was the committed wheel, installed by pip with its hash.
    wheel_sha256 = hashlib.sha256(published.wheel.read_bytes()).hexdigest()
    assert f"image/{published.wheel.name}: OK" in run.output  # the context job's sha256sum -c
    assert "archfleet_install: pip in hash-checking mode" in run.output
    assert f"is archfleet {VERSION}, as this component expects" in run.output
    # The dependency wheels came from the configured index (PIP_INDEX_URL).
    served = set(lab.index.requests)
    lock_files = {f"/files/{w.name}" for w in lock_wheelhouse(requirements_path())}
    assert lock_files <= served, served

    # Each arch pushed by digest; the merge wrote the version's tags, one index for all.
    repository = f"{PROJECT}/archfleet"
    merged = dotenv(project, "tool-image-release")
    index_digest = merged["ARCHFLEET_INDEX_DIGEST"]
    version_tags = {VERSION, VERSION.rsplit(".", 1)[0], VERSION.split(".")[0]}
    assert tags_of(published.registry, repository) == version_tags | {
        f"{tag}-{arch}" for tag in version_tags for arch in ARCHES
    }
    for tag in version_tags:
        assert head_digest(published.registry.url, repository, tag) == index_digest
    # What the published templates default archfleet_image to is exactly that image.
    component = published.files["templates/multiarch.yml"].decode()
    assert f"default: {published.tool_image}:{VERSION}\n" in component
    for arch in ARCHES:
        built = dotenv(project, f"tool-image-build-{arch}")[f"ARCHFLEET_DIGEST_{arch.upper()}"]
        # A real client (skopeo) choosing the platform gets that arch's build.
        assert resolved_digest(f"{published.tool_image}:{VERSION}", f"linux/{arch}") == built
        config = image_config(published.registry, repository, built)
        assert config["architecture"] == arch
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == VERSION
        assert labels["org.opencontainers.image.base.name"] == lab.base
        assert labels["org.opencontainers.image.base.digest"] == lab.base.rsplit("@", 1)[1]
        # `archfleet --version` ran in the built image, on (an emulation of) each arch.
        assert (
            f"{published.tool_image}:{VERSION} as linux/{arch}: 'archfleet --version | grep -qx "
            f"'archfleet {VERSION}' && uname -m' -> {ARCHES[arch]}"
        ) in run.output
    assert "--check-binaries" in run.output  # verify looked at each child's binaries too

    # The release job ran its script with the merge's dotenv; the `release:` it carries is
    # checked against the schema above.
    assert (
        f"release {VERSION}: tool image {published.tool_image}:{VERSION}@{index_digest}"
    ) in run.output
    assert wheel_sha256 in published.files[".gitlab-ci.yml"].decode()
