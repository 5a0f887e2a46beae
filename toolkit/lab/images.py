"""Tiny real per-architecture images, built without a Docker engine.

Each image holds Debian's static busybox for one architecture at /bin/busybox with /bin/sh
pointing at it. Its config runs `ENTRYPOINT ["/bin/sh", "-c"]` with `CMD ["uname -m"]`:
run as is it prints the machine it runs on; given an argument it runs that shell command.

buildah works in a throw-away storage root (vfs driver, chroot isolation) per build, so
nothing is left in the machine's container storage; skopeo or the registry client reads
the result back. `binary_platform` builds an image whose config lies about its binary.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from toolkit.lab.cache import cache_dir
from toolkit.registry.manifest import Platform

ManifestFormat = Literal["oci", "docker"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

# OCI platform -> Debian architecture whose busybox-static runs there.
PLATFORM_DEBIAN_ARCH: Mapping[str, str] = MappingProxyType(
    {
        "linux/amd64": "amd64",
        "linux/arm64": "arm64",
        "linux/arm64/v8": "arm64",
        "linux/arm/v7": "armhf",
        "linux/arm/v5": "armel",
        "linux/386": "i386",
        "linux/ppc64le": "ppc64el",
        "linux/s390x": "s390x",
        "linux/mips64le": "mips64el",
    }
)
# Debian architecture -> binfmt_misc entry that qemu-user-static registers for it.
DEBIAN_ARCH_QEMU_BINFMT: Mapping[str, str] = MappingProxyType(
    {
        "amd64": "qemu-x86_64",
        "arm64": "qemu-aarch64",
        "armhf": "qemu-arm",
        "armel": "qemu-arm",
        "i386": "qemu-i386",
        "ppc64el": "qemu-ppc64le",
        "s390x": "qemu-s390x",
        "mips64el": "qemu-mips64el",
    }
)
# What a host's kernel executes without emulation, beyond its own architecture.
_ALSO_NATIVE: Mapping[str, frozenset[str]] = MappingProxyType({"amd64": frozenset({"i386"})})

BINFMT_MOUNT = Path("/proc/sys/fs/binfmt_misc")
# Written by the RUN step of `run_step` builds: `uname -m` as the build step saw it.
BUILD_UNAME_PATH = "/etc/archfleet-build-uname"
_ENTRYPOINT = ["/bin/sh", "-c"]
_CMD = ["uname -m"]
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_APT_LOCK_TIMEOUT = "300"
_STDERR_TAIL_LINES = 15


class ImageBuildError(RuntimeError):
    """A lab image could not be prepared, built or pushed; says which command and why."""


class BinfmtError(ImageBuildError):
    """Foreign binaries cannot be executed: binfmt_misc or the QEMU entry is unavailable."""


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    digest: str
    # What the image config claims.
    platform: str
    # What /bin/busybox really is.
    binary_platform: str
    manifest_format: ManifestFormat = "oci"

    @property
    def media_type(self) -> str:
        return OCI_MANIFEST if self.manifest_format == "oci" else DOCKER_MANIFEST


def debian_arch_for(platform: str) -> str:
    try:
        return PLATFORM_DEBIAN_ARCH[str(Platform.parse(platform))]
    except KeyError:
        known = ", ".join(PLATFORM_DEBIAN_ARCH)
        raise ValueError(f"no Debian architecture known for {platform!r}; known: {known}") from None


def host_debian_arch() -> str:
    return _run(["dpkg", "--print-architecture"]).strip()


def busybox_rootfs(debian_arch: str) -> Path:
    """Debian's busybox-static for `debian_arch`, unpacked; downloaded once, then cached."""
    if debian_arch not in DEBIAN_ARCH_QEMU_BINFMT:
        known = ", ".join(DEBIAN_ARCH_QEMU_BINFMT)
        raise ValueError(f"unsupported Debian architecture {debian_arch!r}; known: {known}")
    dest = cache_dir() / "busybox" / debian_arch
    if (dest / "bin" / "busybox").is_file():
        return dest
    package = f"busybox-static:{debian_arch}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Unpack beside the destination and rename it into place, so a concurrent or
    # interrupted run never sees half a root filesystem.
    with tempfile.TemporaryDirectory(prefix=f".{debian_arch}-", dir=dest.parent) as tmp:
        work = Path(tmp)
        _apt_download(package, debian_arch, work)
        debs = sorted(work.glob("*.deb"))
        if len(debs) != 1:
            raise ImageBuildError(f"apt-get download {package} left {len(debs)} .deb files")
        root = work / "root"
        _run(["dpkg", "-x", str(debs[0]), str(root)])
        if not (root / "bin" / "busybox").is_file():
            raise ImageBuildError(f"{debs[0].name} has no bin/busybox")
        try:
            root.rename(dest)
        except OSError:
            if not (dest / "bin" / "busybox").is_file():
                raise
    return dest


def ensure_binfmt(debian_arch: str = "arm64") -> None:
    """Make the kernel run `debian_arch` binaries (QEMU via binfmt_misc) if it cannot yet."""
    host = host_debian_arch()
    if debian_arch == host or debian_arch in _ALSO_NATIVE.get(host, frozenset()):
        return
    entry_name = DEBIAN_ARCH_QEMU_BINFMT.get(debian_arch)
    if entry_name is None:
        raise BinfmtError(f"no QEMU binfmt entry known for Debian architecture {debian_arch!r}")
    if not (BINFMT_MOUNT / "status").exists():
        try:
            _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_MOUNT)])
        except ImageBuildError as error:
            raise BinfmtError(
                f"cannot mount binfmt_misc on {BINFMT_MOUNT} (needs root, or a container "
                f"started with --privileged); {debian_arch} binaries cannot run here: {error}"
            ) from None
    status = BINFMT_MOUNT / "status"
    try:
        if status.read_text().strip() != "enabled":
            status.write_text("1")
    except OSError as error:
        raise BinfmtError(f"binfmt_misc is switched off and cannot be enabled: {error}") from None
    entry = BINFMT_MOUNT / entry_name
    if not _binfmt_enabled(entry):
        try:
            _run(["update-binfmts", "--enable", entry_name])
        except ImageBuildError as error:
            raise BinfmtError(
                f"cannot enable {entry_name} (apt-get install qemu-user-static binfmt-support): "
                f"{error}"
            ) from None
    if not _binfmt_enabled(entry):
        raise BinfmtError(f"{entry} is still not enabled after update-binfmts --enable")
    # Without F (fix-binary) the kernel looks for the interpreter inside the build's chroot.
    flags = _binfmt_field(entry, "flags")
    if "F" not in flags:
        raise BinfmtError(
            f"{entry_name} is registered without the F flag (flags: {flags!r}), so it cannot "
            "run inside a chroot build; re-register it with qemu-user-static's settings"
        )
    if "C" not in flags:
        _add_credentials_flag(entry, flags)


def _add_credentials_flag(entry: Path, flags: str) -> None:
    """Re-register `entry` with C (credentials from the binary; implies O): without it a
    setuid foreign binary — the lab hosts' arm64 sudo — runs with its caller's uid
    (Documentation/admin-guide/binfmt-misc.rst). Debian registers qemu-aarch64 with `PF`.

    The kernel tries the newest entry first: a twin with the new flags goes in before the
    old entry comes out, so foreign binaries run at every moment (builds under way too).
    The change lasts until reboot, or until update-binfmts registers the entry again."""
    fields = {k: _binfmt_field(entry, k) for k in ("interpreter", "offset", "magic", "mask")}

    def escaped(hexdigits: str) -> str:
        return "".join(f"\\x{hexdigits[i : i + 2]}" for i in range(0, len(hexdigits), 2))

    new_flags = "".join(f for f in "POCF" if f in flags or f in "OC")

    def spec(name: str) -> str:
        return (
            f":{name}:M:{fields['offset']}:{escaped(fields['magic'])}:"
            f"{escaped(fields['mask'])}:{fields['interpreter']}:{new_flags}"
        )

    register = BINFMT_MOUNT / "register"
    twin = BINFMT_MOUNT / f"{entry.name}-archfleet-twin"
    try:
        if twin.exists():
            twin.write_text("-1")
        register.write_text(spec(twin.name))
        entry.write_text("-1")
        register.write_text(spec(entry.name))
        twin.write_text("-1")
    except OSError as error:
        raise BinfmtError(
            f"cannot re-register {entry.name} with the C flag (setuid {entry.name} binaries "
            f"such as sudo would not get root): {error}"
        ) from None


def build_image(
    platform: str,
    ref: str,
    *,
    binary_platform: str | None = None,
    run_step: bool = False,
    labels: Mapping[str, str] | None = None,
    manifest_format: ManifestFormat = "oci",
    credentials: tuple[str, str] | None = None,
) -> BuiltImage:
    """Build a busybox image whose config says `platform` and push it to `ref` over HTTP.

    The binary is busybox for `binary_platform` (default: `platform`). With `run_step`
    the image comes from `buildah build` with a RUN step that executes that busybox (under
    QEMU when foreign) and records `uname -m` in BUILD_UNAME_PATH; otherwise it is
    assembled from scratch without running anything. `credentials` (user, password) go
    to buildah in an auth file, never on its command line.
    """
    claimed = Platform.parse(platform)
    real = binary_platform or platform
    binary_arch = debian_arch_for(real)
    busybox = busybox_rootfs(binary_arch) / "bin" / "busybox"
    if run_step:
        ensure_binfmt(binary_arch)
    with _BuildahSession() as buildah:
        context = buildah.tmp / "context"
        (context / "bin").mkdir(parents=True)
        shutil.copy(busybox, context / "bin" / "busybox")
        if run_step:
            image_id = _build_with_run_step(buildah, claimed, context, labels, manifest_format)
        else:
            image_id = _assemble(buildah, claimed, context, labels, manifest_format)
        image_id = _ensure_platform(buildah, image_id, claimed, manifest_format)
        digest = _push(buildah, image_id, ref, manifest_format, credentials)
    return BuiltImage(
        ref=ref,
        digest=digest,
        platform=platform,
        binary_platform=real,
        manifest_format=manifest_format,
    )


def _assemble(
    buildah: _BuildahSession,
    platform: Platform,
    context: Path,
    labels: Mapping[str, str] | None,
    manifest_format: ManifestFormat,
) -> str:
    (context / "bin" / "sh").symlink_to("busybox")
    container = buildah.run("from", *_platform_flags(platform), "scratch").strip()
    iidfile = buildah.tmp / "iid"
    try:
        buildah.run("copy", container, str(context / "bin"), "/bin")
        buildah.run(
            "config",
            "--entrypoint",
            json.dumps(_ENTRYPOINT),
            "--cmd",
            json.dumps(_CMD),
            "--env",
            _PATH_ENV,
            *(["--variant", platform.variant] if platform.variant else []),
            *_label_flags(labels),
            container,
        )
        buildah.run("commit", "--format", manifest_format, "--iidfile", str(iidfile), container)
    finally:
        buildah.run("rm", container)
    return iidfile.read_text().strip()


def _build_with_run_step(
    buildah: _BuildahSession,
    platform: Platform,
    context: Path,
    labels: Mapping[str, str] | None,
    manifest_format: ManifestFormat,
) -> str:
    script = f"/bin/busybox --install -s /bin && mkdir -p /etc && uname -m > {BUILD_UNAME_PATH}"
    containerfile = context / "Containerfile"
    containerfile.write_text(
        "FROM scratch\n"
        "COPY bin/busybox /bin/busybox\n"
        f"RUN {json.dumps(['/bin/busybox', 'sh', '-c', script])}\n"
        f"ENV {_PATH_ENV}\n"
        f"ENTRYPOINT {json.dumps(_ENTRYPOINT)}\n"
        f"CMD {json.dumps(_CMD)}\n"
    )
    iidfile = buildah.tmp / "iid"
    buildah.run(
        "build",
        *_platform_flags(platform),
        "--isolation",
        "chroot",
        "--format",
        manifest_format,
        "--iidfile",
        str(iidfile),
        *_label_flags(labels),
        "--file",
        str(containerfile),
        str(context),
    )
    return iidfile.read_text().strip()


def _ensure_platform(
    buildah: _BuildahSession, image_id: str, platform: Platform, manifest_format: ManifestFormat
) -> str:
    """Correct the variant where buildah ignored it; returns the (possibly new) image id.

    buildah 1.28 records arm/v7 whatever `--variant` says (v5, v6), in `from` and `build`
    alike; `buildah config --variant` is honoured, so re-commit with it when needed.
    """
    built = _image_platform(buildah, image_id)
    if (built.os, built.architecture) != (platform.os, platform.architecture):
        raise ImageBuildError(f"buildah built {built} when asked for {platform}")
    if built.variant == platform.variant or not platform.variant:
        return image_id
    container = buildah.run("from", image_id).strip()
    iidfile = buildah.tmp / "iid-variant"
    try:
        buildah.run("config", "--variant", platform.variant, container)
        # --squash keeps the image at one layer instead of adding an empty one.
        buildah.run(
            "commit", "--squash", "--format", manifest_format, "--iidfile", str(iidfile), container
        )
    finally:
        buildah.run("rm", container)
    fixed_id = iidfile.read_text().strip()
    if _image_platform(buildah, fixed_id) != platform:
        raise ImageBuildError(f"could not give the image the platform {platform}")
    return fixed_id


def _image_platform(buildah: _BuildahSession, image_id: str) -> Platform:
    template = "{{.OCIv1.OS}}|{{.OCIv1.Architecture}}|{{.OCIv1.Variant}}"
    os_name, arch, variant = (
        buildah.run("inspect", "--type", "image", "--format", template, image_id).strip().split("|")
    )
    return Platform.normalised(os_name, arch, variant or "")


def _push(
    buildah: _BuildahSession,
    image_id: str,
    ref: str,
    manifest_format: ManifestFormat,
    credentials: tuple[str, str] | None,
) -> str:
    auth_flags: list[str] = []
    if credentials is not None:
        registry_host = ref.split("/", 1)[0]
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        authfile = buildah.tmp / "auth.json"
        fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"auths": {registry_host: {"auth": token}}}, handle)
        auth_flags = ["--authfile", str(authfile)]
    digestfile = buildah.tmp / "digest"
    buildah.run(
        "push",
        "--tls-verify=false",
        "--format",
        "oci" if manifest_format == "oci" else "v2s2",
        "--digestfile",
        str(digestfile),
        *auth_flags,
        image_id,
        f"docker://{ref}",
    )
    digest = digestfile.read_text().strip()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ImageBuildError(f"buildah push {ref} wrote an unexpected digest {digest!r}")
    return digest


def _platform_flags(platform: Platform) -> list[str]:
    flags = ["--os", platform.os, "--arch", platform.architecture]
    if platform.variant:
        flags += ["--variant", platform.variant]
    return flags


def _label_flags(labels: Mapping[str, str] | None) -> list[str]:
    return [flag for key, value in (labels or {}).items() for flag in ("--label", f"{key}={value}")]


class _BuildahSession:
    """A private buildah storage root in a temporary directory, removed afterwards."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="archfleet-buildah-")
        self.tmp = Path(self._tmp.name)
        self._base = [
            "buildah",
            "--root",
            str(self.tmp / "root"),
            "--runroot",
            str(self.tmp / "runroot"),
            "--storage-driver",
            "vfs",
        ]
        # buildah's own scratch files (build contexts, blobs) stay inside the session too.
        self._env = {**os.environ, "TMPDIR": str(self.tmp), "BUILDAH_ISOLATION": "chroot"}

    def run(self, *args: str) -> str:
        return _run([*self._base, *args], env=self._env)

    def __enter__(self) -> _BuildahSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # chroot isolation mounts /proc, /sys and /dev into the build root in its own mount
        # namespace; if one ever leaked into ours, deleting the tree would recurse into it.
        leaked = _mounts_under(self.tmp)
        if leaked:
            raise ImageBuildError(
                f"not removing {self.tmp}: mounts still under it: {', '.join(leaked)}"
            )
        self._tmp.cleanup()


def _mounts_under(path: Path) -> list[str]:
    prefix = f"{path.resolve()}/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4]
        if mount_point.startswith(prefix):
            mounts.append(mount_point)
    return mounts


def _apt_download(package: str, debian_arch: str, into: Path) -> None:
    """`apt-get download`, first making apt know the architecture and its package lists."""
    known = {host_debian_arch(), *_run(["dpkg", "--print-foreign-architectures"]).split()}
    added = debian_arch not in known
    if added:
        _run(["dpkg", "--add-architecture", debian_arch])
    command = ["apt-get", "download", "-q", package]
    if not added:
        try:
            _run(command, cwd=into)
            return
        except ImageBuildError:
            pass  # most likely the lists predate the architecture: update, then retry
    # A flaky index elsewhere (e.g. a security mirror) makes update exit non-zero while the
    # lists we need did arrive, so the retried download is the judge, not update's status.
    update = subprocess.run(
        ["apt-get", "-q", "-o", f"DPkg::Lock::Timeout={_APT_LOCK_TIMEOUT}", "update"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        _run(command, cwd=into)
    except ImageBuildError as error:
        raise ImageBuildError(
            f"{error}\n(after apt-get update, status {update.returncode}:\n"
            f"{_tail(update.stdout + update.stderr)})"
        ) from None


def _binfmt_enabled(entry: Path) -> bool:
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def _binfmt_field(entry: Path, name: str) -> str:
    for line in entry.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key.rstrip(":") == name:
            return value.strip()
    return ""


def _run(
    args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    try:
        done = subprocess.run(
            list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ImageBuildError(f"{args[0]} not found on PATH") from None
    if done.returncode != 0:
        raise ImageBuildError(
            f"`{' '.join(args)}` failed with status {done.returncode}:\n"
            f"{_tail(done.stderr or done.stdout)}"
        )
    return done.stdout


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_STDERR_TAIL_LINES:])
