"""The component's pipeline EXECUTED by gitlab-ci-local with the shell executor.

buildah path, for real: a loopback registry (Debian's docker-registry), per-arch builds with
buildah (the arm64 RUN step under QEMU: one x86 machine, hence allow_emulation), push by
digest, archfleet's merge and verify, per-arch smoke jobs; then skopeo, as an amd64 and an
arm64 client, resolves the tag to the image each build pushed. A merge-request pipeline runs
first and must leave only the scratch tag; a protected default-branch pipeline then writes the
release tags.

buildx path: there is no Docker engine or buildx on these machines, so the build jobs run with
a RECORDING FAKE `docker` first on PATH, and the test asserts the exact commands the job gave
it (login through stdin, a docker-container builder, push-by-digest output, one cache ref per
arch) and the digest handed on in each arch's dotenv file.

Native guard: with allow_emulation off, the arm64 job on this x86_64 machine fails at its first
step, naming the runner, before anything is built.

The tool (shell executor: `image:` is not used, so the tool is what PATH holds): the `.pre`
preflight job passes with the archfleet installed here (this version) and fails the pipeline,
before any build job starts, when a SHIM `archfleet` on PATH reports another version. The
archfleet_install hatch: an unpinned value fails the preflight before pip runs (in the component
and in the include variant, which has no input regex); a real wheel of this repository served
over loopback https and pinned by its sha256 is installed by pip in hash-checking mode
(dependencies offline, from the tool lock's wheels downloaded once into the cache) and is the
archfleet the preflight runs; a wrong hash is refused by pip.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
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

from tests.support import gitlab_ci_local as gcl
from tests.support.cli import archfleet
from tests.support.https_files import serve_https
from tests.support.registry_http import head_digest
from tests.support.wheel import build_wheel, clean_env
from toolkit import __version__
from toolkit.ci_templates import COMPONENT_PATH, INCLUDE_PATH, default_root, tool_lock
from toolkit.lab.cache import cache_dir, file_lock
from toolkit.lab.images import build_image, ensure_binfmt
from toolkit.lab.registry import LocalRegistry
from toolkit.lab.skopeo import resolved_digest

pytestmark = pytest.mark.integration

ROOT = default_root()
SECRET = "glcbt-not-a-real-job-token-6f1e"
# What a published component's default would be; the shell executor does not pull it.
TOOL_IMAGE = f"registry.example.com/platform/archfleet-ci/archfleet:{__version__}"


def project_files(
    inputs: dict[str, Any],
    extra: dict[str, str] | None = None,
    jobs: dict[str, Any] | None = None,
) -> dict[str, str]:
    ci = {"include": [{"local": COMPONENT_PATH, "inputs": inputs}], **(jobs or {})}
    return {
        COMPONENT_PATH: (ROOT / COMPONENT_PATH).read_text(encoding="utf-8"),
        ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False),
        **(extra or {}),
    }


def dotenv(project: Path, job: str) -> dict[str, str]:
    lines = (project / f"{job}.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line)


PROJECT_URL = "https://gitlab.example.com/team/app"
# gitlab-ci-local's CI_PIPELINE_CREATED_AT, as GitLab writes it (`2022-01-31T16:47:55Z`, gitlabhq
# doc/ci/variables/predefined_variables.md).
RFC3339_UTC = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json"
)


def index_annotations(registry: LocalRegistry, repository: str, tag: str) -> dict[str, str]:
    response = requests.get(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": INDEX_TYPES},
        timeout=10,
    )
    response.raise_for_status()
    found: dict[str, str] = response.json().get("annotations") or {}
    return found


def tags_of(registry: LocalRegistry, repository: str) -> set[str]:
    response = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=10)
    if response.status_code == 404:
        return set()
    return set(response.json().get("tags") or [])


# --- buildah, for real --------------------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    registry: LocalRegistry
    base: str  # a multi-arch busybox base image, amd64 + arm64
    env: dict[str, str]  # buildah: a private vfs storage per job, chroot isolation


@pytest.fixture(scope="module")
def lab(lab_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ensure_binfmt("arm64")
    repository = f"{lab_registry.address}/ci-templates/base"
    amd64 = build_image("linux/amd64", f"{repository}:amd64")
    arm64 = build_image("linux/arm64", f"{repository}:arm64")
    merged = archfleet(
        "merge-manifest",
        "--insecure",
        "--no-child-tags",
        "--target",
        f"{repository}:1",
        "--source",
        f"linux/amd64=@{amd64.digest}",
        "--source",
        f"linux/arm64=@{arm64.digest}",
    )
    assert merged.code == 0, merged.stderr
    work = tmp_path_factory.mktemp("buildah")
    (work / "tmp").mkdir()
    # Each runner machine has its own container storage. Here every "runner" is this machine,
    # and two jobs pulling one base name for two arches into one storage race each other, so
    # this shim gives each job a private vfs storage (as lab/images.py does per build).
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
        },
    )


def test_buildah_pipeline_mr_then_release(lab: Lab, tmp_path: Path) -> None:
    repository = "ci-templates/app"
    image = f"{lab.registry.address}/{repository}"
    containerfile = (
        f'FROM {lab.base}\nRUN ["/bin/sh", "-c", "uname -m > /etc/archfleet-built-on"]\n'
    )
    inputs = {
        "image": image,
        "context": "app",
        "dockerfile": "app/Containerfile",
        "builder": "buildah",
        "allow_emulation": True,  # one x86 machine: arm64 runs under QEMU
        "insecure": True,
        # Shell executor: the image is not pulled; the archfleet on PATH (this checkout's) runs.
        "archfleet_image": TOOL_IMAGE,
        "smoke": True,
    }
    project = gcl.make_project(
        tmp_path / "project", project_files(inputs, {"app/Containerfile": containerfile})
    )
    args = ("--force-shell-executor", "--no-json-schema-validation", "--concurrency", "2")

    mr = gcl.run(
        project,
        *args,
        variables={
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_COMMIT_REF_PROTECTED": "false",
            "CI_COMMIT_REF_SLUG": "feature-x",
        },
        env=lab.env,
    )
    assert mr.code == 0, mr.output[-6000:]
    for job in (
        "preflight",
        "build-amd64",
        "build-arm64",
        "merge",
        "verify",
        "smoke-amd64",
        "smoke-arm64",
    ):
        assert f"PASS  archfleet-{job}" in mr.output, mr.output[-3000:]
    assert f"is archfleet {__version__}, as this component expects" in mr.output
    # The preflight checked the base (a multi-arch index on the lab registry) before the builds.
    assert (
        "archfleet check-bases --platforms linux/amd64,linux/arm64 --build-platform native "
        "--file app/Containerfile --insecure"
    ) in mr.output
    assert "every base image of app/Containerfile offers linux/amd64,linux/arm64" in mr.output
    assert "archfleet-release" not in mr.output
    # Builds push by digest only; the merge-request pipeline writes its scratch tag, no other.
    assert tags_of(lab.registry, repository) == {
        "ci-feature-x",
        "ci-feature-x-amd64",
        "ci-feature-x-arm64",
    }
    mr_digests = {
        arch: dotenv(project, f"archfleet-build-{arch}")[f"ARCHFLEET_DIGEST_{arch.upper()}"]
        for arch in ("amd64", "arm64")
    }
    assert resolved_digest(f"{image}:ci-feature-x", "linux/arm64") == mr_digests["arm64"]

    release = gcl.run(
        project,
        *args,
        variables={
            "CI_COMMIT_REF_PROTECTED": "true",
            "CI_COMMIT_BRANCH": "main",
            "CI_PROJECT_URL": PROJECT_URL,
        },
        env=lab.env,
    )
    assert release.code == 0, release.output[-6000:]
    assert "PASS  archfleet-release" in release.output and "archfleet-merge " not in release.output
    written = dotenv(project, "archfleet-release")
    short_sha = written["ARCHFLEET_TARGET"].rsplit(":", 1)[1]
    assert len(short_sha) == 8
    release_tags = {short_sha, "main", "latest"}
    assert tags_of(lab.registry, repository) == {
        "ci-feature-x",
        "ci-feature-x-amd64",
        "ci-feature-x-arm64",
        *release_tags,
        *(f"{tag}-{arch}" for tag in release_tags for arch in ("amd64", "arm64")),
    }
    # Every release tag holds the one index, written once by the merge.
    for tag in release_tags:
        assert head_digest(lab.registry.url, repository, tag) == written["ARCHFLEET_INDEX_DIGEST"]
    # A real third-party client gets each arch's own build.
    for arch in ("amd64", "arm64"):
        built = dotenv(project, f"archfleet-build-{arch}")[f"ARCHFLEET_DIGEST_{arch.upper()}"]
        assert resolved_digest(f"{image}:latest", f"linux/{arch}") == built
    assert written["ARCHFLEET_MERGED_PLATFORMS"] == "linux/amd64,linux/arm64"
    # The index says where it came from: the pipeline's project, commit and creation time.
    index = index_annotations(lab.registry, repository, "latest")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert index["org.opencontainers.image.source"] == PROJECT_URL
    assert index["org.opencontainers.image.revision"] == commit
    assert RFC3339_UTC.match(index["org.opencontainers.image.created"]), index
    assert "as linux/arm64: 'uname -m' -> aarch64" in release.output
    assert "as linux/amd64: 'uname -m' -> x86_64" in release.output


def test_preflight_fails_on_a_base_without_the_platform(lab: Lab, tmp_path: Path) -> None:
    amd64_only = f"{lab.registry.address}/ci-templates/base:amd64"  # one manifest, no index
    inputs = {
        "image": f"{lab.registry.address}/ci-templates/app",
        "insecure": True,
        "archfleet_image": TOOL_IMAGE,
    }
    project = gcl.make_project(
        tmp_path / "project", project_files(inputs, {"Dockerfile": f"FROM {amd64_only}\n"})
    )
    run = gcl.run(
        project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        variables={"CI_COMMIT_REF_PROTECTED": "false"},
        env=lab.env,
    )
    assert run.code != 0
    assert "FAIL  archfleet-preflight" in run.output, run.output[-4000:]
    assert (
        f"error: base {amd64_only} (stage-0 (line 1)) does not offer linux/arm64 "
        "(offers: linux/amd64)"
    ) in run.output
    assert "check_bases: a base image of Dockerfile does not offer every platform" in run.output
    # No build job started.
    assert "archfleet-build-amd64" not in run.output.split("FAIL  archfleet-preflight")[0]
    assert not list(project.glob("archfleet-build-*.env"))


# --- buildx, with a recording fake docker ---------------------------------------------------------

FAKE_DOCKER = """#!{python}
# Recording fake `docker` (no Docker engine on this machine): one JSON line per call.
import hashlib, json, os, sys
args = sys.argv[1:]
record = {{"args": args}}
if args[:1] == ["login"]:
    record["stdin_sha256"] = hashlib.sha256(sys.stdin.read().encode()).hexdigest()
log = os.path.join(os.environ["FAKE_DOCKER_DIR"], os.environ.get("CI_JOB_NAME", "x") + ".jsonl")
with open(log, "a") as out:
    out.write(json.dumps(record) + "\\n")
if args[:2] == ["buildx", "inspect"]:
    sys.exit(1)  # no builder yet: the job must create one
if args[:2] == ["buildx", "build"]:
    platform = args[args.index("--platform") + 1]
    digest = "sha256:" + hashlib.sha256(platform.encode()).hexdigest()
    with open(args[args.index("--metadata-file") + 1], "w") as meta:
        json.dump({{"containerimage.digest": digest, "image.name": "x"}}, meta, indent=2)
"""


@pytest.fixture
def fake_docker(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    calls = tmp_path / "docker-calls"
    calls.mkdir()
    return calls, {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DOCKER_DIR": str(calls)}


def calls_of(calls: Path, job: str) -> list[dict[str, Any]]:
    log = calls / f"{job}.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


BUILDX_INPUTS = {
    "image": "registry.example.com/team/app",
    "builder": "buildx",
    "build_args": ["VERSION=1.2", "NOTE=two words"],
}
# GitLab's shell executor ignores `services:` (the buildx jobs' docker:dind); gitlab-ci-local
# starts them even with --force-shell-executor, so the project drops them here.
NO_SERVICES = {f"archfleet-build-{arch}": {"services": []} for arch in ("amd64", "arm64")}
REGISTRY_VARIABLES = {
    "CI_REGISTRY": "registry.example.com",
    "CI_REGISTRY_USER": "gitlab-ci-token",
    "CI_REGISTRY_PASSWORD": SECRET,
}


def test_buildx_job_commands(tmp_path: Path, fake_docker: tuple[Path, dict[str, str]]) -> None:
    calls, env = fake_docker
    project = gcl.make_project(
        tmp_path / "project",
        project_files({**BUILDX_INPUTS, "allow_emulation": True}, jobs=NO_SERVICES),
    )
    run = gcl.run(
        project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        "archfleet-build-amd64",
        "archfleet-build-arm64",
        variables=REGISTRY_VARIABLES,
        env=env,
    )
    assert run.code == 0, run.output[-4000:]
    assert SECRET not in run.output
    # The logged command leaves build-arg values out (they may carry tokens).
    assert "--build-arg VERSION=... --build-arg NOTE=..." in run.output
    assert "VERSION=1.2" not in run.output
    for arch in ("amd64", "arm64"):
        recorded = calls_of(calls, f"archfleet-build-{arch}")
        assert recorded[0] == {
            "args": [
                "login",
                "--username",
                "gitlab-ci-token",
                "--password-stdin",
                "registry.example.com",
            ],
            "stdin_sha256": hashlib.sha256(f"{SECRET}\n".encode()).hexdigest(),
        }
        build = recorded[3]["args"]
        metadata = build[build.index("--metadata-file") + 1]
        assert [c["args"] for c in recorded[1:]] == [
            ["buildx", "inspect", "archfleet"],
            ["buildx", "create", "--name", "archfleet", "--driver", "docker-container"],
            [
                "buildx",
                "build",
                "--builder",
                "archfleet",
                "--platform",
                f"linux/{arch}",
                "--file",
                "Dockerfile",
                "--provenance=false",
                "--sbom=false",
                "--metadata-file",
                metadata,
                "--output",
                "type=image,name=registry.example.com/team/app,push-by-digest=true,"
                "name-canonical=true,push=true",
                "--build-arg",
                "VERSION=1.2",
                "--build-arg",
                "NOTE=two words",
                # Not a protected pipeline: reads the protected cache and its own, writes
                # only its own.
                "--cache-from",
                f"type=registry,ref=registry.example.com/team/app/buildcache:{arch}",
                "--cache-from",
                f"type=registry,ref=registry.example.com/team/app/buildcache:unprotected-{arch}",
                "--cache-to",
                "type=registry,ref=registry.example.com/team/app/buildcache:"
                f"unprotected-{arch},mode=max",
                ".",
            ],
        ]
        digest = "sha256:" + hashlib.sha256(f"linux/{arch}".encode()).hexdigest()
        assert dotenv(project, f"archfleet-build-{arch}") == {
            f"ARCHFLEET_DIGEST_{arch.upper()}": digest
        }
    # A protected pipeline reads and writes the protected ref only.
    protected = gcl.run(
        project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        "archfleet-build-amd64",
        variables={**REGISTRY_VARIABLES, "CI_COMMIT_REF_PROTECTED": "true"},
        env=env,
    )
    assert protected.code == 0, protected.output[-4000:]
    build = calls_of(calls, "archfleet-build-amd64")[-1]["args"]
    cache = [(a, b) for a, b in itertools.pairwise(build) if a.startswith("--cache")]
    ref = "type=registry,ref=registry.example.com/team/app/buildcache:amd64"
    assert cache == [("--cache-from", ref), ("--cache-to", f"{ref},mode=max")]


def test_native_guard_fails_the_job_on_the_wrong_arch(
    tmp_path: Path, fake_docker: tuple[Path, dict[str, str]]
) -> None:
    calls, env = fake_docker
    project = gcl.make_project(tmp_path / "project", project_files(BUILDX_INPUTS, jobs=NO_SERVICES))
    run = gcl.run(
        project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        "archfleet-build-amd64",
        "archfleet-build-arm64",
        variables=REGISTRY_VARIABLES,
        env=env,
    )
    assert run.code != 0
    assert "PASS  archfleet-build-amd64" in run.output
    assert "FAIL  archfleet-build-arm64" in run.output
    assert (
        "native guard: archfleet-build-arm64 must run linux/arm64 natively, but it landed on runner"
    ) in run.output
    assert "a x86_64 CPU (linux/amd64)" in run.output and "allow_emulation: true" in run.output
    # The guard is the first step: nothing was logged in to, nothing built.
    assert calls_of(calls, "archfleet-build-arm64") == []
    assert not (project / "archfleet-build-arm64.env").exists()


# --- the tool: preflight version check, and the archfleet_install hatch ---------------------------


def shim_archfleet(bin_dir: Path, version: str) -> None:
    """A SHIM `archfleet` that reports another version, as `archfleet --version` prints it
    (Invoke's Program: `<name> <version>`, toolkit/cli.py)."""
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "archfleet"
    shim.write_text(f'#!/bin/sh\necho "archfleet {version}"\n')
    shim.chmod(0o755)


def test_preflight_stops_the_pipeline_before_any_build_on_another_version(
    tmp_path: Path, fake_docker: tuple[Path, dict[str, str]]
) -> None:
    calls, env = fake_docker
    shim_archfleet(tmp_path / "bin", "0.0.9")  # the fake docker's bin/, first on PATH
    # Only the system's directories after it: the development install's `archfleet` (a pyenv
    # shim here) must not be on PATH at all, so the shim is the one tool the job can find.
    env = {**env, "PATH": f"{tmp_path / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
    project = gcl.make_project(
        tmp_path / "project",
        project_files({**BUILDX_INPUTS, "allow_emulation": True, "archfleet_image": TOOL_IMAGE}),
    )
    run = gcl.run(
        project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        variables=REGISTRY_VARIABLES,
        env=env,
    )
    assert run.code != 0
    assert "FAIL  archfleet-preflight" in run.output, run.output[-3000:]
    assert (
        f"archfleet: error: version mismatch: this component is archfleet {__version__}, but the "
        f"archfleet in the job image {TOOL_IMAGE} is '0.0.9'. Set the archfleet_image input "
        f"(ARCHFLEET_MERGE_IMAGE) to the archfleet {__version__} tool image"
    ) in run.output
    # No build job started: nothing logged in, nothing built, no digest handed on.
    assert "archfleet-build-amd64" not in run.output.split("FAIL  archfleet-preflight")[0]
    assert list(calls.iterdir()) == []
    assert not list(project.glob("archfleet-build-*.env"))


def test_preflight_passes_with_this_version(tmp_path: Path) -> None:
    project = gcl.make_project(
        tmp_path / "project",
        project_files(
            {**BUILDX_INPUTS, "archfleet_image": TOOL_IMAGE}, {"Dockerfile": "FROM scratch\n"}
        ),
    )
    run = gcl.run(
        project, "--force-shell-executor", "--no-json-schema-validation", "archfleet-preflight"
    )
    assert run.code == 0, run.output[-3000:]
    assert "PASS  archfleet-preflight" in run.output
    # check_bases (on by default) ran on the checkout's Dockerfile; build-arg values stay out.
    assert (
        "archfleet check-bases --platforms linux/amd64,linux/arm64 --build-platform native "
        "--file Dockerfile --build-arg VERSION=... --build-arg NOTE=..."
    ) in run.output
    assert "VERSION=1.2" not in run.output
    assert "every base image of Dockerfile offers linux/amd64,linux/arm64" in run.output
    assert (
        f"is archfleet {__version__}, as this component expects (image {TOOL_IMAGE})"
    ) in run.output


def recording_python3(bin_dir: Path) -> Path:
    """A FAKE python3 first on PATH that records any call: an unpinned value must not reach it."""
    bin_dir.mkdir(exist_ok=True)
    record = bin_dir.parent / "python3-calls"
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$*" >> {record}\nexit 1\n')
    (bin_dir / "python3").chmod(0o755)
    return record


@pytest.mark.parametrize("flavour", ["component", "include"])
def test_archfleet_install_without_a_hash_is_refused(tmp_path: Path, flavour: str) -> None:
    record = recording_python3(tmp_path / "bin")
    unpinned = f"archfleet=={__version__}"
    if flavour == "component":
        files = project_files({**BUILDX_INPUTS, "archfleet_install": unpinned})
    else:
        # The include variant has no input regex: the job's own check is the only one.
        ci = {"include": [{"local": INCLUDE_PATH}], "variables": {"ARCHFLEET_INSTALL": unpinned}}
        files = {
            INCLUDE_PATH: (ROOT / INCLUDE_PATH).read_text(encoding="utf-8"),
            ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False),
        }
    project = gcl.make_project(tmp_path / "project", files)
    run = gcl.run(
        project,
        "--force-shell-executor",
        "--no-json-schema-validation",
        "archfleet-preflight",
        env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
    )
    assert run.code != 0
    assert "FAIL  archfleet-preflight" in run.output
    assert (
        "archfleet: error: archfleet_install (ARCHFLEET_INSTALL) has no --hash=sha256:<64 hex "
        "digits>: a package name, or a wheel without its hash, is never installed"
    ) in run.output
    assert not record.exists()


def lock_wheelhouse() -> Path:
    """The tool lock's wheels, downloaded once (pip download in hash-checking mode, from the
    indexes pip is configured with) into the cache, so the jobs' pip runs offline."""
    lock = tool_lock(ROOT)
    key = hashlib.sha256("\n".join(lock).encode()).hexdigest()[:16]
    house = cache_dir() / "tool-lock-wheels" / key
    with file_lock(cache_dir() / "tool-lock-wheels.lock"):
        if not (house / ".ready").exists():
            house.mkdir(parents=True, exist_ok=True)
            requirements = house / "requirements.txt"
            requirements.write_text("\n".join(lock) + "\n", encoding="utf-8")
            subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "-q", "--require-hashes"),
                    *("--only-binary", ":all:", "--no-deps", "-d", str(house)),
                    *("-r", str(requirements)),
                ],
                env=clean_env(),
                check=True,
                timeout=300,
            )
            (house / ".ready").touch()
    return house


@pytest.fixture(scope="module")
def archfleet_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_archfleet_install_of_a_pinned_wheel(tmp_path: Path, archfleet_wheel: Path) -> None:
    data = archfleet_wheel.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    house = lock_wheelhouse()
    with serve_https({f"/wheels/{archfleet_wheel.name}": data}, tmp_path) as server:
        url = server.url(f"/wheels/{archfleet_wheel.name}")
        env = {
            # Not the checkout's toolkit: with PYTHONPATH on a source tree (a copy under test),
            # pip in the job's virtualenv sees its archfleet.egg-info as archfleet installed,
            # installs nothing, and the job runs another archfleet (empty means unset).
            "PYTHONPATH": "",
            # Offline: the lock's wheels from the cache; the archfleet wheel from the URL.
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(house),
            # The test CA; pip's requests takes REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE over --cert
            # when they are set (requests' merge_environment_settings), so all three.
            "PIP_CERT": str(server.ca_file),
            "REQUESTS_CA_BUNDLE": str(server.ca_file),
            "CURL_CA_BUNDLE": str(server.ca_file),
        }
        for value, passes in (
            (f"{url} --hash=sha256:{digest}", True),
            (f"{url} --hash=sha256:{'0' * 64}", False),
        ):
            project = gcl.make_project(
                tmp_path / f"project-{passes}",
                project_files(
                    # No Dockerfile in this project: the install is what is tested.
                    {
                        "archfleet_image": "python:3.12-slim",
                        "archfleet_install": value,
                        "check_bases": False,
                    }
                ),
            )
            run = gcl.run(
                project,
                "--force-shell-executor",
                "--no-json-schema-validation",
                "archfleet-preflight",
                env=env,
                timeout=600,
            )
            if passes:
                assert run.code == 0, run.output[-4000:]
                assert "archfleet_install: pip in hash-checking mode" in run.output
                # The archfleet that ran is the installed one, in the job-private virtualenv.
                assert "/archfleet-job-" in run.output
                assert "/tool/venv/bin/archfleet is archfleet" in run.output
                assert f"archfleet {__version__}, as this component expects" in run.output
            else:
                assert run.code != 0
                assert "THESE PACKAGES DO NOT MATCH THE HASHES" in run.output, run.output[-4000:]
                assert "pip did not install archfleet_install" in run.output
        assert server.requests.count(f"/wheels/{archfleet_wheel.name}") == 2
