"""`archfleet doctor` asks the registry for the tool image (`gitlab.tool_image`): a real
registry (Debian's docker-registry, distribution 2.8, on loopback; toolkit/lab/registry.py)
holding a multi-arch index pushed the way buildx writes one (with attestation manifests), an
index lacking arm64, no such tag, one behind htpasswd basic auth, and one that is not there.

No GitLab or Jenkins is involved (--no-gitlab; no jenkins section). The two runner hosts are
addresses in this test's loopback range where nothing listens: their ssh rows are blockers,
and only the tool-image row is asserted on.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.cli import Run, archfleet
from tests.support.registry_http import (
    OCI_MANIFEST,
    push_buildx_style_index,
    put_manifest,
    upload_blob,
)
from toolkit.lab.registry import LocalRegistry, start_registry, write_htpasswd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]

AMD64_HOST, ARM64_HOST = "127.0.0.25", "127.0.0.26"
USER, SECRET = "puller", "s3cret-tool-image-7Qx"
CREDENTIAL_VARS = (
    "REGISTRY_USER",
    "REGISTRY_PASSWORD",
    "CI_REGISTRY",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
)


def push_image(base_url: str, repository: str, platform: str) -> str:
    """A one-layer image whose config says `platform`; returns the manifest's digest."""
    os_name, arch, *variant = platform.split("/")
    config_data = {"architecture": arch, "os": os_name, "rootfs": {"type": "layers"}}
    if variant:
        config_data["variant"] = variant[0]
    config = json.dumps(config_data).encode()
    layer = f"layer of {platform}".encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": upload_blob(base_url, repository, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": upload_blob(base_url, repository, layer),
                "size": len(layer),
            }
        ],
    }
    return put_manifest(base_url, repository, f"{arch}-only", manifest)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """archfleet:0.9.0 (amd64 + arm64, with attestations), archfleet:0.8.0 (amd64 only)."""
    with start_registry(tmp_path_factory.mktemp("tool-image-registry")) as running:
        url = running.url
        amd64 = push_image(url, "platform/ci/archfleet", "linux/amd64")
        arm64 = push_image(url, "platform/ci/archfleet", "linux/arm64")
        push_buildx_style_index(
            url, "platform/ci/archfleet", "0.9.0", [(amd64, "linux/amd64"), (arm64, "linux/arm64")]
        )
        push_buildx_style_index(url, "platform/ci/archfleet", "0.8.0", [(amd64, "linux/amd64")])
        yield running


def write_fleet(path: Path, image: str, *, executor: str = "docker") -> Path:
    path.write_text(f"""
ssh: {{user: root, use_ssh_config: false, connect_timeout: 3}}
gitlab:
  url: https://gitlab.example.com
  group: platform
  executor: {executor}
  tool_image: '{image}'
  tool_image_insecure: true
hosts:
  - {{name: run-amd64, address: {AMD64_HOST}, arch: amd64, roles: [gitlab-runner],
      ssh: {{port: {free_port(AMD64_HOST)}}}}}
  - {{name: run-arm64, address: {ARM64_HOST}, arch: arm64, roles: [gitlab-runner],
      ssh: {{port: {free_port(ARM64_HOST)}}}}}
""")
    return path


def doctor(inventory: Path, docker_config: Path, **env: str) -> Run:
    docker_config.mkdir(parents=True, exist_ok=True)
    return archfleet(
        "doctor",
        "--inventory",
        str(inventory),
        "--no-gitlab",
        "--json",
        "--timeout",
        "5",
        env={"DOCKER_CONFIG": str(docker_config), **env},
        unset=tuple(name for name in CREDENTIAL_VARS if name not in env),
        timeout=120,
    )


def tool_row(run: Run) -> dict[str, str]:
    rows = [row for row in run.json() if row["check"] == "tool-image"]
    assert len(rows) == 1, run.stdout + run.stderr
    return rows[0]


def test_an_index_with_every_runner_platform_is_ok(registry: LocalRegistry, tmp_path: Path) -> None:
    image = f"{registry.address}/platform/ci/archfleet:0.9.0"
    run = doctor(write_fleet(tmp_path / "fleet.yml", image), tmp_path / "docker")
    row = tool_row(run)
    assert row["status"] == "ok", row
    assert row["target"] == image
    assert "linux/amd64, linux/arm64" in row["detail"]
    assert "every runner platform is there" in row["detail"]
    # The buildx attestation manifests (unknown/unknown) are no platform.
    assert "unknown" not in row["detail"]


def test_an_index_lacking_a_runner_platform_is_a_warning_naming_it_and_the_pin(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    image = f"{registry.address}/platform/ci/archfleet:0.8.0"
    row = tool_row(doctor(write_fleet(tmp_path / "fleet.yml", image), tmp_path / "docker"))
    assert row["status"] == "warn", row
    assert "lacks linux/arm64 (run-arm64)" in row["detail"]
    assert "merge_tags: [amd64]" in row["fix"]


def test_a_missing_tool_image_is_a_blocker_naming_the_publisher(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    image = f"{registry.address}/platform/ci/archfleet:1.0.0"
    run = doctor(write_fleet(tmp_path / "fleet.yml", image), tmp_path / "docker")
    row = tool_row(run)
    assert row["status"] == "blocker", row
    assert f"{registry.address} has no manifest for {image}" in row["detail"]
    assert "archfleet publish-templates" in row["fix"]


def test_on_the_shell_executor_a_missing_image_is_only_a_warning(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    image = f"{registry.address}/platform/ci/archfleet:1.0.0"
    fleet = write_fleet(tmp_path / "fleet.yml", image, executor="shell")
    row = tool_row(doctor(fleet, tmp_path / "docker"))
    assert row["status"] == "warn", row
    assert "shell executor ignores image:" in row["detail"]


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    work = tmp_path_factory.mktemp("tool-image-private")
    htpasswd = write_htpasswd(work / "htpasswd", {USER: SECRET})
    with start_registry(work, htpasswd=htpasswd) as running:
        yield running


def test_a_registry_that_refuses_anonymous_access_is_a_blocker_naming_it(
    private_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = f"{private_registry.address}/platform/ci/archfleet:0.9.0"
    row = tool_row(doctor(write_fleet(tmp_path / "fleet.yml", image), tmp_path / "docker"))
    assert row["status"] == "blocker", row
    assert f"the registry {private_registry.address} refused anonymous access" in row["detail"]
    assert f"docker login {private_registry.address}" in row["fix"]


def test_rejected_credentials_name_their_source_never_the_secret(
    private_registry: LocalRegistry, tmp_path: Path
) -> None:
    image = f"{private_registry.address}/platform/ci/archfleet:0.9.0"
    docker = tmp_path / "docker"
    docker.mkdir()
    wrong = base64.b64encode(f"{USER}:{SECRET}-wrong".encode()).decode()
    (docker / "config.json").write_text(
        json.dumps({"auths": {private_registry.address: {"auth": wrong}}})
    )
    run = doctor(write_fleet(tmp_path / "fleet.yml", image), docker)
    row = tool_row(run)
    assert row["status"] == "blocker", row
    assert f"(from {docker / 'config.json'}" in row["detail"]
    assert f"user {USER!r}" in row["detail"]
    assert "were rejected" in row["detail"]
    assert SECRET not in run.stdout + run.stderr
    assert wrong not in run.stdout + run.stderr


def test_the_right_credentials_from_the_environment_reach_the_image(
    private_registry: LocalRegistry, tmp_path: Path
) -> None:
    """The same registry, with REGISTRY_USER/REGISTRY_PASSWORD: it answers, the tag is not
    there (nothing was pushed to it), so the row says missing — past the credentials."""
    image = f"{private_registry.address}/platform/ci/archfleet:0.9.0"
    run = doctor(
        write_fleet(tmp_path / "fleet.yml", image),
        tmp_path / "docker",
        REGISTRY_USER=USER,
        REGISTRY_PASSWORD=SECRET,
    )
    row = tool_row(run)
    assert row["status"] == "blocker", row
    assert "has no manifest" in row["detail"]
    assert "asked with the credentials from REGISTRY_USER" in row["detail"]
    assert SECRET not in run.stdout + run.stderr


def test_a_registry_that_is_not_there_is_a_blocker_naming_it(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    image = f"{address}/platform/ci/archfleet:0.9.0"
    row = tool_row(doctor(write_fleet(tmp_path / "fleet.yml", image), tmp_path / "docker"))
    assert row["status"] == "blocker", row
    assert f"cannot reach the registry {address}" in row["detail"]
    assert "Connection refused" in row["detail"] or "refused" in row["detail"].lower()


def test_no_tool_image_key_no_row(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet.yml", "r.example.com/x/archfleet:1")
    fleet.write_text(
        "\n".join(line for line in fleet.read_text().splitlines() if "tool_image" not in line)
    )
    run = doctor(fleet, tmp_path / "docker")
    assert all(row["check"] != "tool-image" for row in run.json()), run.stdout
    assert {row["check"] for row in run.json()} == {"ssh"}
