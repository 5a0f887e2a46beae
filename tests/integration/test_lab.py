"""The lab itself, for real: Debian's docker-registry on loopback, buildah, skopeo, QEMU."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from toolkit.lab import images
from toolkit.lab.images import (
    BUILD_UNAME_PATH,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    build_image,
    busybox_rootfs,
)
from toolkit.lab.registry import LocalRegistry, RequestRecord, start_registry, write_htpasswd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("docker-registry", "buildah", "skopeo")),
        reason="needs docker-registry, buildah and skopeo (see GUIDE section 3)",
    ),
]

# ELF e_machine values: what the binary really is, whatever the config says.
_ELF_MACHINE = {0x3E: "amd64", 0xB7: "arm64"}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    with start_registry(tmp_path / "registry") as running:
        yield running


def _skopeo(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _layer_files(
    registry: LocalRegistry, repository: str, manifest: dict[str, Any]
) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The files of an image's single layer, {path: (tar entry, content)}, from the registry."""
    (layer,) = manifest["layers"]
    response = requests.get(f"{registry.url}/v2/{repository}/blobs/{layer['digest']}", timeout=30)
    response.raise_for_status()
    files: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(response.content))) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            files[member.name.lstrip("./")] = (member, extracted.read() if extracted else b"")
    return files


def _elf_arch(binary: bytes) -> str:
    assert binary[:4] == b"\x7fELF"
    return _ELF_MACHINE.get(int.from_bytes(binary[18:20], "little"), "other")


def test_arm64_run_step_and_amd64_images_have_the_right_architecture(
    registry: LocalRegistry,
) -> None:
    arm = build_image("linux/arm64", f"{registry.address}/demo:arm64", run_step=True)
    amd = build_image(
        "linux/amd64",
        f"{registry.address}/demo:amd64",
        manifest_format="docker",
        labels={"org.opencontainers.image.title": "demo"},
    )

    for image, arch, media_type in ((arm, "arm64", OCI_MANIFEST), (amd, "amd64", DOCKER_MANIFEST)):
        raw = _skopeo("--raw", f"docker://{image.ref}")
        config = _skopeo("--config", f"docker://{image.ref}")
        assert raw["mediaType"] == media_type == image.media_type
        assert (config["os"], config["architecture"]) == ("linux", arch)
        assert config["config"]["Entrypoint"] == ["/bin/sh", "-c"]
        assert config["config"]["Cmd"] == ["uname -m"]
        by_digest = _skopeo("--raw", f"docker://{registry.address}/demo@{image.digest}")
        assert by_digest == raw
        files = _layer_files(registry, "demo", raw)
        assert _elf_arch(files["bin/busybox"][1]) == arch
        assert files["bin/sh"][0].issym()
        assert files["bin/sh"][0].linkname.endswith("busybox")

    assert amd.platform == "linux/amd64"
    assert (
        _skopeo("--config", f"docker://{amd.ref}")["config"]["Labels"][
            "org.opencontainers.image.title"
        ]
        == "demo"
    )
    # The RUN step really executed the arm64 busybox (under QEMU) and saw an aarch64 machine.
    arm_files = _layer_files(registry, "demo", _skopeo("--raw", f"docker://{arm.ref}"))
    assert arm_files[BUILD_UNAME_PATH.lstrip("/")][1].decode().strip() == "aarch64"


def test_variant_is_recorded_and_a_lying_image_can_be_built(registry: LocalRegistry) -> None:
    # v5, not v7: buildah on its own writes v7 for any 32-bit arm variant. The binary is
    # arm64 only so that the tests need no Debian architecture beyond amd64 and arm64.
    armv5 = build_image(
        "linux/arm/v5",
        f"{registry.address}/demo:armv5",
        binary_platform="linux/arm64",
        run_step=True,
        manifest_format="docker",
    )
    config = _skopeo("--config", f"docker://{armv5.ref}")
    assert (config["architecture"], config.get("variant")) == ("arm", "v5")

    liar = build_image(
        "linux/arm64", f"{registry.address}/liar:arm64", binary_platform="linux/amd64"
    )
    raw = _skopeo("--raw", f"docker://{liar.ref}")
    assert _skopeo("--config", f"docker://{liar.ref}")["architecture"] == "arm64"
    assert _elf_arch(_layer_files(registry, "liar", raw)["bin/busybox"][1]) == "amd64"
    assert liar.binary_platform == "linux/amd64"


def test_request_log_counts_each_request(registry: LocalRegistry) -> None:
    mark = registry.mark()
    requests.get(f"{registry.url}/v2/", timeout=5)
    requests.head(f"{registry.url}/v2/nothing/manifests/latest", timeout=5)
    requests.get(f"{registry.url}/v2/_catalog?n=5", timeout=5)
    assert registry.requests_since(mark) == [
        RequestRecord("GET", "/v2/", 200),
        RequestRecord("HEAD", "/v2/nothing/manifests/latest", 404),
        RequestRecord("GET", "/v2/_catalog?n=5", 200),
    ]

    mark = registry.mark()
    image = build_image("linux/amd64", f"{registry.address}/counted:v1")
    pushed = registry.requests_since(mark)
    manifest_puts = [r for r in pushed if r.method == "PUT" and "/manifests/" in r.path]
    assert manifest_puts == [RequestRecord("PUT", "/v2/counted/manifests/v1", 201)]
    assert registry.mark() == mark + len(pushed)

    mark = registry.mark()
    _skopeo("--raw", f"docker://{image.ref}")
    fetched = registry.requests_since(mark)
    assert RequestRecord("GET", "/v2/counted/manifests/v1", 200) in fetched
    assert all(record.path.startswith("/v2/") for record in fetched)


def test_htpasswd_registry_rejects_anonymous_and_accepts_the_user(tmp_path: Path) -> None:
    password = "correct horse battery"
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": password, "bob": "other"})
    assert htpasswd.read_text().startswith("alice:$2")
    assert password not in htpasswd.read_text()

    with start_registry(tmp_path / "auth", htpasswd=htpasswd) as registry:
        anonymous = requests.get(f"{registry.url}/v2/", timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert requests.get(f"{registry.url}/v2/", auth=("alice", password), timeout=5).ok
        wrong = requests.get(f"{registry.url}/v2/", auth=("alice", "nope"), timeout=5)
        assert wrong.status_code == 401

        image = build_image(
            "linux/amd64", f"{registry.address}/private:v1", credentials=("alice", password)
        )
        assert image.digest.startswith("sha256:")
        assert RequestRecord("PUT", "/v2/private/manifests/v1", 201) in registry.request_log()
        for path in (registry.log_path, registry.config_path):
            assert password not in path.read_text()


def test_stop_leaves_no_process_and_frees_the_port(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "registry")
    pid, port = registry.pid, registry.port
    assert Path(f"/proc/{pid}").exists()

    registry.stop()
    registry.stop()  # idempotent

    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_by_pid_alone_ends_a_registry_started_elsewhere(tmp_path: Path) -> None:
    owner = start_registry(tmp_path / "registry")
    try:
        # What a later `lab.down` knows: the fields, not the child process handle.
        detached = dataclasses.replace(owner, _process=None)
        assert detached.running
        detached.stop()
        assert not detached.running
        detached.stop()
    finally:
        owner.stop()  # reaps the child
    assert not Path(f"/proc/{owner.pid}").exists()


def test_busybox_rootfs_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    first = busybox_rootfs("arm64")
    assert (first / "bin" / "busybox").is_file()

    def no_commands(*args: object, **kwargs: object) -> str:
        raise AssertionError(f"second call ran a command: {args}")

    monkeypatch.setattr(images, "_run", no_commands)
    assert busybox_rootfs("arm64") == first
