"""Shared fixtures: ONE real registry (Debian's docker-registry on loopback) and real per-arch
images built by buildah for the whole session. Tests use their own target tags/repositories."""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import archfleet
from toolkit.lab.hosts import LabHost, LabUser, lab_keypair, start_host, write_known_hosts
from toolkit.lab.images import BuiltImage, build_image
from toolkit.lab.registry import LocalRegistry, start_registry
from toolkit.lab.rootfs import DEFAULT_SUITE

_names = itertools.count()


@pytest.fixture(scope="session")
def lab_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


@dataclass(frozen=True)
class LabImages:
    """Real images in `<registry>/src`, by role."""

    registry: LocalRegistry
    amd64: BuiltImage
    arm64: BuiltImage  # built with a RUN step executed under QEMU
    arm_v7: BuiltImage
    lying_arm64: BuiltImage  # config says arm64, /bin/busybox is amd64
    docker_amd64: BuiltImage  # Docker v2 schema 2 media types
    docker_arm64: BuiltImage

    def ref(self, image: BuiltImage) -> str:
        return f"{self.registry.address}/src@{image.digest}"

    def seed(self, tag: str) -> str:
        """An earlier index under `src:<tag>`: what a refused or failed merge must leave as is."""
        run = archfleet(
            "merge-manifest",
            "--insecure",
            "--no-child-tags",
            "--target",
            f"{self.registry.address}/src:{tag}",
            "--source",
            f"@{self.amd64.digest}",
        )
        assert run.code == 0, run.stderr
        return run.stdout.strip()


@pytest.fixture(scope="session")
def lab_images(lab_registry: LocalRegistry) -> LabImages:
    base = f"{lab_registry.address}/src"
    return LabImages(
        registry=lab_registry,
        amd64=build_image("linux/amd64", f"{base}:amd64"),
        arm64=build_image("linux/arm64", f"{base}:arm64", run_step=True),
        arm_v7=build_image("linux/arm/v7", f"{base}:arm-v7"),
        lying_arm64=build_image(
            "linux/arm64", f"{base}:lying-arm64", binary_platform="linux/amd64"
        ),
        docker_amd64=build_image("linux/amd64", f"{base}:docker-amd64", manifest_format="docker"),
        docker_arm64=build_image("linux/arm64", f"{base}:docker-arm64", manifest_format="docker"),
    )


@pytest.fixture
def unique_tag(request: pytest.FixtureRequest) -> str:
    """A target tag no other test writes."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]
    return f"t{next(_names)}-{name}".lower()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# Lab SSH hosts (real sshd in a debootstrapped root per arch; arm64's binaries run under QEMU),
# shared by the lab and fleet tests. Roots are built once and cached (toolkit/lab/rootfs.py).
ADDRESSES = {"amd64": "127.0.0.41", "arm64": "127.0.0.42"}


@dataclass(frozen=True)
class Lab:
    workdir: Path
    key: Path
    public_key: str
    known_hosts: Path
    hosts: dict[str, LabHost]


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("lab-hosts")
    key, public_key = lab_keypair(workdir)
    hosts: dict[str, LabHost] = {}
    try:
        for arch, address in ADDRESSES.items():
            hosts[arch] = start_host(
                f"host-{arch}",
                arch,
                address,
                free_port(address),
                workdir,
                authorized_keys=[public_key],
            )
        known_hosts = write_known_hosts(workdir / "known_hosts", hosts.values())
        yield Lab(workdir, key, public_key, known_hosts, hosts)
    finally:
        for host in hosts.values():
            host.remove()


@contextlib.contextmanager
def own_host(
    lab: Lab,
    workdir: Path,
    name: str,
    arch: str,
    address: str,
    *,
    suite: str = DEFAULT_SUITE,
    users: Sequence[LabUser] = (),
) -> Iterator[tuple[LabHost, Path]]:
    """A fresh lab host of one test's own (it may install things the shared hosts must not
    get), with a known_hosts file holding just its key; removed afterwards. `suite` picks
    the Debian release (bookworm, trixie); `users` are non-root logins with the lab key
    (e.g. `[LabUser("ci"), LabUser("ci-pw", sudo="password")]`)."""
    host = start_host(
        name,
        arch,
        address,
        free_port(address),
        workdir,
        authorized_keys=[lab.public_key],
        suite=suite,
        users=users,
    )
    try:
        yield host, write_known_hosts(workdir / "known_hosts", [host])
    finally:
        host.remove()


def write_inventory(
    lab: Lab, path: Path, *, declared: dict[str, str] | None = None, extra: str = ""
) -> Path:
    """An inventory of the lab hosts (servers named but unreachable unless a test says)."""
    lines = [
        "ssh:",
        "  user: root",
        f"  key: {lab.key}",
        f"  known_hosts: {lab.known_hosts}",
        "  use_ssh_config: false",
        "builder: {tool: buildah, install: false}",
        "gitlab: {url: 'http://127.0.0.1:9', allow_http: true, group: lab, tags: [native]}",
        "jenkins: {url: 'http://127.0.0.1:9', allow_http: true, credentials_id: lab-ssh}",
        "hosts:",
    ]
    for arch, host in lab.hosts.items():
        lines += [
            f"  - name: {host.name}",
            f"    address: {host.address}",
            f"    arch: {(declared or {}).get(arch, arch)}",
            f"    ssh: {{port: {host.port}}}",
            "    roles: [gitlab-runner, jenkins-agent]",
        ]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path
