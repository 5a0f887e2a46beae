"""Check what the lab needs before starting anything, and say how to get what is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

APT_PACKAGES = (
    "docker-registry buildah skopeo umoci qemu-user-static binfmt-support debootstrap zstd"
)
APT_HINT = f"apt-get install -y {APT_PACKAGES} (or: bash scripts/bootstrap)"
# What the lab runs on this machine, by command, and the package that brings it.
LAB_COMMANDS = {
    "docker-registry": "docker-registry",
    "buildah": "buildah",
    "skopeo": "skopeo",
    "debootstrap": "debootstrap",
    "zstd": "zstd",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "mount": "mount",
    "ssh-keygen": "openssh-client",
}


def missing_prerequisites(
    tools: Sequence[str] = ("docker-registry", "buildah", "skopeo"),
) -> list[str]:
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (buildah chroot builds, binfmt_misc, chroot sshd)")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        problems.append(f"missing commands: {', '.join(absent)} — {APT_HINT}")
    if shutil.which("qemu-aarch64-static") is None and shutil.which("qemu-aarch64") is None:
        problems.append(f"no qemu-user for arm64 — {APT_HINT}")
    return problems


def missing_lab_prerequisites() -> list[str]:
    """Everything `lab.up` needs, all problems at once, each with how to fix it."""
    problems = missing_prerequisites(tuple(LAB_COMMANDS))
    if problems:
        return problems
    # Only now: enabling arm64 emulation needs root and qemu-user-static, checked above.
    from .images import BinfmtError, ensure_binfmt

    try:
        ensure_binfmt("arm64")
    except BinfmtError as error:
        problems.append(f"arm64 binaries cannot run on this machine: {error}")
    return problems
