"""Check what the lab needs before starting anything, and say how to get what is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

APT_HINT = "apt-get install -y docker-registry buildah skopeo qemu-user-static binfmt-support"


def missing_prerequisites(
    tools: Sequence[str] = ("docker-registry", "buildah", "skopeo"),
) -> list[str]:
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (buildah chroot builds, binfmt_misc)")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        problems.append(
            f"missing commands: {', '.join(absent)} — {APT_HINT} (or: bash scripts/bootstrap)"
        )
    if shutil.which("qemu-aarch64-static") is None and shutil.which("qemu-aarch64") is None:
        problems.append(f"no qemu-user for arm64 — {APT_HINT}")
    return problems
