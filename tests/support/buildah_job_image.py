"""A job image for the component's buildah builder, made locally (no image can be pulled here):
the lab's cached Debian bookworm root (toolkit/lab/rootfs.py) with Debian's own `buildah` and
`skopeo` installed by apt inside it, packed as a tarball under the cache dir.

Not debootstrap's `--include=buildah,skopeo`: debootstrap leaves golang-github-containers-common
unconfigured (its dependency resolution stops short), while apt-get inside the finished root
installs them (checked here: buildah 1.28.2, skopeo 1.9.3). The root shares the machine's
network for apt; /proc and /dev are mounted for it and unmounted again.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from toolkit.lab.cache import cache_dir, file_lock
from toolkit.lab.rootfs import build_rootfs, extract_rootfs, unmount_all_under

PACKAGES = ("buildah", "skopeo", "ca-certificates")
NAME = "buildah-job-amd64-bookworm-r1"


def buildah_job_root() -> Path:
    """The cached tarball (plain tar) of the job image's root; built on first use."""
    directory = cache_dir() / "ci-templates"
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / f"{NAME}.tar"
    if tarball.is_file():
        return tarball
    with file_lock(directory / f".{NAME}.lock"):
        if tarball.is_file():
            return tarball
        work = directory / f".{NAME}.build"
        shutil.rmtree(work, ignore_errors=True)
        root = work / "root"
        root.mkdir(parents=True)
        try:
            extract_rootfs(build_rootfs("amd64"), root)
            shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
            subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
            subprocess.run(["mount", "--bind", "/dev", str(root / "dev")], check=True)
            install = (
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                + " ".join(PACKAGES)
                + " && apt-get clean && rm -rf /var/lib/apt/lists/*"
            )
            done = subprocess.run(
                [
                    *("chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive"),
                    *("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "sh", "-c", install),
                ],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed:\n{done.stderr}")
        finally:
            unmount_all_under(root)
        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
        shutil.rmtree(work, ignore_errors=True)
    return tarball
