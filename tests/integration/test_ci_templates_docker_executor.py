"""The component's build jobs on the DOCKER EXECUTOR, for real: gitlab-ci-local runs them in
containers on a real Docker engine (Debian's docker.io 20.10, toolkit/lab/docker_engine.py), as
a Docker-executor runner would — the job's `image:` is the build image, the project is in
/builds, the script runs in the container's shell.

The build image is made here (no image can be pulled): a Debian bookworm root with buildah and
skopeo from Debian's own packages (tests/support/buildah_job_image.py, cached), imported into
the engine and pushed to the loopback registry. Nothing sets STORAGE_DRIVER or
BUILDAH_ISOLATION: the job must find it runs in a container and pick vfs and chroot itself
(engines.sh). The arm64 RUN step runs under QEMU (binfmt), so allow_emulation is on. The engine
has no bridge: job containers join the host's network (`--network host`), the way a runner
host's containers reach a loopback registry here. The runner's privileged mode (`privileged =
true`, what buildah's chroot needs in a container) is gitlab-ci-local's `--privileged`.

The smoke job's `docker run --platform` per arch is run the same way, in a job image that adds
Debian's docker client, with the engine's socket bound into the job (a Docker-executor runner's
`volumes = ["/var/run/docker.sock:/var/run/docker.sock"]`); buildx itself is not packaged for
Debian 12, so the buildx build path stays on the recording `docker` of test_ci_templates_run.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import gitlab_ci_local as gcl
from tests.support.buildah_job_image import buildah_job_root
from tests.support.cli import archfleet
from toolkit.ci_templates import COMPONENT_PATH, default_root
from toolkit.lab import docker_engine
from toolkit.lab.docker_engine import DOCKER_CLIENT, DOCKERD, DockerEngine, cached_docker_engine
from toolkit.lab.images import build_image, ensure_binfmt
from toolkit.lab.registry import LocalRegistry
from toolkit.lab.skopeo import resolved_digest
from toolkit.lab.tool_image import import_base

pytestmark = pytest.mark.integration

ROOT = default_root()


@dataclass(frozen=True)
class Executor:
    engine: DockerEngine
    registry: LocalRegistry
    build_image: str  # buildah + skopeo
    smoke_image: str  # the same with the docker client
    base: str  # multi-arch busybox base of the app


@pytest.fixture(scope="module")
def executor(
    lab_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Executor]:
    if not DOCKERD.exists() or not DOCKER_CLIENT.exists():
        pytest.skip("Debian's docker.io is needed (bash scripts/bootstrap)")
    gcl.require()
    ensure_binfmt("arm64")
    root = buildah_job_root()
    repository = f"{lab_registry.address}/ci-templates"
    base_amd64 = build_image("linux/amd64", f"{repository}/base:amd64")
    base_arm64 = build_image("linux/arm64", f"{repository}/base:arm64")
    merged = archfleet(
        *("merge-manifest", "--insecure", "--no-child-tags", "--target", f"{repository}/base:1"),
        *("--source", f"linux/amd64=@{base_amd64.digest}"),
        *("--source", f"linux/arm64=@{base_arm64.digest}"),
    )
    assert merged.code == 0, merged.stderr
    # The runner's `security_opt = ["seccomp:unconfined"]` for its job containers, here for the
    # engine's every container: buildah (root without CAP_SYS_ADMIN in a container) enters a user
    # namespace, which Docker's default seccomp profile refuses. (`privileged = true`, the other
    # way, cannot be had on this machine: runc cannot grant every capability in it.)
    # (dockerd 20.10 takes a profile file only; an allow-all profile is what "unconfined" means.)
    profile = tmp_path_factory.mktemp("seccomp") / "allow-all.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}\n', encoding="utf-8")
    unconfined = (*docker_engine.ENGINE_FLAGS, "--seccomp-profile", str(profile))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(docker_engine, "ENGINE_FLAGS", unconfined)
        with cached_docker_engine("ci-templates-executor") as engine:
            build_tag = f"{repository}/job-buildah:bookworm"
            import_base(engine, root, "linux/amd64", build_tag)
            context = tmp_path_factory.mktemp("smoke-image")
            shutil.copy2(DOCKER_CLIENT, context / "docker")
            (context / "Containerfile").write_text(
                f"FROM {build_tag}\nCOPY docker /usr/bin/docker\n", encoding="utf-8"
            )
            smoke_tag = f"{repository}/job-docker:bookworm"
            engine.docker(
                *("build", "--network", "none", "--file", str(context / "Containerfile")),
                *("--tag", smoke_tag, str(context)),
            )
            yield Executor(engine, lab_registry, build_tag, smoke_tag, f"{repository}/base:1")


def run_jobs(
    executor: Executor,
    project: Path,
    *jobs: str,
    variables: dict[str, str] | None = None,
    volumes: tuple[str, ...] = (),
) -> gcl.Result:
    args = [
        "--no-json-schema-validation",
        *("--container-executable", str(DOCKER_CLIENT)),
        *("--pull-policy", "if-not-present"),
        # Its helper and wait containers, from local images (its defaults would be pulled).
        *("--helper-image", executor.build_image),
        *("--wait-image", executor.build_image),
        *("--network", "host"),
        *(arg for volume in volumes for arg in ("--volume", volume)),
        *jobs,
    ]
    env = {k: v for k, v in executor.engine.env().items() if k in ("DOCKER_HOST", "DOCKER_CONFIG")}
    return gcl.run(project, *args, variables=variables, env=env, timeout=1500)


def project_files(inputs: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    ci = {"include": [{"local": COMPONENT_PATH, "inputs": inputs}]}
    return {
        COMPONENT_PATH: (ROOT / COMPONENT_PATH).read_text(encoding="utf-8"),
        ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False),
        **extra,
    }


def test_buildah_build_jobs_in_containers_then_smoke_with_docker_run(
    executor: Executor, tmp_path: Path
) -> None:
    image = f"{executor.registry.address}/ci-templates/dockerexec"
    inputs = {
        "image": image,
        "context": "app",
        "dockerfile": "app/Containerfile",
        "builder": "buildah",
        "build_image": executor.build_image,
        "allow_emulation": True,
        "insecure": True,
        "cache": False,
        "archfleet_image": "registry.example.com/unused/archfleet:0.1.0",
    }
    containerfile = (
        f'FROM {executor.base}\nRUN ["/bin/sh", "-c", "uname -m > /etc/archfleet-built-on"]\n'
    )
    project = gcl.make_project(
        tmp_path / "project", project_files(inputs, {"app/Containerfile": containerfile})
    )
    run = run_jobs(executor, project, "archfleet-build-amd64", "archfleet-build-arm64")
    assert run.code == 0, run.output[-6000:]
    for arch in ("amd64", "arm64"):
        assert f"PASS  archfleet-build-{arch}" in run.output
    # The job found it is in a container and chose vfs and chroot itself.
    assert "in a container: buildah with STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot" in run.output
    # The digests each job pushed, from its log: gitlab-ci-local did not copy these
    # Docker-executor jobs' dotenv reports back (it copies artifacts through its helper
    # container, here the build image); the dotenv path itself is tested on the shell executor.
    digests = {
        arch: re.search(
            rf"pushed linux/{arch} as {re.escape(image)}@(sha256:[0-9a-f]{{64}})", run.output
        ).group(1)  # type: ignore[union-attr]
        for arch in ("amd64", "arm64")
    }
    # Each digest is in the registry, and is the arch it was built for (skopeo as a client).
    for arch, digest in digests.items():
        assert resolved_digest(f"{image}@{digest}", f"linux/{arch}") == digest

    merged = archfleet(
        *("merge-manifest", "--insecure", "--target", f"{image}:smoke"),
        *(arg for arch, d in digests.items() for arg in ("--source", f"linux/{arch}=@{d}")),
    )
    assert merged.code == 0, merged.stderr
    socket = executor.engine.socket
    smoke_inputs = {
        **inputs,
        "builder": "buildx",
        "build_image": executor.smoke_image,
        "smoke": True,
    }
    smoke_project = gcl.make_project(
        tmp_path / "smoke",
        project_files(
            smoke_inputs,
            # No docker:dind here: the engine's socket is bound instead (below).
            {".gitlab-ci.yml": yaml.safe_dump(_smoke_ci(smoke_inputs), sort_keys=False)},
        ),
    )
    # One job at a time: here both arches share one engine, whose image store holds one image
    # per name, so two concurrent `docker pull --platform` of one tag race (the amd64 job ran
    # the arm64 image the other job had just pulled). On a fleet each arch's smoke job runs on
    # that arch's own runner and engine, where every pull of the tag is the same platform.
    for arch, machine in (("amd64", "x86_64"), ("arm64", "aarch64")):
        smoke = run_jobs(
            executor,
            smoke_project,
            f"archfleet-smoke-{arch}",
            # As the merge job's dotenv report hands it on.
            variables={
                "ARCHFLEET_TARGET": f"{image}:smoke",
                "DOCKER_HOST": "unix:///run/docker.sock",
            },
            volumes=(f"{socket}:/run/docker.sock",),
        )
        assert smoke.code == 0, smoke.output[-6000:]
        assert f"{image}:smoke as linux/{arch}: 'uname -m' -> {machine}" in smoke.output


def _smoke_ci(inputs: dict[str, Any]) -> dict[str, Any]:
    jobs = {f"archfleet-smoke-{arch}": {"services": [], "needs": []} for arch in ("amd64", "arm64")}
    return {"include": [{"local": COMPONENT_PATH, "inputs": inputs}], **jobs}
