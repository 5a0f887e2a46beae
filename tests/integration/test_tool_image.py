"""The archfleet tool image, built the archfleet way and run on both arches.

Real parts only: Debian's Docker engine (docker.io 20.10, a private dockerd per
toolkit/lab/docker_engine.py), Debian's `docker-registry` on loopback, Python bases
debootstrapped from Debian packages (cached tarballs), and archfleet's wheel built from this
checkout (tests/support/wheel.py). toolkit.lab.tool_image.build_tool_image imports the bases,
builds ci-templates/image/Containerfile once per arch with `--network none`, pushes each by
digest, and merges and verifies `<registry>/archfleet:<version>` with archfleet run from the
freshly built amd64 image.

linux/arm64 runs under QEMU here (qemu-user through binfmt_misc), both while its image builds
and in `docker run --platform linux/arm64`: these machines have no arm64 hardware. What the
emulation shows is that every binary in that image is arm64 and works as one; it says nothing
about speed on a real arm64 machine.

The first run debootstraps the two bases (about 1 and 4-10 minutes) and downloads the two
locked dependency wheels; later runs reuse them from $ARCHFLEET_CACHE, and the engine keeps its
images and BuildKit cache there too (toolkit.lab.docker_engine.cached_docker_engine), so a build
whose Containerfile, wheels and base have not changed is a cache hit. The wheel is built with
SOURCE_DATE_EPOCH from the last commit, so unchanged sources give the same wheel bytes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.wheel import REPO_ROOT, build_wheel
from toolkit import __version__
from toolkit.lab.docker_engine import DockerEngine, cached_docker_engine
from toolkit.lab.registry import LocalRegistry, start_registry
from toolkit.lab.tool_image import (
    DEFAULT_PLATFORMS,
    IMAGE_PATH_DIR,
    TOOL_REPOSITORY,
    BuildSpec,
    ToolImage,
    build_tool_image,
    sha256_file,
)
from toolkit.registry.client import RegistryClient
from toolkit.registry.manifest import ImageIndex, ImageManifest, Platform, parse_manifest

pytestmark = pytest.mark.integration

UNAME = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


@dataclass(frozen=True)
class Built:
    engine: DockerEngine
    registry: LocalRegistry
    image: ToolImage
    wheel: Path
    context: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("tool-image")
    # Zip timestamps from the last commit, not the clock: the same sources give the same wheel
    # bytes, so an unchanged build is a cache hit in the cached engine's BuildKit.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", commit_time())
        wheel = build_wheel(work / "wheel")
    with (
        start_registry(work / "registry") as registry,
        cached_docker_engine("tool-image-test") as engine,
    ):
        image = build_tool_image(engine, registry.address, wheel, work)
        yield Built(engine, registry, image, wheel, work / "context")


def commit_time() -> str:
    done = subprocess.run(
        ["git", "log", "-1", "--format=%ct"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def run(built: Built, platform: str, *command: str, user: str | None = None) -> str:
    """`docker run --rm --network none --platform P <tag> COMMAND`, pulling the index afresh
    so the engine picks the platform's child from the registry's index, as a runner does."""
    done = built.engine.docker(
        "run",
        "--rm",
        "--pull",
        "always",
        "--network",
        "none",
        "--platform",
        platform,
        *(["--user", user] if user else []),
        built.image.tag_ref,
        *command,
    )
    return done.stdout


@pytest.mark.parametrize("platform", DEFAULT_PLATFORMS)
def test_runs_the_package_version_on_each_arch(built: Built, platform: str) -> None:
    assert built.image.version == __version__
    assert run(built, platform, "archfleet", "--version") == f"archfleet {__version__}\n"
    assert run(built, platform, "uname", "-m") == f"{UNAME[platform]}\n"


def test_index_children_and_labels(built: Built) -> None:
    """The tag is an index of exactly the two platforms, and each child's config says what the
    Containerfile promises: version and base labels, PATH, root, no ENTRYPOINT."""
    client = RegistryClient(built.registry.address, insecure=True, use_env_credentials=False)
    fetched = client.get_manifest(TOOL_REPOSITORY, __version__)
    assert fetched.digest == built.image.index_digest
    index = parse_manifest(fetched.raw, fetched.media_type, where="index")
    assert isinstance(index, ImageIndex)
    platforms = sorted(str(entry.platform) for entry in index.manifests)
    assert platforms == sorted(DEFAULT_PLATFORMS)
    base_digest = built.image.base_image.partition("@")[2]
    for entry in index.manifests:
        assert entry.platform is not None
        child = parse_manifest(
            client.get_manifest(TOOL_REPOSITORY, entry.digest).raw, entry.media_type, where="c"
        )
        assert isinstance(child, ImageManifest)
        config = json.loads(client.get_blob(TOOL_REPOSITORY, child.config.digest))
        assert Platform(config["os"], config["architecture"]) == entry.platform
        run_config = config["config"]
        labels = run_config["Labels"]
        assert labels["org.opencontainers.image.version"] == __version__
        assert labels["org.opencontainers.image.base.name"] == built.image.base_image
        assert labels["org.opencontainers.image.base.digest"] == base_digest
        assert run_config["Env"][0].startswith(f"PATH={IMAGE_PATH_DIR}:/usr/local/sbin:")
        assert not run_config.get("Entrypoint")
        assert run_config["User"] == "root"
        assert run_config["Cmd"] == ["archfleet", "--help"]
        # One layer on top of the base's: the virtualenv.
        assert len(child.layers) == 2


def test_holds_no_pip_wheels_or_caches(built: Built) -> None:
    listing = run(
        built,
        "linux/amd64",
        "sh",
        "-c",
        "ls /opt/archfleet/bin; echo --; ls /tmp; echo --; "
        "find / -xdev \\( -name 'pip' -o -name '*.whl' -o -path '/root/.cache*' \\) "
        "-not -path '/usr/share/python-wheels/*' -not -path '/proc/*' -print",
    )
    bin_dir, tmp, found = listing.split("--\n")
    assert "archfleet" in bin_dir.split()
    assert not [name for name in bin_dir.split() if name.startswith("pip")]
    assert tmp.strip() == ""  # the install stage's wheels did not come along
    assert found.strip() == ""


def test_runs_as_a_jenkins_agent_user(built: Built) -> None:
    """Docker Pipeline's inside() runs the container as the agent's uid:gid
    (docker-workflow-plugin WithContainerStep: `-u` from whoAmI()): the tool works for any uid."""
    out = run(built, "linux/amd64", "archfleet", "--version", user="1000:1000")
    assert out == f"archfleet {__version__}\n"


def test_merged_and_verified_by_the_image_itself(built: Built) -> None:
    """The merge and the verify ran `archfleet` in the amd64 child (this machine's arch), and
    the registry's access log shows the index PUT answered 201 under the version tag."""
    assert built.image.merged_by == f"in {built.image.child_ref('linux/amd64')}"
    log = built.registry.log_path.read_text()
    index_puts = [
        line
        for line in log.splitlines()
        if f'"PUT /v2/{TOOL_REPOSITORY}/manifests/{__version__} HTTP/' in line
    ]
    assert len(index_puts) == 1
    assert '" 201 ' in index_puts[0]


def test_base_image_argument_is_required(built: Built) -> None:
    done = built.engine.docker(
        "build",
        "--network",
        "none",
        "--platform",
        "linux/amd64",
        "--file",
        str(built.context / "Containerfile"),
        str(built.context),
        check=False,
    )
    assert done.returncode != 0
    assert "base name (${BASE_IMAGE}) should not be blank" in done.stderr


def test_a_wheel_with_another_hash_is_refused(built: Built) -> None:
    """pip's hash-checking mode refuses the archfleet wheel when its sha256 is not the one the
    build was given: the build fails, nothing is tagged."""
    good = BuildSpec(
        platform="linux/amd64",
        base_image=built.image.base_image,
        version=__version__,
        wheel_sha256=sha256_file(built.wheel),
        tag=f"{built.registry.address}/{TOOL_REPOSITORY}:wrong-hash",
    )
    assert good.wheel_sha256 != "0" * 64
    wrong = BuildSpec(**{**good.__dict__, "wheel_sha256": "0" * 64})
    done = built.engine.docker(*wrong.docker_build_args(built.context), check=False)
    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr
    tagged = built.engine.docker("image", "inspect", wrong.tag, check=False)
    assert tagged.returncode != 0
